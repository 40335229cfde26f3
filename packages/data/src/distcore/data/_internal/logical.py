"""The logical plan: a DAG of operators describing what a Dataset computes (nothing runs here)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from distcore.data._internal.transforms import Stage


@dataclass(frozen=True)
class TaskPoolStrategy:
    """Run a map as stateless tasks; ``size`` caps the tasks in flight (None = no cap)."""

    size: int | None = None


@dataclass(frozen=True)
class ActorPoolStrategy:
    """Run a map on a pool of actors that scales between ``min_size`` and ``max_size`` by queue length."""

    min_size: int = 1
    max_size: int | None = None
    size: int | None = None
    max_tasks_in_flight_per_actor: int | None = None

    def __post_init__(self) -> None:
        if self.size is not None:
            object.__setattr__(self, "min_size", self.size)
            object.__setattr__(self, "max_size", self.size)
        if not isinstance(self.min_size, int) or self.min_size < 1:
            raise ValueError(f"ActorPoolStrategy: min_size must be an int >= 1, got {self.min_size!r}")
        if self.max_size is not None and (not isinstance(self.max_size, int) or self.max_size < self.min_size):
            raise ValueError(f"ActorPoolStrategy: max_size must be an int >= min_size ({self.min_size}), "
                             f"got {self.max_size!r}")


class LogicalOperator:
    def __init__(self, name: str, inputs: list[LogicalOperator]) -> None:
        self.name = name
        self.inputs = list(inputs)

    @property
    def input(self) -> LogicalOperator:
        return self.inputs[0]

    def with_inputs(self, inputs: list[LogicalOperator]) -> LogicalOperator:
        new = copy.copy(self)
        new.inputs = list(inputs)
        return new

    def num_rows(self) -> int | None:
        """Rows this operator outputs, when known without running it."""
        return None

    def __repr__(self) -> str:
        return self.name


class Read(LogicalOperator):
    def __init__(self, datasource: Any, parallelism: int = -1, name: str | None = None) -> None:
        super().__init__(name or f"Read{getattr(datasource, 'get_name', lambda: type(datasource).__name__)()}", [])
        self.datasource = datasource
        self.parallelism = parallelism

    #: datasources whose read-task metadata counts rows exactly
    EXACT_ROW_SOURCES = ("RangeDatasource", "BlocksDatasource", "ParquetDatasource")

    def num_rows(self) -> int | None:
        if type(self.datasource).__name__ not in self.EXACT_ROW_SOURCES:
            return None
        if getattr(self.datasource, "_filter", None) is not None or getattr(self.datasource, "_limit", None):
            return None
        try:
            tasks = self.datasource.get_read_tasks(max(1, self.parallelism))
        except Exception:  # noqa: BLE001 - counting falls back to running the plan
            return None
        rows = [t.metadata.num_rows for t in tasks]
        return None if any(r is None for r in rows) else int(sum(rows))


class InputData(LogicalOperator):
    """Blocks already in the object store: a list of ``(ref, BlockMetadata)``."""

    def __init__(self, bundles: list[tuple[Any, Any]], name: str = "InputData") -> None:
        super().__init__(name, [])
        self.bundles = list(bundles)

    def num_rows(self) -> int | None:
        rows = [m.num_rows for _, m in self.bundles]
        return None if any(r is None for r in rows) else sum(rows)


class MapLike(LogicalOperator):
    """Map-like operators (map, map_batches, flat_map, filter, project, ...): a chain of stages.

    ``read`` is set when a Read was fused into this operator: its read tasks become the inputs.
    """

    def __init__(self, name: str, input_op: LogicalOperator | None, stages: list[Stage], *,
                 compute: TaskPoolStrategy | ActorPoolStrategy | None = None, num_cpus: float | None = None,
                 num_gpus: float | None = None, remote_args: dict | None = None, kind: str = "map",
                 min_rows_per_bundle: int | None = None, read: Read | None = None) -> None:
        super().__init__(name, [input_op] if input_op is not None else [])
        self.stages = list(stages)
        self.compute = compute or TaskPoolStrategy()
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.remote_args = dict(remote_args or {})
        self.kind = kind
        self.min_rows_per_bundle = min_rows_per_bundle
        self.read = read

    @property
    def is_actor(self) -> bool:
        return isinstance(self.compute, ActorPoolStrategy)

    def resources(self) -> tuple[float, float]:
        cpus = self.num_cpus if self.num_cpus is not None else (0.0 if (self.num_gpus or 0) > 0 else 1.0)
        return float(cpus), float(self.num_gpus or 0)

    def num_rows(self) -> int | None:
        if all(s.row_preserving for s in self.stages):
            src = self.read if self.read is not None else (self.inputs[0] if self.inputs else None)
            return src.num_rows() if src is not None else None
        return None


class Limit(LogicalOperator):
    def __init__(self, input_op: LogicalOperator, n: int) -> None:
        super().__init__(f"Limit[{n}]", [input_op])
        self.n = n

    def num_rows(self) -> int | None:
        up = self.input.num_rows()
        return None if up is None else min(up, self.n)


class Union(LogicalOperator):
    def __init__(self, inputs: list[LogicalOperator]) -> None:
        super().__init__("Union", inputs)

    def num_rows(self) -> int | None:
        rows = [i.num_rows() for i in self.inputs]
        return None if any(r is None for r in rows) else sum(rows)


class AllToAll(LogicalOperator):
    """A barrier: runs ``fn(list of each input's bundles) -> bundles`` once all inputs are done."""

    def __init__(self, name: str, inputs: list[LogicalOperator], fn: Callable[[list[list]], list],
                 kind: str, args: dict | None = None, row_preserving: bool = False, exchange: Any = None) -> None:
        super().__init__(name, inputs)
        self.fn = fn
        #: an ``ExchangeSpec``: run as a streaming exchange bounded by the memory budget, not a barrier
        self.exchange = exchange
        self.kind = kind
        self.args = dict(args or {})
        self.row_preserving = row_preserving

    def num_rows(self) -> int | None:
        return self.input.num_rows() if self.row_preserving and len(self.inputs) == 1 else None


class LogicalPlan:
    def __init__(self, dag: LogicalOperator) -> None:
        self.dag = dag

    def sources(self) -> list[LogicalOperator]:
        out, seen = [], set()

        def visit(op: LogicalOperator) -> None:
            if id(op) in seen:
                return
            seen.add(id(op))
            if not op.inputs:
                out.append(op)
            for i in op.inputs:
                visit(i)

        visit(self.dag)
        return out

    def explain(self) -> str:
        lines: list[str] = []

        def visit(op: LogicalOperator, depth: int) -> None:
            lines.append("  " * depth + ("+- " if depth else "") + op.name)
            for i in op.inputs:
                visit(i, depth + 1)

        visit(self.dag, 0)
        return "\n".join(lines)
