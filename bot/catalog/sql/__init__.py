"""The catalog's statements, written once for every backend: one class per table."""
