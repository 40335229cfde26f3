"""distcore: tasks, actors and objects on a cluster of Python processes.

The API mirrors Ray's, so ``import distcore as ray`` runs Ray code.

Example::

    import distcore

    @distcore.remote
    def square(x):
        return x * x

    print(distcore.get([square.remote(i) for i in range(4)]))  # [0, 1, 4, 9]
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

from distcore import actor, exceptions  # noqa: E402
from distcore._private import missing_library as _missing_library  # noqa: E402
from distcore._private.api.actor import method  # noqa: E402
from distcore._private.api.object_ref import (  # noqa: E402
    DynamicObjectRefGenerator,
    ObjectRef,
    ObjectRefGenerator,
)
from distcore._private.api.remote import remote  # noqa: E402
from distcore._private.api.runtime import (  # noqa: E402
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_actor,
    init,
    is_initialized,
    kill,
    nodes,
    put,
    shutdown,
    timeline,
    wait,
)
from distcore._version import API_VERSION, __version__  # noqa: E402
from distcore.runtime_context import get_runtime_context  # noqa: E402


def get_gpu_ids() -> list[int]:
    """GPU ids assigned to the current task or actor (what CUDA_VISIBLE_DEVICES lists)."""
    from distcore._private import worker_state

    core = worker_state.core_worker()
    return list(core.gpu_ids) if core is not None else []


_missing_library.install()

__all__ = [
    "API_VERSION",
    "DynamicObjectRefGenerator",
    "ObjectRef",
    "ObjectRefGenerator",
    "__version__",
    "actor",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "timeline",
    "wait",
]
