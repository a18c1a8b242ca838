"""``serving.host``: the real service (its own process) listens on loopback only
by default, REST and gRPC alike; KServe alone would listen on every interface."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from interest_graph.models.artifact import ModelArtifact
from interest_graph.serving.binding import grpc_address


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1:81"),
        ("0.0.0.0", "[::]:81"),
        ("::", "[::]:81"),
        ("::1", "[::1]:81"),
        ("localhost", "localhost:81"),
    ],
)
def test_grpc_addresses(host: str, address: str) -> None:
    assert grpc_address(host, 81) == address


def test_the_service_listens_on_loopback_by_default(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    model = ModelArtifact(
        model="lightgcn",
        config={"protocol": "hand-made"},
        user_ids=np.array(["U0", "U1"], dtype=object),
        item_ids=np.array(["I0", "I1", "I2"], dtype=object),
        tensors={
            "user_vectors": rng.normal(size=(2, 4)).astype(np.float32),
            "item_vectors": rng.normal(size=(3, 4)).astype(np.float32),
        },
    ).save(tmp_path / "model")
    http, grpc = _free_port(), _free_port()
    serving = {
        "model_uri": str(model),
        "http_port": http,
        "grpc_port": grpc,
        "feast": False,
        "inference_log_enabled": False,
        "reload_seconds": 0,
    }
    script = (
        "from interest_graph.config import Settings\n"
        "from interest_graph.serving.server import serve\n"
        f"serve(Settings(paths={{'work_dir': {str(tmp_path / 'work')!r}}}, "
        f"serving={serving!r}))\n"
    )
    env = {**os.environ, "INTEREST_GRAPH_LOG_LEVEL": "WARNING"}
    env.pop("INTEREST_GRAPH__SERVING__HOST", None)
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the server did not start"
            try:
                url = f"http://127.0.0.1:{http}/v2/health/ready"
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        server = psutil.Process(process.pid)
        # net_connections since psutil 6, connections before.
        sockets = getattr(server, "net_connections", server.connections)
        listening = {  # gRPC's IPv6 socket shows loopback as ::ffff:127.0.0.1
            (c.laddr.ip.removeprefix("::ffff:"), c.laddr.port)
            for c in sockets(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == {("127.0.0.1", http), ("127.0.0.1", grpc)}
    finally:
        process.kill()
        process.wait()
