"""Tests of the shop signals: interaction weights and the temporal-ease model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from interest_graph.errors import ConfigError
from interest_graph.evaluation.baselines import EASEBaseline, PopularityBaseline
from interest_graph.evaluation.protocols import (
    EvaluationSplit,
    shop_test_start,
    temporal_split,
)
from interest_graph.evaluation.ranking import rank_test_users, score_ranking
from interest_graph.models.shop_signals import (
    DEFAULT_EVENT_WEIGHTS,
    TemporalEASE,
    interaction_weights,
    next_period_weights,
    standardise_rows,
)
from interest_graph.schema import ShopTables

N_ITEMS = 4
# (user, item, event_type, days_before): one row per event.
EVENTS = [
    (0, 0, "purchase", 10.0),
    (0, 1, "purchase", 20.0),
    (0, 2, "view", 10.0),
    (1, 0, "view", 10.0),
    (1, 1, "cart", 10.0),
    (1, 1, "view", 30.0),
    (1, 3, "purchase", 10.0),
    (1, 3, "purchase", 40.0),
    (1, 3, "purchase", 50.0),
]


def _hand_made(events: list[tuple[int, int, str, float]] = EVENTS) -> EvaluationSplit:
    """Two users, four items; the training matrix is the set of event pairs."""
    frame = pd.DataFrame(events, columns=["user", "item", "event_type", "days_before"])
    n_users = int(frame["user"].max()) + 1
    train = sp.csr_matrix(
        (np.ones(len(frame), dtype=np.float32), (frame["user"], frame["item"])),
        shape=(n_users, N_ITEMS),
    )
    train.sum_duplicates()
    train.data[:] = 1.0
    return EvaluationSplit(
        protocol="hand-made",
        user_ids=np.arange(n_users).astype(str).astype(object),
        item_ids=np.arange(N_ITEMS).astype(str).astype(object),
        train=train,
        test_users=np.arange(n_users),
        ground_truth=sp.csr_matrix((n_users, N_ITEMS), dtype=np.float32),
        candidates=np.ones(N_ITEMS, dtype=bool),
        train_events=frame,
    )


def test_weights_keep_the_sparsity_of_train() -> None:
    split = _hand_made()
    weights = interaction_weights(split, half_life_days=30.0)
    assert weights.dtype == np.float32
    assert weights.shape == split.train.shape
    np.testing.assert_array_equal(weights.indptr, split.train.indptr)
    np.testing.assert_array_equal(weights.indices, split.train.indices)
    assert (weights.data > 0).all()


def test_recency_halves_the_weight_every_half_life() -> None:
    split = _hand_made()
    weights = interaction_weights(split, 10.0, count_transform="binary").toarray()
    # User 0 bought item 0 ten days ago and item 1 twenty days ago.
    assert weights[0, 0] == pytest.approx(0.5)
    assert weights[0, 1] == pytest.approx(0.25)
    # Without a half life nothing decays.
    flat = interaction_weights(split, None, count_transform="binary").toarray()
    assert flat[0, 0] == flat[0, 1] == pytest.approx(1.0)


def test_latest_event_sets_the_age_and_strongest_type_the_weight() -> None:
    split = _hand_made()
    weights = interaction_weights(split, 10.0, count_transform="binary").toarray()
    # User 1's item 1: a cart 10 days ago (strongest and latest), a view at 30 days.
    assert weights[1, 1] == pytest.approx(0.5 * DEFAULT_EVENT_WEIGHTS["cart"])


def test_event_types_are_ordered_view_cart_purchase() -> None:
    split = _hand_made()
    weights = interaction_weights(split, 30.0, count_transform="binary").toarray()
    # User 1: view of item 0, cart of item 1, purchases of item 3, all 10 days ago.
    assert weights[1, 0] < weights[1, 1] < weights[1, 3]
    custom = interaction_weights(
        split, 30.0, {"view": 1.0, "cart": 5.0, "purchase": 2.0}, "binary"
    ).toarray()
    assert custom[1, 1] > custom[1, 3] > custom[1, 0]


def test_repeats_count_through_the_transform() -> None:
    split = _hand_made()
    by_count = {
        transform: interaction_weights(
            split, None, {"view": 1, "cart": 1, "purchase": 1}, transform
        ).toarray()[1, 3]
        for transform in ("binary", "log1p", "linear")
    }
    # Item 3 was bought three times by user 1; one event weighs 1 in each transform.
    assert by_count["binary"] == pytest.approx(1.0)
    assert by_count["log1p"] == pytest.approx(np.log1p(3) / np.log(2))
    assert by_count["linear"] == pytest.approx(3.0)
    single = interaction_weights(split, None, count_transform="log1p").toarray()
    assert single[0, 0] == pytest.approx(DEFAULT_EVENT_WEIGHTS["purchase"])


def test_without_events_the_weights_are_the_binary_train() -> None:
    split = dataclasses.replace(_hand_made(), train_events=None)
    weights = interaction_weights(split, 10.0)
    assert weights is not split.train
    assert (weights != split.train).nnz == 0
    assert weights.dtype == np.float32


def test_bad_settings_are_refused() -> None:
    split = _hand_made()
    with pytest.raises(ConfigError, match="view"):
        interaction_weights(split, 10.0, {"cart": 1.0, "purchase": 1.0})
    with pytest.raises(ConfigError, match="count_transform"):
        interaction_weights(split, 10.0, count_transform="square")
    with pytest.raises(ConfigError, match="half_life"):
        interaction_weights(split, 0.0)
    with pytest.raises(ConfigError, match="positive"):
        interaction_weights(split, 10.0, {"view": 0, "cart": 1, "purchase": 1})


def test_train_pairs_without_events_are_an_error() -> None:
    split = _hand_made()
    extra = split.train.tolil()
    extra[0, 3] = 1.0
    with pytest.raises(ValueError, match="no event"):
        interaction_weights(dataclasses.replace(split, train=extra.tocsr()), 10.0)


def test_next_period_learns_what_follows_an_item() -> None:
    # Users 0-2 bought item 0 long ago and item 2 in the last 30 days; user 3 bought
    # item 1 long ago and item 3 recently; user 4 has only item 0.
    events = [(u, 0, "purchase", 100.0) for u in range(3)]
    events += [(u, 2, "purchase", 5.0) for u in range(3)]
    events += [(3, 1, "purchase", 100.0), (3, 3, "purchase", 5.0)]
    events += [(4, 0, "purchase", 200.0)]
    split = _hand_made(events)
    weights = next_period_weights(split, 30.0, l2=1.0, half_life_days=None)
    assert weights is not None
    assert weights[0, 2] > 0.5
    assert weights[0, 3] == pytest.approx(0.0, abs=1e-6)
    assert weights[1, 3] > 0.0
    # Nothing happened in the last day: no signal.
    assert next_period_weights(split, 1.0, 1.0, None) is None
    assert (
        next_period_weights(
            dataclasses.replace(split, train_events=None), 30.0, 1.0, None
        )
        is None
    )


def test_standardised_rows_have_zero_mean_and_unit_spread() -> None:
    scores = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    z = standardise_rows(scores)
    np.testing.assert_allclose(z[0].mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(z[0].std(), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(z[1], 0.0)


@pytest.fixture(scope="module")
def shop_split(small_shop: ShopTables) -> EvaluationSplit:
    return temporal_split("shop-temporal", small_shop, shop_test_start(small_shop))


def _recall(model: object, split: EvaluationSplit) -> float:
    model.fit(split)  # type: ignore[attr-defined]
    items, _ = rank_test_users(model, split, 20)  # type: ignore[arg-type]
    return float(score_ranking(split, items)["recall@20"])


def test_weights_on_a_synthetic_shop(shop_split: EvaluationSplit) -> None:
    weights = interaction_weights(shop_split, 7.0, count_transform="binary")
    np.testing.assert_array_equal(weights.indices, shop_split.train.indices)
    np.testing.assert_array_equal(weights.indptr, shop_split.train.indptr)
    # Pairs with a single view: the older the view, the smaller the weight.
    events = shop_split.train_events
    assert events is not None
    key = events["user"] * shop_split.n_items + events["item"]
    single = events[~key.duplicated(keep=False) & (events["event_type"] == "view")]
    got = np.asarray(weights[single["user"], single["item"]]).ravel()
    order = np.argsort(single["days_before"].to_numpy())
    assert np.all(np.diff(got[order]) <= 1e-7)
    assert got[order[0]] > 2 * got[order[-1]]


def test_temporal_ease_beats_popularity_on_a_synthetic_shop(
    shop_split: EvaluationSplit,
) -> None:
    popularity = _recall(PopularityBaseline(), shop_split)
    model = _recall(TemporalEASE(), shop_split)
    assert model > popularity + 0.1
    # Close to plain EASE at least (the synthetic shop barely drifts).
    assert model > 0.9 * _recall(EASEBaseline(500.0), shop_split)


def test_without_events_it_is_recency_free_ease(shop_split: EvaluationSplit) -> None:
    split = dataclasses.replace(shop_split, train_events=None)
    model = TemporalEASE(l2=50.0)
    model.fit(split)
    assert model.next is None
    ease = EASEBaseline(50.0)
    ease.fit(split)
    users = split.test_users[:20]
    np.testing.assert_allclose(
        model.score(users), standardise_rows(ease.score(users)), atol=1e-4
    )


def test_arrays_round_trip_through_safetensors(
    shop_split: EvaluationSplit, tmp_path: Path
) -> None:
    from safetensors.numpy import load_file, save_file

    model = TemporalEASE(next_period_days=14.0)
    model.fit(shop_split)
    assert model.next is not None
    save_file(model.to_arrays(), str(tmp_path / "model.safetensors"))
    config = json.loads(json.dumps(model.config()))
    loaded = TemporalEASE.from_arrays(
        load_file(str(tmp_path / "model.safetensors")), config
    )
    users = shop_split.test_users[:30]
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    assert loaded.config() == model.config()


def test_scoring_before_fitting_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="fit"):
        TemporalEASE().score(np.array([0]))
