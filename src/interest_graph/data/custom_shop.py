"""Loader for "bring your own shop": any events/items/users files mapped by config.

Every row is accepted or quarantined with its reason, as in the other loaders.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from interest_graph.config import ColumnMapping
from interest_graph.data.columns import (
    as_integer_id,
    as_number,
    as_text,
    as_timestamp,
    most_frequent,
)
from interest_graph.data.quarantine import IngestReport, RowTriage
from interest_graph.data.readers import read_table
from interest_graph.errors import ConfigError
from interest_graph.schema import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    ITEM_COLUMNS,
    USER_COLUMNS,
    ShopTables,
    conform,
)

LOADER_NAME = "custom-shop"
EVENT_REQUIRED = ("user_id", "item_id", "timestamp")
# Item attributes an export may carry on every order line instead of an items file.
ITEM_TEXT = ("title", "description", "category")
EVENT_SOURCE_COLUMNS = {
    **EVENT_COLUMNS,
    **{name: ITEM_COLUMNS[name] for name in ITEM_TEXT},
}
DEFAULT_EVENT_TYPE = "purchase"
DEFAULT_QUANTITY = 1
MAX_QUANTITY = 2**53  # largest count a float64 holds exactly


def load_custom_shop(mapping: ColumnMapping) -> tuple[ShopTables, IngestReport]:
    """Load a shop's own events file (and optional items and users files).

    Each canonical column is read from the source column ``mapping`` names for it,
    or from a column of the same name when it is not mapped. Events need
    ``user_id``, ``item_id`` and ``timestamp``; without an ``event_type`` column
    every event is a purchase, without ``quantity`` every quantity is 1, and a
    missing price is allowed. Items and users absent from their files (or all of
    them, without files) are derived from the accepted events: an item's title,
    description and category are the most frequent on its event lines (where the
    events file has them), its price the median line price. An items file wins
    where it has a value.

    Args:
        mapping: paths, column maps and event-type values (``Settings.shop``).

    Returns:
        The canonical tables and the ingest report (loader ``"custom-shop"``) with
        the triage of every input file.

    Raises:
        ConfigError: no events file is configured, or the mapping names an unknown
            canonical column or event type.
        MalformedFileError: a file is missing, empty, unreadable or lacks a
            required (or explicitly mapped) column.
    """
    if mapping.events_path is None:
        raise ConfigError("shop.events_path is not set; point it at the events file")
    _check_mapping(mapping)
    if mapping.items_path is not None and _same_file(
        mapping.items_path, mapping.events_path
    ):
        # Every order line after an item's first would be a "duplicate item id".
        raise ConfigError(
            "shop.items_path is the events file; leave it out and map the item "
            "columns (title, description, category) under shop.events"
        )
    report = IngestReport(loader=LOADER_NAME)

    file_items: pd.DataFrame | None = None
    if mapping.items_path is not None:
        items_triage, file_items = _triage_items(
            mapping.items_path, mapping.items, mapping.item_id_pattern
        )
        report.add("items", items_triage)
    file_users: pd.DataFrame | None = None
    if mapping.users_path is not None:
        users_triage, file_users = _triage_users(mapping.users_path, mapping.users)
        report.add("users", users_triage)

    known_items = None if file_items is None else file_items["item_id"]
    events_triage, events = _triage_events(mapping, known_items)
    report.add("events", events_triage)

    events = events.sort_values("timestamp", kind="stable")
    tables = ShopTables(
        events=conform(events, "events"),
        items=conform(_items(events, file_items), "items"),
        users=conform(_users(events, file_users), "users"),
    )
    return tables, report


def _same_file(first: Path, second: Path) -> bool:
    return Path(first).resolve() == Path(second).resolve()


def _check_mapping(mapping: ColumnMapping) -> None:
    """Fail early on typos in the config rather than silently ignoring a column."""
    for section, canonical in (
        ("events", EVENT_SOURCE_COLUMNS),
        ("items", ITEM_COLUMNS),
        ("users", USER_COLUMNS),
    ):
        unknown = sorted(set(getattr(mapping, section)) - set(canonical))
        if unknown:
            raise ConfigError(
                f"shop.{section} maps unknown canonical columns {unknown}; "
                f"expected some of {list(canonical)}"
            )
    bad_targets = sorted(
        {v for v in mapping.event_type_values.values() if v not in EVENT_TYPES}
    )
    if bad_targets:
        raise ConfigError(
            f"shop.event_type_values maps to {bad_targets}; "
            f"event types must be one of {list(EVENT_TYPES)}"
        )


def _read(
    path: Path,
    columns: Mapping[str, str],
    canonical: Mapping[str, str],
    required: tuple[str, ...],
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read ``path`` and resolve each canonical column to a source column.

    Returns:
        The raw frame and ``canonical -> source`` for the columns available.
    """
    # A column the user mapped explicitly is expected to exist: a typo in the config
    # must not quietly turn into "every quantity is 1".
    needed = [columns.get(name, name) for name in required]
    needed += [source for name, source in columns.items() if name not in required]
    raw = read_table(path, list(dict.fromkeys(needed)))
    resolved = {
        name: columns.get(name, name)
        for name in canonical
        if columns.get(name, name) in raw.columns
    }
    return raw, resolved


def _as_id(values: pd.Series) -> pd.Series:
    """IDs as stripped strings; numeric ids lose the ``.0`` that floats add."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        # Integer-valued numbers render as "17850"; other numbers keep their text.
        return as_integer_id(values).fillna(as_text(values))
    return as_text(values)


def _optional_price(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Parse a price column where an empty cell means "no price".

    Returns:
        The prices (NaN where none) and a mask of cells that hold text that is
        not a finite number.
    """
    given = as_text(values).notna().to_numpy()
    price = as_number(values)
    unparseable = given & ~np.isfinite(price.to_numpy())
    return price.where(~unparseable), unparseable


def _triage_events(
    mapping: ColumnMapping, known_items: pd.Series | None
) -> tuple[RowTriage, pd.DataFrame]:
    """Triage the events file.

    Args:
        mapping: the shop's column mapping (its events path is set).
        known_items: accepted ids of the items file, or None without one.

    Returns:
        The triage and the accepted events with canonical columns.
    """
    assert mapping.events_path is not None  # checked by the caller
    path = Path(mapping.events_path)
    raw, source = _read(path, mapping.events, EVENT_SOURCE_COLUMNS, EVENT_REQUIRED)
    triage = RowTriage(path.name, raw)
    frame = triage.frame
    n = len(frame)
    user_id = _as_id(frame[source["user_id"]])
    item_id = _as_id(frame[source["item_id"]])
    timestamp = as_timestamp(frame[source["timestamp"]], mapping.timestamp_format)
    if "event_type" in source:
        raw_type = as_text(frame[source["event_type"]])
        translated = raw_type.map(mapping.event_type_values).astype("string")
        canonical = raw_type.where(raw_type.isin(EVENT_TYPES))
        event_type = translated.fillna(canonical)
    else:
        event_type = pd.Series(DEFAULT_EVENT_TYPE, index=frame.index, dtype="string")
    if "quantity" in source:
        # An empty quantity cell (typical for views) means the default of one.
        quantity_text = as_text(frame[source["quantity"]])
        quantity = as_number(frame[source["quantity"]]).where(
            quantity_text.notna(), float(DEFAULT_QUANTITY)
        )
    else:
        quantity = pd.Series(float(DEFAULT_QUANTITY), index=frame.index)
    if "price" in source:
        price, price_unparseable = _optional_price(frame[source["price"]])
    else:
        price = pd.Series(np.nan, index=frame.index, dtype="float64")
        price_unparseable = np.zeros(n, dtype=bool)

    # A quantity must be a whole number that fits int64 exactly ("1.5", "1e30" and
    # "two" alike are not a count of units).
    quantity_values = np.nan_to_num(quantity.to_numpy(), nan=0.5)
    whole = (quantity_values == np.floor(quantity_values)) & (
        np.abs(quantity_values) < MAX_QUANTITY
    )
    triage.reject(user_id.isna(), "missing user")
    triage.reject(item_id.isna(), "missing item")
    triage.reject(event_type.isna(), "unknown event type")
    triage.reject(timestamp.isna(), "unparseable timestamp")
    triage.reject(~whole, "unparseable quantity")
    triage.reject(quantity <= 0, "non-positive quantity")
    triage.reject(price_unparseable, "unparseable price")
    triage.reject(price <= 0, "non-positive price")
    triage.reject(_non_product(item_id, mapping.item_id_pattern), "non-product code")
    if known_items is not None:
        # Only accepted catalogue rows count: an event must not point at an item
        # the items file itself had to quarantine.
        triage.reject(~item_id.isin(known_items).fillna(False), "unknown item")
    # Only an exact repeat of a whole line is a double export: two lines of one
    # order with the same item and time but other quantities are two real lines.
    # Duplicates are judged among accepted rows only, so a bad first copy does not
    # get a good second copy thrown out with it.
    triage.reject(_repeats(_line_text(frame), triage.accepted_mask), "duplicate")

    ok = triage.accepted_mask
    events = pd.DataFrame(
        {
            "user_id": user_id[ok],
            "item_id": item_id[ok],
            "event_type": event_type[ok],
            "timestamp": timestamp[ok],
            "quantity": quantity[ok].astype("int64"),
            "price": price[ok].astype("float64"),
        }
    )
    for name in ITEM_TEXT:
        events[name] = _optional_text(frame, source, name, ok)
    return triage, events


def _triage_items(
    path: Path, columns: Mapping[str, str], item_id_pattern: str | None
) -> tuple[RowTriage, pd.DataFrame]:
    """Triage the items file; rows need an id, and the first row of an id wins.

    Returns:
        The triage and the accepted items (first_seen NaT where the file has none).
    """
    raw, source = _read(Path(path), columns, ITEM_COLUMNS, ("item_id",))
    triage = RowTriage(Path(path).name, raw)
    frame = triage.frame
    item_id = _as_id(frame[source["item_id"]])
    if "price" in source:
        price, price_unparseable = _optional_price(frame[source["price"]])
    else:
        price = pd.Series(np.nan, index=frame.index, dtype="float64")
        price_unparseable = np.zeros(len(frame), dtype=bool)

    triage.reject(item_id.isna(), "missing item id")
    triage.reject(_non_product(item_id, item_id_pattern), "non-product code")
    triage.reject(_repeats(item_id, triage.accepted_mask), "duplicate item id")
    triage.reject(price_unparseable, "unparseable price")
    triage.reject(price <= 0, "non-positive price")

    ok = triage.accepted_mask
    items = pd.DataFrame({"item_id": item_id[ok], "price": price[ok]})
    for name in ("title", "description", "category"):
        items[name] = _optional_text(frame, source, name, ok)
    items["first_seen"] = _first_seen(frame, source, ok)
    return triage, items.reset_index(drop=True)


def _triage_users(
    path: Path, columns: Mapping[str, str]
) -> tuple[RowTriage, pd.DataFrame]:
    """Triage the users file; rows need an id, and the first row of an id wins.

    Returns:
        The triage and the accepted users (first_seen NaT where the file has none).
    """
    raw, source = _read(Path(path), columns, USER_COLUMNS, ("user_id",))
    triage = RowTriage(Path(path).name, raw)
    frame = triage.frame
    user_id = _as_id(frame[source["user_id"]])

    triage.reject(user_id.isna(), "missing user id")
    triage.reject(_repeats(user_id, triage.accepted_mask), "duplicate user id")

    ok = triage.accepted_mask
    users = pd.DataFrame({"user_id": user_id[ok]})
    users["country"] = _optional_text(frame, source, "country", ok)
    users["first_seen"] = _first_seen(frame, source, ok)
    return triage, users.reset_index(drop=True)


def _repeats(ids: pd.Series | pd.DataFrame, ok: np.ndarray) -> np.ndarray:
    """Rows that repeat an earlier still-accepted row (the first one is kept)."""
    repeat = np.zeros(len(ids), dtype=bool)
    repeat[np.flatnonzero(ok)] = ids[ok].duplicated(keep="first").to_numpy()
    return repeat


def _line_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every source column as stripped text, so a repeat is judged as exported."""
    return frame.astype("string").apply(lambda column: column.str.strip())


def _non_product(item_id: pd.Series, pattern: str | None) -> np.ndarray:
    """Ids that do not match the shop's product-code pattern (none without one)."""
    if pattern is None:
        return np.zeros(len(item_id), dtype=bool)
    return ~np.asarray(item_id.str.match(pattern).fillna(False), dtype=bool)


def _optional_text(
    frame: pd.DataFrame, source: Mapping[str, str], name: str, ok: np.ndarray
) -> pd.Series:
    """Accepted rows of an optional text column; all ``<NA>`` when the file lacks it."""
    if name not in source:
        return pd.Series(pd.NA, index=frame.index[ok], dtype="string")
    return as_text(frame[source[name]])[ok]


def _first_seen(
    frame: pd.DataFrame, source: Mapping[str, str], ok: np.ndarray
) -> pd.Series:
    """The file's first-seen date where it has a parseable one, else NaT."""
    if "first_seen" not in source:
        return pd.Series(pd.NaT, index=frame.index[ok], dtype="datetime64[ns]")
    return as_timestamp(frame[source["first_seen"]])[ok]


def _items(events: pd.DataFrame, file_items: pd.DataFrame | None) -> pd.DataFrame:
    """Catalogue rows: the items file (gaps filled from events) or events alone."""
    grouped = events.groupby("item_id", sort=True)
    from_events = pd.DataFrame(
        {"price": grouped["price"].median(), "first_seen": grouped["timestamp"].min()}
    )
    for name in ITEM_TEXT:
        # As the Online Retail loader does: products get renamed now and then, and
        # the most frequent wording on the order lines is the item's.
        from_events[name] = most_frequent(events["item_id"], events[name]).astype(
            "string"
        )
    if file_items is None:
        return from_events.rename_axis("item_id").reset_index()
    items = file_items.copy()
    by_item = from_events.reindex(items["item_id"].to_numpy())
    # The file wins; events fill a missing price, date or text. Catalogue items
    # nobody interacted with keep NaN/NaT, which the canonical schema allows.
    for name in ("price", "first_seen", *ITEM_TEXT):
        items[name] = items[name].fillna(
            pd.Series(by_item[name].to_numpy(), index=items.index)
        )
    return items


def _users(events: pd.DataFrame, file_users: pd.DataFrame | None) -> pd.DataFrame:
    """User rows: the users file plus every other user seen in the events."""
    first_event = events.groupby("user_id", sort=True)["timestamp"].min()
    derived = first_event.rename("first_seen").rename_axis("user_id").reset_index()
    derived["country"] = pd.Series(pd.NA, index=derived.index, dtype="string")
    if file_users is None:
        return derived
    users = file_users.copy()
    users["first_seen"] = users["first_seen"].fillna(
        pd.Series(
            first_event.reindex(users["user_id"].to_numpy()).to_numpy(),
            index=users.index,
        )
    )
    # The users file is optional metadata, so an event user missing from it is
    # still a user (with unknown country), not an error.
    extra = derived[~derived["user_id"].isin(users["user_id"])]
    return pd.concat([users, extra], ignore_index=True)
