"""distcore.serve: scalable model serving on distcore (mirrors ray.serve).

Installed as the ``distcore-serve`` distribution, next to core's ``distcore``;
import it as ``from distcore import serve``. Its API is being built.
"""

from __future__ import annotations

from distcore.serve._version import CORE_API_MAX, CORE_API_MIN, __version__
from distcore.util.versions import require_core_api

__all__ = ["__version__"]

require_core_api("distcore-serve", __version__, api_min=CORE_API_MIN, api_max=CORE_API_MAX)
