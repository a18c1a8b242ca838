"""The main job behind ``make run``: the training pipeline, run through
``kfp.local`` on this machine, then one recommendation from the served champion.

One code path: the same pipeline a cluster runs, each task in a subprocess of
this environment (``subprocess``) or in the component image (``docker``, with
the production profile: registry on PostgreSQL, Feast online store on Redis).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interest_graph.config import Settings, TrainConfig
from interest_graph.errors import ConfigError, InterestGraphError
from interest_graph.kubeflow.definitions import load_pipeline
from interest_graph.kubeflow.local import (
    LocalRun,
    RunnerKind,
    raise_if_failed,
    run_local,
    run_summary,
)
from interest_graph.logs import get_logger

log = get_logger("main")

# What the main job trains unless the settings name a train.model: the hybrid
# ranker over the GNN's interests, item text and recent behaviour.
MAIN_JOB_MODEL = "hybrid"
# A PostgreSQL database and Redis on this machine: the services a cluster has.
DOCKER_REGISTRY_URI = "postgresql://postgres@127.0.0.1:5432/interest_graph"
DOCKER_REDIS = "127.0.0.1:6379"


@dataclass
class PipelineReport:
    """A local run of the training pipeline and what it produced."""

    run: LocalRun
    summary_path: Path
    summary: dict[str, Any] = field(default_factory=dict)


def with_model(settings: Settings, model: str | None) -> Settings:
    """``settings`` with ``train.model`` = ``model``, or :data:`MAIN_JOB_MODEL`
    when neither ``model`` nor the settings name one."""
    if model is None and "model" in settings.train.model_fields_set:
        return settings
    values = settings.train.model_dump(exclude_unset=True)
    values["model"] = model or MAIN_JOB_MODEL
    try:
        train = TrainConfig.model_validate(values)
    except ValueError as exc:
        raise ConfigError(f"train.model {values['model']!r}: {exc}") from exc
    return settings.model_copy(update={"train": train})


def run_settings(
    settings: Settings, runner: RunnerKind, pipeline_root: Path
) -> Settings:
    """The settings every task gets: absolute paths (tasks run elsewhere), and for
    ``docker`` the production profile with all state in services or under the
    pipeline root, the only folder the containers share with this machine."""
    paths = settings.paths.model_copy(
        update={
            "work_dir": settings.paths.work_dir.resolve(),
            "shared_data_dir": settings.paths.shared_data_dir.resolve(),
        }
    )
    features = settings.features.model_copy(
        update={"features_dir": settings.features_dir.resolve()}
    )
    registry = settings.registry
    if runner == "docker":
        state = pipeline_root.resolve() / "state"
        paths = paths.model_copy(update={"work_dir": state / "work"})
        features = features.model_copy(
            update={
                "features_dir": state / "features",
                "online_store": "redis",
                "redis_connection_string": settings.features.redis_connection_string
                or DOCKER_REDIS,
            }
        )
        registry = registry.model_copy(
            update={
                "tracking_uri": registry.tracking_uri or DOCKER_REGISTRY_URI,
                "artifact_location": registry.artifact_location
                or str(state / "mlflow-artifacts"),
            }
        )
    return settings.model_copy(
        update={"paths": paths, "features": features, "registry": registry}
    )


def run_training_pipeline(
    settings: Settings,
    *,
    source_kind: str = "synth",
    source_uri: Path | None = None,
    protocol: str = "shop-temporal",
    tune_trials: int = 0,
    runner: RunnerKind = "subprocess",
    model: str | None = None,
) -> PipelineReport:
    """Run the training pipeline locally; write ``<runs>/latest/summary.json``.

    ``model`` is what the train step trains (default: ``train.model`` where the
    settings set it, else :data:`MAIN_JOB_MODEL`).

    Raises:
        InterestGraphError: a task failed (the summary and log say which).
    """
    pipeline_root = settings.paths.work_dir.resolve() / "kfp" / runner
    latest = settings.paths.runs_dir.resolve() / "latest"
    if latest.exists():
        shutil.rmtree(latest)
    latest.mkdir(parents=True)
    task_settings = run_settings(with_model(settings, model), runner, pipeline_root)
    if runner == "docker":
        _prepare_docker_state(task_settings)
    arguments = {
        "source_kind": source_kind,
        "source_uri": str(source_uri.resolve()) if source_uri else "",
        "protocol": protocol,
        "tune_trials": tune_trials,
        # Only what differs from the defaults: short in the KFP UI, and an image a
        # version apart still reads it.
        "settings_json": task_settings.model_dump_json(exclude_defaults=True),
    }
    run = run_local(
        load_pipeline("training"),
        arguments,
        pipeline_root=pipeline_root,
        log_path=latest / "pipeline.log",
        runner=runner,
        progress=sys.stderr,
    )
    report = PipelineReport(run, latest / "summary.json")
    report.summary = run_summary(run, arguments, runner)
    if run.status == "SUCCESS":
        report.summary.update(_outputs(run))
        started = time.perf_counter()
        report.summary["served_sample"] = _sample(task_settings, run)
        report.summary["sample_seconds"] = round(time.perf_counter() - started, 2)
    report.summary_path.write_text(json.dumps(report.summary, indent=2) + "\n")
    raise_if_failed(run)
    return report


def _outputs(run: LocalRun) -> dict[str, Any]:
    """What the summary shows from the tasks' artifacts."""

    def manifest(task: str, name: str) -> dict[str, Any]:
        path = run.output(task, name) / "manifest.json"
        return dict(json.loads(path.read_text(encoding="utf-8")))

    ingested = manifest("ingest", "data")
    trained = manifest("train", "model")
    rows = json.loads(run.output("evaluate", "metrics").read_text(encoding="utf-8"))
    decision = manifest("register", "registered")
    return {
        "data": str(run.output("ingest", "data")),
        "ingest": ingested["summary"],
        "model": trained["artifact"],
        "evaluation": rows,
        "registry": {k: decision[k] for k in ("version", "promoted", "reason")},
        "deployed": run.task("deploy").status == "SUCCESS",
        "interest_graph": str(run.output("interests", "graph")),
    }


def _sample(settings: Settings, run: LocalRun) -> dict[str, Any]:
    """One call answered by the registry's champion through the KServe
    predictor, with Feast lookups, as ``interest-graph serve`` answers it."""
    from interest_graph.stages import first_buyer, sample_call

    return sample_call(settings, first_buyer(run.output("ingest", "data")))


def _prepare_docker_state(settings: Settings) -> None:
    """The registry database on this machine's PostgreSQL, and state folders the
    image's user (uid 1000) can write."""
    uri = str(settings.registry.tracking_uri)
    if uri.startswith("postgresql://"):
        ensure_database(uri)
    for folder in (settings.paths.work_dir, settings.features_dir):
        folder.mkdir(parents=True, exist_ok=True)
        for parent in (folder, folder.parent):
            parent.chmod(0o777)
    artifacts = settings.registry.artifact_location
    if artifacts and "://" not in artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        Path(artifacts).chmod(0o777)


def ensure_database(uri: str) -> None:
    """Create the PostgreSQL database a ``postgresql://`` URI names, if missing
    (MLflow creates its tables, not the database)."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from psycopg import sql

    parts = urlsplit(uri)
    name = parts.path.lstrip("/")
    if not name:
        raise InterestGraphError(f"{uri}: no database name")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        found = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if not found:
            connection.execute(
                sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            )
