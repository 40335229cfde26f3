"""distcore.serve: scalable model serving on distcore (mirrors ``ray.serve``).

Installed as the ``distcore-serve`` distribution, next to core's ``distcore``;
import it as ``from distcore import serve``.

Example::

    import distcore
    from distcore import serve

    @serve.deployment(num_replicas=2)
    class Hello:
        async def __call__(self, request):
            return f"hello {request.query_params.get('name', 'world')}"

    distcore.init()
    handle = serve.run(Hello.bind(), route_prefix="/")  # curl http://127.0.0.1:8000/?name=x
"""

from __future__ import annotations

from typing import Any

from distcore.serve._version import CORE_API_MAX, CORE_API_MIN, __version__
from distcore.util.versions import require_core_api

require_core_api("distcore-serve", __version__, api_min=CORE_API_MIN, api_max=CORE_API_MAX)

from distcore.serve import exceptions  # noqa: E402
from distcore.serve._internal.api import (  # noqa: E402
    ApplicationStatusOverview,
    DeploymentStatusOverview,
    ServeStatus,
    delete,
    get_app_handle,
    get_deployment_handle,
    run,
    shutdown,
    start,
    status,
)
from distcore.serve._internal.batching import batch  # noqa: E402
from distcore.serve._internal.config import (  # noqa: E402
    AutoscalingConfig,
    DeploymentConfig,
    HTTPOptions,
    ProxyLocation,
    gRPCOptions,
)
from distcore.serve._internal.context import ReplicaContext, get_replica_context  # noqa: E402
from distcore.serve._internal.deployment import Application, Deployment, ingress, make_deployment  # noqa: E402
from distcore.serve._internal.handle import (  # noqa: E402
    DeploymentHandle,
    DeploymentResponse,
    DeploymentResponseGenerator,
)
from distcore.serve._internal.multiplex import get_multiplexed_model_id, multiplexed  # noqa: E402

__all__ = [
    "Application",
    "ApplicationStatusOverview",
    "AutoscalingConfig",
    "Deployment",
    "DeploymentConfig",
    "DeploymentHandle",
    "DeploymentResponse",
    "DeploymentResponseGenerator",
    "DeploymentStatusOverview",
    "HTTPOptions",
    "ProxyLocation",
    "ReplicaContext",
    "ServeStatus",
    "__version__",
    "batch",
    "delete",
    "deployment",
    "exceptions",
    "gRPCOptions",
    "get_app_handle",
    "get_deployment_handle",
    "get_multiplexed_model_id",
    "get_replica_context",
    "ingress",
    "multiplexed",
    "run",
    "shutdown",
    "start",
    "status",
]


def deployment(_func_or_class: Any = None, **options: Any) -> Any:
    """Make a class or function a deployment: ``@serve.deployment`` or ``@serve.deployment(num_replicas=2)``.

    Options: ``name``, ``version``, ``num_replicas`` (int or "auto"), ``autoscaling_config``,
    ``max_ongoing_requests``, ``max_queued_requests``, ``ray_actor_options`` (or ``actor_options``),
    ``user_config``, ``health_check_period_s``, ``health_check_timeout_s``,
    ``graceful_shutdown_timeout_s``, ``request_timeout_s``.
    """
    if _func_or_class is not None:
        return make_deployment(_func_or_class, options)
    return lambda target: make_deployment(target, options)
