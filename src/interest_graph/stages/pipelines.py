"""Pipeline stages: settings and outputs of a pipeline step, and running,
compiling, submitting and scheduling the Kubeflow pipelines."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from interest_graph.config import Settings, settings_from_values
from interest_graph.errors import ConfigError
from interest_graph.kubeflow import outputs
from interest_graph.logs import quiet_library_warnings


def settings_from_json(settings_json: str, *, train: str | None = None) -> Settings:
    """A step's settings: the pipeline's ``settings_json`` (sections as JSON),
    ``train`` overrides on top (the tune step's answer), the environment over all.
    Every step calls it first, so it also hides the libraries' deprecation noise
    from the step's log, as the command line does.

    Raises:
        ConfigError: not JSON objects, or settings that fail validation.
    """
    quiet_library_warnings()
    values = _json_object(settings_json or "{}", "settings_json")
    if train:
        section = {**values.get("train", {}), **_json_object(train, "best_train")}
        values = {**values, "train": section}
    return settings_from_values(values)


def _json_object(text: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object, not {type(value).__name__}")
    return value


def record(
    artifact: outputs.ArtifactLike | None,
    result: Any,
    *,
    markdown_path: str | None = None,
) -> dict[str, Any]:
    """A stage's result into a step's output artifact: ``manifest.json`` in its
    folder, scalars in its metadata and, optionally, a Markdown page."""
    return outputs.record(artifact, result, markdown_path)


def record_metrics(metrics: Any, rows: Sequence[Mapping[str, Any]]) -> int:
    """Metrics rows into a KFP ``Metrics`` artifact: each recall/NDCG/hit/
    coverage as ``protocol/model/metric``, and the rows as JSON in its file."""
    plain = [outputs.as_plain(row) for row in rows]
    Path(metrics.path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics.path).write_text(json.dumps(plain, indent=2) + "\n", "utf-8")
    return outputs.record_metrics(metrics, plain)


def write_evaluation_table(
    rows: Sequence[Mapping[str, Any]],
    html_path: str | Path,
    markdown_path: str | Path,
) -> None:
    """The evaluation table as the HTML and Markdown pages the KFP UI shows."""
    Path(html_path).write_text(outputs.evaluation_html(rows), "utf-8")
    Path(markdown_path).write_text(outputs.evaluation_markdown(rows), "utf-8")


def run_pipeline(
    settings: Settings,
    *,
    source_kind: str = "synth",
    source_uri: Path | None = None,
    protocol: str = "shop-temporal",
    tune_trials: int = 0,
    runner: str = "subprocess",
    model: str | None = None,
) -> Any:
    """Run the training pipeline on this machine (``kfp.local``): every task in a
    subprocess, or with ``runner="docker"`` in the component image; then one
    call answered by the served champion. Writes ``<runs>/latest/summary.json``.
    ``model``: what the train step trains (default: ``train.model`` where set,
    else the hybrid ranker).

    Returns:
        The :class:`~interest_graph.main_job.PipelineReport`.
    """
    from interest_graph.main_job import run_training_pipeline

    if runner not in ("subprocess", "docker"):
        raise ConfigError(f"runner {runner!r}: choose subprocess or docker")
    return run_training_pipeline(
        settings,
        source_kind=source_kind,
        source_uri=source_uri,
        protocol=protocol,
        tune_trials=tune_trials,
        runner=runner,  # type: ignore[arg-type]
        model=model,
    )


def compile_pipeline(name: str, out: Path) -> Path:
    """Compile the pipeline ``name`` (``training``, ``monitoring``) to IR YAML."""
    from interest_graph.kubeflow.cluster import compile_pipeline as compile_to

    return compile_to(name, out)


def submit_pipeline(
    name: str,
    host: str,
    *,
    experiment: str,
    parameters: dict[str, str],
    package: Path,
    run_name: str | None = None,
    namespace: str | None = None,
) -> Any:
    """Start a run of a pipeline on a Kubeflow Pipelines cluster.

    Args:
        name: the pipeline.
        host: the KFP API, ``http(s)://HOST[:PORT]``.
        experiment: the experiment the run belongs to (created if missing).
        parameters: ``KEY -> VALUE`` text, typed by the pipeline's spec.
        package: where the compiled YAML is written (and kept).
        run_name: the run's name (default from the pipeline and package).
        namespace: the Kubeflow profile namespace (multi-user clusters).
    """
    from interest_graph.kubeflow.cluster import submit, typed_arguments

    return submit(
        name,
        host,
        experiment=experiment,
        arguments=typed_arguments(name, parameters),
        package=package,
        run_name=run_name,
        namespace=namespace,
    )


def schedule_pipeline(
    name: str,
    host: str,
    *,
    experiment: str,
    cron: str,
    parameters: dict[str, str],
    package: Path,
    job_name: str | None = None,
    namespace: str | None = None,
) -> Any:
    """Create a recurring run (cron) of a pipeline on a Kubeflow cluster; the
    monitoring pipeline is the one meant to recur."""
    from interest_graph.kubeflow.cluster import schedule, typed_arguments

    return schedule(
        name,
        host,
        experiment=experiment,
        cron=cron,
        arguments=typed_arguments(name, parameters),
        package=package,
        job_name=job_name,
        namespace=namespace,
    )
