"""The evaluation protocols of EVALUATION.md, built from canonical data.

A protocol turns a source (the raw Online Retail file, the Gowalla folder, or a
canonical data folder) into an :class:`EvaluationSplit`: a binary training matrix,
the test users with their ground truth, and the candidate items.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from interest_graph.data.gowalla import load_gowalla
from interest_graph.data.online_retail import load_online_retail
from interest_graph.errors import ConfigError
from interest_graph.schema import ShopTables

ONLINE_RETAIL_TEST_START = pd.Timestamp("2011-11-09")
COLD_ITEM_SHARE = 0.2
COLD_ITEM_SEED = 0
SHOP_TEST_DAYS = 14


@dataclass(frozen=True)
class EvaluationSplit:
    """Everything a model may see (``train``, item text) and what it is scored on.

    Attributes:
        protocol: protocol name.
        user_ids: id of each row of ``train``.
        item_ids: id of each column of ``train`` (the item index of every model).
        train: binary users × items interactions a model trains on.
        test_users: rows of ``train`` that are scored.
        ground_truth: binary test_users × items relevant items.
        candidates: items that may be recommended (before each user's own training
            items are removed).
        item_text: the item table's rows (``item_id``, title, description,
            category, ...) in ``item_ids`` order, which the ``embed`` stage's
            template renders into each item's text; None where the data has
            no item text.
        item_titles: product title per item (what a shopper sees), or None.
        train_events: the training events behind ``train`` (``user`` row, ``item``
            column, ``event_type``, ``days_before`` the test start), or None where
            the data has no timestamps (Gowalla). Models may weight by event type
            and recency; every row is strictly before the test period.
        test_start: first moment of the test period (features are read as of
            it, so nothing from the test period reaches a model), or None.
    """

    protocol: str
    user_ids: np.ndarray
    item_ids: np.ndarray
    train: sp.csr_matrix
    test_users: np.ndarray
    ground_truth: sp.csr_matrix
    candidates: np.ndarray
    item_text: pd.DataFrame | None = None
    item_titles: np.ndarray | None = None
    train_events: pd.DataFrame | None = None
    test_start: pd.Timestamp | None = None

    @property
    def n_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])

    def describe(self) -> dict[str, int]:
        """Sizes to compare with the reference counts of EVALUATION.md."""
        train_users = int((np.diff(self.train.indptr) > 0).sum())
        train_items = int((np.asarray(self.train.sum(0)).ravel() > 0).sum())
        return {
            "train_users": train_users,
            "train_items": train_items,
            "train_pairs": int(self.train.nnz),
            "test_users": int(self.test_users.size),
            "test_pairs": int(self.ground_truth.nnz),
            "candidate_items": int(self.candidates.sum()),
        }


def binary_matrix(
    rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """Users × items, 1 where a (row, col) pair occurs (however often)."""
    data = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # implicit feedback: bought at least once
    return matrix


def _matrix(
    pairs: pd.DataFrame, user_index: pd.Index, item_index: pd.Index
) -> sp.csr_matrix:
    rows = user_index.get_indexer(pd.Index(pairs["user_id"]))
    cols = item_index.get_indexer(pd.Index(pairs["item_id"]))
    if (rows < 0).any() or (cols < 0).any():
        raise ValueError("pairs reference users or items outside the index")
    return binary_matrix(rows, cols, (len(user_index), len(item_index)))


def _unique_pairs(events: pd.DataFrame) -> pd.DataFrame:
    return events[["user_id", "item_id"]].drop_duplicates().reset_index(drop=True)


def _item_text(items: pd.DataFrame, item_index: pd.Index) -> pd.DataFrame:
    """The item table's rows in ``item_index`` order (missing items: empty)."""
    text = items.set_index("item_id").reindex(item_index)
    return text.rename_axis("item_id").reset_index()


def _item_titles(items: pd.DataFrame, item_index: pd.Index) -> np.ndarray:
    titles = items.set_index("item_id")["title"].reindex(item_index)
    return (
        titles.fillna(pd.Series(item_index, index=item_index))
        .astype(str)
        .to_numpy(dtype=object)
    )


def _indexed_events(
    events: pd.DataFrame,
    users: pd.Index,
    items: pd.Index,
    train_pairs: pd.DataFrame,
    test_start: pd.Timestamp,
) -> pd.DataFrame:
    """Training events as matrix positions, restricted to the pairs of ``train``."""
    rows = users.get_indexer(pd.Index(events["user_id"]))
    cols = items.get_indexer(pd.Index(events["item_id"]))
    in_train = pd.MultiIndex.from_frame(events[["user_id", "item_id"]]).isin(
        pd.MultiIndex.from_frame(train_pairs)
    )
    keep = (rows >= 0) & (cols >= 0) & in_train
    days = (test_start - events["timestamp"]).dt.total_seconds() / 86_400.0
    return pd.DataFrame(
        {
            "user": rows[keep].astype(np.int64),
            "item": cols[keep].astype(np.int64),
            "event_type": events["event_type"].to_numpy()[keep],
            "days_before": days.to_numpy()[keep].astype(np.float64),
        }
    )


def _split(
    protocol: str,
    tables: ShopTables,
    users: pd.Index,
    items: pd.Index,
    train_pairs: pd.DataFrame,
    truth_pairs: pd.DataFrame,
    candidates: np.ndarray,
    test_start: pd.Timestamp,
) -> EvaluationSplit:
    """Assemble a split; test users are the users with ground truth, in id order."""
    test_users = np.sort(users.get_indexer(pd.Index(truth_pairs["user_id"].unique())))
    before = tables.events[tables.events["timestamp"] < test_start]
    return EvaluationSplit(
        protocol=protocol,
        user_ids=users.to_numpy(dtype=object),
        item_ids=items.to_numpy(dtype=object),
        train=_matrix(train_pairs, users, items),
        test_users=test_users,
        ground_truth=_matrix(truth_pairs, users, items)[test_users],
        candidates=candidates,
        item_text=_item_text(tables.items, items),
        item_titles=_item_titles(tables.items, items),
        train_events=_indexed_events(before, users, items, train_pairs, test_start),
        test_start=test_start,
    )


def temporal_split(
    protocol: str, tables: ShopTables, test_start: pd.Timestamp
) -> EvaluationSplit:
    """Warm users, warm items: train before ``test_start``, test from it on.

    Test users have training history and, in the test period, an item that is new
    to them and known in training; those items are their ground truth.
    """
    events = tables.events
    before = events["timestamp"] < test_start
    train_pairs = _unique_pairs(events[before])
    users = pd.Index(np.sort(train_pairs["user_id"].unique()))
    items = pd.Index(np.sort(train_pairs["item_id"].unique()))

    # Only test-period events count as ground truth: training pairs come from events
    # strictly before test_start, so no test pair leaks into the training matrix.
    test_pairs = _unique_pairs(events[~before])
    known = test_pairs["user_id"].isin(users) & test_pairs["item_id"].isin(items)
    test_pairs = test_pairs[known]
    seen = pd.MultiIndex.from_frame(train_pairs)
    test_pairs = test_pairs[~pd.MultiIndex.from_frame(test_pairs).isin(seen)]
    candidates = np.ones(len(items), dtype=bool)
    return _split(
        protocol, tables, users, items, train_pairs, test_pairs, candidates, test_start
    )


def cold_item_split(
    protocol: str,
    tables: ShopTables,
    test_start: pd.Timestamp,
    share: float = COLD_ITEM_SHARE,
    seed: int = COLD_ITEM_SEED,
) -> EvaluationSplit:
    """Strict item cold start: hold out a share of the training-period items.

    Every interaction with a held-out item is removed from training; test users have
    at least one held-out and one kept item; candidates are the held-out items.
    """
    pairs = _unique_pairs(tables.events[tables.events["timestamp"] < test_start])
    sorted_items = np.sort(pairs["item_id"].unique().astype(str))
    held_out = np.random.default_rng(seed).choice(
        sorted_items, int(share * sorted_items.size), replace=False
    )
    is_held = pairs["item_id"].isin(held_out)
    kept_pairs, held_pairs = pairs[~is_held], pairs[is_held]
    # Held-out items keep their column but not one interaction: models see only text.
    users = pd.Index(np.sort(kept_pairs["user_id"].unique()))
    items = pd.Index(sorted_items)
    held_pairs = held_pairs[held_pairs["user_id"].isin(users)]
    candidates = items.isin(held_out)
    return _split(
        protocol, tables, users, items, kept_pairs, held_pairs, candidates, test_start
    )


def gowalla_split(source: Path) -> EvaluationSplit:
    """The LightGCN Gowalla split exactly as in the files; all users are tested."""
    data = load_gowalla(source)
    n_users = int(max(data.train["user"].max(), data.test["user"].max())) + 1
    n_items = int(max(data.train["item"].max(), data.test["item"].max())) + 1

    def matrix(frame: pd.DataFrame) -> sp.csr_matrix:
        return binary_matrix(
            frame["user"].to_numpy(), frame["item"].to_numpy(), (n_users, n_items)
        )

    train, test = matrix(data.train), matrix(data.test)
    test_users = np.flatnonzero(np.diff(test.indptr) > 0)
    return EvaluationSplit(
        protocol="gowalla-lightgcn",
        user_ids=np.arange(n_users).astype(str).astype(object),
        item_ids=np.arange(n_items).astype(str).astype(object),
        train=train,
        test_users=test_users,
        ground_truth=test[test_users],
        candidates=np.ones(n_items, dtype=bool),
    )


def _shop_tables(source: Path) -> ShopTables:
    """A canonical data folder, or a raw Online Retail file."""
    if source.is_dir():
        return ShopTables.read(source)
    return load_online_retail(source)[0]


def _online_retail_temporal(source: Path) -> EvaluationSplit:
    tables = load_online_retail(source)[0]
    return temporal_split("online-retail-temporal", tables, ONLINE_RETAIL_TEST_START)


def _online_retail_cold_items(source: Path) -> EvaluationSplit:
    tables = load_online_retail(source)[0]
    return cold_item_split("online-retail-cold-items", tables, ONLINE_RETAIL_TEST_START)


def shop_test_start(tables: ShopTables) -> pd.Timestamp:
    """First day of a shop's test period: the last ``SHOP_TEST_DAYS`` days."""
    last_day = tables.events["timestamp"].max().normalize()
    return last_day - pd.Timedelta(days=SHOP_TEST_DAYS - 1)


def _shop_temporal(source: Path) -> EvaluationSplit:
    tables = _shop_tables(source)
    return temporal_split("shop-temporal", tables, shop_test_start(tables))


def _shop_cold_items(source: Path) -> EvaluationSplit:
    tables = _shop_tables(source)
    return cold_item_split("shop-cold-items", tables, shop_test_start(tables))


PROTOCOLS: dict[str, Callable[[Path], EvaluationSplit]] = {
    "online-retail-temporal": _online_retail_temporal,
    "online-retail-cold-items": _online_retail_cold_items,
    "gowalla-lightgcn": gowalla_split,
    # Any canonical shop (synthetic or your own): the last two weeks are the test,
    # every event type counts as an interaction.
    "shop-temporal": _shop_temporal,
    "shop-cold-items": _shop_cold_items,
}


def build_split(protocol: str, source: str | Path) -> EvaluationSplit:
    """Build the split of ``protocol`` from ``source``.

    Args:
        protocol: one of :data:`PROTOCOLS`.
        source: the raw Online Retail file, the Gowalla folder, or for ``shop-*``
            a canonical data folder (or an Online Retail file).
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}"
        )
    return PROTOCOLS[protocol](Path(source))
