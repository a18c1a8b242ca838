"""Compute the feature tables from the canonical shop, point in time.

Snapshot times are UTC midnights. A row stamped at midnight ``S`` aggregates only
events with ``timestamp < S`` (whole days ``S-N .. S-1`` for an ``N``-day window),
so a training row at time ``t`` joined to it by Feast (latest row ``<= t``) never
sees an event at or after ``t``'s midnight.

Each entity gets a row at the start of every day it is active (the state it
arrives with), at the end of that day (the state it leaves with, which covers the
quiet days after), and at the cut-off (the state serving reads).

DuckDB aggregates events per entity and day; the windows are prefix sums looked up
with ``searchsorted`` (no per-entity Python), which keeps a 1M-user shop in budget.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from interest_graph.errors import MalformedFileError
from interest_graph.logs import get_logger
from interest_graph.schema import TABLE_COLUMNS

if TYPE_CHECKING:
    import duckdb

log = get_logger("features.tables")

USER_ACTIVITY = "user_activity.parquet"
ITEM_STATISTICS = "item_statistics.parquet"
ITEM_TEXT_EMBEDDINGS = "item_text_embeddings.parquet"
USER_INTERESTS = "user_interests.parquet"
USER_RECENT_ITEMS = "user_recent_items.parquet"

# Written by other stages; the build only creates them empty so the views resolve.
ITEM_TEXT_EMBEDDINGS_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("text_embedding", pa.list_(pa.float32())),
        ("text_model", pa.string()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
    ]
)
USER_INTERESTS_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("interest_vector", pa.list_(pa.float32())),
        ("top_interests", pa.string()),  # JSON list of categories
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
    ]
)

FAVOURITE_CATEGORIES = 3
RECENT_ITEMS_PER_USER = 100  # distinct purchased items kept per user, newest first
USER_WINDOWS = (7, 30, 90)
ITEM_WINDOWS = (7, 30)
# Day numbers are shifted so that ``day - longest window`` stays positive.
_MARGIN = max(USER_WINDOWS) + 1
_US_PER_DAY = 86_400_000_000
_NONE = np.iinfo(np.int64).max


def build_features(
    data_dir: Path,
    features_dir: Path,
    *,
    as_of: datetime | None = None,
    memory_limit: str = "8GB",
    threads: int | None = None,
) -> dict[str, Path]:
    """Write the activity and item statistics tables for Feast.

    Args:
        data_dir: canonical data folder (``events``, ``items``, ``users`` Parquet).
        features_dir: feature tables folder; created if missing.
        as_of: cut-off; events at or after its UTC midnight are ignored and the
            serving snapshot is stamped there. Default: the midnight after the
            last event, or today's midnight if that is earlier.
        memory_limit: DuckDB memory limit (it spills to ``features_dir`` beyond).
        threads: DuckDB threads (default: all CPUs).

    Returns:
        Paths by feature view name: ``user_activity``, ``item_statistics``,
        ``user_recent_items``, ``item_text_embeddings`` and
        ``user_interest_vectors`` (the last two are created empty when their
        stages have not written them yet).

    Raises:
        MalformedFileError: a canonical table is missing, lacks a column, or there
            are no events before the cut-off.
    """
    features_dir.mkdir(parents=True, exist_ok=True)
    inputs = {table: data_dir / f"{table}.parquet" for table in TABLE_COLUMNS}
    for table, path in inputs.items():
        _check_input(path, table)
    import duckdb  # here: serving reads features without the offline store

    con = duckdb.connect(
        config={
            "memory_limit": memory_limit,
            "threads": threads or os.cpu_count() or 1,
            "temp_directory": str(features_dir / ".duckdb_tmp"),
            "preserve_insertion_order": False,
        }
    )
    try:
        shop = _aggregate(con, inputs, _cutoff_day(con, inputs["events"], as_of))
        recent = _user_recent_items(con)
    finally:
        con.close()
    paths = {
        "user_activity": features_dir / USER_ACTIVITY,
        "item_statistics": features_dir / ITEM_STATISTICS,
        "user_recent_items": features_dir / USER_RECENT_ITEMS,
    }
    _write_atomically(_user_activity(shop), paths["user_activity"])
    _write_atomically(_item_statistics(shop), paths["item_statistics"])
    _write_atomically(recent, paths["user_recent_items"])
    paths["item_text_embeddings"] = _ensure_table(
        features_dir / ITEM_TEXT_EMBEDDINGS, ITEM_TEXT_EMBEDDINGS_SCHEMA
    )
    paths["user_interest_vectors"] = _ensure_table(
        features_dir / USER_INTERESTS, USER_INTERESTS_SCHEMA
    )
    log.info(
        "built features as of %s for %d users and %d items -> %s",
        _midnight(shop.cutoff_day).date(),
        len(shop.user_ids),
        len(shop.item_ids),
        features_dir,
    )
    return paths


def _check_input(path: Path, table: str) -> None:
    if not path.is_file():
        raise MalformedFileError(path, f"canonical {table} table not found")
    names = set(pq.read_schema(path).names)
    missing = [c for c in TABLE_COLUMNS[table] if c not in names]
    if missing:
        raise MalformedFileError(path, f"{table} table lacks columns {missing}")


def _midnight(day: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)


def _cutoff_day(
    con: duckdb.DuckDBPyConnection, events: Path, as_of: datetime | None
) -> int:
    """Day number (since 1970-01-01) of the cut-off midnight.

    By default the midnight after the last event, but never after today's: a live
    shop's snapshot is never stamped in the future, so a rebuild later the same
    day stamps (and computes) the same rows, and incremental materialisation stays
    exact.
    """
    if as_of is not None:
        moment = pd.Timestamp(as_of)
        if moment.tzinfo is not None:
            moment = moment.tz_convert("UTC").tz_localize(None)
        return int((moment.normalize() - pd.Timestamp(0)).days)
    row = con.execute(
        "SELECT CAST(max(timestamp) AS DATE) - DATE '1970-01-01' + 1 "
        "FROM read_parquet(?)",
        [str(events)],
    ).fetchone()
    if row is None or row[0] is None:
        raise MalformedFileError(events, "no events to build features from")
    today = (datetime.now(UTC).date() - date(1970, 1, 1)).days
    return min(int(row[0]), today)


class _Windows:
    """Sums of daily values over the days before each snapshot, by prefix sums.

    Rows are daily aggregates sorted by key ``entity * span + day``; a snapshot has
    the key of its entity and day. Entity ``e`` owns keys ``[e * span, (e + 1) *
    span)``, so one ``searchsorted`` finds, for all snapshots at once, the first
    row of the same entity on or after a given number of days before.
    """

    def __init__(self, row_key: np.ndarray, snapshot_key: np.ndarray, span: int):
        self.row_key = row_key
        self.snapshot_key = snapshot_key
        self.span = span
        self._starts: dict[int, np.ndarray] = {}

    def start(self, days_back: int) -> np.ndarray:
        """Per snapshot: first row of its entity on or after ``days_back`` before."""
        if days_back not in self._starts:
            self._starts[days_back] = np.searchsorted(
                self.row_key, self.snapshot_key - days_back, side="left"
            )
        return self._starts[days_back]

    def sum(self, values: np.ndarray, days: int) -> np.ndarray:
        """Sum over days ``S - days .. S - 1``: events before the snapshot only."""
        prefix = np.concatenate([np.zeros(1, values.dtype), np.cumsum(values)])
        return prefix[self.start(0)] - prefix[self.start(days)]

    def last_row(self) -> np.ndarray:
        """Row of the entity's last active day before the snapshot; -1 if none."""
        row = self.start(0) - 1
        valid = row >= 0
        valid[valid] = (
            self.row_key[row[valid]] // self.span
            == self.snapshot_key[valid] // self.span
        )
        return np.where(valid, row, -1)


@dataclass
class _Shop:
    """Event aggregates, with entities as dense indices and days shifted by day0."""

    cutoff_day: int
    day0: int
    user_ids: pa.Array
    item_ids: pa.Array
    item_category: pa.Array
    item_price: np.ndarray
    categories: pa.Array
    # Columns as DuckDB fetches them (numpy arrays; masked where there are nulls).
    user_days: dict[str, Any]
    user_category_days: dict[str, Any]
    item_days: dict[str, Any]

    @property
    def cutoff(self) -> int:
        return self.cutoff_day - self.day0

    @property
    def span(self) -> int:
        return self.cutoff + 2


def _aggregate(
    con: duckdb.DuckDBPyConnection, inputs: dict[str, Path], cutoff_day: int
) -> _Shop:
    con.execute(
        """
        CREATE TEMP TABLE events AS
        SELECT user_id, item_id, event_type, timestamp, quantity, price,
               CAST(timestamp AS DATE) - DATE '1970-01-01' AS day
        FROM read_parquet($events)
        WHERE CAST(timestamp AS DATE) - DATE '1970-01-01' < $cutoff
        """,
        {"events": str(inputs["events"]), "cutoff": cutoff_day},
    )
    first = con.execute("SELECT min(day) FROM events").fetchone()
    if first is None or first[0] is None:
        raise MalformedFileError(inputs["events"], "no events before the cut-off")
    day0 = int(first[0]) - _MARGIN
    # Dense indices in id order; users and items without events still get a row.
    con.execute(
        """
        CREATE TEMP TABLE user_index AS
        SELECT user_id, CAST(row_number() OVER (ORDER BY user_id) - 1 AS BIGINT) AS u
        FROM (SELECT user_id FROM read_parquet($users)
              UNION SELECT user_id FROM events)
        """,
        {"users": str(inputs["users"])},
    )
    con.execute(
        """
        CREATE TEMP TABLE item_index AS
        WITH catalogue AS (
            SELECT item_id, any_value(category) AS category, any_value(price) AS price
            FROM read_parquet($items) GROUP BY item_id
        ),
        ids AS (SELECT item_id FROM catalogue UNION SELECT item_id FROM events),
        categories AS (
            SELECT category,
                   CAST(row_number() OVER (ORDER BY category) - 1 AS BIGINT) AS c
            FROM (SELECT DISTINCT category FROM catalogue WHERE category IS NOT NULL)
        )
        SELECT ids.item_id,
               CAST(row_number() OVER (ORDER BY ids.item_id) - 1 AS BIGINT) AS i,
               catalogue.category, catalogue.price, categories.c
        FROM ids LEFT JOIN catalogue USING (item_id)
        LEFT JOIN categories USING (category)
        """,
        {"items": str(inputs["items"])},
    )
    users = con.sql("SELECT user_id FROM user_index ORDER BY u").to_arrow_table()
    items = con.sql(
        "SELECT item_id, category, price FROM item_index ORDER BY i"
    ).to_arrow_table()
    categories = con.sql(
        "SELECT DISTINCT category, c FROM item_index WHERE c IS NOT NULL ORDER BY c"
    ).to_arrow_table()
    user_days = con.execute(
        """
        SELECT x.u AS entity, d.day - $day0 AS day, views, carts, purchases, spend,
               epoch_us(last_event) AS last_event
        FROM (
            SELECT user_id, day,
                   count(*) FILTER (event_type = 'view') AS views,
                   count(*) FILTER (event_type = 'cart') AS carts,
                   count(*) FILTER (event_type = 'purchase') AS purchases,
                   coalesce(sum(price * quantity)
                            FILTER (event_type = 'purchase'), 0.0) AS spend,
                   max(timestamp) AS last_event
            FROM events GROUP BY user_id, day
        ) d JOIN user_index x USING (user_id)
        ORDER BY entity, day
        """,
        {"day0": day0},
    ).fetchnumpy()
    user_category_days = con.execute(
        """
        SELECT x.u AS entity, d.c, d.day - $day0 AS day, d.events
        FROM (
            SELECT e.user_id, i.c, e.day, count(*) AS events
            FROM events e JOIN item_index i USING (item_id)
            WHERE i.c IS NOT NULL
            GROUP BY e.user_id, i.c, e.day
        ) d JOIN user_index x USING (user_id)
        ORDER BY entity, c, day
        """,
        {"day0": day0},
    ).fetchnumpy()
    item_days = con.execute(
        """
        SELECT i.i AS entity, d.day - $day0 AS day, views, carts, purchases,
               last_price
        FROM (
            SELECT item_id, day,
                   count(*) FILTER (event_type = 'view') AS views,
                   count(*) FILTER (event_type = 'cart') AS carts,
                   count(*) FILTER (event_type = 'purchase') AS purchases,
                   arg_max(price, timestamp) AS last_price
            FROM events GROUP BY item_id, day
        ) d JOIN item_index i USING (item_id)
        ORDER BY entity, day
        """,
        {"day0": day0},
    ).fetchnumpy()
    price = items.column("price").to_numpy(zero_copy_only=False)
    return _Shop(
        cutoff_day=cutoff_day,
        day0=day0,
        user_ids=users.column("user_id").combine_chunks(),
        item_ids=items.column("item_id").combine_chunks(),
        item_category=items.column("category").combine_chunks(),
        item_price=np.asarray(price, dtype=np.float64),
        categories=categories.column("category").combine_chunks(),
        user_days=user_days,
        user_category_days=user_category_days,
        item_days=item_days,
    )


def _snapshot_keys(row_key: np.ndarray, entities: int, shop: _Shop) -> np.ndarray:
    """Sorted snapshot keys: each active day, the day after, and the cut-off."""
    span = shop.span
    keys = np.concatenate(
        [row_key, row_key + 1, np.arange(entities, dtype=np.int64) * span + shop.cutoff]
    )
    keys.sort()
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    return keys[keys % span <= shop.cutoff]


def _snapshots(
    days: dict[str, Any], ids: pa.Array, id_column: str, shop: _Shop
) -> tuple[np.ndarray, np.ndarray, _Windows, dict[str, pa.Array | np.ndarray]]:
    """Snapshot rows of one entity kind: entity index, stamp day, window sums and
    the id and timestamp columns every feature table starts with."""
    span = shop.span
    row_key = days["entity"].astype(np.int64) * span + days["day"].astype(np.int64)
    snapshot = _snapshot_keys(row_key, len(ids), shop)
    entity, stamp = snapshot // span, snapshot % span
    columns: dict[str, pa.Array | np.ndarray] = {
        id_column: ids.take(pa.array(entity)),
        "event_timestamp": _timestamps(stamp, shop),
    }
    return entity, stamp, _Windows(row_key, snapshot, span), columns


def _user_activity(shop: _Shop) -> pa.Table:
    days = shop.user_days
    user, stamp, windows, columns = _snapshots(days, shop.user_ids, "user_id", shop)
    counts = {
        name: days[name].astype(np.int64) for name in ("views", "carts", "purchases")
    }
    for window in USER_WINDOWS:
        for name, values in counts.items():
            columns[f"{name}_{window}d"] = windows.sum(values, window)
    spend = np.asarray(days["spend"], dtype=np.float64)
    for window in (30, 90):
        columns[f"spend_{window}d"] = windows.sum(spend, window)
    last = windows.last_row()
    since = (stamp + shop.day0) * _US_PER_DAY - days["last_event"][last]
    columns["days_since_last_event"] = pa.array(
        since / _US_PER_DAY, mask=last < 0, type=pa.float64()
    )
    columns["favourite_categories"] = _favourite_categories(shop, user, stamp, windows)
    return pa.table(columns)


def _favourite_categories(
    shop: _Shop, user: np.ndarray, stamp: np.ndarray, windows: _Windows
) -> pa.ListArray:
    """Up to three categories with most events in the 90 days before each snapshot.

    Ties go to the category that sorts first by name. Only snapshots whose 90-day
    window gained or lost an active day are ranked; the others repeat the user's
    previous snapshot (``windows`` are the user's daily rows, whose positions tell
    that for free).
    """
    first = np.r_[True, user[1:] != user[:-1]]
    gained, lost = windows.start(0), windows.start(90)
    changed = first | np.r_[True, (gained[1:] != gained[:-1]) | (lost[1:] != lost[:-1])]
    ranked = _top_categories(shop, user[changed], stamp[changed])
    source = np.cumsum(changed) - 1  # last changed snapshot, same user by `first`
    chosen = ranked[source]
    picked = chosen >= 0
    offsets = np.r_[0, np.cumsum(picked.sum(axis=1))].astype(np.int32)
    values = shop.categories.take(pa.array(chosen[picked]))
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _top_categories(shop: _Shop, user: np.ndarray, stamp: np.ndarray) -> np.ndarray:
    """(snapshots, 3) category codes, best first, -1 where there are fewer."""
    rows = shop.user_category_days
    span = shop.span
    chosen = np.full((user.size, FAVOURITE_CATEGORIES), -1, dtype=np.int64)
    if len(rows["entity"]) == 0:  # no item has a category (Online Retail)
        return chosen
    entity = rows["entity"].astype(np.int64)
    category = rows["c"].astype(np.int64)
    n_categories = max(len(shop.categories), 1)
    # A "pair" is a (user, category) seen; its rows are contiguous and day-sorted,
    # and the pairs of one user are contiguous too.
    new_pair = np.r_[
        True, (entity[1:] != entity[:-1]) | (category[1:] != category[:-1])
    ]
    pair_first_row = np.flatnonzero(new_pair)
    pair_user = entity[pair_first_row]
    pair_category = category[pair_first_row]
    row_key = (np.cumsum(new_pair) - 1) * span + rows["day"].astype(np.int64)
    users = np.arange(len(shop.user_ids))
    first_pair = np.searchsorted(pair_user, users)
    n_pairs = np.searchsorted(pair_user, users, side="right") - first_pair
    # Every snapshot meets every pair of its user.
    per_snapshot = n_pairs[user]
    run_start = np.cumsum(per_snapshot) - per_snapshot
    pair = np.arange(per_snapshot.sum()) + np.repeat(
        first_pair[user] - run_start, per_snapshot
    )
    windows = _Windows(row_key, pair * span + np.repeat(stamp, per_snapshot), span)
    counts = windows.sum(rows["events"].astype(np.int64), 90)
    # Smaller is better: most events, then category order; unique inside a run, and
    # the category is its remainder.
    most = int(counts.max(initial=0)) + 1
    score = np.where(
        counts > 0, (most - counts) * n_categories + pair_category[pair], _NONE
    )
    del windows, counts, pair
    has_pairs = per_snapshot > 0
    starts = run_start[has_pairs]
    for rank in range(FAVOURITE_CATEGORIES):
        best = np.minimum.reduceat(score, starts) if starts.size else starts
        found = best < _NONE
        chosen[np.flatnonzero(has_pairs)[found], rank] = best[found] % n_categories
        score[score == np.repeat(best, per_snapshot[has_pairs])] = _NONE
    return chosen


def _user_recent_items(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Each buyer's distinct purchased items before the cut-off, newest first.

    One row per user, stamped at their last purchase: what serving excludes and
    explains with. A JSON list, like ``top_interests`` (Feast 0.67's offline
    push cannot write list<string>). Users without purchases have no row.
    """
    table = con.sql(
        """
        WITH bought AS (
            SELECT user_id, item_id, max(timestamp) AS last_time
            FROM events WHERE event_type = 'purchase' GROUP BY user_id, item_id
        ),
        ranked AS (
            SELECT *, row_number() OVER (
                PARTITION BY user_id ORDER BY last_time DESC, item_id
            ) AS r
            FROM bought
        )
        SELECT user_id,
               CAST(to_json(list(item_id ORDER BY r)) AS VARCHAR) AS recent_items,
               epoch_us(max(last_time)) AS stamp
        FROM ranked WHERE r <= $keep GROUP BY user_id ORDER BY user_id
        """,
        params={"keep": RECENT_ITEMS_PER_USER},
    ).to_arrow_table()
    stamps = pa.array(
        table.column("stamp").to_numpy(zero_copy_only=False),
        type=pa.timestamp("us", tz="UTC"),
    )
    return pa.table(
        {
            "user_id": table.column("user_id").cast(pa.string()),
            "recent_items": table.column("recent_items").cast(pa.string()),
            "event_timestamp": stamps,
        }
    )


def _item_statistics(shop: _Shop) -> pa.Table:
    days = shop.item_days
    item, _, windows, columns = _snapshots(days, shop.item_ids, "item_id", shop)
    for window in ITEM_WINDOWS:
        for name in ("views", "carts", "purchases"):
            columns[f"{name}_{window}d"] = windows.sum(
                days[name].astype(np.int64), window
            )
    views, purchases = columns["views_30d"], columns["purchases_30d"]
    assert isinstance(views, np.ndarray) and isinstance(purchases, np.ndarray)
    columns["conversion_30d"] = pa.array(
        purchases / np.maximum(views, 1), mask=views == 0, type=pa.float64()
    )
    # The last price paid before the snapshot; the catalogue price until then.
    last = windows.last_row()
    last_price = np.ma.filled(days["last_price"].astype(np.float64), np.nan)[last]
    columns["price"] = np.where(last >= 0, last_price, shop.item_price[item])
    columns["category"] = shop.item_category.take(pa.array(item))
    return pa.table(columns)


def _timestamps(stamp: np.ndarray, shop: _Shop) -> pa.Array:
    micros = (stamp + shop.day0) * _US_PER_DAY
    return pa.array(micros, type=pa.timestamp("us", tz="UTC"))


def _write_atomically(table: pa.Table, path: Path) -> None:
    """Readers (a serving materialiser) never see a half-written table."""
    partial = path.with_suffix(".parquet.partial")
    pq.write_table(table, partial, compression="zstd", row_group_size=1_000_000)
    partial.replace(path)


def _ensure_table(path: Path, schema: pa.Schema) -> Path:
    """An empty table with ``schema`` unless its stage has written one already."""
    if not path.exists():
        pq.write_table(schema.empty_table(), path)
    return path
