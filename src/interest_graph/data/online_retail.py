"""Loader for the UCI Online Retail files (Chen 2015): invoice lines become purchases.

Both releases load by their own column names: Online Retail (dataset 352, one
sheet) and Online Retail II (dataset 502, one sheet per year). Cleaning follows
``online-retail-temporal`` in EVALUATION.md; every removed line is quarantined with
its reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from interest_graph.data.columns import (
    as_integer_id,
    as_number,
    as_text,
    as_timestamp,
    most_frequent,
)
from interest_graph.data.quarantine import IngestReport, RowTriage
from interest_graph.data.readers import read_table
from interest_graph.errors import MalformedFileError
from interest_graph.schema import ShopTables, conform

COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
# Online Retail II names three columns differently; the rest are the same.
RELEASE_II_COLUMNS = {
    "Invoice": "InvoiceNo",
    "Price": "UnitPrice",
    "Customer ID": "CustomerID",
}
PRODUCT_CODE = r"^\d{5}"


def load_online_retail(path: str | Path) -> tuple[ShopTables, IngestReport]:
    """Load an Online Retail or Online Retail II file (Parquet, CSV or the .xlsx).

    Every sheet of a workbook is read, in order (Online Retail II has one per year).
    Quarantined rows keep the file's own column names.

    Returns:
        The canonical tables (one ``purchase`` event per accepted invoice line) and
        the ingest report with the quarantined lines.

    Raises:
        MalformedFileError: the file cannot be read or has the columns of neither
            release.
    """
    raw = read_table(path, all_sheets=True)
    triage = RowTriage(Path(path).name, raw)
    frame = _uci_columns(Path(path), triage.frame)
    timestamp = as_timestamp(frame["InvoiceDate"])
    user_id = as_integer_id(frame["CustomerID"])
    invoice = as_text(frame["InvoiceNo"]).fillna("")
    stock_code = as_text(frame["StockCode"]).fillna("")
    quantity = as_number(frame["Quantity"])
    price = as_number(frame["UnitPrice"])

    triage.reject(timestamp.isna(), "unparseable timestamp")
    triage.reject(as_text(frame["CustomerID"]).isna(), "missing user")
    triage.reject(user_id.isna(), "user id not an integer")
    triage.reject(invoice.str.startswith("C"), "cancelled invoice")
    triage.reject(~stock_code.str.match(PRODUCT_CODE), "non-product code")
    triage.reject(quantity.isna(), "unparseable quantity")
    triage.reject(quantity <= 0, "non-positive quantity")
    triage.reject(quantity != np.floor(quantity), "quantity not a whole number")
    triage.reject(price.isna(), "unparseable price")
    triage.reject(price <= 0, "non-positive price")
    # An exact repeat of an earlier invoice line is a double export, not a second sale.
    triage.reject(frame.astype("string").duplicated(keep="first"), "duplicate")

    ok = triage.accepted_mask
    events = pd.DataFrame(
        {
            "user_id": user_id[ok],
            "item_id": stock_code[ok],
            "event_type": "purchase",
            "timestamp": timestamp[ok],
            "quantity": quantity[ok].astype("int64"),
            "price": price[ok],
        }
    )
    description = as_text(frame["Description"])[ok]
    country = as_text(frame["Country"])[ok]
    items = _items(events, description)
    users = _users(events, country)
    report = IngestReport(loader="online-retail")
    report.add("events", triage)
    tables = ShopTables(
        events=conform(events.sort_values("timestamp", kind="stable"), "events"),
        items=conform(items, "items"),
        users=conform(users, "users"),
    )
    return tables, report


def _uci_columns(path: Path, raw: pd.DataFrame) -> pd.DataFrame:
    """The raw rows under the first release's column names, whichever release."""
    columns = set(map(str, raw.columns))
    renamed = {new: old for old, new in RELEASE_II_COLUMNS.items()}
    release_ii = [renamed.get(c, c) for c in COLUMNS]
    if set(COLUMNS) <= columns:
        return raw
    if set(release_ii) <= columns:
        return raw.rename(columns=RELEASE_II_COLUMNS)
    missing = [c for c in COLUMNS if c not in columns]
    missing_ii = [c for c in release_ii if c not in columns]
    raise MalformedFileError(
        path,
        f"missing columns {missing} (Online Retail) or {missing_ii} "
        f"(Online Retail II); found {list(map(str, raw.columns))}",
    )


def _items(events: pd.DataFrame, description: pd.Series) -> pd.DataFrame:
    grouped = events.groupby("item_id", sort=True)
    items = pd.DataFrame(
        {"price": grouped["price"].median(), "first_seen": grouped["timestamp"].min()}
    )
    # The shop renames products now and then; the most frequent wording is the title.
    items["title"] = most_frequent(events["item_id"], description)
    items["description"] = pd.NA
    items["category"] = pd.NA
    return items.rename_axis("item_id").reset_index()


def _users(events: pd.DataFrame, country: pd.Series) -> pd.DataFrame:
    users = events.groupby("user_id", sort=True)["timestamp"].min().rename("first_seen")
    frame = users.to_frame()
    frame["country"] = most_frequent(events["user_id"], country)
    return frame.rename_axis("user_id").reset_index()


def product_code_mask(codes: pd.Series) -> np.ndarray:
    """True where a stock code names a product (five leading digits)."""
    return np.asarray(codes.astype("string").str.match(PRODUCT_CODE).fillna(False))
