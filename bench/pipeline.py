"""Pipelines and images: the training pipeline through kfp.local against the
same stages called in one process, the pipeline in Docker, and the images.

    python bench/pipeline.py [--quick] [--base-image IMAGE] [--no-docker]

Full run, on the shop `make run` uses (the default synthetic shop):
- ``local_run_s``: `interest-graph run`'s pipeline (kfp.local, every task in a
  subprocess of this environment), fresh work folder; ``make_run_s`` adds the
  champion's sample call after it;
- ``direct_stage_s``: the same stage functions with the same settings, called one
  after another in one fresh Python process (its start and imports included,
  as each task's are), fresh work folder (the deploy check included: both
  registries are new, so both models are promoted);
- ``overhead_ratio`` = local_run_s / direct_stage_s;
- ``images``: both images built with `make images` (bytes, build seconds) and the
  serving image's seconds from `docker run` (read-only root, user 1000, the
  trained model in /mnt/models) until /v2/health/ready answers 200;
- ``docker_run_s``: the pipeline with the Docker runner (component image,
  registry on this machine's PostgreSQL, Feast online store on its Redis).

--quick: a tiny shop, no Docker (about a minute). Where Docker is missing the
Docker figures are null and ``docker_skipped`` says why.

The last line printed is one JSON object: {"local_run_s", "direct_stage_s",
"overhead_ratio", "docker_run_s", "images": {"serving": {"bytes", "build_s",
"ready_s"}, "components": {"bytes", "build_s"}}, "tasks", "machine"}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _images  # noqa: E402

from interest_graph import stages  # noqa: E402
from interest_graph.config import Settings, settings_from_values  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".work" / "bench" / "pipeline"
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
BENCH_DB = "interest_graph_bench"
QUICK = {
    "synth": {"users": 200, "items": 300, "categories": 8, "events": 8_000},
    "train": {"epochs": 2, "batch_size": 2048, "dim": 16},
}


def _settings(work: Path, quick: bool) -> Settings:
    shutil.rmtree(work, ignore_errors=True)
    return settings_from_values(
        {"paths": {"work_dir": work}, **(QUICK if quick else {})}
    )


def direct_stages(settings: Settings) -> dict[str, float]:
    """The pipeline's steps as stage calls in one process; seconds per step."""
    seconds: dict[str, float] = {}
    out = settings.paths.runs_dir / "direct"

    def step(name: str, call: Any) -> Any:
        started = time.perf_counter()
        result = call()
        seconds[name] = round(time.perf_counter() - started, 2)
        return result

    data = out / "data"
    step("ingest", lambda: stages.ingest("synth", None, data, settings, check=True))
    step("features", lambda: stages.features(data, settings))
    step("embed", lambda: stages.embed(data, settings, materialize=True))
    best = step(
        "tune",
        lambda: stages.best_train_settings("shop-temporal", data, settings, trials=0),
    )
    tuned = stages.settings_from_json(settings.model_dump_json(), train=best)
    step("train", lambda: stages.train("shop-temporal", data, out / "model", tuned))
    step(
        "evaluate", lambda: stages.evaluation_table(data, settings, model=out / "model")
    )
    buyer = stages.first_buyer(data)
    step(
        "interests",
        lambda: stages.interests(
            out / "model", settings, user=buyer, out_dir=out / "graph", push=True
        ),
    )
    decision = step(
        "register", lambda: stages.register_run(out / "model", data, settings)
    )
    if decision.promoted:
        step("deploy", lambda: stages.deploy(settings, decision.version, buyer))
    return seconds


def _docker_figures(base_image: str | None, model_dir: Path) -> dict[str, Any]:
    images: dict[str, Any] = {}
    for kind in ("components", "serving"):
        built = _images.build_image(kind, base_image)
        images[kind] = {"bytes": built["bytes"], "build_s": built["build_s"]}
    images["serving"]["ready_s"] = round(
        _images.serving_ready_seconds(_images.image_tag("serving"), model_dir, 18080),
        2,
    )
    return images


def _fresh_registry(settings: Settings) -> Settings:
    """A new PostgreSQL database for the Docker run's registry: its first model
    is promoted and deployed, as in the other two runs."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(BENCH_DB))
        )
    registry = settings.registry.model_copy(
        update={"tracking_uri": f"{POSTGRES}/{BENCH_DB}"}
    )
    return settings.model_copy(update={"registry": registry})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument(
        "--direct-only",
        action="store_true",
        help="Only the direct stages, printing their seconds (what the full run "
        "starts in a fresh process).",
    )
    parser.add_argument(
        "--base-image",
        default=os.environ.get("BASE_IMAGE"),
        help="Base of both images (local/debian:bookworm where nothing is pulled).",
    )
    args = parser.parse_args()

    if args.direct_only:
        direct = direct_stages(_settings(WORK / "direct", args.quick))
        print(json.dumps(direct))
        return

    started = time.perf_counter()
    local = stages.run_pipeline(_settings(WORK / "local", args.quick))
    make_run_s = time.perf_counter() - started  # and the champion's sample call
    local_s = local.run.seconds

    # A fresh process, as each task is: its imports count once, not per stage.
    command = [sys.executable, __file__, "--direct-only"]
    started = time.perf_counter()
    done = subprocess.run(
        command + (["--quick"] if args.quick else []),
        check=True,
        capture_output=True,
        text=True,
    )
    direct_s = time.perf_counter() - started
    direct = json.loads(done.stdout.strip().splitlines()[-1])

    figures: dict[str, Any] = {
        "local_run_s": round(local_s, 1),
        "direct_stage_s": round(direct_s, 1),
        "overhead_ratio": round(local_s / direct_s, 3),
        "make_run_s": round(make_run_s, 1),
        "docker_run_s": None,
        "images": None,
        "tasks": {
            "local": {t.name: t.seconds for t in local.run.tasks},
            "direct": direct,
        },
    }
    docker_skipped = None
    if args.quick or args.no_docker:
        docker_skipped = "--quick" if args.quick else "--no-docker"
    elif not _images.docker_available():
        docker_skipped = "no Docker daemon answers"
    if docker_skipped is None:
        model_dir = Path(local.summary["model"])
        figures["images"] = _docker_figures(args.base_image, model_dir)
        docker_settings = _fresh_registry(_settings(WORK / "docker", args.quick))
        started = time.perf_counter()
        docker = stages.run_pipeline(docker_settings, runner="docker")
        figures["docker_run_s"] = round(time.perf_counter() - started, 1)
        figures["docker_registry"] = docker.summary["registry"]
        figures["tasks"]["docker"] = {t.name: t.seconds for t in docker.run.tasks}
    figures["docker_skipped"] = docker_skipped
    figures["quick"] = args.quick
    figures["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
