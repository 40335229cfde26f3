"""distcore.rllib: reinforcement learning on distcore (mirrors RLlib).

Installed as the ``distcore-rllib`` distribution, next to core's ``distcore``;
import it as ``from distcore import rllib``. Its API is being built.
"""

from __future__ import annotations

import distcore
from distcore.rllib._version import CORE_API_MAX, CORE_API_MIN, __version__

__all__ = ["__version__"]


def _api_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _check_core_api(api_version: str, core_version: str) -> None:
    """Raise ImportError unless core's public API version is one this library supports."""
    try:
        ok = _api_tuple(CORE_API_MIN) <= _api_tuple(api_version) < _api_tuple(CORE_API_MAX)
    except ValueError:
        ok = False
    if not ok:
        raise ImportError(
            f"distcore-rllib {__version__} needs distcore API >={CORE_API_MIN},<{CORE_API_MAX}, "
            f"but the installed distcore {core_version} provides API {api_version}. "
            f'Fix: pip install "distcore>={CORE_API_MIN},<{CORE_API_MAX}"'
        )


_check_core_api(
    getattr(distcore, "API_VERSION", "unknown"), getattr(distcore, "__version__", "unknown")
)
