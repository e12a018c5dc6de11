"""Tests of src/modelling."""
