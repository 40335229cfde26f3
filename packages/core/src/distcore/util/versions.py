"""Compatibility checks between core and the libraries built on it.

Each library (``distcore-tune``, ...) declares the range of core's public
API it supports and checks it at import, so a mismatch fails early with an
error that names both versions and the fix.

Example::

    from distcore.util.versions import require_core_api

    require_core_api("distcore-tune", "0.1.0", api_min="0.1", api_max="1.0")
"""

from __future__ import annotations

__all__ = ["require_core_api"]


def _api_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def require_core_api(
    distribution: str,
    version: str,
    *,
    api_min: str,
    api_max: str,
    core_api: str | None = None,
    core_version: str | None = None,
) -> None:
    """Raise ImportError unless core's API version is in ``[api_min, api_max)``.

    ``core_api`` and ``core_version`` default to the installed core's.
    """
    import distcore

    core_api = core_api if core_api is not None else getattr(distcore, "API_VERSION", "unknown")
    core_version = core_version if core_version is not None else getattr(distcore, "__version__", "unknown")
    try:
        ok = _api_tuple(api_min) <= _api_tuple(core_api) < _api_tuple(api_max)
    except ValueError:
        ok = False
    if not ok:
        raise ImportError(
            f"{distribution} {version} needs distcore API >={api_min},<{api_max}, "
            f"but the installed distcore {core_version} provides API {core_api}. "
            f'Fix: pip install "distcore>={api_min},<{api_max}"'
        )
