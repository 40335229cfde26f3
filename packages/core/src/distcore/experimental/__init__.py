"""Experimental public APIs (Ray's ``ray.experimental``): stable enough for distcore's
own libraries to build on, but their shape may still change between minor versions.

Example::

    from distcore.experimental import internal_kv
    internal_kv._internal_kv_put("my-key", b"value", namespace="my-lib")
"""

from distcore.experimental import internal_kv

__all__ = ["internal_kv"]
