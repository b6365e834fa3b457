"""Metrics and the log context."""
