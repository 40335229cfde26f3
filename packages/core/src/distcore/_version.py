"""Single source of the core package's version and public API version."""

__version__ = "0.1.0"
# The public API contract libraries pin against (major.minor).
API_VERSION = "0.1"
