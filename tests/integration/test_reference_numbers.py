"""The baselines reproduce the reference numbers of EVALUATION.md within ±0.002."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from interest_graph.cli import app
from interest_graph.config import Settings
from interest_graph.evaluation.protocols import EvaluationSplit, build_split
from interest_graph.evaluation.reference import (
    REFERENCE_METRICS,
    REFERENCE_SIZES,
    REFERENCE_TOLERANCE,
)
from interest_graph.stages import evaluate_on_split

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def temporal(online_retail_file: Path) -> EvaluationSplit:
    return build_split("online-retail-temporal", online_retail_file)


@pytest.fixture(scope="module")
def cold_items(online_retail_file: Path) -> EvaluationSplit:
    return build_split("online-retail-cold-items", online_retail_file)


def _check(split: EvaluationSplit, model: str, settings: Settings, label: str) -> None:
    measured = evaluate_on_split(split, model, settings)
    for metric, expected in REFERENCE_METRICS[split.protocol][label].items():
        assert measured[metric] == pytest.approx(expected, abs=REFERENCE_TOLERANCE), (
            f"{split.protocol} {label} {metric}"
        )


def test_online_retail_sizes_match_reference(
    temporal: EvaluationSplit, cold_items: EvaluationSplit
) -> None:
    sizes = temporal.describe()
    for key, value in REFERENCE_SIZES["online-retail-temporal"].items():
        assert sizes[key] == value, key
    sizes = cold_items.describe()
    for key, value in REFERENCE_SIZES["online-retail-cold-items"].items():
        assert sizes[key] == value, key


@pytest.mark.parametrize("model", ["popularity", "itemknn"])
def test_online_retail_temporal_baselines(
    temporal: EvaluationSplit, model: str
) -> None:
    _check(temporal, model, Settings(), model)


@pytest.mark.parametrize("ease_lambda", [50, 200, 500])
def test_online_retail_temporal_ease(
    temporal: EvaluationSplit, ease_lambda: int
) -> None:
    settings = Settings(evaluation={"ease_lambda": ease_lambda})
    _check(temporal, "ease", settings, f"ease@{ease_lambda}")


@pytest.mark.parametrize("model", ["random", "text-knn"])
def test_online_retail_cold_item_baselines(
    cold_items: EvaluationSplit, model: str
) -> None:
    _check(cold_items, model, Settings(), model)


def test_cold_items_never_train_on_held_out_items(cold_items: EvaluationSplit) -> None:
    held_out_columns = cold_items.train[:, cold_items.candidates]
    assert held_out_columns.nnz == 0
    assert cold_items.ground_truth[:, ~cold_items.candidates].nnz == 0


def test_gowalla_sizes_and_baselines(gowalla_folder: Path) -> None:
    split = build_split("gowalla-lightgcn", gowalla_folder)
    sizes = split.describe()
    for key, value in REFERENCE_SIZES["gowalla-lightgcn"].items():
        assert sizes[key] == value, key
    for model in ("popularity", "itemknn"):
        _check(split, model, Settings(), model)


def test_recommendation_file_scores_what_evaluate_reports(
    online_retail_file: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    common = [
        "--protocol",
        "online-retail-temporal",
        "--source",
        str(online_retail_file),
        "--model",
        "ease",
    ]
    recs = tmp_path / "recs.csv"
    result = runner.invoke(app, ["recommend", *common, "--k", "20", "--out", str(recs)])
    assert result.exit_code == 0, result.output
    direct, from_file = tmp_path / "direct.json", tmp_path / "file.json"
    result = runner.invoke(app, ["evaluate", *common, "--out", str(direct)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["evaluate", *common, "--recs", str(recs), "--out", str(from_file)]
    )
    assert result.exit_code == 0, result.output

    import json

    direct_metrics = json.loads(direct.read_text())
    file_metrics = json.loads(from_file.read_text())
    for key in ("users", "recall@20", "ndcg@20", "hit@20", "coverage@20"):
        assert file_metrics[key] == pytest.approx(direct_metrics[key], abs=1e-12), key
    assert direct_metrics["recall@20"] == pytest.approx(0.1062, abs=REFERENCE_TOLERANCE)
