"""`feast serve` on the repo answers /get-online-features for a user."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from interest_graph.features import (
    StoreProfile,
    apply_repo,
    build_features,
    materialize,
    open_store,
)

pytestmark = pytest.mark.integration

STARTUP_SECONDS = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"feast serve exited {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"feast serve not healthy in {STARTUP_SECONDS}s:\n{log.read_text()}")


def test_feature_server_answers_online_features_for_a_user(
    tmp_path: Path, small_shop_dir: Path
) -> None:
    features = tmp_path / "features"
    build_features(small_shop_dir, features)
    profile = StoreProfile(online_store="sqlite")
    apply_repo(features, profile)
    materialize(open_store(features, profile))
    table = pd.read_parquet(features / "user_activity.parquet")
    expected = table.sort_values("event_timestamp").groupby("user_id").tail(1)
    user = expected.iloc[0]

    port = _free_port()
    env = {**os.environ, **profile.environment(features)}
    log = tmp_path / "feast_serve.log"
    feast = Path(sys.executable).parent / "feast"
    command = [str(feast), "-c", str(profile.repo), "serve"]
    command += ["-h", "127.0.0.1", "-p", str(port), "--no-access-log"]
    with log.open("w") as output:
        server = subprocess.Popen(
            command,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its workers share the group we stop below
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(f"{base}/health", server, log)
        answer = _post(
            f"{base}/get-online-features",
            {
                "features": [
                    "user_activity:views_7d",
                    "user_activity:purchases_90d",
                    "user_activity:favourite_categories",
                ],
                "entities": {"user_id": [user.user_id, "no-such-user"]},
                "full_feature_names": True,
            },
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)
    names = answer["metadata"]["feature_names"]
    columns = dict(zip(names, answer["results"], strict=True))
    assert columns["user_id"]["values"] == [user.user_id, "no-such-user"]
    views = columns["user_activity__views_7d"]
    assert views["values"][0] == user.views_7d
    assert views["statuses"] == ["PRESENT", "NOT_FOUND"]
    favourites = columns["user_activity__favourite_categories"]["values"][0]
    assert favourites == list(user.favourite_categories)
