"""Tests of the "bring your own shop" loader: triage, file formats, derived tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from interest_graph.config import ColumnMapping, load_settings, settings_from_values
from interest_graph.data.custom_shop import load_custom_shop
from interest_graph.errors import ConfigError, MalformedFileError
from interest_graph.schema import EVENT_TYPES, TABLE_COLUMNS, conform

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "custom_shop"
EXAMPLE_CONFIG = REPO / "configs" / "custom_shop.example.yaml"

EVENT_REASONS = {
    "missing user": 1,
    "missing item": 1,
    "unknown event type": 1,
    "unparseable timestamp": 1,
    "unparseable quantity": 1,
    "non-positive quantity": 1,
    "unparseable price": 1,
    "non-positive price": 1,
    "unknown item": 2,
    "duplicate": 1,
}


def _example_mapping(**update: Any) -> ColumnMapping:
    """The example config, its paths pointed at the fixtures wherever tests run."""
    shop = load_settings(EXAMPLE_CONFIG).shop
    paths = {
        "events_path": FIXTURES / "events.csv",
        "items_path": FIXTURES / "items.csv",
        "users_path": FIXTURES / "users.csv",
    }
    return shop.model_copy(update={**paths, **update})


def _events_mapping(events_path: Path, **update: Any) -> ColumnMapping:
    """The example's events mapping for ``events_path`` alone (no items or users)."""
    return _example_mapping(
        events_path=events_path, items_path=None, users_path=None, **update
    )


def _reasons(report: Any, table: str) -> pd.Series:
    return report.quarantine[table].set_index("source_row")["quarantine_reason"]


def test_example_config_paths_point_at_the_fixtures() -> None:
    shop = load_settings(EXAMPLE_CONFIG).shop
    for path in (shop.events_path, shop.items_path, shop.users_path):
        assert path is not None
        assert (REPO / path).is_file()


def test_each_bad_event_row_gets_its_reason() -> None:
    _, report = load_custom_shop(_example_mapping())
    events = report.files["events"]
    assert events.source == "events.csv"
    assert events.quarantined == EVENT_REASONS
    assert events.rows_in == 23
    assert events.accepted == 12
    reasons = _reasons(report, "events")
    # Row 12 lacks a user and has a bad timestamp: the first rule wins.
    assert reasons[12] == "missing user"
    # SKU-BAD is in items.csv, but quarantined there, so it is not a known item.
    assert reasons[21] == "unknown item"
    assert reasons[22] == "duplicate"


def test_items_and_users_rows_get_their_reasons() -> None:
    _, report = load_custom_shop(_example_mapping())
    assert report.files["items"].quarantined == {
        "missing item id": 1,
        "duplicate item id": 1,
        "non-positive price": 1,
    }
    assert report.files["users"].quarantined == {
        "missing user id": 1,
        "duplicate user id": 1,
    }
    assert report.files["items"].source == "items.csv"
    assert report.files["users"].source == "users.csv"


def test_counts_add_up_per_file() -> None:
    _, report = load_custom_shop(_example_mapping())
    assert report.loader == "custom-shop"
    assert set(report.files) == {"events", "items", "users"}
    for name, summary in report.files.items():
        assert summary.rows_in == summary.accepted + summary.quarantined_total, name
        assert len(report.quarantine[name]) == summary.quarantined_total
    assert report.as_dict()["balanced"]


def test_output_is_canonical() -> None:
    tables, _ = load_custom_shop(_example_mapping())
    for table in TABLE_COLUMNS:
        frame = getattr(tables, table)
        pd.testing.assert_frame_equal(frame, conform(frame, table))
    events = tables.events
    assert events["timestamp"].is_monotonic_increasing
    assert set(events["event_type"]) <= set(EVENT_TYPES)
    assert (events["quantity"] > 0).all()
    assert not events.duplicated(
        ["user_id", "item_id", "event_type", "timestamp"]
    ).any()
    # The whitespace around " SKU-2 " is not part of the id.
    assert set(events["item_id"]) <= set(tables.items["item_id"])
    assert set(events["user_id"]) <= set(tables.users["user_id"])


def test_event_type_mapping_and_pass_through() -> None:
    tables, _ = load_custom_shop(_example_mapping())
    counts = tables.events["event_type"].value_counts().to_dict()
    # Five page_view rows plus one canonical "view" that passes through unchanged.
    assert counts == {"view": 6, "cart": 2, "purchase": 4}


def test_missing_quantity_and_price_cells_default() -> None:
    tables, _ = load_custom_shop(_example_mapping())
    views = tables.events[tables.events["event_type"] == "view"]
    assert (views["quantity"] == 1).all()
    assert views["price"].isna().all()


def test_items_file_fills_gaps_from_events() -> None:
    tables, _ = load_custom_shop(_example_mapping())
    items = tables.items.set_index("item_id")
    assert list(items.index) == ["SKU-1", "SKU-2", "SKU-3", "SKU-4", "SKU-5", "SKU-6"]
    assert items.loc["SKU-2", "title"] == "Coffee beans"  # the first listing wins
    assert items.loc["SKU-1", "description"] == "Breathable, relaxed fit"
    assert pd.isna(items.loc["SKU-5", "title"])  # empty text is kept, as <NA>
    assert pd.isna(items.loc["SKU-4", "category"])
    assert items.loc["SKU-4", "price"] == pytest.approx(3.99)
    assert items.loc["SKU-1", "first_seen"] == pd.Timestamp("2026-01-05 09:00")
    # A catalogue item nobody interacted with keeps its price and has no first event.
    assert items.loc["SKU-6", "price"] == pytest.approx(15.0)
    assert pd.isna(items.loc["SKU-6", "first_seen"])


def test_users_file_plus_users_seen_only_in_events() -> None:
    tables, _ = load_custom_shop(_example_mapping())
    users = tables.users.set_index("user_id")
    assert list(users.index) == ["C1", "C2", "C3", "C4", "C5"]
    assert users.loc["C1", "country"] == "United Kingdom"
    assert users.loc["C1", "first_seen"] == pd.Timestamp("2025-12-01")
    assert pd.isna(users.loc["C3", "country"])
    # C4 has no sign-up date and C5 is not in users.csv: their first event counts.
    assert users.loc["C4", "first_seen"] == pd.Timestamp("2026-01-07 12:00")
    assert pd.isna(users.loc["C5", "country"])
    assert users.loc["C5", "first_seen"] == pd.Timestamp("2026-01-07 13:00")


def test_no_items_file_derives_items_from_events() -> None:
    tables, report = load_custom_shop(_events_mapping(FIXTURES / "events.csv"))
    assert set(report.files) == {"events"}
    # Without a catalogue, SKU-999 and SKU-BAD are ordinary items.
    assert "unknown item" not in report.files["events"].quarantined
    items = tables.items.set_index("item_id")
    assert set(items.index) == set(tables.events["item_id"])
    assert {"SKU-999", "SKU-BAD"} <= set(items.index)
    assert items[["title", "description", "category"]].isna().all().all()
    # SKU-1 sold at 12.50, 12.50 and 12.00: the median event price.
    assert items.loc["SKU-1", "price"] == pytest.approx(12.5)
    assert items.loc["SKU-1", "first_seen"] == pd.Timestamp("2026-01-05 09:00")
    assert np.isnan(items.loc["SKU-3", "price"])  # only ever viewed, never priced
    users = tables.users.set_index("user_id")
    assert users["country"].isna().all()
    assert users.loc["C1", "first_seen"] == pd.Timestamp("2026-01-05 09:00")


def test_parquet_input_matches_csv(tmp_path: Path) -> None:
    paths = {}
    for name in ("events", "items", "users"):
        frame = pd.read_csv(FIXTURES / f"{name}.csv", dtype=str, keep_default_na=False)
        paths[f"{name}_path"] = tmp_path / f"{name}.parquet"
        frame.to_parquet(paths[f"{name}_path"], index=False)
    from_csv, csv_report = load_custom_shop(_example_mapping())
    from_parquet, parquet_report = load_custom_shop(_example_mapping(**paths))
    for table in TABLE_COLUMNS:
        pd.testing.assert_frame_equal(
            getattr(from_csv, table), getattr(from_parquet, table)
        )
        assert (
            csv_report.files[table].quarantined
            == parquet_report.files[table].quarantined
        )
    assert parquet_report.files["events"].source == "events.parquet"


def test_numeric_ids_and_native_parquet_types(tmp_path: Path) -> None:
    events = pd.DataFrame(
        {
            "user_id": [17850.0, 17850.0, np.nan, 13047.0],
            "item_id": [85123, 71053, 85123, 71053],
            "timestamp": pd.to_datetime(
                [
                    "2026-01-01 08:00",
                    "2026-01-01 09:00",
                    "2026-01-02 00:00",
                    "2026-01-03 00:00",
                ]
            ),
        }
    )
    path = tmp_path / "events.parquet"
    events.to_parquet(path, index=False)
    tables, report = load_custom_shop(ColumnMapping(events_path=path))
    assert report.files["events"].quarantined == {"missing user": 1}
    assert list(tables.events["user_id"]) == ["17850", "17850", "13047"]
    assert list(tables.events["item_id"]) == ["85123", "71053", "71053"]
    # No event_type, quantity or price columns: purchases of one unit, no price.
    assert (tables.events["event_type"] == "purchase").all()
    assert (tables.events["quantity"] == 1).all()
    assert tables.events["price"].isna().all()


def test_unmapped_columns_default_to_their_canonical_names(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,event_type,timestamp,quantity,price\n"
        "u1,i1,view,2026-01-01T10:00:00,,\n"
        "u1,i1,cart,2026-01-01T10:01:00,2,3.5\n"
        "u1,i1,click,2026-01-01T10:02:00,1,3.5\n"
        "u1,i1,purchase,2026-01-01T10:03:00,1.5,3.5\n",
        encoding="utf-8",
    )
    tables, report = load_custom_shop(ColumnMapping(events_path=path))
    assert report.files["events"].quarantined == {
        "unknown event type": 1,
        "unparseable quantity": 1,
    }
    assert list(tables.events["event_type"]) == ["view", "cart"]
    assert list(tables.events["quantity"]) == [1, 2]


def test_missing_mapped_column_names_column_and_file(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("customer,sku,action,when\nC1,SKU-1,order,2026-01-01\n")
    with pytest.raises(MalformedFileError, match="ts") as caught:
        load_custom_shop(_events_mapping(path))
    assert "orders.csv" in str(caught.value)
    assert "'ts'" in str(caught.value)


def test_mapped_optional_column_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("customer,sku,action,ts\nC1,SKU-1,order,2026-01-01 10:00:00\n")
    with pytest.raises(MalformedFileError, match="qty"):
        load_custom_shop(_events_mapping(path))


def test_missing_items_column_names_items_file(tmp_path: Path) -> None:
    items = tmp_path / "catalogue.csv"
    items.write_text("id,name\nSKU-1,Shirt\n")
    with pytest.raises(MalformedFileError, match="sku") as caught:
        load_custom_shop(_example_mapping(items_path=items))
    assert "catalogue.csv" in str(caught.value)


def test_empty_file_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(b"")
    with pytest.raises(MalformedFileError, match="empty"):
        load_custom_shop(_events_mapping(path))


def test_header_only_file_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("customer,sku,action,ts,qty,unit_price\n")
    with pytest.raises(MalformedFileError, match="no rows"):
        load_custom_shop(_events_mapping(path))


def test_non_utf8_csv_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(
        "customer,sku,action,ts,qty,unit_price\n"
        "C1,CAFÉ-1,order,2026-01-01 10:00:00,1,2.5\n".encode("latin-1")
    )
    with pytest.raises(MalformedFileError, match="UTF-8") as caught:
        load_custom_shop(_events_mapping(path))
    assert "events.csv" in str(caught.value)


def test_truncated_parquet_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    path.write_bytes(b"PAR1\x00\x01garbage")
    with pytest.raises(MalformedFileError, match="events.parquet"):
        load_custom_shop(_events_mapping(path))


def test_missing_events_file_is_malformed(tmp_path: Path) -> None:
    with pytest.raises(MalformedFileError, match="does not exist"):
        load_custom_shop(_events_mapping(tmp_path / "nope.csv"))


def test_config_mistakes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="events_path"):
        load_custom_shop(ColumnMapping())
    with pytest.raises(ConfigError, match="userid"):
        load_custom_shop(_example_mapping(events={"userid": "customer"}))
    with pytest.raises(ConfigError, match="buy"):
        load_custom_shop(_example_mapping(event_type_values={"order": "buy"}))


def test_written_tables_round_trip(tmp_path: Path) -> None:
    tables, report = load_custom_shop(_example_mapping())
    tables.write(tmp_path)
    report.write(tmp_path)
    again = type(tables).read(tmp_path)
    for table in TABLE_COLUMNS:
        pd.testing.assert_frame_equal(getattr(tables, table), getattr(again, table))
    assert (tmp_path / "quarantine" / "events.parquet").is_file()


ORDERS_CONFIG = REPO / "configs" / "custom_shop.orders.example.yaml"


def _orders_mapping(**update: Any) -> ColumnMapping:
    """The order-lines example config, its path pointed at the fixture."""
    shop = load_settings(ORDERS_CONFIG).shop
    assert shop.events_path is not None
    return shop.model_copy(update={"events_path": REPO / shop.events_path, **update})


def test_order_lines_export_loads_without_an_items_file() -> None:
    tables, report = load_custom_shop(_orders_mapping())
    summary = report.as_dict()
    assert summary["balanced"]
    assert set(report.files) == {"events"}
    events = report.files["events"]
    assert (events.rows_in, events.accepted) == (14, 10)
    assert events.quarantined == {
        "duplicate": 1,
        "missing user": 1,
        "non-positive quantity": 1,
        "non-product code": 1,
    }
    items = tables.items.set_index("item_id")
    assert items["title"].to_dict() == {
        "21523": "DOORMAT FANCY FONT HOME SWEET HOME",
        "22350": "CAT BOWL",  # the trailing blank is not part of the title
        "79323P": "PINK CHERRY LIGHTS",
        "84879": "ASSORTED COLOUR BIRD ORNAMENT",  # an empty cell is no title
        "85048": "15CM CHRISTMAS GLASS BALL 20 LIGHTS",  # the most frequent
    }
    assert items.loc["85048", "price"] == pytest.approx(6.95)
    assert items["description"].isna().all()


def test_same_user_item_time_with_other_quantities_are_kept() -> None:
    tables, report = load_custom_shop(_orders_mapping())
    lines = tables.events[
        (tables.events["user_id"] == "13085") & (tables.events["item_id"] == "79323P")
    ]
    # Two lines of one invoice (12 and 6 units) are both sales; only the exact
    # repeat of the 6-unit line is a duplicate.
    assert sorted(lines["quantity"]) == [6, 12]
    assert _reasons(report, "events")[3] == "duplicate"


def test_item_id_pattern_quarantines_non_product_codes(tmp_path: Path) -> None:
    _, report = load_custom_shop(_orders_mapping(item_id_pattern=None))
    assert "non-product code" not in report.files["events"].quarantined
    items = tmp_path / "items.csv"
    items.write_text("sku,name\n85048,BALL\nPOST,POSTAGE\n", encoding="utf-8")
    _, report = load_custom_shop(
        _orders_mapping(items_path=items, items={"item_id": "sku", "title": "name"})
    )
    assert report.files["items"].quarantined == {"non-product code": 1}


def test_items_file_wins_over_titles_on_event_lines(tmp_path: Path) -> None:
    items = tmp_path / "items.csv"
    items.write_text(
        "sku,name,dept\n85048,Glass ball,Christmas\n79323P,,Lights\n"
        "22350,,\n21523,,\n84879,,\n",
        encoding="utf-8",
    )
    tables, _ = load_custom_shop(
        _orders_mapping(
            items_path=items,
            items={"item_id": "sku", "title": "name", "category": "dept"},
        )
    )
    catalogue = tables.items.set_index("item_id")
    assert catalogue.loc["85048", "title"] == "Glass ball"
    # Where the items file has no title, the order lines give it.
    assert catalogue.loc["79323P", "title"] == "PINK CHERRY LIGHTS"
    assert catalogue.loc["79323P", "category"] == "Lights"


def test_a_bad_item_id_pattern_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="item_id_pattern"):
        settings_from_values({"shop": {"item_id_pattern": "(unclosed"}})


def test_items_path_at_the_events_file_says_what_to_map() -> None:
    mapping = _orders_mapping()
    with pytest.raises(ConfigError, match="map the item columns"):
        load_custom_shop(mapping.model_copy(update={"items_path": mapping.events_path}))
