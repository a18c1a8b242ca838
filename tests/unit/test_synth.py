"""Tests of the synthetic shop generator: determinism, schema, and its statistics."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from interest_graph.config import SynthConfig
from interest_graph.data.synth import category_vocabulary, generate_shop
from interest_graph.schema import EVENT_TYPES, TABLE_COLUMNS, ShopTables, conform

SMALL: dict[str, Any] = {
    "users": 800,
    "items": 400,
    "categories": 10,
    "events": 30_000,
    "days": 60,
}


@functools.cache
def _shop(**overrides: Any) -> ShopTables:
    return generate_shop(SynthConfig(**{**SMALL, **overrides}))


def _time_fraction(events: pd.DataFrame, config: SynthConfig) -> pd.Series:
    start = pd.Timestamp(config.start)
    return (events["timestamp"] - start) / pd.Timedelta(days=config.days)


def test_same_seed_gives_identical_tables() -> None:
    first = generate_shop(SynthConfig(**SMALL, seed=3))
    second = generate_shop(SynthConfig(**SMALL, seed=3))
    for table in TABLE_COLUMNS:
        pd.testing.assert_frame_equal(
            getattr(first, table), getattr(second, table), check_exact=True
        )


def test_different_seed_gives_different_tables() -> None:
    first, other = _shop(), _shop(seed=1)
    assert not first.events.equals(other.events)
    assert not first.items["title"].equals(other.items["title"])


def test_sizes_match_config() -> None:
    config = SynthConfig(**SMALL)
    shop = _shop()
    assert len(shop.users) == config.users
    assert len(shop.items) == config.items
    assert abs(len(shop.events) / config.events - 1) < 0.03
    assert shop.events["user_id"].nunique() == config.users  # everyone is active
    assert set(shop.items["category"]) == set(category_vocabulary(10)[0])


@pytest.mark.parametrize("events", [50, 2_000, 100_000])
def test_event_count_is_met_at_any_size(events: int) -> None:
    shop = generate_shop(SynthConfig(users=300, items=50, events=events))
    tolerance = max(0.03 * events, 25)  # binomial noise dominates tiny shops
    assert abs(len(shop.events) - events) <= tolerance


def test_tables_are_canonical() -> None:
    shop = _shop()
    for table in TABLE_COLUMNS:
        frame = getattr(shop, table)
        pd.testing.assert_frame_equal(frame, conform(frame, table))
        assert frame.notna().all().all()
    assert shop.users["user_id"].str.fullmatch(r"U\d{7}").all()
    assert shop.items["item_id"].str.fullmatch(r"I\d{6}").all()
    assert shop.users["user_id"].is_unique and shop.items["item_id"].is_unique
    assert set(shop.events["event_type"]) == set(EVENT_TYPES)


def test_events_are_sorted_and_inside_the_window() -> None:
    config = SynthConfig(**SMALL)
    events = _shop().events
    keys = events[["timestamp", "user_id"]]
    assert keys.equals(keys.sort_values(["timestamp", "user_id"], ignore_index=True))
    fraction = _time_fraction(events, config)
    assert fraction.min() >= 0 and fraction.max() < 1


def test_referential_integrity() -> None:
    shop = _shop()
    assert shop.events["item_id"].isin(shop.items["item_id"]).all()
    assert shop.events["user_id"].isin(shop.users["user_id"]).all()


def test_every_cart_and_purchase_follows_a_view_of_the_same_item() -> None:
    events = _shop().events
    first_view = (
        events[events["event_type"] == "view"]
        .groupby(["user_id", "item_id"])["timestamp"]
        .min()
        .rename("first_view")
    )
    later = events[events["event_type"] != "view"].join(
        first_view, on=["user_id", "item_id"]
    )
    assert later["first_view"].notna().all()
    assert (later["first_view"] < later["timestamp"]).all()


def test_funnel_rates_and_quantities() -> None:
    config = SynthConfig(**SMALL)
    events = _shop().events
    counts = events["event_type"].value_counts()
    assert counts["cart"] / counts["view"] == pytest.approx(config.cart_rate, abs=0.02)
    assert counts["purchase"] / counts["cart"] == pytest.approx(
        config.purchase_rate, abs=0.03
    )
    browsing = events[events["event_type"] != "purchase"]
    assert (browsing["quantity"] == 1).all()
    bought = events.loc[events["event_type"] == "purchase", "quantity"]
    assert bought.min() >= 1 and bought.max() > 1 and bought.mean() < 2


def test_first_seen_is_the_first_event() -> None:
    shop = _shop()
    first_user = shop.events.groupby("user_id")["timestamp"].min()
    users = shop.users.set_index("user_id")["first_seen"]
    pd.testing.assert_series_equal(
        users.loc[first_user.index], first_user, check_names=False
    )
    first_item = shop.events.groupby("item_id")["timestamp"].min()
    items = shop.items.set_index("item_id")["first_seen"]
    pd.testing.assert_series_equal(
        items.loc[first_item.index], first_item, check_names=False
    )


def test_item_popularity_is_heavy_tailed() -> None:
    shop = _shop()
    views = shop.events.loc[shop.events["event_type"] == "view", "item_id"]
    popularity = views.value_counts()
    top_share = popularity.iloc[: len(shop.items) // 10].sum() / len(views)
    assert top_share > 0.35  # uniform popularity would give 0.10


def test_user_activity_is_heavy_tailed_and_interests_are_focused() -> None:
    shop = _shop()
    per_user = shop.events.groupby("user_id").size()
    assert per_user.max() > 10 * per_user.median()
    views = shop.events[shop.events["event_type"] == "view"].merge(
        shop.items[["item_id", "category"]], on="item_id"
    )
    per_category = views.groupby(["user_id", "category"]).size()
    active = per_category.groupby("user_id").sum() >= 20
    top_two = per_category.groupby("user_id").nlargest(2).groupby(level=0).sum()
    share = (top_two / per_category.groupby("user_id").sum())[active]
    # Ten categories: spread evenly, two of them would hold 20% of a user's views.
    assert share.mean() > 0.8


def _category_shift(shop: ShopTables, config: SynthConfig) -> float:
    """Total variation between early and late category shares of views."""
    views = shop.events[shop.events["event_type"] == "view"].merge(
        shop.items[["item_id", "category"]], on="item_id"
    )
    fraction = _time_fraction(views, config)
    early = views.loc[fraction < 0.25, "category"].value_counts(normalize=True)
    late = views.loc[fraction > 0.75, "category"].value_counts(normalize=True)
    return float(0.5 * early.sub(late, fill_value=0).abs().sum())


def test_interest_drift_moves_category_shares() -> None:
    stationary = _category_shift(_shop(), SynthConfig(**SMALL))
    drifting = _category_shift(_shop(interest_drift=1.0), SynthConfig(**SMALL))
    assert drifting > 0.08
    assert drifting > 3 * stationary


def _price_ratio(shop: ShopTables) -> pd.Series:
    base = shop.items.set_index("item_id")["price"]
    return shop.events["price"] / shop.events["item_id"].map(base)


def test_price_drift_raises_late_prices() -> None:
    config = SynthConfig(**SMALL, price_drift=0.5)
    shop = _shop(price_drift=0.5)
    ratio = _price_ratio(shop)
    fraction = _time_fraction(shop.events, config)
    assert ratio[fraction < 0.1].mean() == pytest.approx(1.025, abs=0.03)
    assert ratio[fraction > 0.9].mean() == pytest.approx(1.475, abs=0.03)


def test_no_drift_keeps_prices_fixed() -> None:
    assert (_price_ratio(_shop()) == 1.0).all()


def test_many_categories_get_distinct_generated_words() -> None:
    names, words = category_vocabulary(300)
    every = names + [w for ws in words for w in ws]
    assert len(every) == len(set(every))
    assert category_vocabulary(40) == (names[:40], words[:40])
    shop = generate_shop(SynthConfig(users=200, items=600, categories=300, events=3000))
    assert shop.items["category"].nunique() == 300
    assert shop.events["item_id"].isin(shop.items["item_id"]).all()


def test_fewer_items_than_categories() -> None:
    shop = generate_shop(SynthConfig(users=50, items=5, categories=20, events=500))
    assert len(shop.items) == 5 and shop.items["category"].nunique() == 5
    assert shop.events["item_id"].isin(shop.items["item_id"]).all()


def _tfidf(texts: pd.Series) -> sparse.csr_matrix:
    """L2-normalised TF-IDF rows of whitespace-token bags."""
    tokens = texts.str.lower().str.split()
    lengths = tokens.map(len).to_numpy()
    flat = np.concatenate(tokens.to_numpy())
    _, token_id = np.unique(flat, return_inverse=True)
    doc = np.repeat(np.arange(len(texts)), lengths)
    counts = sparse.csr_matrix(
        (np.ones(flat.size), (doc, token_id)), shape=(len(texts), token_id.max() + 1)
    )
    df = np.asarray((counts > 0).sum(axis=0)).ravel()
    idf = np.log((1 + len(texts)) / (1 + df)) + 1
    weighted = sparse.csr_matrix(counts.multiply(idf[None, :]))
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    return sparse.csr_matrix(sparse.diags(1 / norms) @ weighted)


def test_item_text_predicts_held_out_interactions() -> None:
    shop = _shop()
    items = shop.items
    vectors = _tfidf(items["title"] + " " + items["description"])
    rng = np.random.default_rng(0)
    held = rng.random(len(items)) < 0.2
    held_index = np.flatnonzero(held)

    item_pos = pd.Series(np.arange(len(items)), index=items["item_id"])
    pairs = shop.events[["user_id", "item_id"]].drop_duplicates()
    user_codes, users = pd.factorize(pairs["user_id"])
    item_codes = item_pos.loc[pairs["item_id"]].to_numpy()
    seen = sparse.csr_matrix(
        (np.ones(len(pairs)), (user_codes, item_codes)), shape=(len(users), len(items))
    )
    train, test = seen[:, ~held], seen[:, held_index]
    evaluable = (np.diff(train.indptr) > 0) & (np.diff(test.indptr) > 0)
    assert evaluable.sum() > 300

    profile = train[evaluable] @ vectors[~held]  # sum is enough for cosine ranking
    scores = (profile @ vectors[held_index].T).toarray()
    relevant = test[evaluable].toarray() > 0

    def recall_at_10(score: np.ndarray) -> float:
        top = np.argpartition(-score, 10, axis=1)[:, :10]
        hits = np.take_along_axis(relevant, top, axis=1).sum(axis=1)
        return float(np.mean(hits / relevant.sum(axis=1)))

    text = recall_at_10(scores)
    random = recall_at_10(rng.random(scores.shape))
    expected_random = 10 / held_index.size
    assert random == pytest.approx(expected_random, abs=0.05)
    assert text > 2 * expected_random
    assert text > 2 * random
