"""Tests of src/evaluation."""
