"""The validation window is a setting, and a window too small to early-stop on warns."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from interest_graph.config import Settings
from interest_graph.evaluation.protocols import build_split
from interest_graph.evaluation.validation import (
    MIN_VALIDATION_USERS,
    too_small_to_early_stop,
    validation_split,
)
from interest_graph.models.recommender import GraphModelRecommender


def _fit(small_shop_dir: Path, tmp_path: Path, days: float) -> list[str]:
    settings = Settings(
        paths={"work_dir": tmp_path / "work"},
        train={
            "model": "lightgcn",
            "epochs": 2,
            "dim": 8,
            "layers": 1,
            "batch_size": 4096,
            "negatives": 64,
            "validation_days": days,
        },
    )
    split = build_split("shop-temporal", small_shop_dir)
    # The project logger does not propagate to the root, where caplog listens.
    logger = logging.getLogger("interest_graph")
    handler = _Collect()
    logger.addHandler(handler)
    try:
        GraphModelRecommender(settings, "lightgcn").fit(split)
    finally:
        logger.removeHandler(handler)
    return [r.getMessage() for r in handler.records if r.levelno >= logging.WARNING]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_short_window_warns_it_is_too_small(
    small_shop_dir: Path, tmp_path: Path
) -> None:
    warnings = _fit(small_shop_dir, tmp_path, days=0.5)
    assert len(warnings) == 1, warnings
    assert "too few to early-stop on" in warnings[0]
    assert "train.validation_days (now 0.5)" in warnings[0]


def test_the_default_window_of_this_shop_does_not_warn(
    small_shop_dir: Path, tmp_path: Path
) -> None:
    assert _fit(small_shop_dir, tmp_path, days=30) == []


def test_window_length_decides_the_validation_users(small_shop_dir: Path) -> None:
    split = build_split("shop-temporal", small_shop_dir)
    short = validation_split(split, days=0.5)
    default = validation_split(split, days=30)
    assert short.test_users.size < MIN_VALIDATION_USERS <= default.test_users.size
    problem = too_small_to_early_stop(short)
    assert problem is not None
    assert f"holds {short.test_users.size} users" in problem
    assert too_small_to_early_stop(default) is None


def test_validation_days_must_be_positive() -> None:
    with pytest.raises(ValueError, match="validation_days"):
        Settings(train={"validation_days": 0})
