"""The cluster's key-value store (held by the control store, persisted with it).

Mirrors ``ray.experimental.internal_kv``: small metadata that must survive a
process crash (a controller's checkpoint, an experiment's registry). Values are
bytes; keys are ``str`` or ``bytes`` (UTF-8); each namespace is a separate key space.
Every call connects the driver first (``distcore.init()``) if it is not connected.

Example::

    import distcore
    from distcore.experimental import internal_kv

    distcore.init()
    internal_kv._internal_kv_put("config", b'{"lr": 0.1}', namespace="my-app")
    assert internal_kv._internal_kv_get("config", namespace="my-app") == b'{"lr": 0.1}'
"""

from __future__ import annotations

from distcore._private import protocol as p
from distcore._private.api.runtime import auto_init

DEFAULT_NAMESPACE = "default"
DEFAULT_TIMEOUT_S = 30.0


def _key(key: str | bytes) -> str:
    if isinstance(key, bytes):
        key = key.decode("utf-8")
    if not isinstance(key, str):
        raise TypeError(f"internal_kv keys must be str or bytes, got {type(key).__name__}")
    return key


def _ns(namespace: str | bytes | None) -> str:
    if namespace is None:
        return DEFAULT_NAMESPACE
    return _key(namespace)


def _internal_kv_initialized() -> bool:
    """True when this process is connected to a cluster (the KV is reachable)."""
    import distcore

    return distcore.is_initialized()


def _internal_kv_put(
    key: str | bytes,
    value: bytes | str,
    overwrite: bool = True,
    *,
    namespace: str | bytes | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
) -> bool:
    """Store ``value`` under ``key``; return True if the key was new.

    With ``overwrite=False`` an existing value is kept (and False returned).
    """
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"internal_kv values must be bytes, got {type(value).__name__}")
    req = p.KvPut(_ns(namespace), _key(key), bytes(value), overwrite=overwrite)
    return bool(auto_init().gcs_call("KvPut", req, timeout=timeout))


def _internal_kv_get(
    key: str | bytes, *, namespace: str | bytes | None = None, timeout: float | None = DEFAULT_TIMEOUT_S
) -> bytes | None:
    """The value stored under ``key``, or None."""
    return auto_init().gcs_call("KvGet", p.KvKey(_ns(namespace), _key(key)), timeout=timeout)


def _internal_kv_exists(
    key: str | bytes, *, namespace: str | bytes | None = None, timeout: float | None = DEFAULT_TIMEOUT_S
) -> bool:
    """True if ``key`` holds a value."""
    return bool(auto_init().gcs_call("KvExists", p.KvKey(_ns(namespace), _key(key)), timeout=timeout))


def _internal_kv_del(
    key: str | bytes,
    *,
    del_by_prefix: bool = False,
    namespace: str | bytes | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
) -> int:
    """Delete ``key`` (or every key starting with it); return how many were deleted."""
    ns = _ns(namespace)
    keys = _internal_kv_list(key, namespace=ns, timeout=timeout) if del_by_prefix else [_key(key)]
    core = auto_init()
    return sum(int(core.gcs_call("KvDel", p.KvKey(ns, k), timeout=timeout)) for k in keys)


def _internal_kv_list(
    prefix: str | bytes, *, namespace: str | bytes | None = None, timeout: float | None = DEFAULT_TIMEOUT_S
) -> list[str]:
    """Every key in ``namespace`` that starts with ``prefix``."""
    return list(auto_init().gcs_call("KvKeys", p.KvKey(_ns(namespace), _key(prefix)), timeout=timeout))


__all__ = [
    "_internal_kv_del",
    "_internal_kv_exists",
    "_internal_kv_get",
    "_internal_kv_initialized",
    "_internal_kv_list",
    "_internal_kv_put",
]
