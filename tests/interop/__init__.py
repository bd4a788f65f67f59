"""Interop tests: bearer_m2m against authorization servers nobody here wrote."""
