"""Shared fixtures: the real data sets in ../shared, and small synthetic shops."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from interest_graph.config import Settings, SynthConfig  # noqa: E402
from interest_graph.data.synth import generate_shop  # noqa: E402
from interest_graph.schema import ShopTables  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def online_retail_file() -> Path:
    path = SHARED_DATA / "online_retail" / "Online_Retail.parquet"
    if not path.is_file():
        pytest.skip(f"Online Retail not found at {path} (CI has ../shared/data)")
    return path


@pytest.fixture(scope="session")
def gowalla_folder() -> Path:
    path = SHARED_DATA / "gowalla"
    if not (path / "train.txt").is_file():
        pytest.skip(f"Gowalla split not found at {path} (CI has ../shared/data)")
    return path


SMALL_SHOP = SynthConfig(users=400, items=200, categories=8, events=20_000, days=60)


@pytest.fixture(scope="session")
def small_shop() -> ShopTables:
    return generate_shop(SMALL_SHOP)


@pytest.fixture(scope="session")
def small_shop_dir(
    tmp_path_factory: pytest.TempPathFactory, small_shop: ShopTables
) -> Path:
    folder = tmp_path_factory.mktemp("small_shop")
    small_shop.write(folder)
    return folder


@pytest.fixture(scope="module")
def shop_store(tmp_path_factory: pytest.TempPathFactory, small_shop_dir: Path) -> Path:
    """The small shop's Feast repo (sqlite), applied and materialized; one per
    test module, so a module that writes to its online store keeps that to
    itself."""
    from interest_graph.features import (
        apply_repo,
        build_features,
        materialize,
        open_store,
    )

    features = tmp_path_factory.mktemp("feast") / "features"
    build_features(small_shop_dir, features)
    apply_repo(features)
    materialize(open_store(features))
    return features


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings with the work folder in a temp dir."""
    return Settings(paths={"work_dir": tmp_path / "work"})


@pytest.fixture(scope="session")
def uid1000_model(
    tmp_path_factory: pytest.TempPathFactory, small_shop_dir: Path
) -> tuple[Path, list[str]]:
    """A vector artifact over the small shop that a container's uid 1000 can read
    from /mnt/models, and test users the model knows (most active first)."""
    import numpy as np

    from interest_graph.evaluation.protocols import build_split
    from interest_graph.models.artifact import ModelArtifact

    split = build_split("shop-temporal", small_shop_dir)
    rng = np.random.default_rng(5)
    folder = tmp_path_factory.mktemp("uid1000_model")
    ModelArtifact(
        model="lightgcn",
        config={"protocol": split.protocol},
        user_ids=split.user_ids,
        item_ids=split.item_ids,
        tensors={
            "user_vectors": rng.normal(size=(split.n_users, 16)).astype(np.float32),
            "item_vectors": rng.normal(size=(split.n_items, 16)).astype(np.float32),
        },
        item_titles=split.item_titles,
    ).save(folder)
    for path in [folder, *folder.rglob("*")]:  # pytest makes its folders 0700
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder, [str(u) for u in split.user_ids[split.test_users]]


@dataclass
class ServiceProcess:
    """The real service (``serve()``) in its own process, ready on loopback."""

    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[[dict], ServiceProcess]]:
    """Start ``serve()`` in a subprocess with these ``serving`` settings on free
    loopback ports (host left at its default), wait until ``/v2/health/ready``
    answers 200 (90 s at most), and kill it at teardown if still running."""
    import httpx

    started: list[subprocess.Popen[bytes]] = []

    def start(serving: dict) -> ServiceProcess:
        http, grpc = _free_port(), _free_port()
        serving = {**serving, "http_port": http, "grpc_port": grpc}
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
        started.append(process)
        service = ServiceProcess(process, http, grpc)
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the server did not start"
            try:
                url = f"{service.base}/v2/health/ready"
                if httpx.get(url, timeout=1).status_code == 200:
                    return service
            except httpx.TransportError:
                pass
            time.sleep(0.2)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
