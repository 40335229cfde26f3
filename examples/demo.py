"""A tour of distcore's core API on the embedded local cluster (run: python3 tools/dev.py demo)."""

import time

import numpy as np

import distcore


@distcore.remote
def square(x: int) -> int:
    return x * x


@distcore.remote
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@distcore.remote
def total(array: np.ndarray) -> float:
    return float(array.sum())


@distcore.remote
class Counter:
    def __init__(self) -> None:
        self.count = 0

    def add(self, n: int) -> int:
        self.count += n
        return self.count


distcore.init()  # no address: starts a one-node cluster in the background
print("cluster resources:", distcore.cluster_resources())

refs = [square.remote(i) for i in range(8)]
print("8 tasks in parallel, squares:", distcore.get(refs))

counter = Counter.remote()
for n in (1, 2, 3):
    counter.add.remote(n)  # calls from one caller run in order, on the actor's state
print("actor state after adding 1, 2, 3 and 4:", distcore.get(counter.add.remote(4)))

naps = [nap.remote(s) for s in (0.1, 0.5, 2.0)]
ready, pending = distcore.wait(naps, num_returns=2, timeout=10)
print(f"wait: {len(ready)} ready {distcore.get(ready)}, {len(pending)} still running")

array = np.arange(20_000_000, dtype=np.float64)  # 160 MB, stored once in shared memory
array_ref = distcore.put(array)
print(
    f"put a {array.nbytes / 1e6:.0f} MB array; a task sums it:",
    distcore.get(total.remote(array_ref)),
)
print("get returns an equal array:", np.array_equal(distcore.get(array_ref), array))

distcore.shutdown()
print("cluster stopped")
