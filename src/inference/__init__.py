"""Inference: running a model over images, the objects and catalog of its maps, predict.py's runs and their report."""
