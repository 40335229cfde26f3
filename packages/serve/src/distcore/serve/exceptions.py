"""Serve's exceptions (Ray Serve's names)."""

from __future__ import annotations


class RayServeException(Exception):
    """A Serve operation failed."""


ServeException = RayServeException


class BackPressureError(RayServeException):
    """A deployment's queue is full (``max_queued_requests``): the request was refused."""

    def __init__(self, num_queued_requests: int = 0, max_queued_requests: int = 0, deployment: str = "") -> None:
        self.num_queued_requests = num_queued_requests
        self.max_queued_requests = max_queued_requests
        super().__init__(
            f"Request dropped due to backpressure: deployment '{deployment}' has {num_queued_requests} queued "
            f"requests, its max_queued_requests is {max_queued_requests}.")

    def __reduce__(self):
        return (BackPressureError, (self.num_queued_requests, self.max_queued_requests, ""))


class RequestCancelledError(RayServeException):
    """The request was cancelled (or timed out) before it finished."""


class DeploymentUnavailableError(RayServeException):
    """No replica of the deployment could take the request in time."""


class RayServeUserError(RayServeException):
    """User code raised: the message holds the remote traceback."""

    def __init__(self, message: str, cause_type: str = "") -> None:
        self.cause_type = cause_type
        super().__init__(message)

    def __reduce__(self):
        return (RayServeUserError, (self.args[0], self.cause_type))
