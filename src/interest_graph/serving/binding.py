"""KServe's model server listening on one chosen address, not on every interface.

KServe 0.21 hard-codes its listen addresses: ``host="0.0.0.0"`` in the uvicorn
config of ``kserve/protocol/rest/server.py`` and ``[::]:PORT`` in
``kserve/protocol/grpc/server.py``. A model server on a laptop should answer on
loopback only; a container sets ``serving.host`` to ``0.0.0.0`` itself.
"""

from __future__ import annotations

import socket
from collections.abc import Coroutine
from concurrent import futures
from typing import Any

from grpc import aio

from interest_graph.logs import get_logger
from interest_graph.serving.kserve_compat import (
    ExceptionToStatusInterceptor,
    GRPCServer,
    InferenceServicer,
    LoggingInterceptor,
    grpc_services,
    model_server,
)

log = get_logger("serving.binding")

ALL_INTERFACES = ("0.0.0.0", "::", "[::]")


def grpc_address(host: str, port: int) -> str:
    """``HOST:PORT`` for gRPC, IPv6 hosts in brackets; every interface is ``[::]``."""
    if host in ALL_INTERFACES:
        return f"[::]:{port}"
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


class BoundGRPCServer(GRPCServer):
    """KServe's gRPC server listening on ``host`` (upstream: always ``[::]``)."""

    def __init__(self, host: str, upstream: GRPCServer) -> None:
        super().__init__(
            upstream._port,
            upstream._data_plane,
            upstream._model_repository_extension,
            kwargs=upstream._kwargs,
            grace_period=upstream._grace_period,
        )
        self.host = host

    async def start(self, max_workers: int) -> None:
        # Upstream's GRPCServer.start with the listen address as the only change.
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor()),
            options=[
                (name, self._kwargs.get(name))
                for name in (
                    "grpc_max_send_message_length",
                    "grpc_max_receive_message_length",
                )
            ],
        )
        grpc_services.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        address = grpc_address(self.host, self._port)
        if self._server.add_insecure_port(address) == 0:
            raise OSError(f"gRPC cannot listen on {address}")
        log.info("gRPC listening on %s", address)
        await self._server.start()
        await self._server.wait_for_termination()


class BoundModelServer(model_server.ModelServer):
    """KServe's ``ModelServer`` with its REST and gRPC servers bound to ``host``;
    with ``shared_ports``, REST listens with ``SO_REUSEPORT`` beside sibling
    workers (gRPC's listener has it by default on Linux)."""

    _rest_server: Any
    _grpc_server: Any
    servers: list[Any]
    http_port: int

    def __init__(self, *, host: str, shared_ports: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host
        self.shared_ports = shared_ports

    async def _serve(self) -> None:
        # start() has built both servers with the hard-coded addresses; the
        # REST config is read when uvicorn starts, the gRPC coroutine is swapped.
        rest = self._rest_server
        if rest is not None:
            rest.config.host = self.host
            listener = (
                shared_port_socket(self.host, self.http_port)
                if self.shared_ports
                else None
            )
            started = _serve_rest(rest, listener)
            self.servers = [_replaced(c, rest, started) for c in self.servers]
        upstream = self._grpc_server
        if upstream is not None:
            self._grpc_server = BoundGRPCServer(self.host, upstream)
            started = self._grpc_server.start(self.max_threads)
            self.servers = [_replaced(c, upstream, started) for c in self.servers]
        await super()._serve()


def shared_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT``: other processes
    may bind the same port, and the kernel spreads new connections over them."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host.strip("[]"), port))
    return listener


async def _serve_rest(rest: Any, listener: socket.socket | None) -> None:
    # Upstream's RESTServer.start, less its timing middleware, on ``listener``
    # when given.
    rest.create_application()
    without_timing(model_server.app)
    await rest._server.serve(sockets=None if listener is None else [listener])


def without_timing(app: Any) -> None:
    """Take KServe's ``TimingMiddleware`` (timing_asgi) out of ``app`` before its
    first request. Upstream adds it to every app; per request it calls
    ``getrusage`` twice and matches the route a second time, only to hand the
    figures to ``kserve.trace`` at INFO, which the service keeps at WARNING
    (``quiet_per_request_logs``): 7-8 % of a v1 call's event-loop time
    (py-spy, 600 calls/s on the 2-core VM). The access log and
    ``recommender_request_seconds`` measure every call instead."""
    app.user_middleware = [
        m
        for m in app.user_middleware
        if getattr(m.cls, "__name__", "") != "TimingMiddleware"
    ]


def _replaced(
    coroutine: Coroutine[Any, Any, Any], owner: object, replacement: Any
) -> Any:
    """``replacement`` where ``coroutine`` is a not-yet-started method of ``owner``."""
    frame = getattr(coroutine, "cr_frame", None)
    if frame is not None and frame.f_locals.get("self") is owner:
        coroutine.close()
        return replacement
    return coroutine
