"""Command-line entry points (``distcore`` and the libraries' CLIs build on :mod:`.cli`)."""
