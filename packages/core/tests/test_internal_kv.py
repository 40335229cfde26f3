"""The public key-value store: put/get/exists/list/delete through the control store."""

from __future__ import annotations

import pytest

from distcore.experimental import internal_kv as kv


def test_put_get_overwrite_list_delete(shared_cluster) -> None:
    ns = "test-kv"
    assert kv._internal_kv_initialized()
    assert kv._internal_kv_put("a/1", b"one", namespace=ns) is True
    assert kv._internal_kv_put("a/1", b"uno", overwrite=False, namespace=ns) is False
    assert kv._internal_kv_get("a/1", namespace=ns) == b"one"
    assert kv._internal_kv_put(b"a/1", "eins", namespace=ns) is False
    assert kv._internal_kv_get("a/1", namespace=ns) == b"eins"
    kv._internal_kv_put("a/2", b"two", namespace=ns)
    kv._internal_kv_put("b/1", b"x", namespace=ns)
    assert sorted(kv._internal_kv_list("a/", namespace=ns)) == ["a/1", "a/2"]
    # Namespaces are separate key spaces.
    assert kv._internal_kv_get("a/1", namespace="other") is None
    assert kv._internal_kv_exists("b/1", namespace=ns)
    assert kv._internal_kv_del("a/", del_by_prefix=True, namespace=ns) == 2
    assert kv._internal_kv_list("a/", namespace=ns) == []
    assert kv._internal_kv_del("b/1", namespace=ns) == 1
    assert not kv._internal_kv_exists("b/1", namespace=ns)


def test_bad_keys_and_values_are_typed_errors(shared_cluster) -> None:
    with pytest.raises(TypeError, match="values must be bytes"):
        kv._internal_kv_put("k", 3, namespace="test-kv")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="keys must be str or bytes"):
        kv._internal_kv_get(5, namespace="test-kv")  # type: ignore[arg-type]
