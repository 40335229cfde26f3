"""distcore.tune: hyperparameter tuning on distcore (mirrors ray.tune).

Installed as the ``distcore-tune`` distribution, next to core's ``distcore``;
import it as ``from distcore import tune``. Its API is being built.
"""

from __future__ import annotations

from distcore.tune._version import CORE_API_MAX, CORE_API_MIN, __version__
from distcore.util.versions import require_core_api

__all__ = ["__version__"]

require_core_api("distcore-tune", __version__, api_min=CORE_API_MIN, api_max=CORE_API_MAX)
