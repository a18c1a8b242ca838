"""A guard in front of KServe's app: what a public endpoint needs that it lacks.

Pure ASGI (no per-request task, unlike BaseHTTPMiddleware). Per request it:

- refuses headers over ``max_header_bytes`` (431);
- reads the whole body before KServe sees it, within ``body_timeout_s`` of the
  headers (else 408 and the connection closed: uvicorn has no body timeout, so a
  client that declares 100 bytes and sends 20 held the connection forever) and
  within ``max_body_bytes`` (413; KServe has no size limit);
- answers paths KServe routes but cannot serve with a 4xx and a reason (it
  answers them 501 ``NotImplementedError``): ``?model_version=``,
  ``/versions/{v}/`` and ``:explain``;
- answers 400, not 500, where KServe cannot render a client error's message
  (a lone surrogate echoed from the body);
- refuses the model repository control plane (``/v2/repository/...``, 403)
  unless ``model_repository_enabled``: KServe serves it to anyone who reaches
  the port, and an unload takes the model away until a restart.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from interest_graph.serving.kserve_compat import InvalidInput

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_VERSIONED = re.compile(r"^/v2/models/[^/]+/versions(/|$)")
_REPOSITORY = "/v2/repository/"


class RequestGuard:
    """Header and body limits, body read timeout and refused paths (see module)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_header_bytes: int = 16_384,
        body_timeout_s: float = 10.0,
        repository_enabled: bool = False,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.body_timeout_s = body_timeout_s
        self.repository_enabled = repository_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await respond(send, *refusal)
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only a disconnect comes

        try:
            await self.app(scope, replay, send)
        except UnicodeEncodeError as exc:
            # KServe's invalid_input_handler (kserve/errors.py) renders the 400 with
            # starlette's JSONResponse, which cannot encode a lone surrogate that
            # the message echoes from the request ("datatype": "\udfff"): the 400
            # became a 500. Nothing was sent yet: answer the 400, text escaped.
            if not isinstance(exc.__context__, InvalidInput):
                raise
            await respond(send, 400, str(exc.__context__))

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = scope.get("headers", ())
        size = sum(len(name) + len(value) + 4 for name, value in headers)
        if size > self.max_header_bytes:
            return 431, (
                f"request headers of {size} bytes are over the limit of "
                f"{self.max_header_bytes}"
            )
        path: str = scope.get("path", "")
        if path.startswith(_REPOSITORY) and not self.repository_enabled:
            return 403, (
                "the model repository API (load/unload) is off on this server; "
                "operators enable it with serving.model_repository_enabled"
            )
        if _VERSIONED.match(path):
            return 404, (
                "model versions are not addressed by path here: the server serves "
                "one version, named in every answer's model_version"
            )
        if path.endswith(":explain"):
            return 404, "explain is not served; each item's reason explains it"
        if b"model_version=" in scope.get("query_string", b""):
            return 400, (
                "model_version is not a parameter here: the server serves one "
                "version, named in every answer's model_version"
            )
        return None

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> Any:
        """The whole body, or None after answering 400/408/413 for it."""
        declared = -1
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await respond(send, 400, "invalid Content-Length header")
                    return None
                if declared < 0:
                    await respond(send, 400, "invalid Content-Length header")
                    return None
        if declared > self.max_body_bytes:
            await respond(send, 413, self._too_large(declared), close=True)
            return None
        deadline = time.monotonic() + self.body_timeout_s
        chunks: list[bytes] = []
        received = 0
        while True:
            try:
                message = await asyncio.wait_for(
                    receive(), max(deadline - time.monotonic(), 0.0)
                )
            except TimeoutError:
                await respond(
                    send,
                    408,
                    f"the request body did not arrive within {self.body_timeout_s:g} s",
                    close=True,
                )
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                await respond(send, 413, self._too_large(received), close=True)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self, size: int) -> str:
        return (
            f"request body of {size} bytes is over the limit of {self.max_body_bytes}"
        )


async def respond(
    send: Send, status: int, message: str, *, close: bool = False
) -> None:
    """Answer ``{"error": message}`` with ``status`` (and close the connection);
    text that is not UTF-8 (lone surrogates) goes out escaped."""
    text = message.encode("utf-8", "backslashreplace").decode("utf-8")
    body = orjson.dumps({"error": text})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
