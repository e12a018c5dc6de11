"""Tests of src/field."""
