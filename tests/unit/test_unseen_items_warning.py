"""A model that cannot score items unseen in training says so on cold-item protocols."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from interest_graph.config import Settings
from interest_graph.evaluation.baselines import make_baseline
from interest_graph.evaluation.protocols import EvaluationSplit, build_split
from interest_graph.evaluation.ranking import rank_test_users, unseen_candidates_tied


@pytest.fixture(scope="module")
def cold_split(small_shop_dir: Path) -> EvaluationSplit:
    return build_split("shop-cold-items", small_shop_dir)


@pytest.mark.parametrize("name", ["popularity", "itemknn", "ease"])
def test_interaction_only_models_warn_on_cold_items(
    cold_split: EvaluationSplit,
    name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("interest_graph")
    logger.addHandler(caplog.handler)
    try:
        model = make_baseline(name, Settings())
        model.fit(cold_split)
        rank_test_users(model, cold_split, k=20)
    finally:
        logger.removeHandler(caplog.handler)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{name} cannot score items unseen in training")
    assert "shop-cold-items" in warnings[0]


def test_a_model_that_tells_unseen_items_apart_does_not_warn(
    cold_split: EvaluationSplit, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("interest_graph")
    logger.addHandler(caplog.handler)
    try:
        model = make_baseline("random", Settings())
        model.fit(cold_split)
        rank_test_users(model, cold_split, k=20)
    finally:
        logger.removeHandler(caplog.handler)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_warm_protocol_does_not_warn(small_shop_dir: Path) -> None:
    split = build_split("shop-temporal", small_shop_dir)
    model = make_baseline("popularity", Settings())
    model.fit(split)
    scores = model.score(split.test_users[:10])
    assert unseen_candidates_tied(split, scores) == 0


def test_tied_count_is_the_number_of_unseen_candidates(
    cold_split: EvaluationSplit,
) -> None:
    unseen = cold_split.candidates & (cold_split.train.getnnz(axis=0) == 0)
    scores = np.zeros((3, cold_split.n_items), dtype=np.float32)
    assert unseen_candidates_tied(cold_split, scores) == unseen.sum() > 1
    scores[0, np.flatnonzero(unseen)[0]] = 1.0  # one user tells one item apart
    assert unseen_candidates_tied(cold_split, scores) == 0
