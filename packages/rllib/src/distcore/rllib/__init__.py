"""distcore.rllib: reinforcement learning on distcore (mirrors RLlib).

Installed as the ``distcore-rllib`` distribution, next to core's ``distcore``;
import it as ``from distcore import rllib``. Its API is being built.
"""

from __future__ import annotations

from distcore.rllib._version import CORE_API_MAX, CORE_API_MIN, __version__
from distcore.util.versions import require_core_api

__all__ = ["__version__"]

require_core_api("distcore-rllib", __version__, api_min=CORE_API_MIN, api_max=CORE_API_MAX)
