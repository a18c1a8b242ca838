"""``serving.host``: the real service (its own process) listens on loopback only
by default, REST and gRPC alike; KServe alone would listen on every interface."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from serving_support import random_model

from interest_graph.serving.binding import grpc_address


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


def test_the_service_listens_on_loopback_by_default(
    tmp_path: Path, start_service: Callable[[dict[str, Any]], Any]
) -> None:
    model = random_model(tmp_path / "model", users=2, items=3)
    service = start_service(
        {
            "model_uri": str(model),
            "feast": False,
            "inference_log_enabled": False,
            "reload_seconds": 0,
        }
    )
    server = psutil.Process(service.process.pid)
    # net_connections since psutil 6, connections before.
    sockets = getattr(server, "net_connections", server.connections)
    listening = {  # gRPC's IPv6 socket shows loopback as ::ffff:127.0.0.1
        (c.laddr.ip.removeprefix("::ffff:"), c.laddr.port)
        for c in sockets(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert listening == {
        ("127.0.0.1", service.http_port),
        ("127.0.0.1", service.grpc_port),
    }
    # The process serves on uvloop (serving.server.use_uvloop): REST and gRPC
    # answer, alike.
    from interest_graph.serving.client import RecommenderClient

    answers = [
        RecommenderClient(address, protocol=protocol).recommend("U1", k=2)
        for address, protocol in (
            (service.base, "v1"),
            (f"127.0.0.1:{service.grpc_port}", "grpc"),
        )
    ]
    assert [i["item_id"] for i in answers[0]["items"]] == [
        i["item_id"] for i in answers[1]["items"]
    ]
    assert len(answers[0]["items"]) == 2


def test_the_server_loop_is_uvloop() -> None:
    """KServe runs its servers under asyncio.run(), where its "auto" (uvloop)
    setting never applies; serve() installs uvloop's policy first."""
    import subprocess
    import sys

    code = (
        "import asyncio\n"
        "from interest_graph.serving.server import use_uvloop\n"
        "use_uvloop()\n"
        "asyncio.get_event_loop()  # what KServe's setup_event_loop() asks for\n"
        "async def kind():\n"
        "    return type(asyncio.get_running_loop()).__module__\n"
        "print(asyncio.run(kind()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().startswith("uvloop"), done.stdout
