"""A request body size limit for KServe's app (it has none of its own).

A declared ``Content-Length`` over the limit is answered 413 before the body is
read; a chunked body is counted as it arrives and refused once over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLargeError(Exception):
    """The request body is larger than ``serving.max_body_bytes`` (HTTP 413)."""


class LimitBodySize:
    """Pure ASGI middleware (no per-request task or copy, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes or declared < 0:
                    await _refuse(send, self._message(declared))
                    return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self._message(received))
            return message

        await self.app(scope, counted, send)

    def _message(self, size: int) -> str:
        if size < 0:
            return "invalid Content-Length header"
        return f"request body of {size} bytes is over the limit of {self.max_bytes}"


async def _refuse(send: Send, message: str) -> None:
    import orjson

    body = orjson.dumps({"error": message})
    status = 400 if message.startswith("invalid") else 413
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
