"""Internals of distcore.rllib: not public API; no other package may import them."""
