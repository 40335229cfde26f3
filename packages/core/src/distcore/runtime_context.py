"""``get_runtime_context()``: ids and resources of the current process and task.

Example::

    ctx = distcore.get_runtime_context()
    print(ctx.get_job_id(), ctx.get_node_id(), ctx.get_task_id())
"""

from __future__ import annotations

from typing import Any

from distcore._private import worker_state

__all__ = ["RuntimeContext", "get_runtime_context"]


class RuntimeContext:
    """What the current driver, task or actor knows about where it runs."""

    def _core(self) -> Any:
        core = worker_state.core_worker()
        if core is None:
            raise RuntimeError("distcore is not initialized: call distcore.init() first")
        return core

    def get_job_id(self) -> str:
        return self._core().job_id

    @property
    def job_id(self) -> str:
        return self.get_job_id()

    def get_node_id(self) -> str:
        return self._core().node_id

    @property
    def node_id(self) -> str:
        return self.get_node_id()

    def get_worker_id(self) -> str:
        return self._core().worker_id

    def get_task_id(self) -> str | None:
        """The running task's id (None in the driver outside any task)."""
        return self._core().current_task_id

    def get_actor_id(self) -> str | None:
        """The current actor's id, or None outside an actor."""
        return self._core().current_actor_id

    def get_actor_name(self) -> str | None:
        core = self._core()
        executor = core.executor
        return executor.actor_name if executor is not None and core.current_actor_id else None

    @property
    def namespace(self) -> str:
        return self._core().namespace

    def get_namespace(self) -> str:
        return self.namespace

    def get_assigned_resources(self) -> dict[str, float]:
        """Resources the current task or actor holds (empty in the driver)."""
        return dict(self._core().assigned_resources)

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """Accelerator ids visible to this worker, e.g. ``{"GPU": ["0"]}``."""
        return {"GPU": [str(g) for g in self._core().gpu_ids]}

    def get_node_ip_address(self) -> str:
        return self._core().ip

    @property
    def gcs_address(self) -> str:
        return self._core().gcs_address

    def get(self) -> dict[str, Any]:
        return {"job_id": self.get_job_id(), "node_id": self.get_node_id(), "namespace": self.namespace,
                "task_id": self.get_task_id(), "actor_id": self.get_actor_id()}


def get_runtime_context() -> RuntimeContext:
    """The context of the current process (driver, task or actor)."""
    return RuntimeContext()
