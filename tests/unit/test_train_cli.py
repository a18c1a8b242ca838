"""`interest-graph train` and `interests`: artifact, --model PATH, the explanation."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pandas as pd
import pytest
from typer.testing import CliRunner

from interest_graph.cli import app

runner = CliRunner()


def test_train_then_use_the_artifact_everywhere(
    tmp_path: Path, small_shop_dir: Path
) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(
        "paths:\n"
        f"  work_dir: {tmp_path / 'work'}\n"
        "train:\n"
        "  model: text-lightgcn\n"
        "  epochs: 4\n"
        "  batch_size: 2048\n"
        "  dim: 16\n",
        encoding="utf-8",
    )
    run = tmp_path / "run"
    common = ["--protocol", "shop-temporal", "--source", str(small_shop_dir)]
    result = runner.invoke(
        app, ["--config", str(config), "train", *common, "--out", str(run)]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == "text-lightgcn"
    assert metrics["training"]["best_epoch"] >= 1
    model = run / "model"
    assert sorted(p.name for p in model.iterdir()) == [
        "config.json",
        "items.parquet",
        "model.safetensors",
        "users.parquet",
    ]
    assert not list(model.glob("*.pkl")) and not list(model.glob("*.pt"))

    # The artifact path is a model for evaluate and recommend.
    scored = tmp_path / "scored.json"
    result = runner.invoke(
        app, ["evaluate", *common, "--model", str(model), "--out", str(scored)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(scored.read_text())["ndcg@20"] == metrics["ndcg@20"]
    recs = tmp_path / "recs.csv"
    result = runner.invoke(
        app, ["recommend", *common, "--model", str(model), "--out", str(recs)]
    )
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(recs).columns) == {"user_id", "item_id", "rank", "score"}

    # The interest graph: a user's explanation, exports and drawings.
    user = str(pd.read_parquet(model / "users.parquet")["user_id"].iloc[0])
    out = tmp_path / "graph"
    result = runner.invoke(
        app,
        [
            "interests",
            "--model",
            str(model),
            "--user",
            user,
            "--out",
            str(out),
            "--n-interests",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"interests of user {user}" in result.output
    edges = pd.read_parquet(out / "edges.parquet")
    assert set(edges["kind"]) == {"user-interest", "item-interest"}
    graph = nx.read_graphml(out / "interest_graph.graphml")
    kinds = {data["kind"] for _, data in graph.nodes(data=True)}
    assert kinds == {"user", "interest", "item"}
    assert (out / f"user_{user}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert user in (out / f"user_{user}.html").read_text(encoding="utf-8")
    result = runner.invoke(
        app, ["interests", "--model", str(model), "--user", "nobody"]
    )
    assert result.exit_code == 2
    assert "user 'nobody' is not in" in result.output


def test_interests_of_a_folder_that_is_no_model_is_a_clear_error(
    tmp_path: Path,
) -> None:
    result = runner.invoke(app, ["interests", "--model", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a model artifact" in result.output


@pytest.mark.parametrize("model", ["graph-filter", "temporal-ease"])
def test_scorers_train_into_artifacts_that_score_identically(
    tmp_path: Path, small_shop_dir: Path, model: str
) -> None:
    run = tmp_path / "run"
    common = ["--protocol", "shop-temporal", "--source", str(small_shop_dir)]
    result = runner.invoke(app, ["train", *common, "--model", model, "--out", str(run)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["scorer"] is True and config["model"] == model
    # Rebuilt from safetensors, the artifact scores exactly like the fitted model.
    scored = tmp_path / "scored.json"
    result = runner.invoke(
        app, ["evaluate", *common, "--model", str(run / "model"), "--out", str(scored)]
    )
    assert result.exit_code == 0, result.output
    again = json.loads(scored.read_text())
    assert again["recall@20"] == metrics["recall@20"]
    assert again["ndcg@20"] == metrics["ndcg@20"]
    by_name = runner.invoke(app, ["evaluate", *common, "--model", model])
    assert by_name.exit_code == 0, by_name.output
    assert f"{metrics['ndcg@20']:.4f}" in by_name.output
    # Interests need vectors: the graph filter has them, temporal EASE does not.
    result = runner.invoke(app, ["interests", "--model", str(run / "model")])
    if model == "graph-filter":
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2
        assert "no user and item vectors" in result.output


def test_train_refuses_an_untrainable_model(small_shop_dir: Path) -> None:
    result = runner.invoke(
        app, ["train", "--source", str(small_shop_dir), "--model", "popularity"]
    )
    assert result.exit_code == 2
    assert "cannot train 'popularity'" in result.output
