"""Per-replica and per-request context (what ``serve.get_replica_context()`` returns)."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

from distcore.serve.exceptions import RayServeException


@dataclass
class ReplicaContext:
    """Where the running code is: its application, deployment and replica."""

    app_name: str
    deployment: str
    replica_tag: str
    servable_object: Any = None

    @property
    def replica_id(self) -> str:
        return self.replica_tag


_replica_context: ReplicaContext | None = None
# per request (several replicas may share a process: the proxy hosts ingress replicas)
replica_context_var: contextvars.ContextVar[ReplicaContext | None] = contextvars.ContextVar(
    "serve_replica_context", default=None)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("serve_request_id", default="")
multiplexed_model_id: contextvars.ContextVar[str] = contextvars.ContextVar("serve_model_id", default="")
app_name: contextvars.ContextVar[str] = contextvars.ContextVar("serve_app_name", default="")


def set_replica_context(ctx: ReplicaContext | None) -> None:
    global _replica_context
    _replica_context = ctx
    replica_context_var.set(ctx)


def current_replica_context() -> ReplicaContext | None:
    return replica_context_var.get() or _replica_context


def get_replica_context() -> ReplicaContext:
    current = current_replica_context()
    if current is None:
        raise RayServeException(
            "serve.get_replica_context() may only be called from inside a deployment's replica.")
    return current
