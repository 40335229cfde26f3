"""Internals of distcore.data: not public API; no other package may import them."""
