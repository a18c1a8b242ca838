"""The catalogue the server recommends from: ids, titles, categories, prices.

Titles come from the model artifact; category and price from the canonical
``items.parquet`` (``serving.items_path``) or, when Feast is on, from its
``item_statistics`` view, read once per model load and never per request.
Popularity (the fallback ranking) is the purchase and view count of the events
(``serving.history_path``) or of ``item_statistics``; without either, the score
the average user of the model gives an item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from interest_graph.errors import MalformedFileError
from interest_graph.logs import get_logger
from interest_graph.serving.requests import ItemFilters

log = get_logger("serving.catalogue")

FEAST_ITEM_BATCH = 1000
# Purchases count more than views when ranking popular items.
PURCHASE_WEIGHT = 10.0


@dataclass(frozen=True, eq=False)
class Catalogue:
    """Items in the order of the model's item vectors.

    Attributes:
        item_ids: id per row.
        titles: title per row (the id where unknown).
        categories: category per row (None where unknown).
        prices: price per row (NaN where unknown).
        popularity: higher is more popular; the fallback ranking.
    """

    item_ids: np.ndarray
    titles: np.ndarray
    categories: np.ndarray
    prices: np.ndarray
    popularity: np.ndarray
    _rows: dict[str, int] = field(init=False, repr=False)
    _by_category: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rows = {str(item): row for row, item in enumerate(self.item_ids)}
        object.__setattr__(self, "_rows", rows)
        by_category: dict[str, list[int]] = {}
        for row, category in enumerate(self.categories):
            if category is not None:
                by_category.setdefault(str(category), []).append(row)
        object.__setattr__(
            self,
            "_by_category",
            {c: np.asarray(r, dtype=np.int64) for c, r in by_category.items()},
        )

    @property
    def size(self) -> int:
        return len(self.item_ids)

    def row(self, item_id: str) -> int:
        """Row of an item id, -1 when the catalogue does not have it."""
        return self._rows.get(item_id, -1)

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows of the known item ids (unknown ids are dropped), in input order."""
        rows = self._rows
        found = [rows[i] for i in item_ids if i in rows]
        return np.asarray(found, dtype=np.int64)

    def allowed(self, filters: ItemFilters) -> np.ndarray:
        """Boolean mask of the items a request's filters allow.

        Items of unknown category or price never pass a filter on it.
        """
        mask = np.ones(self.size, dtype=bool)
        if filters.categories is not None:
            mask[:] = False
            for category in filters.categories:
                mask[self._by_category.get(category, np.empty(0, dtype=np.int64))] = (
                    True
                )
        if filters.min_price is not None:
            mask &= self.prices >= filters.min_price
        if filters.max_price is not None:
            mask &= self.prices <= filters.max_price
        return mask


def build_catalogue(
    item_ids: np.ndarray,
    titles: np.ndarray | None,
    *,
    items_path: Path | None = None,
    item_features: pd.DataFrame | None = None,
    counts: np.ndarray | None = None,
    model_popularity: np.ndarray | None = None,
) -> Catalogue:
    """The catalogue of a model's items, enriched from the shop's item data.

    Args:
        item_ids: the model's item ids, in vector order.
        titles: the model's item titles (or None).
        items_path: canonical ``items.parquet`` (``item_id``, ``title``,
            ``category``, ``price``).
        item_features: Feast ``item_statistics`` values per ``item_id``
            (``category``, ``price``, ``purchases_30d``, ``views_30d``).
        counts: popularity per item row from the events (wins over Feast's).
        model_popularity: last-resort popularity per item row.

    Raises:
        MalformedFileError: ``items_path`` cannot be read or lacks ``item_id``.
    """
    ids = np.asarray(item_ids, dtype=object)
    index = pd.Index(ids.astype(str))
    title = np.asarray(titles if titles is not None else ids, dtype=object).copy()
    category = np.full(len(ids), None, dtype=object)
    price = np.full(len(ids), np.nan, dtype=np.float64)
    popularity = None if counts is None else np.asarray(counts, dtype=np.float64)
    for frame in (item_features, _read_items(items_path)):
        if frame is None or frame.empty:
            continue
        rows = index.get_indexer(frame["item_id"].astype(str))
        known = rows >= 0
        rows = rows[known]
        part = frame[known]
        if "title" in part and titles is None:
            title[rows] = part["title"].astype(object).to_numpy()
        if "category" in part:
            values = part["category"].astype(object).to_numpy()
            present = pd.notna(values)
            category[rows[present]] = values[present]
        if "price" in part:
            values = pd.to_numeric(part["price"], errors="coerce").to_numpy(float)
            present = np.isfinite(values)
            price[rows[present]] = values[present]
        if popularity is None and "purchases_30d" in part:
            popularity = np.zeros(len(ids))
            purchases = pd.to_numeric(part["purchases_30d"], errors="coerce")
            views = pd.to_numeric(part.get("views_30d", 0), errors="coerce")
            popularity[rows] = purchases.fillna(0).to_numpy(
                float
            ) * PURCHASE_WEIGHT + np.asarray(views, dtype=float)
    if popularity is None:
        popularity = (
            np.zeros(len(ids))
            if model_popularity is None
            else np.asarray(model_popularity, dtype=np.float64)
        )
    missing = pd.isna(title)
    title[missing] = ids[missing]
    return Catalogue(
        item_ids=ids,
        titles=title.astype(str).astype(object),
        categories=category,
        prices=price,
        popularity=np.nan_to_num(popularity, nan=0.0),
    )


def _read_items(path: Path | None) -> pd.DataFrame | None:
    if path is None:
        return None
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise MalformedFileError(path, f"cannot be read: {exc}") from exc
    if "item_id" not in frame:
        raise MalformedFileError(path, "has no item_id column")
    return frame


def feast_item_features(lookup: Any, item_ids: Sequence[str]) -> pd.DataFrame:
    """``item_statistics`` of every item, in batches (once per model load).

    Args:
        lookup: an :class:`interest_graph.features.online.OnlineLookup`.
        item_ids: the catalogue's ids.
    """
    rows: list[dict[str, Any]] = []
    for start in range(0, len(item_ids), FEAST_ITEM_BATCH):
        batch = [str(i) for i in item_ids[start : start + FEAST_ITEM_BATCH]]
        for found in lookup.items(batch):
            features = found["features"]
            rows.append(
                {
                    "item_id": found["item_id"],
                    "category": features.get("item_statistics__category"),
                    "price": features.get("item_statistics__price"),
                    "purchases_30d": features.get("item_statistics__purchases_30d"),
                    "views_30d": features.get("item_statistics__views_30d"),
                }
            )
    return pd.DataFrame(rows)
