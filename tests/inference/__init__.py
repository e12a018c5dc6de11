"""Tests of src/inference."""
