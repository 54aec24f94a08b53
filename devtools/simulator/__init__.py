"""Simulated brokerage: seeded generators of what platforms and PSPs send."""
