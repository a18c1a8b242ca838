"""Numeric node features for the graph models, read point in time from Feast.

Every user and item of a split gets one row of the ``training`` feature service as
of one time ``as_of`` (for a temporal split: its test start), so no feature is
computed from an event at or after ``as_of``: the feature tables stamp a row at
midnight ``S`` from events strictly before ``S``, and Feast joins the newest row
stamped at or before ``as_of``.

Only numeric features become node inputs (counts, spend, recency, conversion,
price); lists and strings (favourite categories, category, text) do not. Counts,
money and days are heavy-tailed and go through ``log1p``; nulls (no snapshot in
the view's TTL: a user or item with no events before ``as_of``) become 0, and a
last ``has_features`` column says which rows had any.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from interest_graph.evaluation.protocols import EvaluationSplit

if TYPE_CHECKING:
    from feast import FeatureStore

#: The numeric features of the ``training`` service that become node inputs.
USER_FEATURES: tuple[str, ...] = tuple(
    f"user_activity__{name}"
    for name in (
        "views_7d",
        "carts_7d",
        "purchases_7d",
        "views_30d",
        "carts_30d",
        "purchases_30d",
        "views_90d",
        "carts_90d",
        "purchases_90d",
        "spend_30d",
        "spend_90d",
        "days_since_last_event",
    )
)
ITEM_FEATURES: tuple[str, ...] = tuple(
    f"item_statistics__{name}"
    for name in (
        "views_7d",
        "carts_7d",
        "purchases_7d",
        "views_30d",
        "carts_30d",
        "purchases_30d",
        "conversion_30d",
        "price",
    )
)

#: Features (by name after the ``view__`` prefix) kept on their own scale; every
#: other numeric feature is a non-negative count, amount or duration: ``log1p``.
LINEAR_FEATURES: frozenset[str] = frozenset({"conversion_30d"})

#: The join key value of the entity a row does not look up (a user row's item).
NO_ENTITY = "__no_entity__"
HAS_FEATURES = "has_features"
TIMESTAMP = "event_timestamp"


def _is_log_scaled(column: str) -> bool:
    return column.rsplit("__", 1)[-1] not in LINEAR_FEATURES


def numeric_feature_matrix(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The ``columns`` of ``frame`` as a float32 matrix, one row per frame row.

    Nulls become 0; every column but the linear ones (:data:`LINEAR_FEATURES`) is
    clipped at 0 and goes through ``log1p``.

    Args:
        frame: a frame with the ``columns`` (numeric, possibly null).
        columns: the columns in output order.

    Returns:
        ``len(frame)`` × ``len(columns)`` finite float32 values, in the frame's row
        order.

    Raises:
        KeyError: a column is missing from ``frame``.
    """
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise KeyError(f"frame lacks feature columns {absent}")
    out = np.zeros((len(frame), len(columns)), dtype=np.float32)
    for position, column in enumerate(columns):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        values = np.where(np.isfinite(values), values, 0.0)
        if _is_log_scaled(column):
            values = np.log1p(np.clip(values, 0.0, None))
        out[:, position] = values
    return out


def has_features(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """1.0 for each row with any of ``columns`` not null, else 0.0 (float32)."""
    return frame[list(columns)].notna().any(axis=1).to_numpy(dtype=np.float32)


def _entity_rows(split: EvaluationSplit, as_of: pd.Timestamp) -> pd.DataFrame:
    """Users first (with no item), then items (with no user), all at ``as_of``."""
    users = [str(u) for u in split.user_ids]
    items = [str(i) for i in split.item_ids]
    return pd.DataFrame(
        {
            "user_id": users + [NO_ENTITY] * len(items),
            "item_id": [NO_ENTITY] * len(users) + items,
            TIMESTAMP: pd.Timestamp(as_of),
        }
    )


def node_features_from_feast(
    store: FeatureStore,
    split: EvaluationSplit,
    as_of: pd.Timestamp,
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Numeric user and item features of ``split`` as of ``as_of``, from Feast.

    One point-in-time join (:func:`~interest_graph.features.training.training_frame`
    on the ``training`` service) for every user and item of the split.

    Args:
        store: the feature store (see :func:`interest_graph.features.open_store`).
        split: rows of the user matrix follow ``split.user_ids``, of the item
            matrix ``split.item_ids``.
        as_of: the time the features describe; for a temporal split its test
            start, so nothing from the test period is used. A naive timestamp is
            read as UTC.

    Returns:
        (user matrix n_users × U, item matrix n_items × I, user column names,
        item column names); float32, finite. The last column of each is
        ``has_features``.

    Raises:
        ValueError: Feast gave the rows back out of order.
    """
    from interest_graph.features.training import training_frame

    rows = _entity_rows(split, as_of)
    frame = training_frame(rows, store, service="training")
    for key in ("user_id", "item_id"):
        if not np.array_equal(frame[key].to_numpy(), rows[key].to_numpy()):
            raise ValueError(f"training frame rows are not in entity order ({key})")
    n_users = split.n_users
    user_rows = frame.iloc[:n_users]
    item_rows = frame.iloc[n_users:]
    user_matrix = np.column_stack(
        [
            numeric_feature_matrix(user_rows, USER_FEATURES),
            has_features(user_rows, USER_FEATURES),
        ]
    ).astype(np.float32)
    item_matrix = np.column_stack(
        [
            numeric_feature_matrix(item_rows, ITEM_FEATURES),
            has_features(item_rows, ITEM_FEATURES),
        ]
    ).astype(np.float32)
    user_names = [*USER_FEATURES, f"user_activity__{HAS_FEATURES}"]
    item_names = [*ITEM_FEATURES, f"item_statistics__{HAS_FEATURES}"]
    return user_matrix, item_matrix, user_names, item_names
