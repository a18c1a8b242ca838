"""Assemble and run the service: predictor, hot reload, KServe's ModelServer.

KServe's own app answers v1, v2, health and metadata, and its gRPC server v2 on
the gRPC port. :func:`harden_app` adds what it lacks for a public endpoint: the
request guard (header and body limits, body read timeout, 4xx for paths KServe
cannot serve, the model repository refused), 400 instead of 422 for bodies
FastAPI cannot validate (malformed JSON on v2), and
``GET /v2/models/recommender/status``, which says when the service is degraded
(feature store down) while readiness stays 200 because fallbacks still answer.
:func:`secure_server` gives KServe's server honest readiness and 400s for bad
encodings.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interest_graph.config import ServingConfig, Settings
from interest_graph.locations import inference_log_path
from interest_graph.logs import get_logger
from interest_graph.serving import MODEL_NAME
from interest_graph.serving.history import UserHistory
from interest_graph.serving.inference_log import InferenceLog
from interest_graph.serving.model import ServingModel, load_serving_model
from interest_graph.serving.observe import configure_logging
from interest_graph.serving.predictor import RecommenderModel
from interest_graph.serving.reload import HotReloader
from interest_graph.serving.user_features import (
    FeastUserFeatures,
    NoUserFeatures,
    ServingLookup,
    UserFeatureSource,
)

log = get_logger("serving.server")

_HARDENED = "interest_graph_hardened"


@dataclass
class Service:
    """A predictor and, for a registry alias, the reloader that follows it."""

    predictor: RecommenderModel
    reloader: HotReloader | None


def feature_source(settings: Settings) -> UserFeatureSource:
    """Feast lookups when ``serving.feast`` is on, else none."""
    if not settings.serving.feast:
        return NoUserFeatures()

    def open_lookup() -> Any:
        from interest_graph.features.repo import StoreProfile, open_store

        store = open_store(
            settings.features_dir, StoreProfile.from_settings(settings.features)
        )
        return ServingLookup(store, settings.serving.feature_timeout_ms)

    return FeastUserFeatures(open_lookup)


def build_service(settings: Settings) -> Service:
    """The predictor (not loaded yet) and its reloader, from the settings."""
    config = settings.serving
    features = feature_source(settings)
    history = (
        UserHistory.from_events(config.history_path) if config.history_path else None
    )

    def item_features(item_ids: Any) -> Any:
        lookup = getattr(features, "item_lookup", lambda: None)()
        if lookup is None or config.items_path is not None:
            return None
        from interest_graph.serving.catalogue import feast_item_features

        return within_deadline(
            lambda: feast_item_features(lookup, list(item_ids)),
            config.item_statistics_timeout_s,
            "item statistics from Feast",
        )

    def build(path: Path, version: str | None, uri: str) -> ServingModel:
        serving = load_serving_model(
            path,
            version=version or "local",
            uri=uri,
            index_kind=config.index,
            ann_min_items=config.index_ann_min_items,
            min_recall=config.index_min_recall,
            items_path=config.items_path,
            item_features=item_features,
            history=history,
        )
        started = time.perf_counter()
        scored = serving.warm(
            lambda users: within_deadline(
                lambda: features.lookup(users, interests=False),
                config.item_statistics_timeout_s,
                "purchases since training",
            )
        )
        if scored:
            log.info(
                "scored %d users with purchases since training at load in %.1f s",
                scored,
                time.perf_counter() - started,
            )
        return serving

    uri = config.model_uri
    current, load_version = registry_source(uri, settings, build)
    log_sink = (
        InferenceLog(
            inference_log_path(settings),
            sample_rate=config.inference_log_sample_rate,
            max_bytes=config.inference_log_max_bytes,
            rotate_seconds=config.inference_log_rotate_seconds,
            keep=config.inference_log_keep,
        )
        if config.inference_log_enabled
        else None
    )
    predictor = RecommenderModel(
        lambda: _load_uri(uri, settings, build),
        config,
        features=features,
        inference_log=log_sink,
    )
    reloader = (
        HotReloader(predictor, current, load_version, config.reload_seconds)
        if current is not None and load_version is not None
        else None
    )
    return Service(predictor, reloader)


def within_deadline(read: Callable[[], Any], seconds: float, what: str) -> Any:
    """``read()`` in a daemon thread, or None when it fails or passes ``seconds``.

    For reads at model load (item statistics): a hung store must not keep the
    ports closed; the model then serves without that data and says so in the log.
    """
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(read())
        except Exception as exc:  # no item data: filters match nothing, say so
            log.warning("%s not read: %s", what, exc)

    thread = threading.Thread(target=run, name="load-read", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        log.warning("%s not read within %.1f s; serving without", what, seconds)
        return None
    return result[0] if result else None


def _load_uri(
    uri: str, settings: Settings, build: Callable[[Path, str | None, str], ServingModel]
) -> ServingModel:
    from interest_graph.registry import resolve_model_uri

    resolved = resolve_model_uri(uri, settings)
    return build(resolved.path, resolved.version, uri)


def registry_source(
    uri: str,
    settings: Settings,
    build: Callable[[Path, str | None, str], ServingModel],
) -> tuple[Callable[[], str | None] | None, Callable[[str], ServingModel] | None]:
    """For ``models:/NAME@ALIAS``: the alias's current version and a loader of a
    version; ``(None, None)`` for URIs that cannot move."""
    if not uri.startswith("models:/") or "@" not in uri:
        return None, None
    from interest_graph.registry import alias_version

    name, alias = uri.removeprefix("models:/").split("@", 1)

    def current() -> str | None:
        return alias_version(name, alias, settings)

    def load_version(version: str) -> ServingModel:
        from interest_graph.registry import resolve_model_uri

        resolved = resolve_model_uri(f"models:/{name}/{version}", settings)
        return build(resolved.path, resolved.version, uri)

    return current, load_version


def harden_app(
    app: Any,
    service: Service,
    config: ServingConfig,
    shared_metrics: str | None = None,
) -> None:
    """Add the request guard, 400 handlers and the status route to KServe's app;
    ``shared_metrics``: the folder of every worker's metrics, for a worker."""
    if getattr(app.state, _HARDENED, False):
        app.state.service = service
        return
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import ORJSONResponse

    from interest_graph.serving.limits import RequestGuard
    from interest_graph.serving.observe import (
        DEGRADED,
        WORKERS_READY,
        AccessLog,
        add_shared_metrics_route,
        install_drain,
        publish_degraded,
        watch_event_loop,
    )

    app.add_middleware(
        RequestGuard,
        max_body_bytes=config.max_body_bytes,
        max_header_bytes=config.max_header_bytes,
        body_timeout_s=config.body_timeout_s,
        repository_enabled=config.model_repository_enabled,
    )
    app.add_middleware(AccessLog, sample_rate=config.access_log_sample_rate)
    app.state.service = service

    def degraded() -> bool:
        return bool(app.state.service.predictor.degraded())

    if shared_metrics is None:
        DEGRADED.set_function(lambda: float(degraded()))
    else:
        add_shared_metrics_route(app, shared_metrics)

    async def drain_on_sigterm() -> None:
        # At startup uvicorn has installed its signal handlers: this one wraps
        # them (signals reach only the main thread; tests run the app elsewhere).
        if threading.current_thread() is threading.main_thread():
            install_drain(app.state.service_dataplane, config.drain_seconds)

    app.router.on_startup.append(drain_on_sigterm)

    async def watch_and_report_ready() -> None:
        # The loop-lag watch (and, for a worker, the degraded gauge's publisher),
        # then this process counts as a ready worker.
        loop = asyncio.get_running_loop()
        app.state.loop_watch = loop.create_task(watch_event_loop())
        if shared_metrics is not None:
            app.state.degraded_watch = loop.create_task(publish_degraded(degraded))
        WORKERS_READY.set(1)

    app.router.on_startup.append(watch_and_report_ready)

    async def not_valid(_: Any, exc: Exception) -> ORJSONResponse:
        errors: list[dict[str, Any]] = getattr(exc, "errors", list)()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in errors[:5]
        )
        return ORJSONResponse(
            {"error": f"invalid request body: {problems or exc}"}, status_code=400
        )

    async def status() -> dict[str, Any]:
        current: Service = app.state.service
        answer = current.predictor.status()
        reloader = current.reloader
        answer["hot_reload"] = (
            None
            if reloader is None
            else {
                "poll_seconds": reloader.poll_seconds,
                "last_error": reloader.last_error,
            }
        )
        return answer

    app.add_exception_handler(RequestValidationError, not_valid)
    app.add_api_route(f"/v2/models/{MODEL_NAME}/status", status, methods=["GET"])
    setattr(app.state, _HARDENED, True)


def secure_server(server: Any, config: ServingConfig) -> Any:
    """Give a ``ModelServer`` (before ``start``) the guarded data plane and, unless
    enabled, the locked model repository; returns the data plane."""
    from interest_graph.serving.dataplane import LockedRepository, ServiceDataPlane
    from interest_graph.serving.kserve_compat import model_server

    dataplane = ServiceDataPlane(server.registered_models)
    server.dataplane = dataplane
    model_server.app.state.service_dataplane = dataplane  # for the drain and tests
    if not config.model_repository_enabled:
        server.model_repository_extension = LockedRepository(server.registered_models)
    return dataplane


def serve(settings: Settings, *, shared_ports: bool = False) -> None:
    """Load the model and run REST (v1, v2) and gRPC v2 in the foreground; with
    ``serving.workers`` > 1, supervise that many such processes instead
    (:mod:`interest_graph.serving.workers`).

    Args:
        shared_ports: listen with ``SO_REUSEPORT`` beside sibling workers.
    """
    from interest_graph.serving.binding import BoundModelServer
    from interest_graph.serving.kserve_compat import model_server
    from interest_graph.serving.workers import METRICS_ENV, serve_workers

    config = settings.serving
    if config.workers > 1 and not shared_ports:
        sys.exit(serve_workers(settings))
    prepare_process(config)
    service = build_service(settings)
    service.predictor.load()
    warm_up = getattr(service.predictor.features, "warm_up", None)
    if warm_up is not None:
        within_deadline(warm_up, config.item_statistics_timeout_s, "a first Feast read")
    # The model's arrays and tables live as long as the process: keep the cyclic
    # garbage collector from scanning them on every collection (tail latency).
    gc.collect()
    gc.freeze()
    # A worker's metrics go to the supervisor's folder (serving/workers.py).
    shared_metrics = os.environ.get(METRICS_ENV) if shared_ports else None
    harden_app(model_server.app, service, config, shared_metrics)
    server = BoundModelServer(
        host=config.host,
        http_port=config.http_port,
        grpc_port=config.grpc_port,
        enable_grpc=True,
        enable_latency_logging=False,
        shared_ports=shared_ports,
    )
    secure_server(server, config)
    quiet_per_request_logs()  # after ModelServer(): it configures logging
    configure_logging(config.log_format)
    if service.reloader is not None:
        service.reloader.start()
    use_uvloop()
    server.start([service.predictor])


def use_uvloop() -> None:
    """Run the server's event loop on uvloop where it is installed.

    KServe 0.21 documents ``event_loop="auto"`` as "uvloop if available", but
    ``ModelServer.start`` runs its servers under ``asyncio.run`` and hands the
    setting to ``uvicorn.Config``, which applies it only when uvicorn runs the
    loop itself: the server always ran on the pure-Python asyncio loop.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # KServe's setup_event_loop() asks for the current loop before asyncio.run()
    # makes the one that runs; uvloop's policy has none until one is set.
    asyncio.set_event_loop(asyncio.new_event_loop())


def serve_transformer(
    settings: Settings, predictor_host: str, options: dict[str, Any]
) -> None:
    """Run the Feast transformer in front of a predictor at ``predictor_host``.

    Args:
        settings: ``serving`` (ports, threads) and the feature store.
        predictor_host: ``HOST:PORT`` of the predictor.
        options: further ``kserve.PredictorConfig`` fields (SSL, timeouts,
            retries, health check).
    """
    from kserve import PredictorConfig

    from interest_graph.serving.binding import BoundModelServer
    from interest_graph.serving.transformer import RecommenderTransformer

    config = settings.serving
    prepare_process(config)
    transformer = RecommenderTransformer(feature_source(settings), config)
    server = BoundModelServer(
        host=config.host,
        http_port=config.http_port,
        grpc_port=config.grpc_port,
        enable_latency_logging=False,
        predictor_config=PredictorConfig(
            predictor_host=predictor_host, predictor_protocol="v1", **options
        ),
    )
    secure_server(server, config)
    quiet_per_request_logs()  # after ModelServer(): it configures logging
    configure_logging(config.log_format)
    use_uvloop()
    server.start([transformer])


def prepare_process(config: ServingConfig) -> None:
    """Thread settings of a serving process (predictor or transformer)."""
    limit_compute_threads(config.compute_threads)
    # Each Feast read releases the GIL; with the default 5 ms interval, getting it
    # back from the gRPC poller or log thread cost tail latency (v1 p99 at 400
    # requests/s: 11-29 ms with 5 ms, 5.6-8.4 ms with 0.5 ms on the 2-core VM).
    sys.setswitchinterval(config.switch_interval_ms / 1000)


def limit_compute_threads(threads: int) -> None:
    """Cap torch's and the BLAS libraries' thread pools for the request path.

    Measured on the 2-core VM (bench/serve.py's 100k-item model, one request at a
    time): 1.4 ms per ranking with one thread, 13 ms with two, because every
    small parallel op waits for a second thread the event loop is competing for.
    """
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


def quiet_per_request_logs() -> None:
    """KServe logs a line per request and per gRPC call; the inference log
    records calls already, and a log line costs the request path."""
    import logging

    from kserve.logging import logger, trace_logger

    trace_logger.setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logger.setLevel(logging.WARNING)
