"""Fleets: every database on a server, picked up as databases appear and reported as they go."""
