"""The autoscaler loop (``_private/autoscaler/monitor.py``) over an in-process control store and a fake provider."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

from distcore._private import protocol as p
from distcore._private.autoscaler.config import (
    REQUEST_KV_KEY,
    REQUEST_KV_NAMESPACE,
    AutoscalingConfig,
)
from distcore._private.autoscaler.monitor import Autoscaler
from distcore._private.autoscaler.node_provider import (
    LABEL_PROVIDER_NODE_ID,
    TAG_NODE_TYPE,
    NodeProvider,
)
from distcore._private.autoscaler.status import format_autoscaler_status
from distcore._private.gcs.server import GcsService

CPU1 = {"CPU": 1.0}


class FakeProvider(NodeProvider):
    def __init__(self) -> None:
        self.nodes: dict[str, str] = {}
        self.fail = False
        self.shut = False
        self.created = 0

    def non_terminated_nodes(self) -> list[str]:
        return list(self.nodes)

    def create_node(self, node_type: str, count: int) -> None:
        if self.fail:
            raise RuntimeError("no capacity in this zone")
        for _ in range(count):
            self.created += 1
            self.nodes[f"fake-{self.created}"] = node_type

    def terminate_node(self, node_id: str) -> None:
        self.nodes.pop(node_id, None)

    def node_tags(self, node_id: str) -> dict[str, str]:
        return {TAG_NODE_TYPE: self.nodes[node_id]}

    def is_running(self, node_id: str) -> bool:
        return node_id in self.nodes

    def shutdown(self) -> None:
        self.shut = True


def make(idle_timeout_s: float = 0.3, **types) -> tuple[GcsService, FakeProvider, Autoscaler]:
    gcs = GcsService(None, None)
    gcs.nodes.register(p.NodeInfo("head", "127.0.0.1:1", "127.0.0.1", {"CPU": 0.0}, is_head=True))
    config = AutoscalingConfig.from_dict({
        "max_workers": 4, "idle_timeout_s": idle_timeout_s,
        "available_node_types": types or {"cpu": {"resources": CPU1, "max_workers": 2}},
    })
    provider = FakeProvider()
    gcs.autoscaler = Autoscaler(gcs, config, provider)
    return gcs, provider, gcs.autoscaler


def boot(gcs: GcsService, provider: FakeProvider, age_s: float = 60.0) -> list[str]:
    """Register every provider node with the control store, as its node process would."""
    ids = []
    for provider_id in provider.nodes:
        node_id = f"node-{provider_id}"
        if node_id in gcs.nodes.nodes:
            continue
        gcs.nodes.register(p.NodeInfo(node_id, f"{provider_id}:1", "127.0.0.1", dict(CPU1),
                                      labels={LABEL_PROVIDER_NODE_ID: provider_id}, start_time=time.time() - age_s))
        ids.append(node_id)
    return ids


def test_scale_up_on_infeasible_demand_then_down_when_idle():
    async def scenario():
        gcs, provider, autoscaler = make()
        gcs.nodes.infeasible_demand["head"] = [dict(CPU1), dict(CPU1)]
        assert (await autoscaler.update()).launch == {"cpu": 2}
        assert len(provider.nodes) == 2
        assert (await autoscaler.update()).empty  # launching nodes absorb the demand
        status = autoscaler.status()
        assert status["node_types"]["cpu"]["launching"] == 2

        nodes = boot(gcs, provider)
        gcs.nodes.infeasible_demand["head"] = []
        for n in nodes:
            gcs.nodes.available[n] = {"CPU": 0.0}  # running the tasks
        assert (await autoscaler.update()).empty
        assert autoscaler.status()["node_types"]["cpu"]["active"] == 2

        for n in nodes:
            gcs.nodes.available[n] = dict(CPU1)
        assert (await autoscaler.update()).empty  # idle, but not for long yet
        assert autoscaler.status()["node_types"]["cpu"]["idle"] == 2
        await asyncio.sleep(0.35)
        decision = await autoscaler.update()
        assert len(decision.terminate) == 2 and provider.nodes == {}
        assert all(gcs.nodes.nodes[n].state == "DEAD" for n in nodes)
        assert "terminated by the autoscaler" in gcs.nodes.nodes[nodes[0]].death_reason
        messages = [d["message"] for d in autoscaler.status()["last_decisions"]]
        assert any(m.startswith("launch 2 x cpu") for m in messages)
        assert sum(m.startswith("terminate fake-") for m in messages) == 2
        text = "\n".join(format_autoscaler_status(await gcs.rpc_GetAutoscalerStatus(None)))
        assert "cpu  launching 0  active 0  idle 0" in text and "terminate fake-1" in text
        await autoscaler.close()
        assert provider.shut

    asyncio.run(scenario())


def test_infeasible_reports_a_joined_node_fits_are_stale():
    async def scenario():
        gcs, provider, autoscaler = make(idle_timeout_s=0.0)
        gcs.nodes.infeasible_demand["head"] = [dict(CPU1)]
        assert (await autoscaler.update()).launch == {"cpu": 1}
        (node,) = boot(gcs, provider, age_s=0.0)
        gcs.nodes.available[node] = {"CPU": 0.0}  # busy, and the head still reports the old demand
        assert (await autoscaler.update()).empty
        gcs.nodes.available[node] = dict(CPU1)
        assert (await autoscaler.update()).empty  # idle, but it only just joined

    asyncio.run(scenario())


def test_node_with_actor_or_objects_is_not_idle():
    async def scenario():
        gcs, provider, autoscaler = make(idle_timeout_s=0.0)
        provider.create_node("cpu", 1)
        (node,) = boot(gcs, provider)
        gcs.nodes.object_store_used[node] = 1024
        await autoscaler.update()
        assert (await autoscaler.update()).terminate == []
        gcs.nodes.object_store_used[node] = 0
        actor = SimpleNamespace(info=SimpleNamespace(node_id=node, state=p.ACTOR_ALIVE), spec=SimpleNamespace(creation=None),
                                lease=None)
        gcs.actors.actors["a1"] = actor  # a 0-CPU actor holds no resources, but lives there
        assert (await autoscaler.update()).terminate == []
        actor.info.state = p.ACTOR_DEAD
        assert len((await autoscaler.update()).terminate) == 1

    asyncio.run(scenario())


def test_failed_launches_back_off():
    async def scenario():
        gcs, provider, autoscaler = make()
        provider.fail = True
        gcs.nodes.infeasible_demand["head"] = [dict(CPU1)]
        await autoscaler.update()
        provider.fail = False
        decision = await autoscaler.update()
        assert decision.launch == {} and provider.nodes == {}
        messages = [d["message"] for d in autoscaler.status()["last_decisions"]]
        assert any("no capacity in this zone" in m and "not launching cpu for 5 s" in m for m in messages)

        # A launch that vanishes before joining counts as a failure too.
        autoscaler._backoff.clear()
        assert (await autoscaler.update()).launch == {"cpu": 1}
        provider.nodes.clear()
        await autoscaler.update()
        messages = [d["message"] for d in autoscaler.status()["last_decisions"]]
        assert any("exited before joining" in m for m in messages)

    asyncio.run(scenario())


def test_request_resources_in_the_control_store_is_demand():
    async def scenario():
        gcs, provider, autoscaler = make()
        blob = json.dumps({"bundles": [dict(CPU1)] * 2}).encode()
        await gcs.rpc_KvPut(p.KvPut(REQUEST_KV_NAMESPACE, REQUEST_KV_KEY, blob, overwrite=True))
        assert (await autoscaler.update()).launch == {"cpu": 2}
        assert autoscaler.status()["resource_request"] == [CPU1, CPU1]

    asyncio.run(scenario())


def test_infeasible_demand_is_reported_in_status():
    async def scenario():
        gcs, provider, autoscaler = make()
        gcs.nodes.infeasible_demand["head"] = [{"GPU": 1.0}]
        decision = await autoscaler.update()
        assert decision.launch == {} and decision.infeasible == [{"GPU": 1.0}]
        text = "\n".join(format_autoscaler_status(autoscaler.status()))
        assert "infeasible (no node type fits): {GPU: 1}" in text

    asyncio.run(scenario())
