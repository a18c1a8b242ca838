"""Graceful shutdown of the real service (``serve()`` in its own process): on
SIGTERM readiness answers 503 at once, calls are still answered for
``serving.drain_seconds``, then the process exits by itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from interest_graph.models.artifact import ModelArtifact

DRAIN_SECONDS = 3.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _model(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    ModelArtifact(
        model="lightgcn",
        config={"protocol": "hand-made"},
        user_ids=np.array([f"U{i}" for i in range(10)], dtype=object),
        item_ids=np.array([f"I{i}" for i in range(30)], dtype=object),
        tensors={
            "user_vectors": rng.normal(size=(10, 4)).astype(np.float32),
            "item_vectors": rng.normal(size=(30, 4)).astype(np.float32),
        },
    ).save(folder)
    return folder


def test_sigterm_drains_then_exits(tmp_path: Path) -> None:
    http, grpc_port = _free_port(), _free_port()
    serving = {
        "model_uri": str(_model(tmp_path / "model")),
        "http_port": http,
        "grpc_port": grpc_port,
        "feast": False,
        "inference_log_enabled": False,
        "reload_seconds": 0,
        "drain_seconds": DRAIN_SECONDS,
    }
    script = (
        "from interest_graph.config import Settings\n"
        "from interest_graph.serving.server import serve\n"
        f"serve(Settings(paths={{'work_dir': {str(tmp_path / 'work')!r}}}, "
        f"serving={serving!r}))\n"
    )
    env = {**os.environ, "INTEREST_GRAPH_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{http}"
    body = {"instances": [{"user_id": "U1", "k": 3}]}
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        time.sleep(0.3)
        assert httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 503
        answered = 0
        while time.monotonic() - sent < DRAIN_SECONDS - 0.5:
            # A new connection per call: the listener must still accept.
            with httpx.Client(timeout=2) as client:
                response = client.post(
                    f"{base}/v1/models/recommender:predict", json=body
                )
            assert response.status_code == 200, response.text
            answered += 1
            time.sleep(0.1)
        assert answered >= 10
        assert process.wait(timeout=30) == 0, process.stderr.read().decode()[-3000:]
        assert time.monotonic() - sent >= DRAIN_SECONDS
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
