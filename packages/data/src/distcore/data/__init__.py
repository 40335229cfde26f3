"""distcore.data: lazy, streaming datasets for ML on distcore (mirrors ray.data).

Installed as the ``distcore-data`` distribution, next to core's ``distcore``;
import it as ``from distcore import data``. Its API is being built.
"""

from __future__ import annotations

from distcore.data._version import CORE_API_MAX, CORE_API_MIN, __version__
from distcore.util.versions import require_core_api

__all__ = ["__version__"]

require_core_api("distcore-data", __version__, api_min=CORE_API_MIN, api_max=CORE_API_MAX)
