"""Evaluation: metrics, the evaluators of each task, scoring a model on a split, comparison figures."""
