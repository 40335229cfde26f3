"""A node or driver whose distcore version differs from the head's is refused.

Each check runs a real process of another version against a running head:
the other version is made by patching ``__version__`` in that process before
it starts, so nothing in distcore needs a test-only hook.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from distcore._private import protocol as p
from distcore._private.ids import new_node_id
from distcore._private.rpc import RpcClient
from distcore._version import __version__
from distcore.exceptions import VersionMismatchError

pytestmark = pytest.mark.integration

OTHER = "0.0.1.dev99"

NODE_OF_OTHER_VERSION = f"""
import sys
import distcore._version
distcore._version.__version__ = {OTHER!r}  # before the node manager imports it
from distcore._private.node_main import main
main(sys.argv[1:])
"""

DRIVER_OF_OTHER_VERSION = f"""
import sys
import distcore
import distcore._private.api.runtime as runtime
runtime.__version__ = {OTHER!r}
distcore.init(address=sys.argv[1])
print("connected")
"""


def _env(cluster) -> dict[str, str]:
    env = dict(os.environ)
    env["DISTCORE_AUTH_TOKEN"] = cluster.auth_token
    return env


def _node_ids(cluster) -> set[str]:
    async def go():
        client = RpcClient(cluster.address, cluster.auth_token)
        try:
            return await client.call("Gcs", "ListNodes", None, timeout=10)
        finally:
            await client.close()

    return {n.node_id for n in asyncio.run(go())}


def test_node_of_another_version_is_refused(cluster, tmp_path):
    cluster.add_node(num_cpus=1)
    node_id = new_node_id()
    ready = tmp_path / "ready.json"
    args = [
        "--gcs-address", cluster.address, "--node-id", node_id, "--resources", json.dumps({"CPU": 1}),
        "--object-store-memory", str(64 * 1024 * 1024), "--session-dir", cluster.session_dir,
        "--session-name", cluster._session_name, "--ready-file", str(ready), "--prestart", "0",
    ]
    result = subprocess.run(
        [sys.executable, "-c", NODE_OF_OTHER_VERSION, *args],
        env=_env(cluster), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert not ready.exists()
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"distcore node failed to start: node {node_id[:8]} "), result.stderr[-2000:]
    assert f"runs distcore {OTHER} but the head runs distcore {__version__}" in last
    assert f"install distcore=={__version__}" in last
    assert node_id not in _node_ids(cluster)


def test_registering_a_node_of_another_version_over_rpc_is_refused(cluster):
    cluster.add_node(num_cpus=1)
    info = p.NodeInfo(node_id=new_node_id(), address="127.0.0.1:1", ip="127.0.0.1", resources={"CPU": 1.0},
                      version=OTHER)

    async def register():
        client = RpcClient(cluster.address, cluster.auth_token)
        try:
            return await client.call("Gcs", "RegisterNode", info, timeout=10)
        finally:
            await client.close()

    with pytest.raises(VersionMismatchError, match=f"runs distcore {OTHER} but the head runs distcore {__version__}"):
        asyncio.run(register())
    assert info.node_id not in _node_ids(cluster)


def test_driver_of_another_version_is_refused(cluster):
    cluster.add_node(num_cpus=1)
    result = subprocess.run(
        [sys.executable, "-c", DRIVER_OF_OTHER_VERSION, cluster.address],
        env=_env(cluster), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "connected" not in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("distcore.exceptions.VersionMismatchError: "), result.stderr[-2000:]
    assert f"this driver runs distcore {OTHER} but the cluster's head runs distcore {__version__}" in last


def test_same_version_driver_connects(cluster):
    cluster.add_node(num_cpus=1)
    same = DRIVER_OF_OTHER_VERSION.replace(repr(OTHER), repr(__version__))
    result = subprocess.run(
        [sys.executable, "-c", same, cluster.address],
        env=_env(cluster), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "connected" in result.stdout
