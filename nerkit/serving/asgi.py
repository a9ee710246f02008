"""ASGI middleware that reads a request before anything parses it, and answers what it cannot serve with JSON:
``BodyLimit`` (413 over the size limit, 408 for a body that stops arriving, 422 for bytes no JSON parser reads)
and ``ShutdownAnswer`` (503 for a request a stopping server cut). Plain ASGI: no web framework needed.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any


class ApiError(Exception):
    """An error answered to the client as ``{"error": {"code", "message", ...}}``."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def body(self) -> dict:
        """The JSON body of the error response."""
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


# An over-limit body up to this many bytes is read and dropped before the 413 is sent: clients that send the whole
# body before reading the answer (Python's urllib, requests) otherwise get a connection reset instead of the 413,
# because the server closes a socket that still holds unread data. Beyond it (or after DRAIN_SECONDS) the server
# answers and closes anyway: reading gigabytes to be polite is a denial of service.
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 10.0


class _ReadTimeout(Exception):
    pass


class BodyLimit:
    """ASGI middleware that reads request bodies before anything parses them: 413 over ``max_bytes`` (after
    draining the rest, bounded), 408 when the client stops sending for ``read_timeout`` seconds, 422 for bodies
    that no JSON parser here could read (undecodable bytes, nesting deeper than the parser's recursion limit)."""

    def __init__(self, app, max_bytes: int, read_timeout: float = 30.0):
        self.app, self.max_bytes, self.read_timeout = app, max_bytes, read_timeout

    async def _receive(self, receive, timeout: float | None = None) -> dict:
        try:
            return await asyncio.wait_for(receive(), self.read_timeout if timeout is None else timeout)
        except asyncio.TimeoutError:
            raise _ReadTimeout from None

    async def _drain(self, receive, more: bool) -> None:
        """Read and drop the rest of a body, up to DRAIN_BYTES and DRAIN_SECONDS."""
        deadline, dropped = time.monotonic() + DRAIN_SECONDS, 0
        while more and dropped <= DRAIN_BYTES:
            left = min(self.read_timeout, deadline - time.monotonic())
            if left <= 0:
                return
            try:
                msg = await self._receive(receive, left)
            except _ReadTimeout:
                return
            if msg["type"] != "http.request":
                return
            dropped += len(msg.get("body", b""))
            more = msg.get("more_body", False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        size = None
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return await send_json(send, 400, ApiError(400, "bad_request", "invalid Content-Length header").body())
        waiting = headers.get(b"expect", b"").lower() == b"100-continue"
        if size is not None and size > self.max_bytes and (waiting or size > self.max_bytes + DRAIN_BYTES):
            # The client waits for "100 Continue" before sending (curl), or the body is too large to drain.
            return await send_json(send, 413, _body_too_large(self.max_bytes, size).body())
        chunks, total = [], 0
        try:
            while True:
                msg = await self._receive(receive)
                if msg["type"] == "http.disconnect":
                    return
                body = msg.get("body", b"")
                total += len(body)
                more = msg.get("more_body", False)
                if total > self.max_bytes:
                    await self._drain(receive, more)
                    return await send_json(send, 413, _body_too_large(self.max_bytes, size).body())
                chunks.append(body)
                if not more:
                    break
        except asyncio.CancelledError:
            # uvicorn's graceful-shutdown bound cut this request while its body was arriving: say so and end the
            # request here (re-raising would only log a traceback for an expected event).
            return await send_json(send, 503, ApiError(503, "shutting_down", "the server is shutting down").body())
        except _ReadTimeout:
            return await send_json(send, 408, ApiError(
                408, "timeout", f"the request body stopped arriving: nothing for {self.read_timeout:g} s "
                                f"(read_timeout_s={self.read_timeout:g}) after {total} bytes").body())
        whole = b"".join(chunks)
        if scope["path"].startswith("/v1/"):
            problem = _unparseable(whole)
            if problem:
                return await send_json(send, 422, ApiError(422, "malformed_json", problem).body())
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def _unparseable(body: bytes) -> str | None:
    """Why a JSON parser cannot read ``body`` where FastAPI would only say "error parsing the body", else None."""
    try:  # FastAPI answers undecodable bytes with a bare 400; say what is wrong, as for any bad JSON
        body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as exc:
        return (f"request body is not valid JSON: not {exc.encoding} text "
                f"(byte 0x{body[exc.start]:02x} at position {exc.start})")
    # Deep nesting exhausts the parser's recursion limit (RecursionError, which FastAPI turns into a vague 400).
    # Counting brackets first keeps the second parse to the rare bodies that could be that deep.
    if body.count(b"[") + body.count(b"{") > 256:
        try:
            json.loads(body)
        except RecursionError:
            return ("request body is not valid JSON for this service: arrays or objects are nested too deeply "
                    f"(the parser stops at about {sys.getrecursionlimit()} levels); "
                    'send {"texts": ["some text", ...]}')
        except ValueError:
            pass  # reported, with its position, by the request validation
    return None


def _body_too_large(limit: int, size: int | None) -> ApiError:
    got = f" ({size} bytes)" if size is not None else ""
    return ApiError(413, "limit_exceeded", f"request body is larger than max_body_bytes={limit}{got}",
                    limit="max_body_bytes", max=limit, **({"got": size} if size is not None else {}))


async def send_json(send, status: int, body: dict) -> None:
    """Send a whole JSON response (the connection closes after it)."""
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})


class ShutdownAnswer:
    """ASGI middleware: a request that a stopping server cuts (uvicorn cancels what is still open after its
    graceful-shutdown bound) is answered with a JSON 503 instead of uvicorn's plain-text 500 and a traceback."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            # The cut is expected and said in uvicorn's log ("Cancel N running task(s)"); re-raising would only add
            # a traceback. A response already begun cannot change: the connection then closes short.
            if not started:
                await send_json(send, 503, ApiError(503, "shutting_down", "the server is shutting down").body())
