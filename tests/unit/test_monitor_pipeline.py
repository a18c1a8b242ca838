"""The monitoring pipeline compiles: drift checks first, their HTML reports and
metrics as artifacts, and the training pipeline only under dsl.If(drift)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from interest_graph import stages
from interest_graph.cli import monitor as monitor_cli
from interest_graph.config import load_settings
from interest_graph.kubeflow.cluster import typed_arguments
from interest_graph.kubeflow.definitions import load_pipeline
from interest_graph.kubeflow.local import task_names

TRAINING_TASKS = set(task_names(load_pipeline("training")))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("kfp") / "monitoring.yaml"
    stages.compile_pipeline("monitoring", out)
    documents = list(yaml.safe_load_all(out.read_text()))
    return {"spec": documents[0], "platform": documents[1]["platforms"]}


def _leaf_tasks(spec: dict[str, Any], dag: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for name, task in dag["tasks"].items():
        component = spec["components"][task["componentRef"]["name"]]
        found |= _leaf_tasks(spec, component["dag"]) if "dag" in component else {name}
    return found


def test_drift_checks_gate_the_training_steps(compiled: dict[str, Any]) -> None:
    spec = compiled["spec"]
    root = spec["root"]["dag"]["tasks"]
    assert "drift-checks" in root
    assert "triggerPolicy" not in root["drift-checks"]
    (condition,) = [t for n, t in root.items() if n.startswith("condition")]
    assert "drift-checks" in condition["dependentTasks"]
    trigger = condition["triggerPolicy"]["condition"]
    assert "drift-checks-Output" in trigger and "== true" in trigger
    inner = spec["components"][condition["componentRef"]["name"]]["dag"]
    assert _leaf_tasks(spec, inner) == TRAINING_TASKS


def test_reports_are_html_and_the_summary_is_metrics(
    compiled: dict[str, Any],
) -> None:
    outputs = compiled["spec"]["components"]["comp-drift-checks"]["outputDefinitions"]
    artifacts = {
        name: a["artifactType"]["schemaTitle"]
        for name, a in outputs["artifacts"].items()
    }
    assert artifacts.pop("summary") == "system.Metrics"
    assert set(artifacts.values()) == {"system.HTML"}
    assert {"report", "features_report", "embeddings_report"} <= set(artifacts)
    assert outputs["parameters"]["Output"]["parameterType"] == "BOOLEAN"


def test_retraining_keeps_its_gpu_and_secrets(compiled: dict[str, Any]) -> None:
    executors = compiled["platform"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-train"]["nodeSelector"]["labels"] == {
        "nvidia.com/gpu.present": "true"
    }
    secrets = {e["secretName"] for e in executors["exec-drift-checks"]["secretAsEnv"]}
    assert secrets == {"interest-graph-registry", "interest-graph-s3"}


def test_parameters_are_typed() -> None:
    typed = typed_arguments(
        "monitoring", {"current": "last 3 days", "tune_trials": "2"}
    )
    assert typed == {"current": "last 3 days", "tune_trials": 2}


def test_the_monitor_command_prints_verdicts_and_exits_by_drift(
    tmp_path: Path,
) -> None:
    app = typer.Typer()

    @app.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = load_settings(None)

    monitor_cli.register(app)
    result = CliRunner().invoke(
        app,
        [
            "monitor",
            "--reference",
            "2026-01-01..2026-01-08",
            "--current",
            "2026-01-08..2026-01-15",
            "--data-dir",
            str(tmp_path / "no-shop"),
            "--features-dir",
            str(tmp_path / "no-features"),
            "--model",
            "",
            "--no-workspace",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "drift detected: false" in result.output
    assert "not run" in result.output
    assert (tmp_path / "out" / "summary.json").is_file()
