"""Modelling: OneFormer configurations, loading and export, the changes to transformers' OneFormer, model cards."""
