"""Graceful shutdown of the real service (``serve()`` in its own process): on
SIGTERM readiness answers 503 at once, calls are still answered for
``serving.drain_seconds``, then the process exits by itself."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from serving_support import random_model

DRAIN_SECONDS = 3.0


def test_sigterm_drains_then_exits(
    tmp_path: Path, start_service: Callable[[dict[str, Any]], Any]
) -> None:
    service = start_service(
        {
            "model_uri": str(random_model(tmp_path / "model", users=10, items=30)),
            "feast": False,
            "inference_log_enabled": False,
            "reload_seconds": 0,
            "drain_seconds": DRAIN_SECONDS,
        }
    )
    process, base = service.process, service.base
    body = {"instances": [{"user_id": "U1", "k": 3}]}
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    time.sleep(0.3)
    assert httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 503
    # Every call until the end of the drain period is answered; how many fit
    # depends on the machine's load, so only a few are required.
    answered = 0
    while time.monotonic() - sent < DRAIN_SECONDS - 0.5:
        # A new connection per call: the listener must still accept.
        with httpx.Client(timeout=2) as client:
            response = client.post(f"{base}/v1/models/recommender:predict", json=body)
        assert response.status_code == 200, response.text
        answered += 1
        time.sleep(0.1)
    assert answered >= 3
    assert process.wait(timeout=30) == 0, process.stderr.read().decode()[-3000:]
    assert time.monotonic() - sent >= DRAIN_SECONDS
