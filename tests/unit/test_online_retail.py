"""Tests of the Online Retail loader: quarantine reasons, canonical tables, formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from interest_graph.data.online_retail import COLUMNS, load_online_retail
from interest_graph.data.quarantine import IngestReport, RowTriage
from interest_graph.errors import MalformedFileError
from interest_graph.schema import EVENT_COLUMNS, ITEM_COLUMNS, USER_COLUMNS

UK, FR = "United Kingdom", "France"
HEART, HEART_2 = "WHITE HANGING HEART", "WHITE HEART HANGING"
LANTERN, BOXES = "WHITE METAL LANTERN", "SET 7 BABUSHKA NESTING BOXES"

# InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID,
# Country -- all text, as the CSV reader hands them over.
GOOD_ROWS = [
    ("536365", "85123A", HEART, "6", "12/1/2010 8:26", "2.55", "17850.0", UK),
    ("536365", "71053", LANTERN, "6", "12/1/2010 8:26", "3.39", "17850", UK),
    ("536366", "85123A", "nan", "2", "2010-12-01 09:00:00", "2.65", "13047", UK),
    ("536367", "85123A", HEART_2, "3", "2010-12-02 10:00:00", "2.55", "13047", FR),
    ("536368", "85123A", HEART, "1", "2010-12-03 11:00:00", "2.55", "13047", FR),
    ("536369", "85123A", "nan", "4", "2010-12-03 12:00:00", "2.55", "12583", FR),
    ("536370", "85123A", "", "5", "2010-12-04 12:00:00", "2.55", "12583", FR),
    ("536371", "22752", BOXES, "2", "2010-12-05 08:00:00", "7.65", "12583", FR),
    ("536372", "84029G", "nan", "1", "2010-12-05 09:00:00", "3.39", "12583", "nan"),
]
BAD_ROWS = [
    (GOOD_ROWS[0], "duplicate"),
    (
        ("536380", "85123A", HEART, "6", "not a date", "2.55", "17850", UK),
        "unparseable timestamp",
    ),
    # Both a bad timestamp and no customer: the first rule wins.
    (
        ("536381", "85123A", HEART, "6", "garbage", "2.55", "", UK),
        "unparseable timestamp",
    ),
    (
        ("536382", "85123A", HEART, "6", "2010-12-06 08:00", "2.55", "", UK),
        "missing user",
    ),
    (
        ("536383", "85123A", HEART, "6", "2010-12-06 08:00", "2.55", "17850.5", UK),
        "user id not an integer",
    ),
    # Cancelled and a negative quantity: cancelled comes first.
    (
        ("C536379", "85123A", HEART, "-1", "2010-12-06 09:00", "2.55", "17850", UK),
        "cancelled invoice",
    ),
    (
        ("C536384", "22752", BOXES, "2", "2010-12-06 09:00", "7.65", "12583", FR),
        "cancelled invoice",
    ),
    (
        ("536385", "POST", "POSTAGE", "1", "2010-12-06 10:00", "18.0", "12583", FR),
        "non-product code",
    ),
    (
        ("536386", "1234", "SHORT CODE", "1", "2010-12-06 10:00", "1.0", "12583", FR),
        "non-product code",
    ),
    (
        ("536387", "85123A", HEART, "six", "2010-12-06 11:00", "2.55", "17850", UK),
        "unparseable quantity",
    ),
    (
        ("536388", "85123A", HEART, "0", "2010-12-06 11:00", "2.55", "17850", UK),
        "non-positive quantity",
    ),
    (
        ("536389", "85123A", HEART, "6", "2010-12-06 12:00", "abc", "17850", UK),
        "unparseable price",
    ),
    (
        ("536390", "85123A", HEART, "6", "2010-12-06 12:00", "0", "17850", UK),
        "non-positive price",
    ),
]
EXPECTED_REASONS = {
    "cancelled invoice": 2,
    "duplicate": 1,
    "missing user": 1,
    "non-positive price": 1,
    "non-positive quantity": 1,
    "non-product code": 2,
    "unparseable price": 1,
    "unparseable quantity": 1,
    "unparseable timestamp": 2,
    "user id not an integer": 1,
}


def _raw_frame() -> pd.DataFrame:
    rows = GOOD_ROWS + [row for row, _ in BAD_ROWS]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _write_csv(tmp_path: Path) -> Path:
    path = tmp_path / "retail.csv"
    _raw_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def loaded(tmp_path: Path):
    return load_online_retail(_write_csv(tmp_path))


def test_every_reason_is_counted(loaded) -> None:
    _, report = loaded
    summary = report.as_dict()
    events = summary["files"]["events"]
    assert summary["loader"] == "online-retail"
    assert events["source"] == "retail.csv"
    assert events["rows_in"] == len(GOOD_ROWS) + len(BAD_ROWS) == 22
    assert events["accepted"] == len(GOOD_ROWS) == 9
    assert events["quarantined"] == 13
    assert events["quarantined_by_reason"] == EXPECTED_REASONS
    assert list(events["quarantined_by_reason"]) == sorted(EXPECTED_REASONS)
    assert events["rows_in"] == events["accepted"] + events["quarantined"]
    assert summary["balanced"] is True
    assert summary["totals"] == {"rows_in": 22, "accepted": 9, "quarantined": 13}


def test_each_bad_row_keeps_its_first_reason(loaded) -> None:
    _, report = loaded
    quarantined = report.quarantine["events"]
    assert quarantined["source_row"].tolist() == list(range(9, 22))
    assert quarantined["quarantine_reason"].tolist() == [r for _, r in BAD_ROWS]
    assert (quarantined["source_file"] == "retail.csv").all()
    assert quarantined["InvoiceNo"].tolist() == [row[0] for row, _ in BAD_ROWS]


def test_accepted_events(loaded) -> None:
    tables, _ = loaded
    events = tables.events
    assert list(events.columns) == list(EVENT_COLUMNS)
    assert events.dtypes.astype(str).to_dict() == EVENT_COLUMNS
    # "17850.0" and "17850" are the same customer, written without the float tail.
    assert events["user_id"].tolist() == ["17850"] * 2 + ["13047"] * 3 + ["12583"] * 4
    assert events["item_id"].tolist() == [
        "85123A", "71053", "85123A", "85123A", "85123A", "85123A", "85123A",
        "22752", "84029G",
    ]  # fmt: skip
    assert (events["event_type"] == "purchase").all()
    assert events["quantity"].tolist() == [6, 6, 2, 3, 1, 4, 5, 2, 1]
    assert events["price"].tolist() == pytest.approx(
        [2.55, 3.39, 2.65, 2.55, 2.55, 2.55, 2.55, 7.65, 3.39]
    )
    # The UCI "12/1/2010 8:26" is month first: the first of December.
    assert events["timestamp"].iloc[0] == pd.Timestamp("2010-12-01 08:26")
    assert events["timestamp"].is_monotonic_increasing
    assert events["timestamp"].iloc[-1] == pd.Timestamp("2010-12-05 09:00")


def test_items_take_the_most_frequent_real_description(loaded) -> None:
    tables, _ = loaded
    items = tables.items.set_index("item_id")
    assert list(tables.items.columns) == list(ITEM_COLUMNS)
    assert items.index.tolist() == ["22752", "71053", "84029G", "85123A"]
    # 85123A: "nan"/"" three times, HEART twice, HEART_2 once -> HEART.
    assert items.loc["85123A", "title"] == HEART
    assert items.loc["71053", "title"] == LANTERN
    assert items.loc["22752", "title"] == BOXES
    assert pd.isna(items.loc["84029G", "title"])  # only "nan" descriptions
    assert items["description"].isna().all()
    assert items["category"].isna().all()
    assert items.loc["85123A", "price"] == pytest.approx(2.55)  # median
    assert items.loc["85123A", "first_seen"] == pd.Timestamp("2010-12-01 08:26")
    assert items.loc["22752", "first_seen"] == pd.Timestamp("2010-12-05 08:00")


def test_users_take_the_most_frequent_country(loaded) -> None:
    tables, _ = loaded
    users = tables.users.set_index("user_id")
    assert list(tables.users.columns) == list(USER_COLUMNS)
    assert users.index.tolist() == ["12583", "13047", "17850"]
    assert users["country"].to_dict() == {"12583": FR, "13047": FR, "17850": UK}
    assert users.loc["13047", "first_seen"] == pd.Timestamp("2010-12-01 09:00")
    assert users.loc["17850", "first_seen"] == pd.Timestamp("2010-12-01 08:26")


def _native_frame() -> pd.DataFrame:
    """A typed frame, as Parquet and Excel keep it (floats for CustomerID)."""
    return pd.DataFrame(
        {
            "InvoiceNo": ["536365", "536365", "536366", "536366", "C536367",
                          "536368", "536369", "536370", "536365"],
            "StockCode": ["85123A", "71053", "85123A", "POST", "85123A",
                          "22752", "71053", "85123A", "71053"],
            "Description": [HEART, LANTERN, HEART_2, "POSTAGE", HEART, BOXES,
                            None, HEART, LANTERN],
            "Quantity": [6, 6, 2, 1, -6, 2, 3, 0, 6],
            "InvoiceDate": pd.to_datetime(
                ["2010-12-01 08:26", "2010-12-01 08:26", "2010-12-01 09:00",
                 "2010-12-01 09:00", "2010-12-02 10:00", "2010-12-03 11:00",
                 "2010-12-04 12:00", "2010-12-05 12:00", "2010-12-01 08:26"]
            ),
            "UnitPrice": [2.55, 3.39, 2.65, 18.0, 2.55, 7.65, 3.39, 2.55, 3.39],
            "CustomerID": [17850.0, 17850.0, 13047.0, 13047.0, 17850.0, np.nan,
                           12583.0, 12583.0, 17850.0],
            "Country": [UK, UK, UK, UK, UK, FR, FR, FR, UK],
        }
    )  # fmt: skip


def test_csv_parquet_and_xlsx_give_identical_tables(tmp_path: Path) -> None:
    frame = _native_frame()
    paths = {
        "csv": tmp_path / "retail.csv",
        "parquet": tmp_path / "retail.parquet",
        "xlsx": tmp_path / "retail.xlsx",
    }
    frame.to_csv(paths["csv"], index=False)
    frame.to_parquet(paths["parquet"], index=False)
    frame.to_excel(paths["xlsx"], index=False, engine="openpyxl")
    loaded = {kind: load_online_retail(path) for kind, path in paths.items()}

    reference, report = loaded["csv"]
    counts = report.as_dict()["files"]["events"]
    assert counts["rows_in"] == 9
    assert counts["accepted"] == 4
    assert counts["quarantined_by_reason"] == {
        "cancelled invoice": 1,
        "duplicate": 1,
        "missing user": 1,
        "non-positive quantity": 1,
        "non-product code": 1,
    }
    # The last row repeats the second exactly.
    assert reference.events["user_id"].tolist() == [
        "17850", "17850", "13047", "12583",
    ]  # fmt: skip
    assert reference.events["item_id"].tolist() == [
        "85123A", "71053", "85123A", "71053",
    ]  # fmt: skip
    assert reference.items.set_index("item_id")["title"].to_dict() == {
        "71053": LANTERN,
        "85123A": HEART,  # tie HEART/HEART_2: the first seen wins
    }
    for kind in ("parquet", "xlsx"):
        tables, other_report = loaded[kind]
        for table in ("events", "items", "users"):
            pd.testing.assert_frame_equal(
                getattr(tables, table), getattr(reference, table), obj=kind
            )
        other = other_report.as_dict()["files"]["events"]
        assert other["source"] == f"retail.{kind}"
        assert {k: v for k, v in other.items() if k != "source"} == {
            k: v for k, v in counts.items() if k != "source"
        }


def test_report_write(tmp_path: Path, loaded) -> None:
    _, report = loaded
    data_dir = tmp_path / "data"
    path = report.write(data_dir)
    assert path == data_dir / "ingest_summary.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    assert summary == report.as_dict()
    assert summary["files"]["events"]["quarantined_by_reason"] == EXPECTED_REASONS

    rows = pd.read_parquet(data_dir / "quarantine" / "events.parquet")
    assert rows.columns.tolist() == [
        "source_file",
        "source_row",
        "quarantine_reason",
        *COLUMNS,
    ]
    assert len(rows) == 13
    assert rows["quarantine_reason"].value_counts().to_dict() == EXPECTED_REASONS
    assert set(rows["source_file"]) == {"retail.csv"}
    for column in COLUMNS:
        assert rows[column].map(lambda v: v is None or isinstance(v, str)).all()
    duplicate = rows[rows["quarantine_reason"] == "duplicate"].iloc[0]
    assert duplicate["source_row"] == 9
    assert duplicate["CustomerID"] == "17850.0"
    assert duplicate["InvoiceDate"] == "12/1/2010 8:26"


def test_report_write_typed_columns_as_text(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"id": [1, -2, 3], "when": pd.to_datetime(["2010-12-01 08:26"] * 3)}
    )
    triage = RowTriage("typed.parquet", frame)
    triage.reject(frame["id"] < 0, "negative id")
    report = IngestReport(loader="test")
    report.add("things", triage)
    report.write(tmp_path)
    rows = pd.read_parquet(tmp_path / "quarantine" / "things.parquet")
    assert rows.to_dict("list") == {
        "source_file": ["typed.parquet"],
        "source_row": [1],
        "quarantine_reason": ["negative id"],
        "id": ["-2"],
        "when": ["2010-12-01 08:26:00"],
    }
    summary = json.loads((tmp_path / "ingest_summary.json").read_text())
    assert summary["files"]["things"] == {
        "source": "typed.parquet",
        "rows_in": 3,
        "accepted": 2,
        "quarantined": 1,
        "quarantined_by_reason": {"negative id": 1},
    }


def test_missing_uci_columns(tmp_path: Path) -> None:
    path = tmp_path / "retail.csv"
    _raw_frame().drop(columns=["UnitPrice", "Country"]).to_csv(path, index=False)
    with pytest.raises(MalformedFileError) as caught:
        load_online_retail(path)
    assert caught.value.path == str(path)
    assert "missing columns ['UnitPrice', 'Country']" in caught.value.problem


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MalformedFileError, match="does not exist"):
        load_online_retail(tmp_path / "Online Retail.xlsx")


@pytest.mark.parametrize("suffix", [".parquet", ".xlsx"])
def test_text_columns_give_the_csv_result_in_every_format(
    tmp_path: Path, suffix: str
) -> None:
    reference, reference_report = load_online_retail(_write_csv(tmp_path))
    path = tmp_path / f"retail{suffix}"
    if suffix == ".parquet":
        _raw_frame().to_parquet(path, index=False)
    else:
        _raw_frame().to_excel(path, index=False, engine="openpyxl")
    tables, report = load_online_retail(path)
    for table in ("events", "items", "users"):
        pd.testing.assert_frame_equal(getattr(tables, table), getattr(reference, table))
    assert report.files["events"].quarantined == EXPECTED_REASONS
    assert report.files["events"].accepted == reference_report.files["events"].accepted


RELEASE_II_HEADER = [
    "Invoice",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "Price",
    "Customer ID",
    "Country",
]


def _write_release_ii_workbook(path: Path) -> None:
    """A small Online Retail II workbook: one sheet per year, as the UCI release."""
    from datetime import datetime

    from openpyxl import Workbook

    sheets = {
        "Year 2009-2010": [
            ("489434", "85048", "15CM CHRISTMAS GLASS BALL 20 LIGHTS", 12,
             datetime(2009, 12, 1, 7, 45), 6.95, 13085.0, UK),
            ("489434", "79323P", "PINK CHERRY LIGHTS", 12,
             datetime(2009, 12, 1, 7, 45), 6.75, 13085.0, UK),
            ("489435", "22350", "CAT BOWL", 12,
             datetime(2009, 12, 1, 7, 46), 2.55, None, UK),
            ("C489449", "22087", "PAPER BUNTING WHITE LACE", -12,
             datetime(2009, 12, 1, 10, 33), 2.95, 16321.0, "Australia"),
            ("489597", "POST", "POSTAGE", 1,
             datetime(2009, 12, 1, 14, 28), 18.0, 12533.0, "Germany"),
            ("A506401", "B", "Adjust bad debt", 1,
             datetime(2010, 4, 29, 13, 36), -53594.36, None, UK),
        ],
        "Year 2010-2011": [
            ("536365", "85048", "15CM CHRISTMAS GLASS BALL 20 LIGHTS", 6,
             datetime(2010, 12, 1, 8, 26), 6.95, 17850.0, UK),
            ("536365", "85048", "15CM CHRISTMAS GLASS BALL 20 LIGHTS", 6,
             datetime(2010, 12, 1, 8, 26), 6.95, 17850.0, UK),
            ("536366", "79323P", "PINK CHERRY LIGHTS", 2,
             datetime(2010, 12, 1, 9, 0), 6.75, 13085.0, FR),
        ],
    }  # fmt: skip
    workbook = Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        sheet.append(RELEASE_II_HEADER)
        for row in rows:
            sheet.append(list(row))
    workbook.save(path)


def test_online_retail_ii_workbook_loads_every_sheet(tmp_path: Path) -> None:
    path = tmp_path / "online_retail_II.xlsx"
    _write_release_ii_workbook(path)
    tables, report = load_online_retail(path)
    summary = report.as_dict()
    assert summary["balanced"]
    assert summary["files"]["events"]["rows_in"] == 9  # both sheets
    assert summary["files"]["events"]["accepted"] == 4
    assert summary["files"]["events"]["quarantined_by_reason"] == {
        "cancelled invoice": 1,
        "duplicate": 1,
        "missing user": 2,
        "non-product code": 1,
    }
    events = tables.events
    assert events["user_id"].tolist() == ["13085", "13085", "17850", "13085"]
    assert events["timestamp"].max() == pd.Timestamp("2010-12-01 09:00")
    assert tables.items.set_index("item_id")["title"].to_dict() == {
        "79323P": "PINK CHERRY LIGHTS",
        "85048": "15CM CHRISTMAS GLASS BALL 20 LIGHTS",
    }
    # Quarantined lines keep the release's own column names.
    assert "Customer ID" in report.quarantine["events"].columns


def test_online_retail_ii_csv_by_its_column_names(tmp_path: Path) -> None:
    path = tmp_path / "online_retail_II.csv"
    _raw_frame().set_axis(RELEASE_II_HEADER, axis=1).to_csv(path, index=False)
    tables, report = load_online_retail(path)
    reference, reference_report = load_online_retail(_write_csv(tmp_path))
    pd.testing.assert_frame_equal(tables.events, reference.events)
    assert report.files["events"].quarantined == EXPECTED_REASONS


def test_neither_release_names_both_column_sets(tmp_path: Path) -> None:
    path = tmp_path / "retail.csv"
    _raw_frame().rename(columns={"CustomerID": "Customer"}).to_csv(path, index=False)
    with pytest.raises(MalformedFileError) as caught:
        load_online_retail(path)
    assert "['CustomerID'] (Online Retail)" in caught.value.problem
    assert "'Invoice'" in caught.value.problem  # what Online Retail II would need


def test_sheets_with_different_columns_are_malformed(tmp_path: Path) -> None:
    path = tmp_path / "two.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        _raw_frame().to_excel(writer, sheet_name="a", index=False)
        _raw_frame().drop(columns=["Country"]).to_excel(
            writer, sheet_name="b", index=False
        )
    with pytest.raises(MalformedFileError, match="sheet 'b' has columns"):
        load_online_retail(path)
