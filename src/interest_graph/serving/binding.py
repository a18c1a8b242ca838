"""KServe's model server listening on one chosen address, not on every interface.

KServe 0.21 hard-codes its listen addresses: ``host="0.0.0.0"`` in the uvicorn
config of ``kserve/protocol/rest/server.py`` and ``[::]:PORT`` in
``kserve/protocol/grpc/server.py``. A model server on a laptop should answer on
loopback only; a container sets ``serving.host`` to ``0.0.0.0`` itself.
"""

from __future__ import annotations

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
    """KServe's ``ModelServer`` with its REST and gRPC servers bound to ``host``."""

    _rest_server: Any
    _grpc_server: Any
    servers: list[Any]

    def __init__(self, *, host: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host

    async def _serve(self) -> None:
        # start() has built both servers with the hard-coded addresses; the
        # REST config is read when uvicorn starts, the gRPC coroutine is swapped.
        if self._rest_server is not None:
            self._rest_server.config.host = self.host
        upstream = self._grpc_server
        if upstream is not None:
            self._grpc_server = BoundGRPCServer(self.host, upstream)
            started = self._grpc_server.start(self.max_threads)
            self.servers = [_replaced(c, upstream, started) for c in self.servers]
        await super()._serve()


def _replaced(
    coroutine: Coroutine[Any, Any, Any], owner: object, replacement: Any
) -> Any:
    """``replacement`` where ``coroutine`` is a not-yet-started method of ``owner``."""
    frame = getattr(coroutine, "cr_frame", None)
    if frame is not None and frame.f_locals.get("self") is owner:
        coroutine.close()
        return replacement
    return coroutine
