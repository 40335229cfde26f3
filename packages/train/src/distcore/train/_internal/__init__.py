"""Internals of distcore.train: not public API; no other package may import them."""
