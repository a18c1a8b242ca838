"""The hybrid ranker on a small synthetic shop: it learns, saves, reloads, and never
reads the test window."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from interest_graph.config import HybridConfig, Settings
from interest_graph.evaluation.baselines import PopularityBaseline
from interest_graph.evaluation.protocols import (
    EvaluationSplit,
    shop_test_start,
    temporal_split,
)
from interest_graph.evaluation.ranking import rank_test_users, score_ranking
from interest_graph.models.artifact import ModelArtifact
from interest_graph.models.hybrid import IMPORTANCE_FILE, RANKER_FILE, HybridRanker
from interest_graph.models.hybrid_features import (
    BasketCloseness,
    _ranks_at,
    _tells_apart,
    item_facts,
    pair_facts,
)
from interest_graph.models.recommender import ArtifactRecommender, scorer_artifact
from interest_graph.schema import ShopTables

# The graph filter keeps the test fast; the GNN source is the same code path.
FAST = HybridConfig(graph_model="graph-filter", rounds=60, min_child_samples=5)


@pytest.fixture(scope="module")
def shop_split(small_shop: ShopTables) -> EvaluationSplit:
    return temporal_split("shop-temporal", small_shop, shop_test_start(small_shop))


def _settings(tmp_path: Path) -> Settings:
    settings = Settings(paths={"work_dir": tmp_path / "work"})
    # The small shop has 60 days: two 10-day windows leave 26 days to learn from.
    train = settings.train.model_copy(update={"validation_days": 10.0})
    return settings.model_copy(update={"train": train, "hybrid": FAST})


@pytest.fixture(scope="module")
def fitted(
    shop_split: EvaluationSplit, tmp_path_factory: pytest.TempPathFactory
) -> HybridRanker:
    model = HybridRanker(_settings(tmp_path_factory.mktemp("hybrid")))
    model.fit(shop_split)
    return model


def _top(model: object, split: EvaluationSplit) -> np.ndarray:
    items, _ = rank_test_users(model, split, 20)  # type: ignore[arg-type]
    return items


def test_hybrid_beats_popularity_on_a_small_shop(
    fitted: HybridRanker, shop_split: EvaluationSplit
) -> None:
    popularity = PopularityBaseline()
    popularity.fit(shop_split)
    baseline = score_ranking(shop_split, _top(popularity, shop_split))
    hybrid = score_ranking(shop_split, _top(fitted, shop_split))
    assert hybrid["ndcg@20"] > baseline["ndcg@20"]
    assert len(fitted.facts["validation"]) == 2  # two windows, both used


def test_scores_put_every_candidate_above_the_rest(
    fitted: HybridRanker, shop_split: EvaluationSplit
) -> None:
    users = shop_split.test_users[:5]
    scores = fitted.score(users)
    assert scores.shape == (5, shop_split.n_items)
    assert np.isfinite(scores).all()
    # Each user's top 20 (owned items excluded) come from the ranker's candidates,
    # which hold at least candidates_per_source items.
    owned = np.asarray(shop_split.train[users].todense()) > 0
    masked = np.where(owned, -np.inf, scores)
    assert (np.sort(masked, axis=1)[:, -20:] > masked.min(axis=1, keepdims=True)).all()


def test_feature_importances_name_every_feature(fitted: HybridRanker) -> None:
    rows = fitted.feature_importance()
    assert {row["feature"] for row in rows} == set(fitted.feature_names)
    assert sum(row["gain_share"] for row in rows) == pytest.approx(1.0, abs=1e-3)
    assert {"temporal_ease_rank", "graph_score", "text_recent_score"} <= {
        row["feature"] for row in rows
    }


def test_artifact_round_trip_scores_the_same(
    fitted: HybridRanker, shop_split: EvaluationSplit, tmp_path: Path
) -> None:
    folder = scorer_artifact(fitted, shop_split).save(tmp_path / "model")
    fitted.write_beside(folder)
    assert not list(folder.glob("*.pkl")) and not list(folder.glob("*.pickle"))
    assert (folder / RANKER_FILE).read_text().startswith("tree")
    importance = json.loads((folder / IMPORTANCE_FILE).read_text())
    assert importance == fitted.feature_importance()
    # The graph source's vectors: the interest graph of the hybrid is the GNN's.
    assert ModelArtifact.load(folder).has_vectors
    loaded = ArtifactRecommender(folder)
    loaded.fit(shop_split)
    users = shop_split.test_users[:40]
    np.testing.assert_allclose(
        loaded.score(users), fitted.score(users), rtol=1e-5, atol=1e-5
    )


@pytest.mark.slow
def test_the_test_window_is_never_read(
    fitted: HybridRanker, shop_split: EvaluationSplit, tmp_path: Path
) -> None:
    """Flooding the ground truth (every item relevant) changes nothing learnt."""
    flooded = replace(
        shop_split,
        ground_truth=sp.csr_matrix(
            np.ones(shop_split.ground_truth.shape, dtype=np.float32)
        ),
    )
    again = HybridRanker(_settings(tmp_path))
    again.fit(flooded)
    users = shop_split.test_users[:40]
    np.testing.assert_allclose(again.score(users), fitted.score(users), atol=1e-6)


def test_pair_and_item_facts_from_events() -> None:
    events = pd.DataFrame(
        {
            "user": [0, 0, 0, 1, 1],
            "item": [0, 0, 1, 1, 2],
            "event_type": ["purchase"] * 5,
            "days_before": [40.0, 3.0, 20.0, 5.0, 60.0],
        }
    )
    train = sp.csr_matrix(
        (np.ones(4, np.float32), ([0, 0, 1, 1], [0, 1, 1, 2])), shape=(2, 3)
    )
    days, counts = pair_facts(train, events)
    np.testing.assert_array_equal(days, [3.0, 20.0, 5.0, 60.0])
    np.testing.assert_array_equal(counts, [2.0, 1.0, 1.0, 1.0])
    facts = item_facts(3, train, events)
    np.testing.assert_array_equal(facts["item_popularity"], [1, 2, 1])
    np.testing.assert_array_equal(facts["item_popularity_short"], [1, 1, 0])
    np.testing.assert_array_equal(facts["item_popularity_long"], [1, 2, 0])
    np.testing.assert_array_equal(facts["item_age_days"], [40.0, 20.0, 60.0])
    np.testing.assert_array_equal(facts["item_idle_days"], [3.0, 5.0, 60.0])


def test_unknown_sources_are_refused() -> None:
    with pytest.raises(ValueError, match="sources"):
        HybridConfig.model_validate({"sources": ["temporal-ease", "astrology"]})


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Every item's rank, row by row, through ``_ranks_at``."""
    rows, items = np.nonzero(np.ones(scores.shape, dtype=bool))
    return _ranks_at(scores, rows, items).reshape(scores.shape)


def test_tied_scores_share_a_rank_whatever_their_column() -> None:
    # Items nobody bought score 0 under temporal EASE: their rank must not be an
    # order by column, which a ranker would learn as if it meant something.
    scores = np.array(
        [[0.0, 3.0, 0.0, 2.0, -np.inf], [1.0, 1.0, 1.0, 1.0, 1.0]], dtype=np.float32
    )
    np.testing.assert_array_equal(_ranks(scores), [[3, 1, 3, 2, 5], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(_ranks(scores[:, ::-1]), _ranks(scores)[:, ::-1])


def test_ranks_and_basket_closeness_at_candidates_equal_the_full_matrices() -> None:
    rng = np.random.default_rng(3)
    # Few distinct values (ties) and unallowed items (-inf), as masked scores.
    scores = rng.integers(0, 6, size=(4, 50)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    chosen = rng.random(scores.shape) < 0.3
    rows, items = np.nonzero(chosen)
    # The definition: one plus the items of the row scored strictly higher.
    expected = (scores[rows] > scores[rows, items][:, None]).sum(axis=1) + 1
    np.testing.assert_array_equal(_ranks_at(scores, rows, items), expected)
    np.testing.assert_array_equal(_ranks(scores)[rows, items], expected)
    text = rng.normal(size=(50, 8)).astype(np.float32)
    basket = sp.csr_matrix(
        (np.ones(4, np.float32), ([0, 0, 2, 3], [4, 9, 9, 0])), shape=(4, 50)
    )
    full = np.zeros(scores.shape, dtype=np.float32)
    for row, owned in ((0, [4, 9]), (2, [9]), (3, [0])):
        full[row] = (text[owned] @ text.T).max(axis=0)
    closeness = BasketCloseness(basket, text)[rows, items]
    np.testing.assert_allclose(closeness, full[rows, items], rtol=1e-6, atol=1e-6)
    assert (closeness[rows == 1] == 0).all()  # an empty basket is close to nothing


def test_a_source_that_cannot_tell_allowed_items_apart_offers_none() -> None:
    masked = np.array(
        [
            [0.0, 0.0, -np.inf, 0.0],  # one score for every allowed item
            [0.0, 0.5, -np.inf, 0.0],
            [-np.inf, -np.inf, -np.inf, -np.inf],  # nothing allowed
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(_tells_apart(masked), [False, True, False])
