"""Snapshots: taken, stored, read back, found again and closed out."""
