"""Tests of the training-free graph filter (GF-CF / BSPM family)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from interest_graph.evaluation.protocols import (
    EvaluationSplit,
    shop_test_start,
    temporal_split,
)
from interest_graph.evaluation.ranking import rank_test_users, score_ranking
from interest_graph.models.graph_filter import GraphFilter, sharpening_polynomial
from interest_graph.schema import ShopTables


@pytest.fixture(scope="module")
def shop_split(small_shop: ShopTables) -> EvaluationSplit:
    return temporal_split("small-shop", small_shop, shop_test_start(small_shop))


class Popularity:
    """Baseline: every user gets the training popularity of each item."""

    name = "popularity"

    def fit(self, split: EvaluationSplit) -> None:
        self.counts = np.asarray(split.train.sum(axis=0), dtype=np.float32).ravel()

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.counts, (len(users), 1))


def _metrics(model: object, split: EvaluationSplit) -> dict[str, float | int]:
    model.fit(split)  # type: ignore[attr-defined]
    items, _ = rank_test_users(model, split, 20, batch_size=128)  # type: ignore[arg-type]
    return score_ranking(split, items)


def _tiny_split(dense: np.ndarray) -> EvaluationSplit:
    train = sp.csr_matrix(dense.astype(np.float32))
    users = np.arange(dense.shape[0])
    return EvaluationSplit(
        protocol="tiny",
        user_ids=users.astype(str).astype(object),
        item_ids=np.arange(dense.shape[1]).astype(str).astype(object),
        train=train,
        test_users=users,
        ground_truth=sp.csr_matrix(1.0 - dense.astype(np.float32)),
        candidates=np.ones(dense.shape[1], dtype=bool),
    )


def test_beats_popularity_on_a_small_shop(shop_split: EvaluationSplit) -> None:
    graph = _metrics(GraphFilter(n_factors=32), shop_split)
    popular = _metrics(Popularity(), shop_split)
    assert graph["recall@20"] > popular["recall@20"]
    assert graph["ndcg@20"] > popular["ndcg@20"]


def test_round_trip_through_tensors_gives_identical_scores(
    shop_split: EvaluationSplit,
) -> None:
    model = GraphFilter(n_factors=24, ideal_weight=0.3, item_exponent=0.1)
    model.fit(shop_split)
    tensors = model.to_tensors()
    assert all(isinstance(v, np.ndarray) for v in tensors.values())
    rebuilt = GraphFilter.from_tensors(tensors, model.hyperparameters())
    users = shop_split.test_users[:50]
    np.testing.assert_array_equal(model.score(users), rebuilt.score(users))
    np.testing.assert_array_equal(model.item_vectors(), rebuilt.item_vectors())


def test_round_trip_through_safetensors_file(
    shop_split: EvaluationSplit, tmp_path: object
) -> None:
    from safetensors.numpy import load_file, save_file

    model = GraphFilter(n_factors=16)
    model.fit(shop_split)
    path = f"{tmp_path}/graph.safetensors"
    save_file(model.to_tensors(), path)
    rebuilt = GraphFilter.from_tensors(load_file(path), model.hyperparameters())
    users = shop_split.test_users[:20]
    np.testing.assert_array_equal(model.score(users), rebuilt.score(users))


def test_scores_have_the_documented_shape_and_type(shop_split: EvaluationSplit) -> None:
    model = GraphFilter(n_factors=8, batch_size=7)  # several internal blocks
    model.fit(shop_split)
    users = shop_split.test_users[:20]
    scores = model.score(users)
    assert scores.shape == (20, shop_split.n_items)
    assert scores.dtype == np.float32
    assert np.isfinite(scores).all()
    # Block size must not change the result.
    whole = GraphFilter.from_tensors(
        model.to_tensors(), {**model.hyperparameters(), "batch_size": 1000}
    )
    np.testing.assert_allclose(whole.score(users), scores, rtol=1e-5, atol=1e-6)


def test_vectors_have_k_columns(shop_split: EvaluationSplit) -> None:
    model = GraphFilter(n_factors=12)
    model.fit(shop_split)
    items = model.item_vectors()
    users = model.user_vectors(np.array([0, 1, 2]))
    assert items.shape == (shop_split.n_items, 12)
    assert users.shape == (3, 12)
    # u = R~[u] V equals the user's row of U Σ: its norm is at most the row's norm.
    assert np.all(np.linalg.norm(users, axis=1) > 0)


def test_no_sharpening_and_no_ideal_is_the_plain_linear_filter() -> None:
    dense = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1]], dtype=np.float32)
    model = GraphFilter(n_factors=0, sharpen_method="none", ideal_weight=0.0)
    model.fit(_tiny_split(dense))
    du, di = dense.sum(1), dense.sum(0)
    norm = dense / np.sqrt(du)[:, None] / np.sqrt(di)[None, :]
    expected = dense @ norm.T @ norm
    np.testing.assert_allclose(model.score(np.arange(3)), expected, rtol=1e-5)


def test_guards_on_tiny_data() -> None:
    # Two users, three items: n_factors is capped at min(shape) - 1 = 1.
    dense = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)  # item 2 is cold
    model = GraphFilter(n_factors=448)
    model.fit(_tiny_split(dense))
    assert model.effective_factors(dense.shape) == 1
    scores = model.score(np.array([0, 1]))
    assert scores.shape == (2, 3)
    assert np.isfinite(scores).all()
    assert model.item_vectors().shape == (3, 1)
    # A single user or item leaves no room for singular vectors but still scores.
    one = GraphFilter(n_factors=8)
    one.fit(_tiny_split(np.array([[1, 1, 0]], dtype=np.float32)))
    assert one.effective_factors((1, 3)) == 0
    assert np.isfinite(one.score(np.array([0]))).all()


def test_unfitted_model_and_bad_arguments_raise() -> None:
    with pytest.raises(RuntimeError):
        GraphFilter().score(np.array([0]))
    with pytest.raises(ValueError):
        GraphFilter(sharpen_method="magic")
    with pytest.raises(ValueError):
        GraphFilter(n_factors=-1)


def test_sharpening_polynomials() -> None:
    assert sharpening_polynomial("none", 2.5) == [1.0]
    assert sharpening_polynomial("euler", 1.0, steps=2) == [1.0, -1.0, 0.25]
    rk4 = sharpening_polynomial("rk4", 1.0)
    assert rk4 == pytest.approx([1.0, -1.0, 0.5, -1 / 6, 1 / 24])
