"""The proxy's HTTP/1.1 protocol on the wire: pipelining, HEAD, keep-alive, chunked bodies, 100-continue.

Raw sockets, so the bytes the proxy writes are what is checked (httpx would hide framing mistakes).
"""

from __future__ import annotations

import asyncio
import socket

import httpx

from distcore import serve


@serve.deployment(max_ongoing_requests=8)
class Echo:
    async def __call__(self, request):
        body = await request.body()
        delay = float(request.query_params.get("sleep", "0"))
        if delay:
            await asyncio.sleep(delay)
        return f"{request.method} {request.url.path} {request.query_params.get('i', '')} {body.decode()}"


def _read_response(sock: socket.socket, buf: bytearray) -> tuple[bytes, dict, bytes]:
    """One response (content-length or chunked) from ``sock``; leftovers stay in ``buf``."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-head: {bytes(buf)!r}"
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    buf[:] = rest
    if b"content-length" in headers:
        n = int(headers[b"content-length"])
        while len(buf) < n:
            chunk = sock.recv(65536)
            assert chunk
            buf += chunk
        body = bytes(buf[:n])
        del buf[:n]
        return lines[0], headers, body
    assert headers.get(b"transfer-encoding") == b"chunked", headers
    body = b""
    while True:
        while b"\r\n" not in buf:
            buf += sock.recv(65536)
        size_line, _, _ = bytes(buf).partition(b"\r\n")
        size = int(size_line, 16)
        while len(buf) < len(size_line) + 2 + size + 2:
            buf += sock.recv(65536)
        body += bytes(buf[len(size_line) + 2:len(size_line) + 2 + size])
        del buf[:len(size_line) + 2 + size + 2]
        if size == 0:
            return lines[0], headers, body


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def test_pipelined_requests_answer_in_order(serve_instance):
    serve.run(Echo.bind(), name="wire", route_prefix="/wire")
    assert httpx.get(f"{serve_instance}/wire", timeout=30).status_code == 200  # opens the replica connection
    with _connect(serve_instance) as sock:
        # the first request is the slowest: its answer must still come first
        reqs = [f"GET /wire?i={i}&sleep={0.3 if i == 0 else 0} HTTP/1.1\r\nHost: x\r\n\r\n" for i in range(5)]
        sock.sendall("".join(reqs).encode())
        buf = bytearray()
        bodies = [_read_response(sock, buf)[2] for _ in range(5)]
    assert bodies == [f"GET /wire {i} ".encode() for i in range(5)]


def test_keep_alive_head_close_and_request_ids(serve_instance):
    serve.run(Echo.bind(), name="wire", route_prefix="/wire")
    with _connect(serve_instance) as sock:
        buf = bytearray()
        sock.sendall(b"POST /wire/sub?i=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nx-request-id: my-id-1\r\n\r\nhello")
        status, headers, body = _read_response(sock, buf)
        assert status == b"HTTP/1.1 200 OK" and body == b"POST /wire/sub 1 hello"
        assert headers[b"x-request-id"] == b"my-id-1"
        # HEAD: the head of the response, no body
        sock.sendall(b"HEAD /wire HTTP/1.1\r\nHost: x\r\n\r\n")
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: " in head.lower() and rest == b""
        buf.clear()
        # a chunked request body, then Connection: close ends the connection after the answer
        sock.sendall(b"PUT /wire?i=2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        status, headers, body = _read_response(sock, buf)
        assert body == b"PUT /wire 2 abcde" and headers[b"connection"] == b"close"
        assert headers[b"x-request-id"]
        assert sock.recv(10) == b""  # closed by the proxy


def test_expect_100_continue_and_http_1_0(serve_instance):
    serve.run(Echo.bind(), name="wire", route_prefix="/wire")
    with _connect(serve_instance) as sock:
        buf = bytearray()
        sock.sendall(b"POST /wire?i=3 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        assert bytes(buf).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        del buf[:len(b"HTTP/1.1 100 Continue\r\n\r\n")]
        sock.sendall(b"ok")
        assert _read_response(sock, buf)[2] == b"POST /wire 3 ok"
    with _connect(serve_instance) as sock:
        sock.sendall(b"GET /wire?i=4 HTTP/1.0\r\n\r\n")
        buf = bytearray()
        status, headers, body = _read_response(sock, buf)
        assert body == b"GET /wire 4 " and headers[b"connection"] == b"close"
        assert sock.recv(10) == b""
    with _connect(serve_instance) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        buf = bytearray()
        status, _, _ = _read_response(sock, buf)
        assert status.startswith(b"HTTP/1.1 400")
    serve.delete("wire")
