"""The command line end to end on a small synthetic shop, in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def test_help_names_match_the_library() -> None:
    from interest_graph.cli import choices
    from interest_graph.evaluation.baselines import BASELINES
    from interest_graph.evaluation.protocols import PROTOCOLS
    from interest_graph.models.recommender import GRAPH_MODELS, SCORING_MODELS

    assert tuple(PROTOCOLS) == choices.PROTOCOL_NAMES
    assert choices.BASELINE_NAMES == BASELINES
    assert choices.GRAPH_MODEL_NAMES == GRAPH_MODELS
    assert choices.SCORING_MODEL_NAMES == SCORING_MODELS


HELP_IN_A_FRESH_PROCESS = """
import sys
from typer.testing import CliRunner
from interest_graph.cli import app
for command in ([], ["data", "load"], ["evaluate"], ["train"], ["tune"], ["serve"],
                ["run"], ["embed"], ["features", "build"], ["registry", "list"],
                ["pipeline", "submit"], ["interests"], ["query"]):
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
heavy = ("torch", "torch_geometric", "pandas", "mlflow", "feast", "kfp", "ray")
print(" ".join(m for m in heavy if m in sys.modules))
"""


def test_help_imports_no_heavy_library() -> None:
    # --help at every level must answer in well under a second: the command
    # modules import stages (torch, Feast, MLflow) only inside their bodies.
    done = subprocess.run(
        [sys.executable, "-c", HELP_IN_A_FRESH_PROCESS],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "", done.stdout


def test_library_deprecation_notices_stay_off_stderr() -> None:
    # PYTHONWARNINGS=default shows every DeprecationWarning, as some environments
    # do; the notices torch-geometric and MLflow print about their own internals
    # must still not reach a user of the command line.
    code = (
        "import warnings\n"
        "import interest_graph.cli\n"
        "import torch_geometric.nn\n"
        "from sqlalchemy.exc import SADeprecationWarning\n"
        "warnings.warn('The ``noload`` loader strategy is deprecated and will be "
        "removed', SADeprecationWarning)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )
    assert "torch.jit.script" not in done.stderr
    assert "noload" not in done.stderr


def test_evaluate_recs_is_labelled_by_the_file(
    tmp_path: Path, small_shop_dir: Path
) -> None:
    common = ["--protocol", "shop-temporal", "--source", str(small_shop_dir)]
    recs = tmp_path / "ease-top20.parquet"
    result = runner.invoke(
        app, ["recommend", *common, "--model", "ease", "--out", str(recs)]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "scored.json"
    result = runner.invoke(
        app, ["evaluate", *common, "--recs", str(recs), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["model"] == "ease-top20"
    assert "popularity" not in result.output
    result = runner.invoke(
        app,
        [
            "evaluate",
            *common,
            "--recs",
            str(recs),
            "--label",
            "mine",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["model"] == "mine"
    result = runner.invoke(app, ["evaluate", *common, "--label", "mine"])
    assert result.exit_code == 2
    assert "--label names a --recs file's scores" in result.output


def test_train_table_has_seconds(tmp_path: Path, small_shop_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            "--protocol",
            "shop-temporal",
            "--source",
            str(small_shop_dir),
            "--model",
            "graph-filter",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if line.startswith("┃ protocol"))
    row = next(line for line in lines if line.startswith("│ shop-temporal"))
    names = [cell.strip() for cell in header.split("┃")[1:-1]]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    seconds = dict(zip(names, cells, strict=True))["seconds"]
    assert seconds and float(seconds) >= 0, row
