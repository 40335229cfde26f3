"""Internals of distcore.serve: not public API; no other package may import them."""
