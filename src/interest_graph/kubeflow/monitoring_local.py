"""Run the monitoring pipeline on this machine with ``kfp.local``: the drift
checks, then, only when they found drift, the training pipeline's steps (the
champion gate still decides what serves)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interest_graph.config import Settings
from interest_graph.errors import InterestGraphError
from interest_graph.kubeflow.definitions import load_pipeline
from interest_graph.kubeflow.local import (
    LocalRun,
    raise_if_failed,
    run_local,
    run_summary,
)

CHECK_TASK = "drift-checks"


@dataclass
class MonitoringRun:
    """A local run of the monitoring pipeline and what its drift step said."""

    run: LocalRun
    summary_path: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def drift_detected(self) -> bool:
        return bool(self.summary.get("drift_detected"))


def run_monitoring_pipeline(
    settings: Settings,
    *,
    reference: str = "training",
    current: str = "last 7 days",
    data_dir: Path | None = None,
    model: str = "",
    inference_log: Path | None = None,
    source_kind: str = "synth",
    protocol: str = "shop-temporal",
    tune_trials: int = 0,
) -> MonitoringRun:
    """Run the monitoring pipeline with every task in a subprocess of this
    environment; write ``<runs>/monitoring/pipeline/summary.json`` (tasks, the
    drift verdict, the ``Metrics`` values and the HTML artifacts).

    Raises:
        InterestGraphError: a task failed (the summary and log say which).
    """
    from interest_graph.main_job import run_settings

    pipeline_root = settings.paths.work_dir.resolve() / "kfp" / "subprocess"
    out = settings.paths.runs_dir.resolve() / "monitoring" / "pipeline"
    out.mkdir(parents=True, exist_ok=True)
    task_settings = run_settings(settings, "subprocess", pipeline_root)
    arguments = {
        "reference": reference,
        "current": current,
        "data_uri": str(data_dir.resolve()) if data_dir else "",
        "model_uri": model,
        "inference_log": str(inference_log.resolve()) if inference_log else "",
        "source_kind": source_kind,
        "protocol": protocol,
        "tune_trials": tune_trials,
        "settings_json": task_settings.model_dump_json(exclude_defaults=True),
    }
    run = run_local(
        load_pipeline("monitoring"),
        arguments,
        pipeline_root=pipeline_root,
        log_path=out / "pipeline.log",
        progress=sys.stderr,
    )
    result = MonitoringRun(run, out / "summary.json")
    result.summary = run_summary(run, arguments)
    if run.task(CHECK_TASK).status == "SUCCESS":
        result.summary.update(check_outputs(run))
    result.summary_path.write_text(json.dumps(result.summary, indent=2) + "\n")
    raise_if_failed(run)
    return result


def check_outputs(run: LocalRun) -> dict[str, Any]:
    """The drift step's verdict (its ``Output``), its ``Metrics`` values and
    its HTML artifacts, from the step's executor output."""
    if run.run_root is None:
        raise InterestGraphError(f"{run.pipeline}: the run wrote no outputs")
    executor = run.run_root / CHECK_TASK / "executor_output.json"
    written = json.loads(executor.read_text(encoding="utf-8"))
    artifacts = {
        name: entry["artifacts"][0] for name, entry in written["artifacts"].items()
    }
    return {
        "drift_detected": bool(written["parameterValues"]["Output"]),
        "metrics": artifacts["summary"]["metadata"],
        "html": {
            name: artifact["uri"]
            for name, artifact in sorted(artifacts.items())
            if name != "summary"
        },
    }
