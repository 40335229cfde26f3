"""A retried task writes its return id again: the node's store accepts it,
whether the first attempt's writer died before sealing or after."""

from __future__ import annotations

from distcore._private import protocol as p
from distcore._private.object_store.shm import create_segment
from distcore._private.worker_state import core_worker


def _call(core, method, request):
    return core.run(core.node().call("NodeManager", method, request))


def test_create_again_after_an_unsealed_or_sealed_attempt(shared_cluster):
    core = core_worker()
    oid = "cd" * 12 + "00000001"
    first = _call(core, "CreateObject", p.CreateObject(oid, 1000))  # writer killed before sealing
    second = _call(core, "CreateObject", p.CreateObject(oid, 2000))
    assert second == first
    with create_segment(second, 2000) as seg:
        seg.buffer[:2] = b"ok"
    _call(core, "SealObject", p.SealObject(oid, core.address))
    third = _call(core, "CreateObject", p.CreateObject(oid, 10))  # sealed, reply lost, retried
    with create_segment(third, 10) as seg:
        seg.buffer[:2] = b"v3"
    _call(core, "SealObject", p.SealObject(oid, core.address))
    name, size = _call(core, "GetObjects", [oid])[0]
    assert size == 10
    _call(core, "FreeObjects", [oid])
