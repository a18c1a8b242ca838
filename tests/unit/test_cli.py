"""The command line end to end on a small synthetic shop, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from interest_graph.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["data"],
        ["data", "synth"],
        ["data", "load"],
        ["data", "validate"],
        ["evaluate"],
        ["recommend"],
        ["run"],
        ["embed"],
        ["train"],
        ["interests"],
    ],
)
def test_help_at_every_level(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_synth_validate_evaluate_recommend(tmp_path: Path) -> None:
    data = tmp_path / "shop"
    result = runner.invoke(
        app,
        [
            "data",
            "synth",
            "--out",
            str(data),
            "--users",
            "300",
            "--items",
            "150",
            "--events",
            "15000",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((data / "ingest_summary.json").read_text())
    assert summary["balanced"] and summary["totals"]["quarantined"] == 0
    events = pd.read_parquet(data / "events.parquet")
    assert summary["files"]["events"]["rows_in"] == len(events)
    assert pd.read_parquet(data / "users.parquet")["user_id"].nunique() == 300

    result = runner.invoke(app, ["data", "validate", str(data)])
    assert result.exit_code == 0, result.output
    assert "0 problems" in result.output

    metrics = tmp_path / "metrics.json"
    common = [
        "--protocol",
        "shop-temporal",
        "--source",
        str(data),
        "--model",
        "itemknn",
    ]
    result = runner.invoke(app, ["evaluate", *common, "--out", str(metrics)])
    assert result.exit_code == 0, result.output
    direct = json.loads(metrics.read_text())
    assert set(direct) >= {
        "protocol",
        "model",
        "users",
        "recall@20",
        "ndcg@20",
        "hit@20",
        "coverage@20",
    }
    assert direct["users"] > 0 and 0 < direct["recall@20"] <= 1

    recs = tmp_path / "recs.parquet"
    result = runner.invoke(app, ["recommend", *common, "--k", "20", "--out", str(recs)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(recs)
    assert list(frame.columns) == ["user_id", "item_id", "rank", "score"]
    assert frame.groupby("user_id")["rank"].max().max() == 20
    assert frame["user_id"].nunique() == direct["users"]

    rescored = tmp_path / "rescored.json"
    result = runner.invoke(
        app, ["evaluate", *common, "--recs", str(recs), "--out", str(rescored)]
    )
    assert result.exit_code == 0, result.output
    from_file = json.loads(rescored.read_text())
    for key in ("users", "recall@20", "ndcg@20", "hit@20", "coverage@20"):
        assert from_file[key] == pytest.approx(direct[key], abs=1e-12), key


def test_validate_reports_broken_tables(tmp_path: Path, small_shop_dir: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("items", "users"):
        (broken / f"{name}.parquet").write_bytes(
            (small_shop_dir / f"{name}.parquet").read_bytes()
        )
    events = pd.read_parquet(small_shop_dir / "events.parquet")
    events.loc[events.index[:3], "event_type"] = "wishlist"
    events.loc[events.index[3:5], "item_id"] = "NO-SUCH-ITEM"
    events.to_parquet(broken / "events.parquet", index=False)
    result = runner.invoke(app, ["data", "validate", str(broken)])
    assert result.exit_code == 1
    assert "3 events whose event_type is not one of" in result.output
    assert "2 events whose item_id is not in items" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["evaluate", "--protocol", "nope", "--source", "x"],
            "unknown protocol 'nope'",
        ),
        (["data", "load", "csv-dump", "x"], "unknown kind 'csv-dump'"),
        (
            ["--config", "/no/such.yaml", "data", "validate", "x"],
            "config file not found",
        ),
    ],
)
def test_bad_choices_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_malformed_file_names_file_and_problem(tmp_path: Path) -> None:
    broken = tmp_path / "Online_Retail.parquet"
    broken.write_bytes(b"PAR1 this is not really parquet")
    result = runner.invoke(app, ["data", "load", "online-retail", str(broken)])
    assert result.exit_code == 2
    assert "Online_Retail.parquet" in result.output
    assert "not a readable Parquet file" in result.output
    assert "Traceback" not in result.output


def test_unknown_model_is_refused(small_shop_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--protocol",
            "shop-temporal",
            "--source",
            str(small_shop_dir),
            "--model",
            "deep-magic",
        ],
    )
    assert result.exit_code == 2
    assert "unknown model 'deep-magic'" in result.output
