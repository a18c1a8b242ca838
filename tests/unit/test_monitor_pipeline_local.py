"""The monitoring pipeline end to end under kfp.local on a small synthetic shop
whose interests shift: the drift step writes its HTML reports and its Metrics,
finds the drift, and the dsl.If branch runs every training step, whose model
becomes the first champion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interest_graph.config import Settings, SynthConfig
from interest_graph.data.synth import generate_shop
from interest_graph.features.tables import build_features
from interest_graph.kubeflow.definitions import load_pipeline
from interest_graph.kubeflow.local import task_names
from interest_graph.stages.monitoring import run_monitoring_pipeline

pytestmark = pytest.mark.slow  # 2.3 min at load <1, ~4.5 min at load 6 (2 cores)

SHOP = {"users": 400, "items": 600, "categories": 10, "events": 20_000, "days": 120}


def test_drift_runs_the_training_branch_and_the_reports_are_artifacts(
    tmp_path: Path,
) -> None:
    shop = tmp_path / "shop"
    generate_shop(SynthConfig(seed=3, interest_drift=0.8, **SHOP)).write(shop)
    settings = Settings(
        paths={"work_dir": tmp_path / "work"},
        features={"features_dir": tmp_path / "features"},
        synth=SHOP,  # what retraining ingests
        train={"epochs": 1, "batch_size": 2048, "dim": 16},
    )
    build_features(shop, settings.features_dir, threads=1, memory_limit="2GB")

    result = run_monitoring_pipeline(
        settings,
        reference="2026-02-04..2026-03-06",  # days 30-60 of the shop
        current="last 30 days",
        data_dir=shop,
    )

    # The branch: drift found, so every training step ran and the gate
    # made the retrained model the first champion.
    statuses = {t.name: t.status for t in result.run.tasks}
    training = set(task_names(load_pipeline("training")))
    assert statuses == {"drift-checks": "SUCCESS"} | dict.fromkeys(training, "SUCCESS")
    registered = result.run.output("register", "registered") / "manifest.json"
    assert json.loads(registered.read_text())["promoted"]
    # The Metrics: the verdict and each check that ran, with its value.
    summary = json.loads(result.summary_path.read_text())
    assert summary == result.summary and result.drift_detected
    metrics = summary["metrics"]
    assert metrics["drift_detected"] == 1
    assert metrics["user_interests/drift"] == 1
    assert 0.0 <= metrics["user_features/value"] <= 1.0
    assert metrics["checks_not_run"] == 5  # no embeddings, model, log yet
    assert "predictions/value" not in metrics  # not run: no verdict
    # The HTML artifacts: the verdict page, Evidently's report per check that
    # ran, and a page saying why for each that did not.
    html = {name: Path(uri).read_text("utf-8") for name, uri in summary["html"].items()}
    assert len(html) == 9
    assert "DRIFT DETECTED" in html["report"]
    for name in ("features_report", "item_features_report", "interests_report"):
        assert "plotly" in html[name] and len(html[name]) > 100_000
    assert "not run: no inference log given" in html["outcomes_report"]
