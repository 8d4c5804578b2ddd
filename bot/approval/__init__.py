"""Restore requests approved by reactions: asked, decided once, run once."""
