"""The training pipeline in the component image (kfp.local.DockerRunner) with the
production profile: the registry on this machine's PostgreSQL, Feast's online
store on its Redis. Skipped where no Docker daemon answers or the image is not
built (`make images`): building it takes longer than the suite may."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from interest_graph import stages
from interest_graph.config import Settings
from interest_graph.features import StoreProfile, get_online, open_store

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]

IMAGE = "interest-graph-components:0.1.0"


def _image_present() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        done = subprocess.run(
            [docker, "image", "inspect", IMAGE], capture_output=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


@pytest.fixture
def registry_database() -> Iterator[str]:
    name = f"pipeline_it_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
            connect_timeout=2,
            autocommit=True,
        )
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc})")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


def test_docker_run_registers_in_postgres_and_serves_from_redis(
    tmp_path: Path, registry_database: str
) -> None:
    if not _image_present():
        pytest.skip(f"no Docker daemon or no {IMAGE} (run `make images`)")
    settings = Settings(
        paths={"work_dir": tmp_path / "work"},
        synth={"users": 300, "items": 400, "categories": 8, "events": 10_000},
        train={"epochs": 2, "batch_size": 2048, "dim": 16},
        registry={"tracking_uri": registry_database},
    )
    report = stages.run_pipeline(settings, runner="docker")
    summary = report.summary
    assert summary["runner"] == "docker" and summary["status"] == "SUCCESS"
    assert {t["status"] for t in summary["tasks"]} == {"SUCCESS"}
    # Every task ran in the component image, none in this process.
    log = Path(summary["log"]).read_text()
    assert log.count(f"Found image '{IMAGE}'") == len(report.run.tasks)
    assert summary["registry"] == {
        "version": "1",
        "promoted": True,
        "reason": summary["registry"]["reason"],
    }
    with psycopg.connect(registry_database) as connection:
        versions = connection.execute(
            "SELECT version FROM model_versions WHERE name = 'recommender'"
        ).fetchall()
    assert versions == [(1,)]
    # The online store the containers filled is Redis, read here.
    state = tmp_path / "work" / "kfp" / "docker" / "state"
    store = open_store(
        state / "features",
        StoreProfile(online_store="redis", redis_connection_string="127.0.0.1:6379"),
    )
    user = get_online(store, [summary["served_sample"]["user_id"]], [])["users"][0]
    assert user["found"]
    assert summary["served_sample"]["fallback"] is None
