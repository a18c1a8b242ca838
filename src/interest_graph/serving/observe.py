"""What an operator sees of the service: JSON log lines, access log, metrics, drain.

- :func:`configure_logging`: one JSON object per line on stderr for the
  service's and KServe's loggers; client errors (bad input, unknown model) as one
  line without a traceback (KServe logs every 400 with ``exc_info``).
- :class:`AccessLog` (pure ASGI): per HTTP request the Prometheus counters and
  latency histogram, and a sampled access line (request id, status, latency,
  model version, fallback); 5xx always written.
- Prometheus metrics beside KServe's (which has per-step latency histograms
  only): requests by protocol and status, latency, fallbacks by kind, degraded,
  model version, feature-store read latency, event-loop lag
  (:func:`watch_event_loop`).
- :func:`install_drain`: SIGTERM makes readiness 503, the server keeps answering
  for ``drain_seconds``, then uvicorn's own shutdown runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from prometheus_client import Counter, Gauge, Histogram

from interest_graph.logs import get_logger
from interest_graph.serving.limits import ASGIApp, Message, Receive, Scope, Send

log = get_logger("serving.observe")
access = logging.getLogger("interest_graph.serving.access")

REQUESTS = Counter(
    "recommender_requests_total",
    "Requests answered, by protocol (v1, v2, grpc, other) and status code.",
    ["protocol", "status"],
)
LATENCY = Histogram(
    "recommender_request_seconds",
    "Time from request to answer, by protocol.",
    ["protocol"],
    buckets=(0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
FALLBACKS = Counter(
    "recommender_fallbacks_total",
    "Users answered with a fallback, by kind (the answer's fallback field).",
    ["kind"],
)
# The multiprocess modes apply with serving.workers > 1 (serving/workers.py):
# what /metrics shows is then the workers' maximum or sum.
DEGRADED = Gauge(
    "recommender_degraded",
    "1 while the feature store is unavailable (to any worker), else 0.",
    multiprocess_mode="livemax",
)
MODEL_VERSION = Gauge(
    "recommender_model_version_info",
    "1 for a model version served (by any worker).",
    ["version"],
    multiprocess_mode="livemax",
)
WORKERS_READY = Gauge(
    "recommender_workers_ready",
    "Serving processes with a model loaded and listening (serving.workers).",
    multiprocess_mode="livesum",
)
FEATURE_READ = Histogram(
    "recommender_feature_store_read_seconds",
    "Feast online read per call (reads past the deadline count at the deadline).",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1),
)

EVENT_LOOP_LAG = Histogram(
    "recommender_event_loop_lag_seconds",
    "How late a timer set every 0.1 s fired on the serving event loop: a time"
    " nothing on the loop could run (a long call, the GIL held by another thread,"
    " or the machine itself stalled).",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
LOOP_LAG_PERIOD_S = 0.1

# Filled by the predictor during a call, read by the access log after it.
call_facts: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "call_facts", default=None
)

_CLIENT_ERRORS = ("InvalidInput", "ModelNotFound", "PermissionDenied")


class JsonLines(logging.Formatter):
    """One JSON object per record; client errors without their traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            line["error"] = f"{type(error).__name__}: {error}"
            if type(error).__name__ not in _CLIENT_ERRORS:
                line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _ClientErrorsInOneLine(logging.Filter):
    """KServe logs every 400/404 with a traceback at ERROR: one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and type(error).__name__ in _CLIENT_ERRORS:
            record.msg, record.args = f"client error: {error}", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(log_format: str, stream: TextIO | None = None) -> None:
    """JSON (or plain) lines on ``stream`` (stderr) for the service's and
    KServe's loggers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonLines()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(_ClientErrorsInOneLine())
    for name in (
        "interest_graph",
        "kserve",
        "kserve.trace",
        "uvicorn",
        "uvicorn.error",
    ):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
    access.setLevel(logging.INFO)


class AccessLog:
    """Metrics for every HTTP request, a sampled access line per answer."""

    def __init__(self, app: ASGIApp, *, sample_rate: float) -> None:
        self.app = app
        self.sample_rate = sample_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        facts: dict[str, Any] = {}
        token = call_facts.set(facts)
        status = 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            call_facts.reset(token)
            seconds = time.perf_counter() - started
            path: str = scope.get("path", "")
            protocol = (
                "v1"
                if path.startswith("/v1/")
                else "v2"
                if "/infer" in path
                else "other"
            )
            REQUESTS.labels(protocol, str(status)).inc()
            if protocol != "other":
                LATENCY.labels(protocol).observe(seconds)
            if status >= 500 or random.random() < self.sample_rate:
                access.info(
                    "%s %s %d",
                    scope.get("method"),
                    path,
                    status,
                    extra={
                        "fields": {
                            "request_id": _header(scope, b"x-request-id")
                            or facts.get("request_id"),
                            "status": status,
                            "latency_ms": round(seconds * 1000, 3),
                            "model_version": facts.get("model_version"),
                            "fallbacks": facts.get("fallbacks"),
                        }
                    },
                )


def record_call(
    protocol: str,
    request_id: str | None,
    model_version: str,
    fallbacks: Sequence[str | None],
    seconds: float,
) -> None:
    """Count a call's fallbacks (and, for gRPC, the call) and tell the access log."""
    kinds = [f for f in fallbacks if f]
    for kind in kinds:
        FALLBACKS.labels(kind).inc()
    if protocol == "grpc":  # HTTP calls are counted by AccessLog
        REQUESTS.labels("grpc", "OK").inc()
        LATENCY.labels("grpc").observe(seconds)
    facts = call_facts.get()
    if facts is not None:
        facts.update(
            request_id=request_id,
            model_version=model_version,
            fallbacks=sorted(set(kinds)) or None,
        )


def record_state(model_version: str) -> None:
    """The model version gauge: 1 for the version served now, 0 for the ones
    before it (``clear()`` does nothing in prometheus_client's multiprocess mode,
    which KServe's server uses, so a reload would leave two versions at 1)."""
    for served in _SERVED_VERSIONS - {model_version}:
        MODEL_VERSION.labels(served).set(0)
    _SERVED_VERSIONS.add(model_version)
    MODEL_VERSION.labels(model_version).set(1)


_SERVED_VERSIONS: set[str] = set()


def add_shared_metrics_route(app: Any, folder: str) -> None:
    """``GET /metrics`` adding up every worker's metrics in ``folder``; added
    before KServe's own ``/metrics`` (this process's registry only), it wins."""
    from fastapi import Response
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)

    async def every_worker() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", every_worker, methods=["GET"])


async def publish_degraded(
    degraded: Callable[[], bool], period_s: float = LOOP_LAG_PERIOD_S
) -> None:
    """Set :data:`DEGRADED` every ``period_s`` until cancelled: in multiprocess
    mode a gauge's function is not seen by the other workers' ``/metrics``."""
    while True:
        DEGRADED.set(float(degraded()))
        await asyncio.sleep(period_s)


async def watch_event_loop(period_s: float = LOOP_LAG_PERIOD_S) -> None:
    """Observe :data:`EVENT_LOOP_LAG` every ``period_s`` until cancelled.

    A sample: every stall of the loop longer than ``period_s`` is seen; a
    shorter one when a timer falls due inside it (p ~ length / period).
    """
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period_s
        await asyncio.sleep(period_s)
        EVENT_LOOP_LAG.observe(max(0.0, loop.time() - due))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def install_drain(dataplane: Any, drain_seconds: float) -> None:
    """On SIGTERM: readiness 503 at once, keep serving ``drain_seconds``, then
    hand the signal to the handler it replaced (uvicorn's shutdown, which then
    passes it on to KServe's, which stops gRPC).

    Call from the running event loop after uvicorn installed its handlers (an
    app startup hook).
    """
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def stop(sig: int) -> None:
        log.info("drain over; shutting down")
        if callable(previous):
            previous(sig, None)

    def on_term(sig: int, _: Any) -> None:
        if dataplane.draining:
            return
        dataplane.draining = True
        log.info("SIGTERM: readiness is 503; serving for %.1f s more", drain_seconds)
        loop.call_soon_threadsafe(loop.call_later, drain_seconds, stop, sig)

    signal.signal(signal.SIGTERM, on_term)
