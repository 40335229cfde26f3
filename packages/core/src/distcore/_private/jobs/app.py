"""The jobs REST API as a Starlette app, behind the cluster-token check.

Paths (Ray's, so Ray clients and scripts find their way):

=======  ======================================  =====================================
GET      ``/-/healthz``                          ``success`` (the only path without a token)
GET      ``/api/version``                        API and distcore versions
POST     ``/api/jobs/``                          submit: ``{"entrypoint": ..., ...}``
GET      ``/api/jobs/``                          every job's record
GET      ``/api/jobs/{id}``                      one record (404 if unknown)
GET      ``/api/jobs/{id}/logs``                 ``{"logs": "..."}``
GET      ``/api/jobs/{id}/logs/tail``            the log streamed until the job ends
POST     ``/api/jobs/{id}/stop``                 ``{"stopped": bool}``
DELETE   ``/api/jobs/{id}``                      ``{"deleted": true}`` (finished jobs only)
GET      ``/api/packages/dcpkg/{sha256}.zip``    200 if uploaded, else 404
PUT      ``/api/packages/dcpkg/{sha256}.zip``    upload a package (body: the zip)
=======  ======================================  =====================================

Every other request needs ``Authorization: Bearer <cluster token>``; without
it, or with a wrong one, :class:`TokenAuth` answers 401 before any routing
and logs the attempt. Errors are JSON ``{"error": "what was wrong"}``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from distcore._private import runtime_env as renv
from distcore._private.jobs.common import JOBS_API_VERSION, parse_submit_request
from distcore._private.jobs.manager import PKG_NAMESPACE, JobManager
from distcore._version import __version__

logger = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/-/healthz"})
MAX_JSON_BODY = 16 * 1024 * 1024
_PACKAGE_RE = re.compile(r"^([0-9a-f]{64})\.(zip|whl)$")
_PACKAGE_PROTOCOL = renv.URI_SCHEME.removesuffix("://")

Handler = Callable[[Request], Awaitable[Response]]


class TokenAuth:
    """ASGI middleware: refuse requests without the cluster token (401), except health checks.

    Example::

        app = TokenAuth(starlette_app, token="s3cret")   # None: no check
    """

    def __init__(self, app: Any, token: str | None, public_paths: frozenset[str] = PUBLIC_PATHS) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode() if token else None
        self._public = public_paths

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if self._expected is None or scope["type"] not in ("http", "websocket") or scope["path"] in self._public:
            await self.app(scope, receive, send)
            return
        got = b""
        for key, value in scope.get("headers") or ():
            if key == b"authorization":
                got = value
                break
        if hmac.compare_digest(got, self._expected):
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("?", 0)
        logger.warning("refused %s HTTP request %s %s from %s:%s: %s cluster token", "an unauthenticated",
                       scope.get("method", "WEBSOCKET"), scope["path"], client[0], client[1],
                       "wrong" if got else "missing")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        response = JSONResponse(
            {"error": "missing or wrong cluster token: send 'Authorization: Bearer <token>' (the head's "
                      "DISTCORE_AUTH_TOKEN, or the token file in its session directory)"},
            status_code=401, headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _handles_errors(fn: Handler) -> Handler:
    """KeyError -> 404, ValueError -> 400, anything else -> 500; each with the message."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except KeyError as exc:
            return _error(404, str(exc.args[0]) if exc.args else "not found")
        except ValueError as exc:
            return _error(400, str(exc))
        except Exception as exc:  # noqa: BLE001 - the client gets the reason
            logger.exception("jobs API %s %s failed", request.method, request.url.path)
            return _error(500, f"{type(exc).__name__}: {exc}")

    return wrapper


async def _json_body(request: Request) -> Any:
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > MAX_JSON_BODY:
        raise ValueError(f"the request body is {int(size)} bytes; at most {MAX_JSON_BODY} are accepted")
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise ValueError(f"the request body is not valid JSON: {exc}") from None


def create_app(manager: JobManager, *, token: str | None, session_name: str = "") -> TokenAuth:
    """The jobs API over ``manager``, wrapped in :class:`TokenAuth`."""

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("success")

    async def version(request: Request) -> Response:
        return JSONResponse({"version": JOBS_API_VERSION, "distcore_version": __version__,
                             "session_name": session_name})

    @_handles_errors
    async def submit(request: Request) -> Response:
        req = parse_submit_request(await _json_body(request))
        sid = await manager.submit(req)
        return JSONResponse({"job_id": sid, "submission_id": sid})

    @_handles_errors
    async def list_jobs(request: Request) -> Response:
        return JSONResponse([info.to_dict() for info in manager.list()])

    @_handles_errors
    async def get_job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        info = manager.get(job_id)
        if info is None:
            raise KeyError(f"no job with submission id (or job id) {job_id!r}")
        return JSONResponse(info.to_dict())

    @_handles_errors
    async def logs(request: Request) -> Response:
        return JSONResponse({"logs": manager.read_logs(request.path_params["job_id"])})

    @_handles_errors
    async def tail(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        if manager.get(job_id) is None:
            raise KeyError(f"no job with submission id (or job id) {job_id!r}")
        return StreamingResponse(manager.follow_logs(job_id), media_type="text/plain; charset=utf-8")

    @_handles_errors
    async def stop(request: Request) -> Response:
        return JSONResponse({"stopped": await manager.stop(request.path_params["job_id"])})

    @_handles_errors
    async def delete(request: Request) -> Response:
        return JSONResponse({"deleted": await manager.delete(request.path_params["job_id"])})

    def _package_uri(request: Request) -> tuple[str, str]:
        protocol, name = request.path_params["protocol"], request.path_params["package_name"]
        match = _PACKAGE_RE.match(name)
        if protocol != _PACKAGE_PROTOCOL or match is None:
            raise ValueError(
                f"packages are named /api/packages/{_PACKAGE_PROTOCOL}/<sha256 of the bytes>.zip (or .whl), "
                f"got /api/packages/{protocol}/{name}"
            )
        return f"{renv.URI_SCHEME}{name}", match.group(1)

    @_handles_errors
    async def package_exists(request: Request) -> Response:
        uri, _ = _package_uri(request)
        if await manager.kv.get(PKG_NAMESPACE, uri) is None:
            raise KeyError(f"package {uri} is not uploaded")
        return JSONResponse({"uri": uri, "exists": True})

    @_handles_errors
    async def upload_package(request: Request) -> Response:
        uri, digest = _package_uri(request)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > renv.MAX_PACKAGE_SIZE:
                return _error(413, f"packages are at most {renv.MAX_PACKAGE_SIZE} bytes")
            chunks.append(chunk)
        data = b"".join(chunks)
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"the uploaded bytes do not hash to the name {digest}.zip: the upload was corrupted")
        await manager.kv.put(PKG_NAMESPACE, uri, data)
        return JSONResponse({"uri": uri, "size": size})

    routes = [
        Route("/-/healthz", healthz, methods=["GET"]),
        Route("/api/version", version, methods=["GET"]),
        Route("/api/jobs/", submit, methods=["POST"]),
        Route("/api/jobs/", list_jobs, methods=["GET"]),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs", list_jobs, methods=["GET"]),
        Route("/api/jobs/{job_id}", get_job, methods=["GET"]),
        Route("/api/jobs/{job_id}", delete, methods=["DELETE"]),
        Route("/api/jobs/{job_id}/logs", logs, methods=["GET"]),
        Route("/api/jobs/{job_id}/logs/tail", tail, methods=["GET"]),
        Route("/api/jobs/{job_id}/stop", stop, methods=["POST"]),
        Route("/api/packages/{protocol}/{package_name}", package_exists, methods=["GET"]),
        Route("/api/packages/{protocol}/{package_name}", upload_package, methods=["PUT"]),
    ]
    return TokenAuth(Starlette(routes=routes), token)
