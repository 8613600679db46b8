"""Journeys: one durable Temporal workflow per module."""
