"""``serving.workers``: N whole model servers on the same ports under a
supervisor (serving/workers.py), on the real processes and loopback ports."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from serving_support import metric_samples, random_model

from interest_graph.config import Settings
from interest_graph.serving.binding import without_timing
from interest_graph.serving.workers import (
    worker_environment,
    worker_log_path,
    worker_settings,
)


def _metric(base: str, name: str) -> float:
    """A sample of ``/metrics``; 0 before the metric has one."""
    samples = metric_samples(httpx.get(f"{base}/metrics", timeout=5).text)
    return samples.get(name, 0.0)


def _two_workers(
    start_service: Callable[[dict[str, Any]], Any],
    folder: Path,
    serving: dict[str, Any],
) -> Any:
    """The service with two workers on a small model, once both are ready."""
    service = start_service(
        {
            "model_uri": str(random_model(folder / "model", users=8, items=12)),
            "feast": False,
            "reload_seconds": 0,
            "workers": 2,
            **serving,
        }
    )
    _until(
        lambda: _metric(service.base, "recommender_workers_ready") == 2,
        60,
        "the second worker did not become ready",
    )
    return service


def _until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_worker_settings_give_each_worker_one_process_and_its_own_log(
    tmp_path: Path,
) -> None:
    settings = Settings(
        paths={"work_dir": str(tmp_path)},
        serving={"workers": 3, "inference_log": str(tmp_path / "log" / "calls.jsonl")},
    )
    second = worker_settings(settings, 1)
    assert second.serving.workers == 1
    assert second.serving.inference_log == tmp_path / "log" / "calls.w1.jsonl"
    # A worker's rotated files (stem-<time>.jsonl.gz) never match a sibling's
    # glob: w1 keeps its own, not w10's or the plain log's.
    assert worker_log_path(Path("calls.jsonl"), 10).name == "calls.w10.jsonl"
    assert not Path("calls.w10-20261201.jsonl.gz").match("calls.w1-*.jsonl.gz")
    assert worker_settings(Settings(), 0).serving.inference_log is not None


def test_a_worker_does_not_inherit_the_settings_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The environment wins over a worker's settings file: a workers variable
    # left in made every worker a supervisor of its own workers.
    monkeypatch.setenv("INTEREST_GRAPH__SERVING__WORKERS", "2")
    monkeypatch.setenv("INTEREST_GRAPH_LOG_LEVEL", "WARNING")
    environment = worker_environment()
    assert "INTEREST_GRAPH__SERVING__WORKERS" not in environment
    assert environment["INTEREST_GRAPH_LOG_LEVEL"] == "WARNING"


def test_kserves_timing_middleware_is_taken_out_and_the_rest_kept() -> None:
    from fastapi import FastAPI
    from starlette.middleware.gzip import GZipMiddleware
    from timing_asgi import TimingMiddleware

    app = FastAPI()
    app.add_middleware(TimingMiddleware, client=None)
    app.add_middleware(GZipMiddleware)
    without_timing(app)
    assert [m.cls for m in app.user_middleware] == [GZipMiddleware]


def test_two_workers_share_the_ports_add_up_their_metrics_and_drain(
    tmp_path: Path, start_service: Callable[[dict[str, Any]], Any]
) -> None:
    service = _two_workers(
        start_service,
        tmp_path,
        {"drain_seconds": 1.0, "inference_log_sample_rate": 1.0},
    )
    supervisor = psutil.Process(service.process.pid)
    workers = supervisor.children()
    assert len(workers) == 2
    for worker in workers:
        # net_connections since psutil 6, connections before.
        sockets = getattr(worker, "net_connections", worker.connections)
        listening = {
            c.laddr.port for c in sockets(kind="inet") if c.status == psutil.CONN_LISTEN
        }
        assert listening == {service.http_port, service.grpc_port}
    # A new connection per call: the kernel spreads them over both workers.
    calls = 40
    for i in range(calls):
        with httpx.Client() as client:
            answer = client.post(
                f"{service.base}/v1/models/recommender:predict",
                json={"instances": [{"user_id": f"U{i % 8}", "k": 3}]},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
    # /metrics from either worker counts every call of both.
    assert (
        _metric(service.base, 'recommender_requests_total{protocol="v1",status="200"}')
        == calls
    )
    logs = tmp_path / "work" / "serving"

    def both_logged() -> bool:
        lines = [
            len(p.read_text().splitlines())
            for p in sorted(logs.glob("inference-log.w*.jsonl"))
        ]
        return len(lines) == 2 and min(lines) > 0 and sum(lines) == calls

    _until(both_logged, 10, "each worker did not log its own calls")

    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=30) == 0
    assert not any(w.is_running() and w.status() != "zombie" for w in workers)
    assert not list(logs.glob("workers-*")), "the supervisor left its folder"


def test_a_worker_that_dies_stops_the_service(
    tmp_path: Path, start_service: Callable[[dict[str, Any]], Any]
) -> None:
    service = _two_workers(
        start_service,
        tmp_path,
        {"drain_seconds": 0.5, "inference_log_enabled": False},
    )
    first, second = psutil.Process(service.process.pid).children()
    first.kill()
    # The pod restarts whole rather than serving on half its processes.
    assert service.process.wait(timeout=30) == 1
    second.wait(timeout=10)
