"""Tests of src/synthetic."""
