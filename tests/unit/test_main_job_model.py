"""What the main job trains (the hybrid unless the settings say otherwise), the
evaluation table's rows for a trained model's kind on every protocol, and the tune
step for the hybrid."""

from __future__ import annotations

from pathlib import Path

import pytest

from interest_graph import stages
from interest_graph.config import Settings
from interest_graph.errors import ConfigError
from interest_graph.main_job import MAIN_JOB_MODEL, with_model


def test_the_main_job_trains_the_hybrid_unless_the_settings_name_a_model() -> None:
    assert MAIN_JOB_MODEL == "hybrid"
    assert with_model(Settings(), None).train.model == "hybrid"
    chosen = Settings(train={"model": "lightgcn", "dim": 32})
    assert with_model(chosen, None).train.model == "lightgcn"
    overridden = with_model(chosen, "text-lightgcn").train
    assert (overridden.model, overridden.dim) == ("text-lightgcn", 32)
    with pytest.raises(ConfigError, match="astrology"):
        with_model(Settings(), "astrology")


def test_a_trained_kind_is_refitted_on_the_protocols_it_was_not_trained_for(
    small_shop_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    stages.train(
        "shop-temporal", small_shop_dir, run, settings, model_name="temporal-ease"
    )
    table = (
        ("shop-temporal", ("popularity",)),
        ("shop-cold-items", ("random",)),
    )
    rows = stages.evaluation_table(small_shop_dir, settings, model=run, table=table)
    assert [(r["protocol"], r["model"]) for r in rows] == [
        ("shop-temporal", "popularity"),
        ("shop-temporal", "temporal-ease (trained)"),
        ("shop-cold-items", "random"),
        ("shop-cold-items", "temporal-ease (refit)"),
    ]
    # A kind the protocol already has as a baseline is not fitted twice.
    table = (("shop-cold-items", ("random", "temporal-ease")),)
    rows = stages.evaluation_table(small_shop_dir, settings, model=run, table=table)
    assert [r["model"] for r in rows] == ["random", "temporal-ease"]


def test_tuning_the_hybrid_tunes_its_network_or_says_why_not(
    small_shop_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(
        paths={"work_dir": tmp_path / "work"},
        train={"model": "hybrid"},
        hybrid={"graph_model": "graph-filter"},
    )
    page = tmp_path / "curves.html"
    best = stages.best_train_settings(
        "shop-temporal", small_shop_dir, settings, trials=4, report_html=page
    )
    assert best == "{}"
    assert "graph source (graph-filter) has no network to tune" in page.read_text()
