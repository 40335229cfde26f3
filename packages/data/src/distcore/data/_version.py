"""Version of distcore-data, and the range of core API versions it works with."""

__version__ = "0.1.0"
# distcore.API_VERSION must satisfy CORE_API_MIN <= API_VERSION < CORE_API_MAX. Keep in
# step with the `distcore>=...,<...` pin in pyproject.toml (tools/release/bump.py does).
CORE_API_MIN = "0.1"
CORE_API_MAX = "1"
