"""The canonical shop schema: what every loader produces and every stage reads.

Three Parquet tables in the data directory. IDs are strings everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

EVENT_TYPES: tuple[str, ...] = ("view", "cart", "purchase")

EVENT_COLUMNS: dict[str, str] = {
    "user_id": "string",
    "item_id": "string",
    "event_type": "string",
    "timestamp": "datetime64[ns]",
    "quantity": "int64",
    "price": "float64",
}
ITEM_COLUMNS: dict[str, str] = {
    "item_id": "string",
    "title": "string",
    "description": "string",
    "category": "string",
    "price": "float64",
    "first_seen": "datetime64[ns]",
}
USER_COLUMNS: dict[str, str] = {
    "user_id": "string",
    "country": "string",
    "first_seen": "datetime64[ns]",
}

TABLE_COLUMNS: dict[str, dict[str, str]] = {
    "events": EVENT_COLUMNS,
    "items": ITEM_COLUMNS,
    "users": USER_COLUMNS,
}


def conform(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Return ``frame`` with exactly the canonical columns of ``table``, in order.

    Raises:
        KeyError: a canonical column is missing (a bug in the loader, not bad data).
    """
    columns = TABLE_COLUMNS[table]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{table} table lacks canonical columns {missing}")
    return frame[list(columns)].astype(columns).reset_index(drop=True)


@dataclass(frozen=True)
class ShopTables:
    """The canonical events, items and users of one shop."""

    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame

    def write(self, data_dir: Path) -> dict[str, Path]:
        """Write the three tables as ``{table}.parquet`` under ``data_dir``."""
        data_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for table in TABLE_COLUMNS:
            path = data_dir / f"{table}.parquet"
            conform(getattr(self, table), table).to_parquet(path, index=False)
            paths[table] = path
        return paths

    @classmethod
    def read(cls, data_dir: Path) -> ShopTables:
        """Read the tables written by :meth:`write`."""
        frames = {
            table: conform(pd.read_parquet(data_dir / f"{table}.parquet"), table)
            for table in TABLE_COLUMNS
        }
        return cls(**frames)
