"""Feature tables: every snapshot equals a brute-force recount of earlier events."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interest_graph.errors import MalformedFileError
from interest_graph.features.tables import (
    ITEM_TEXT_EMBEDDINGS_SCHEMA,
    build_features,
)
from interest_graph.schema import ShopTables

DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, small_shop_dir: Path
) -> dict[str, Path]:
    return build_features(small_shop_dir, tmp_path_factory.mktemp("features"))


def _events_with_category(shop: ShopTables) -> pd.DataFrame:
    return shop.events.merge(shop.items[["item_id", "category"]], on="item_id")


def _user_row(events: pd.DataFrame, user: str, stamp: pd.Timestamp) -> dict:
    """Brute force: the user's features at ``stamp`` from events strictly before it."""
    before = events[(events.user_id == user) & (events.timestamp < stamp)]
    row: dict = {}
    for days in (7, 30, 90):
        window = before[before.timestamp >= stamp - days * DAY]
        for kind in ("view", "cart", "purchase"):
            row[f"{kind}s_{days}d"] = int((window.event_type == kind).sum())
        if days > 7:
            bought = window[window.event_type == "purchase"]
            row[f"spend_{days}d"] = float((bought.price * bought.quantity).sum())
    row["days_since_last_event"] = (
        (stamp - before.timestamp.max()) / DAY if len(before) else np.nan
    )
    recent = before[before.timestamp >= stamp - 90 * DAY]
    counts = recent.groupby("category").size().reset_index(name="n")
    counts = counts.sort_values(["n", "category"], ascending=[False, True])
    row["favourite_categories"] = counts.category.head(3).tolist()
    return row


def _item_row(shop: ShopTables, item: str, stamp: pd.Timestamp) -> dict:
    events = shop.events
    before = events[(events.item_id == item) & (events.timestamp < stamp)]
    row: dict = {}
    for days in (7, 30):
        window = before[before.timestamp >= stamp - days * DAY]
        for kind in ("view", "cart", "purchase"):
            row[f"{kind}s_{days}d"] = int((window.event_type == kind).sum())
    views, purchases = row["views_30d"], row["purchases_30d"]
    row["conversion_30d"] = purchases / views if views else np.nan
    catalogue = shop.items.set_index("item_id").loc[item]
    last = before.sort_values("timestamp").tail(1)
    row["price"] = float(last.price.iloc[0]) if len(last) else catalogue.price
    row["category"] = catalogue.category
    return row


def _naive(stamps: pd.Series) -> pd.Series:
    return stamps.dt.tz_convert("UTC").dt.tz_localize(None)


def test_user_snapshots_match_a_brute_force_recount(
    built: dict[str, Path], small_shop: ShopTables
) -> None:
    table = pd.read_parquet(built["user_activity"])
    table["event_timestamp"] = _naive(table["event_timestamp"])
    events = _events_with_category(small_shop)
    sample = table.sample(60, random_state=0)
    for _, got in sample.iterrows():
        expected = _user_row(events, got.user_id, got.event_timestamp)
        for name, value in expected.items():
            if name == "favourite_categories":
                assert list(got[name]) == value, (got.user_id, got.event_timestamp)
            else:
                assert got[name] == pytest.approx(value, nan_ok=True), name


def test_item_snapshots_match_a_brute_force_recount(
    built: dict[str, Path], small_shop: ShopTables
) -> None:
    table = pd.read_parquet(built["item_statistics"])
    table["event_timestamp"] = _naive(table["event_timestamp"])
    for _, got in table.sample(60, random_state=1).iterrows():
        expected = _item_row(small_shop, got.item_id, got.event_timestamp)
        for name, value in expected.items():
            if isinstance(value, str):
                assert got[name] == value
            else:
                assert got[name] == pytest.approx(value, nan_ok=True), name


def test_snapshots_are_active_days_the_day_after_and_the_cutoff(
    built: dict[str, Path], small_shop: ShopTables
) -> None:
    table = pd.read_parquet(
        built["user_activity"], columns=["user_id", "event_timestamp"]
    )
    stamps = _naive(table["event_timestamp"])
    assert (stamps == stamps.dt.normalize()).all(), "snapshots sit on midnights"
    events = small_shop.events
    cutoff = events.timestamp.max().normalize() + DAY
    for user in table.user_id.drop_duplicates().sample(20, random_state=2):
        days = events[events.user_id == user].timestamp.dt.normalize()
        expected = set(days) | set(days + DAY) | {cutoff}
        assert set(stamps[table.user_id == user]) == expected
    # Every user has a serving snapshot, even without events.
    at_cutoff = table[stamps == cutoff].user_id
    assert set(at_cutoff) == set(small_shop.users.user_id)


def test_as_of_ignores_later_events(
    tmp_path: Path, small_shop_dir: Path, small_shop: ShopTables
) -> None:
    as_of = small_shop.events.timestamp.min().normalize() + 10 * DAY
    paths = build_features(small_shop_dir, tmp_path, as_of=as_of.to_pydatetime())
    table = pd.read_parquet(paths["user_activity"])
    stamps = _naive(table["event_timestamp"])
    assert stamps.max() == as_of
    latest = table[stamps == as_of].set_index("user_id")
    early = small_shop.events[small_shop.events.timestamp < as_of]
    views = early[early.event_type == "view"].groupby("user_id").size()
    assert latest.views_90d.reindex(views.index).tolist() == views.tolist()


def test_a_live_shop_is_snapshotted_at_todays_midnight(
    tmp_path: Path, small_shop: ShopTables
) -> None:
    today = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    events = small_shop.events.head(3).copy()
    events["timestamp"] = [today - DAY, today - DAY / 2, today + pd.Timedelta(hours=1)]
    events["event_type"] = "view"
    ShopTables(events, small_shop.items, small_shop.users).write(tmp_path / "data")
    paths = build_features(tmp_path / "data", tmp_path / "features")
    table = pd.read_parquet(paths["user_activity"])
    assert _naive(table["event_timestamp"]).max() == today  # never in the future
    totals = table[_naive(table["event_timestamp"]) == today].views_7d.sum()
    assert totals == 2  # today's event waits for tomorrow's snapshot


def test_other_stages_tables_are_created_empty_and_never_overwritten(
    tmp_path: Path, small_shop_dir: Path
) -> None:
    embeddings = tmp_path / "item_text_embeddings.parquet"
    mine = pa.table(
        {
            "item_id": ["I1"],
            "text_embedding": pa.array([[0.5, 0.25]], pa.list_(pa.float32())),
            "text_model": ["m"],
            "event_timestamp": pa.array(
                [datetime(2026, 1, 1)], pa.timestamp("us", tz="UTC")
            ),
        }
    )
    pq.write_table(mine, embeddings)
    paths = build_features(small_shop_dir, tmp_path)
    assert pq.read_table(paths["item_text_embeddings"]).equals(mine)
    interests = pq.read_table(paths["user_interest_vectors"])
    assert interests.num_rows == 0
    assert interests.schema.field("interest_vector").type == pa.list_(pa.float32())
    assert ITEM_TEXT_EMBEDDINGS_SCHEMA.field("text_model").type == pa.string()


def test_missing_canonical_table_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MalformedFileError, match="events table not found"):
        build_features(tmp_path / "nothing", tmp_path / "features")


def test_recent_items_are_each_buyers_purchases_newest_first(
    built: dict[str, Path], small_shop: ShopTables
) -> None:
    table = pd.read_parquet(built["user_recent_items"]).set_index("user_id")
    bought = small_shop.events[small_shop.events.event_type == "purchase"]
    assert set(table.index) == set(bought.user_id)
    for user in table.index[:25]:
        mine = bought[bought.user_id == user]
        last = mine.groupby("item_id").timestamp.max().reset_index()
        expected = last.sort_values(
            ["timestamp", "item_id"], ascending=[False, True]
        ).item_id.tolist()[:100]
        assert json.loads(table.at[user, "recent_items"]) == expected
        stamp = pd.Timestamp(table.at[user, "event_timestamp"]).tz_convert(None)
        assert stamp == mine.timestamp.max().floor("us")


def test_a_catalogue_without_categories_builds(
    tmp_path: Path, small_shop: ShopTables
) -> None:
    """Online Retail has no categories: favourite categories are simply empty."""
    shop = ShopTables(
        users=small_shop.users,
        items=small_shop.items.assign(category=None),
        events=small_shop.events,
    )
    shop.write(tmp_path / "shop")
    paths = build_features(tmp_path / "shop", tmp_path / "features")
    activity = pd.read_parquet(paths["user_activity"])
    assert activity.favourite_categories.map(len).eq(0).all()
    assert len(pd.read_parquet(paths["user_recent_items"])) > 0
