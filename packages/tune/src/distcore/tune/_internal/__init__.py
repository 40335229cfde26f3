"""Internals of distcore.tune: not public API; no other package may import them."""
