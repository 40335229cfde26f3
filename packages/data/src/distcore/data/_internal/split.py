"""streaming_split: a coordinator actor runs the pipeline and deals blocks to ``n`` consumers.

With ``equal=True`` every split gets exactly ``total // n`` rows: blocks go to the
split with the fewest rows so far, a split is only handed rows every split is
sure to reach, and at the end the surplus is sliced and moved so all splits match.
"""

from __future__ import annotations

import collections
import time
from typing import Any

import distcore
from distcore.data._internal import block as B
from distcore.data._internal.block import BlockMetadata


@distcore.remote(num_returns=2, num_cpus=0)
def _slice(table: Any, start: int, length: int) -> tuple[Any, BlockMetadata]:
    out = B.compact(table.slice(start, length))
    return out, B.block_metadata(out)


class SplitCoordinator:
    def __init__(self, plan: Any, ctx: Any, n: int, equal: bool) -> None:
        from distcore.data.context import DataContext

        DataContext._set_current(ctx)
        self.plan, self.ctx, self.n, self.equal = plan, ctx, n, equal
        self.epoch = -1
        self.requested = [-1] * n
        self.finished = [-1] * n
        self.executor: Any = None
        self.exhausted = False
        self.balanced = False
        self.queues: list[collections.deque] = [collections.deque() for _ in range(n)]
        self.assigned = [0] * n
        self.handed = [0] * n
        self.stats_text = ""

    # ------------------------------------------------------------------ epochs
    def _start_epoch(self, epoch: int) -> None:
        from distcore.data._internal.executor import StreamingExecutor

        if self.executor is not None:
            self.stats_text = self.executor.stats.to_string()
            self.executor.shutdown()
        self.epoch = epoch
        self.queues = [collections.deque() for _ in range(self.n)]
        self.assigned = [0] * self.n
        self.handed = [0] * self.n
        self.exhausted = self.balanced = False
        self.executor = StreamingExecutor(self.plan, self.ctx, name=f"split-epoch-{epoch}").run_in_thread()

    def get(self, index: int, epoch: int) -> tuple[str, list]:
        self.requested[index] = max(self.requested[index], epoch)
        if epoch < self.epoch:
            return "end", []
        if epoch > self.epoch:
            # An epoch starts once no split is still inside the previous one.
            if all(r >= epoch or f >= epoch - 1 for r, f in zip(self.requested, self.finished, strict=True)):
                self._start_epoch(epoch)
            else:
                time.sleep(0.05)
                return "wait", []
        deadline = time.monotonic() + 0.2
        while True:
            out = self._hand_out(index)
            if out:
                return "blocks", out
            if self.exhausted and not self.queues[index]:
                self.finished[index] = max(self.finished[index], epoch)
                return "end", []
            if time.monotonic() > deadline:
                return "wait", []
            self._pull(0.05)

    # ------------------------------------------------------------------ dealing
    def _pull(self, timeout: float) -> None:
        if self.exhausted:
            return
        try:
            bundle = self.executor.next_bundle(timeout=timeout)
        except TimeoutError:
            return
        if bundle is None:
            self.exhausted = True
            self.stats_text = self.executor.stats.to_string()
            if self.equal:
                self._balance()
            return
        if self.equal:
            target = min(range(self.n), key=lambda i: self.assigned[i])
        else:
            target = min(range(self.n), key=lambda i: (sum(b.rows for b in self.queues[i]), i))
        self.queues[target].append(bundle)
        self.assigned[target] += bundle.rows
        self.executor.consumer_held = sum(b.size for q in self.queues for b in q)

    def _hand_out(self, index: int) -> list:
        q = self.queues[index]
        out = []
        if not self.equal or self.balanced:
            while q:
                out.append(q.popleft().ref)
        else:
            safe = min(self.assigned)
            while q and self.handed[index] + q[0].rows <= safe:
                b = q.popleft()
                self.handed[index] += b.rows
                out.append(b.ref)
        if self.executor is not None:
            self.executor.consumer_held = sum(b.size for qq in self.queues for b in qq)
        return out

    def _balance(self) -> None:
        from distcore.data._internal.physical import Bundle

        total = sum(self.assigned)
        target = total // self.n
        surplus: list[Bundle] = []
        for i in range(self.n):
            have = self.handed[i]
            kept: collections.deque = collections.deque()
            for b in self.queues[i]:
                room = target - have
                if room <= 0:
                    surplus.append(b)
                elif b.rows <= room:
                    kept.append(b)
                    have += b.rows
                else:
                    head, tail = self._split(b, room)
                    kept.append(head)
                    surplus.append(tail)
                    have += room
            self.queues[i] = kept
            self.assigned[i] = have
        for i in range(self.n):
            while self.assigned[i] < target and surplus:
                b = surplus.pop()
                room = target - self.assigned[i]
                if b.rows <= room:
                    self.queues[i].append(b)
                    self.assigned[i] += b.rows
                else:
                    head, tail = self._split(b, room)
                    self.queues[i].append(head)
                    self.assigned[i] += room
                    surplus.append(tail)
        self.balanced = True

    def _split(self, b: Any, n: int) -> tuple[Any, Any]:
        from distcore.data._internal.physical import Bundle

        h_ref, h_meta = _slice.remote(b.ref, 0, n)
        t_ref, t_meta = _slice.remote(b.ref, n, b.rows - n)
        h_meta, t_meta = distcore.get([h_meta, t_meta], timeout=600)
        return Bundle(h_ref, h_meta), Bundle(t_ref, t_meta)

    def stats(self) -> str:
        if self.executor is not None and not self.exhausted:
            return self.executor.stats.to_string()
        return self.stats_text

    def shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()


SplitCoordinatorActor = distcore.remote(num_cpus=0)(SplitCoordinator)
