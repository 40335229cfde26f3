"""Utilities: replay buffers, return estimators, schedules."""
