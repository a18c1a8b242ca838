"""Ray Tune search: a real tiny search with ASHA, and bad input refused up front."""

from __future__ import annotations

import socket
from pathlib import Path

import pandas as pd
import pytest

from interest_graph.config import Settings, TrainConfig
from interest_graph.errors import ConfigError
from interest_graph.stages import tune
from interest_graph.tuning import check_address, check_space


def _tiny_settings(tmp_path: Path) -> Settings:
    return Settings(
        paths={"work_dir": tmp_path / "w"},
        train={"model": "lightgcn", "dim": 16, "batch_size": 2048},
        tune={
            "max_epochs": 4,
            "grace_epochs": 1,
            "reduction_factor": 2,
            "num_cpus": 2,
            # One trial at a time: each meets the earlier ones at every rung, so
            # ASHA's decisions do not depend on which trial finished first.
            "max_concurrent": 1,
            "space": {
                "lr": {"loguniform": [0.0002, 0.02]},
                "dim": {"choice": [8, 16]},
            },
        },
    )


def test_four_tiny_trials_complete_and_asha_stops_some_early(
    tmp_path: Path, small_shop_dir: Path
) -> None:
    settings = _tiny_settings(tmp_path)
    result = tune(
        "shop-temporal",
        small_shop_dir,
        settings,
        trials=4,
        out_dir=tmp_path / "run",
        register=True,
    )
    table = pd.read_parquet(result.trials_path)
    assert len(table) == 4 and table["error"].isna().all()
    assert result.stopped_early >= 1
    assert (table["epochs"] < 4).sum() == result.stopped_early
    # Trial 0 is the default settings, so the gain is always visible.
    assert table.loc[table["default"], "config/lr"].item() == settings.train.lr
    assert result.best_validation >= result.default_validation
    assert result.best_validation == table["best_validation"].max()
    curves = pd.read_parquet(result.curves_path)
    assert curves.groupby("trial_id")["epoch"].max().to_dict() == dict(
        zip(table["trial_id"], table["epochs"], strict=True)
    )
    assert result.plot_path.stat().st_size > 10_000
    # The best configuration was retrained on all training data and tested.
    hyper = result.final.metrics["training"]
    assert hyper["epochs"] == result.best_epoch
    assert 0 < result.final.metrics["ndcg@20"] <= 1
    assert result.final.registered is not None and result.final.registered.promoted


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({}, "tune.space is empty"),
        ({"lr": {"uniform": [0.01, 0.001]}}, "low 0.01 is not below high 0.001"),
        ({"lr": {"loguniform": [0.0, 0.1]}}, "loguniform needs low > 0"),
        ({"layers": {"choice": [2, 12]}}, "12 is not a valid value"),
        ({"dim": {"choice": []}}, "needs a non-empty list"),
        ({"dim": {"normal": [1, 2]}}, "unknown distribution 'normal'"),
        ({"model": {"choice": ["lightgcn"]}}, "not a searchable train field"),
        ({"colour": {"choice": [1]}}, "not a searchable train field"),
        ({"lr": {"uniform": [0.1]}}, "needs [low, high] numbers"),
    ],
)
def test_bad_spaces_are_refused_with_the_reason(
    space: dict[str, dict[str, list[float]]], message: str
) -> None:
    with pytest.raises(ConfigError, match=f".*{message[:20].replace('[', '.')}"):
        check_space(space, TrainConfig())


def test_zero_trials_and_dead_ray_fail_before_any_work(
    tmp_path: Path, small_shop_dir: Path
) -> None:
    settings = _tiny_settings(tmp_path)
    with pytest.raises(ConfigError, match="at least 1"):
        tune("shop-temporal", small_shop_dir, settings, trials=0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match="unreachable"):
        tune(
            "shop-temporal",
            small_shop_dir,
            settings,
            trials=2,
            address=f"ray://127.0.0.1:{closed_port}",
        )
    with pytest.raises(ConfigError, match="expected ray://HOST:PORT"):
        check_address("http://somewhere:8265")
    assert check_address(None) is None and check_address("local") is None
    # Nothing was started or written: no Ray temp folder, no run folder.
    assert not (tmp_path / "w" / "cache" / "ray").exists()
    assert not (tmp_path / "w" / "runs").exists()
