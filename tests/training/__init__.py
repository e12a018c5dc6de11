"""Tests of src/training."""
