"""Prometheus collectors that read a node's state when scraped.

Nothing here is updated from the runtime's hot paths: each scrape walks the
node manager's leases, worker pool, object store and resources (and, on the
head, the control store's actor, placement-group and node tables) and turns
what it finds into metric families. Only the lease counters and the
grant-latency histogram are recorded as they happen (:mod:`.stats`).

Collectors run on the node process's event loop (see :mod:`.server`), so they
read the same dicts the handlers change without locks.

Example::

    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node_manager))
    registry.register(ControlStoreCollector(gcs, node_id))   # the head only
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from distcore._private import protocol as p
from distcore._private.metrics.stats import LEASE_OUTCOMES
from distcore._version import __version__

__all__ = ["ControlStoreCollector", "NodeCollector"]

ACTOR_STATES = (p.ACTOR_PENDING, p.ACTOR_ALIVE, p.ACTOR_RESTARTING, p.ACTOR_DEAD)
PLACEMENT_GROUP_STATES = ("PENDING", "CREATED", "REMOVED")
NODE_STATES = ("ALIVE", "DEAD")
WORKER_STATES = ("starting", "idle", "leased", "actor")


class NodeCollector:
    """Tasks, leases, workers, object store and resources of one node manager."""

    def __init__(self, node_manager: Any) -> None:
        self._nm = node_manager

    def describe(self) -> list[Metric]:
        return []  # the names depend on nothing; skip the registry's duplicate check

    def collect(self) -> Iterator[Metric]:
        node = self._nm.node_id
        info = GaugeMetricFamily("distcore_node_info", "Always 1: the node's identity as labels.",
                                 labels=["node_id", "address", "is_head", "version"])
        info.add_metric([node, self._nm.address, str(bool(self._nm.config.is_head)).lower(), __version__], 1)
        yield info
        yield from self._resources(node)
        yield from self._object_store(node)
        if self._nm.leases is not None:
            yield from self._leases(node)
        if self._nm.pool is not None:
            yield from self._workers(node)

    def _resources(self, node: str) -> list[Metric]:
        total = self._nm.resources.total.to_dict()
        available = self._nm.resources.available.to_dict()
        capacity = GaugeMetricFamily("distcore_node_resource_capacity",
                                     "Resources of the node (CPU, GPU, memory, custom).",
                                     labels=["node_id", "resource"])
        free = GaugeMetricFamily("distcore_node_resource_available",
                                 "Resources of the node not held by leases or placement-group bundles.",
                                 labels=["node_id", "resource"])
        for name in sorted(total):
            capacity.add_metric([node, name], total[name])
            free.add_metric([node, name], available.get(name, 0.0))
        return [capacity, free]

    def _object_store(self, node: str) -> list[Metric]:
        stats = self._nm.store.stats()
        labels = ["node_id"]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=labels)
            family.add_metric([node], value)
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=labels)
            family.add_metric([node], value)
            return family

        objects = GaugeMetricFamily("distcore_object_store_objects",
                                    "Objects in the node's store, in shared memory or spilled to disk.",
                                    labels=["node_id", "location"])
        objects.add_metric([node, "memory"], stats.get("num_in_memory", 0))
        objects.add_metric([node, "spilled"], stats.get("num_spilled", 0))
        return [
            gauge("distcore_object_store_used_bytes",
                  "Shared-memory bytes held by objects (reservations and mapped deleted objects included).",
                  stats.get("used", 0)),
            gauge("distcore_object_store_capacity_bytes", "Shared-memory bytes the store may use.",
                  stats.get("capacity", 0)),
            gauge("distcore_object_store_pinned_bytes",
                  "Bytes of in-memory primary copies that owners reference (spilled, never evicted).",
                  stats.get("pinned_bytes", 0)),
            objects,
            gauge("distcore_object_store_spilled_bytes", "Bytes of objects that live only on disk now.",
                  stats.get("spilled_bytes", 0)),
            counter("distcore_object_store_spilled_objects",
                    "Objects written to disk to make room, since the node started.",
                    stats.get("num_spilled_total", 0)),
            counter("distcore_object_store_restored_objects",
                    "Spilled objects read back into shared memory, since the node started.",
                    stats.get("num_restored_total", 0)),
        ]

    def _leases(self, node: str) -> Iterator[Metric]:
        leases = self._nm.leases
        # A lease runs one task at a time, and owners reuse it for further tasks
        # of the same shape: so no task name here, only the job.
        tasks: Counter[tuple[str, str]] = Counter()
        for req in list(leases.pending.values()):
            if req.for_actor is None:
                tasks[("PENDING_NODE_ASSIGNMENT", req.job_id)] += 1
        for lease in list(leases.leases.values()):
            if lease.request.for_actor is None:
                tasks[("RUNNING_IN_RAY_GET" if lease.blocked else "RUNNING", lease.request.job_id)] += 1
        family = GaugeMetricFamily(
            "distcore_tasks",
            "Task leases at this node: requests waiting for resources or a worker "
            "(PENDING_NODE_ASSIGNMENT) and granted leases, each running one task at a time (RUNNING; "
            "RUNNING_IN_RAY_GET while blocked in get). Actors are counted by distcore_workers{state=\"actor\"}.",
            labels=["node_id", "state", "job_id"],
        )
        for (state, job_id), n in sorted(tasks.items()):
            family.add_metric([node, state, job_id], n)
        yield family

        stats = leases.stats
        help_text = {
            "granted": "Lease requests this node granted a worker.",
            "spilled_back": "Lease requests this node sent to another node (spillback).",
            "infeasible": "Lease requests this node answered infeasible (no node can ever fit them).",
        }
        for outcome in LEASE_OUTCOMES:
            counter = CounterMetricFamily(f"distcore_leases_{outcome}", help_text[outcome],
                                          labels=["node_id", "job_id"])
            for (kind, job_id), n in sorted(stats.counters.items()):
                if kind == outcome:
                    counter.add_metric([node, job_id], n)
            yield counter

        latency = HistogramMetricFamily(
            "distcore_scheduling_latency_seconds",
            "Seconds from a lease request's arrival at this node to its grant (queueing and worker start).",
            labels=["node_id"],
        )
        hist = stats.latency
        latency.add_metric([node], [(_le(bound), n) for bound, n in hist.cumulative()], hist.sum)
        yield latency

    def _workers(self, node: str) -> Iterator[Metric]:
        pool = self._nm.pool
        idle = {id(w) for w in pool.idle}
        states = Counter({s: 0 for s in WORKER_STATES})
        for worker in list(pool.workers.values()):
            if worker.actor_id:
                states["actor"] += 1
            elif worker.lease_id:
                states["leased"] += 1
            elif id(worker) in idle and worker.registered.is_set():
                states["idle"] += 1
            else:
                states["starting"] += 1
        family = GaugeMetricFamily(
            "distcore_workers",
            "Worker processes of this node: starting (not registered yet), idle, leased to a task owner, "
            "or hosting an actor.",
            labels=["node_id", "state"],
        )
        for state in WORKER_STATES:
            family.add_metric([node, state], states[state])
        yield family


class ControlStoreCollector:
    """Actors, placement groups and nodes of the cluster, from the head's control store."""

    def __init__(self, gcs: Any, node_id: str) -> None:
        self._gcs = gcs
        self._node_id = node_id

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        node = self._node_id
        actors: Counter[tuple[str, str]] = Counter()
        for actor in list(self._gcs.actors.actors.values()):
            actors[(actor.info.state, actor.info.class_name)] += 1
        family = GaugeMetricFamily("distcore_actors", "Actors of the cluster by state and class.",
                                   labels=["node_id", "state", "name"])
        for name in sorted({name for _, name in actors}):
            for state in ACTOR_STATES:
                family.add_metric([node, state, name], actors[(state, name)])
        yield family

        groups = Counter(g.info.state for g in list(self._gcs.pgs.groups.values()))
        family = GaugeMetricFamily("distcore_placement_groups", "Placement groups of the cluster by state.",
                                   labels=["node_id", "state"])
        for state in PLACEMENT_GROUP_STATES:
            family.add_metric([node, state], groups[state])
        yield family

        nodes = Counter(n.state for n in list(self._gcs.nodes.nodes.values()))
        family = GaugeMetricFamily("distcore_cluster_nodes", "Nodes of the cluster by state.",
                                   labels=["node_id", "state"])
        for state in NODE_STATES:
            family.add_metric([node, state], nodes[state])
        yield family


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))
