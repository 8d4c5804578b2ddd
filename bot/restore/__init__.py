"""Drills and refreshes: guarded, planned, restored, verified, recorded."""
