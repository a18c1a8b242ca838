"""Monitoring stage: drift checks over features, vectors, predictions and
outcomes (Evidently), and, when asked, retraining on drift."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interest_graph.config import Settings
from interest_graph.errors import InterestGraphError
from interest_graph.locations import inference_log_path
from interest_graph.logs import get_logger

if TYPE_CHECKING:
    from interest_graph.kubeflow.monitoring_local import MonitoringRun
    from interest_graph.monitoring.run import MonitorResult
    from interest_graph.stages.models import TrainResult

log = get_logger("stages")


@dataclass(frozen=True)
class MonitorStageResult:
    """The monitoring run and, with ``retrain_on_drift`` and drift, the
    retrained (and registered, gate-decided) model."""

    result: MonitorResult
    retrained: TrainResult | None = None

    @property
    def drift_detected(self) -> bool:
        return self.result.drift_detected

    @property
    def summary(self) -> dict[str, Any]:
        return self.result.summary


def monitor(
    settings: Settings,
    *,
    reference: str = "training",
    current: str | None = None,
    data_dir: str | Path | None = None,
    features_dir: str | Path | None = None,
    model: str | None = None,
    inference_log: str | Path | None = None,
    out_dir: str | Path | None = None,
    workspace: bool = True,
    retrain_on_drift: bool = False,
    protocol: str = "shop-temporal",
) -> MonitorStageResult:
    """Compare a reference window with the current one: feature distributions
    (Feast's offline tables), item text embeddings and the model's user and item
    vectors, the service's answers (inference log) and the purchases after them.

    Args:
        settings: ``monitoring`` (methods, thresholds, windows); paths.
        reference: ``training`` (the champion's training window), ``previous N
            days`` (before the current window) or ``START..END``.
        current: ``last N days`` (default ``monitoring.current_days``) or
            ``START..END``.
        data_dir: the canonical shop folder (events); default
            ``features.source_dir`` or ``<data_dir>/synth``.
        features_dir: the feature tables (default ``settings.features_dir``).
        model: an artifact folder or a registry URI (default
            ``serving.model_uri``); ``""`` checks no model vectors.
        inference_log: a log file or a folder of rotated files (default the
            service's log).
        out_dir: reports and ``summary.json`` (default
            ``<runs>/monitoring/latest``).
        workspace: also add the run to the Evidently workspace
            (``monitoring.workspace``).
        retrain_on_drift: on drift, train on ``data_dir`` and register; the
            champion gate decides whether the new model serves.
        protocol: the protocol retraining uses.
    """
    from interest_graph.monitoring.run import MonitorInputs, run_monitor

    section = settings.monitoring
    data = Path(data_dir) if data_dir else _default_data_dir(settings)
    model_dir, problem = _model_folder(
        settings.serving.model_uri if model is None else model, settings
    )
    log_path = Path(inference_log) if inference_log else inference_log_path(settings)
    inputs = MonitorInputs(
        data_dir=data,
        features_dir=Path(features_dir) if features_dir else settings.features_dir,
        model_dir=model_dir,
        inference_log=log_path if log_path.exists() else None,
        model_problem=problem,
    )
    out = (
        Path(out_dir) if out_dir else settings.paths.runs_dir / "monitoring" / "latest"
    )
    result = run_monitor(
        inputs,
        reference,
        current or f"last {section.current_days} days",
        out,
        section,
        k=settings.evaluation.k,
        workspace=(
            (section.workspace or settings.paths.work_dir / "monitoring" / "workspace")
            if workspace
            else None
        ),
    )
    retrained = None
    if retrain_on_drift and result.drift_detected:
        from interest_graph.stages.models import train

        log.info("drift detected: retraining on %s (%s)", data, protocol)
        retrained = train(protocol, data, out / "retrain", settings, register=True)
    return MonitorStageResult(result, retrained)


def run_monitoring_pipeline(
    settings: Settings,
    *,
    reference: str = "training",
    current: str | None = None,
    data_dir: str | Path | None = None,
    model: str = "",
    inference_log: str | Path | None = None,
    protocol: str = "shop-temporal",
    tune_trials: int = 0,
) -> MonitoringRun:
    """The monitoring pipeline on this machine (``kfp.local``, every task in a
    subprocess): the drift checks, and on drift the training steps. Writes
    ``<runs>/monitoring/pipeline/summary.json``.

    Args:
        settings: as for :func:`monitor`; every task gets them.
        reference, current, data_dir, inference_log: as for :func:`monitor`.
        model: a model folder or registry URI; ``""``: ``serving.model_uri``.
        protocol: the protocol retraining trains and is gated on.
        tune_trials: Ray Tune trials before retraining.
    """
    from interest_graph.kubeflow.monitoring_local import (
        run_monitoring_pipeline as run_locally,
    )

    return run_locally(
        settings,
        reference=reference,
        current=current or f"last {settings.monitoring.current_days} days",
        data_dir=Path(data_dir) if data_dir else None,
        model=model,
        inference_log=Path(inference_log) if inference_log else None,
        protocol=protocol,
        tune_trials=tune_trials,
    )


def _default_data_dir(settings: Settings) -> Path:
    return settings.features.source_dir or settings.paths.data_dir / "synth"


def _model_folder(model: str, settings: Settings) -> tuple[Path | None, str | None]:
    """The model's artifact folder, or why there is none (the vector checks
    then say so instead of running)."""
    if not model:
        return None, "no model given"
    from interest_graph.registry import resolve_model_uri

    try:
        return resolve_model_uri(model, settings).path, None
    except InterestGraphError as exc:
        return None, f"{model}: {exc}"
    except Exception as exc:  # noqa: BLE001 (MLflow's own errors: no registry)
        return None, f"{model}: {exc.__class__.__name__}: {exc}"


def record_drift(
    result: MonitorStageResult, metrics: Any, html_paths: dict[str, str]
) -> bool:
    """A monitoring run into a pipeline step's outputs: each check's value and
    verdict as metrics (``<check>/value``, ``<check>/drift`` 1 or 0; checks
    that did not run get no verdict), the summary JSON in the metrics file, and
    the HTML pages (``report`` is the verdict page; a check that did not run
    gets a page saying why).

    Returns:
        Whether drift was detected.
    """
    import html
    import json
    import shutil

    summary = result.summary
    Path(metrics.path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics.path).write_text(json.dumps(summary, indent=2, default=str), "utf-8")
    metrics.log_metric("drift_detected", int(result.drift_detected))
    metrics.log_metric("checks_not_run", len(summary["checks_not_run"]))
    for name, check in summary["checks"].items():
        if check["drift_detected"] is None:
            continue
        metrics.log_metric(f"{name}/value", float(check["value"]))
        metrics.log_metric(f"{name}/drift", int(check["drift_detected"]))
    pages = {"report": str(result.result.report_html)}
    pages.update({n: c["html"] for n, c in summary["checks"].items() if c["html"]})
    for name, target in html_paths.items():
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        if name in pages:
            shutil.copyfile(pages[name], target)
        else:
            why = summary["checks_not_run"].get(name, "no report")
            Path(target).write_text(
                f"<p>{html.escape(name)}: not run: {html.escape(str(why))}</p>\n",
                "utf-8",
            )
    return result.drift_detected
