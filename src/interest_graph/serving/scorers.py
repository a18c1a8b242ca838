"""Scorer models served: item scores from what a user has, not from a user vector.

Temporal EASE and the graph filter score a user from their items (item-item
weights, a graph low-pass filter). Served, a known user's items are the model's
training rows plus what the feature store says they bought since, so a purchase
pushed to Feast changes the next answer without a reload; an unknown user with
``recent_items`` is scored from those items alone. A known user with nothing new
gets exactly the offline scores.

:class:`ScoreIndex` stands where a vector model has its item index: its
"queries" are these score rows, ranked with the same function as offline.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from interest_graph.evaluation.ranking import Seen, rank_items
from interest_graph.serving.reasons import HISTORY_FOR_REASONS


class UserScorer(Protocol):
    """Scores every item for one user from their training row and new items."""

    n_items: int

    def scores(self, user_row: int | None, new_items: np.ndarray) -> np.ndarray:
        """Scores (n_items, float32); ``user_row`` None for an unknown user."""
        ...


class TemporalEASEScorer:
    """Temporal EASE: the user's recency-weighted rows, new items at full weight
    (bought now: no decay, a purchase's event weight)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.n_items = int(model.history.shape[1])
        self.fresh = float(model.event_weights.get("purchase", 1.0))

    def scores(self, user_row: int | None, new_items: np.ndarray) -> np.ndarray:
        model = self.model
        history = self._with_new(model.history, user_row, new_items)
        next_history = (
            None
            if model.next_history is None
            else self._with_new(model.next_history, user_row, new_items)
        )
        return model.score_histories(history, next_history)[0]

    def _with_new(
        self, weights: sp.csr_matrix, user_row: int | None, new_items: np.ndarray
    ) -> sp.csr_matrix:
        # Imported here: the models stay out of this module's import (the model
        # given to the scorer has loaded them already).
        from interest_graph.models.hybrid_features import row_with_new

        # Items in training keep their weight; new ones get a purchase's.
        return row_with_new(weights, user_row, new_items, self.fresh)


class GraphFilterScorer:
    """The graph filter: the user's binary training row plus new items."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.train: sp.csr_matrix = model._require_fit()
        self.n_items = int(self.train.shape[1])

    def scores(self, user_row: int | None, new_items: np.ndarray) -> np.ndarray:
        import torch

        row = np.zeros((1, self.n_items), dtype=np.float32)
        if user_row is not None:
            start, end = self.train.indptr[user_row], self.train.indptr[user_row + 1]
            row[0, self.train.indices[start:end]] = 1.0
        row[0, new_items] = 1.0
        with torch.no_grad():
            return self.model.score_rows(torch.from_numpy(row)).numpy()[0]


# Known users' hybrid score rows are computed at load when the table fits here.
HYBRID_TABLE_BYTES = 256 * 2**20
# Re-scored rows (a known user with new purchases) kept, least recently used out.
HYBRID_RESCORED_BYTES = 64 * 2**20


class RescoredRows:
    """The re-scored rows of known users, keyed by (user row, the new items).

    A row depends only on the model, the user and what they bought since
    training, so a later call with the same new items reads it; a new purchase
    is a new key. Bounded to ``max_bytes``, least recently used first out.
    Locked: REST and gRPC calls and a reload's load may come from other threads."""

    def __init__(self, n_items: int, max_bytes: int = HYBRID_RESCORED_BYTES) -> None:
        self.max_rows = max(1, max_bytes // (4 * max(n_items, 1)))
        self._rows: OrderedDict[tuple[int, bytes], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(user_row: int, new: np.ndarray) -> tuple[int, bytes]:
        return user_row, np.asarray(new, np.int64).tobytes()

    def get(self, user_row: int, new: np.ndarray) -> np.ndarray | None:
        key = self._key(user_row, new)
        with self._lock:
            row = self._rows.get(key)
            if row is not None:
                self._rows.move_to_end(key)
            return row

    def put(self, user_row: int, new: np.ndarray, row: np.ndarray) -> None:
        with self._lock:
            self._rows[self._key(user_row, new)] = row
            while len(self._rows) > self.max_rows:
                self._rows.popitem(last=False)

    def __len__(self) -> int:
        return len(self._rows)


class HybridScorer:
    """The hybrid ranker: a known user's ranker scores, re-scored with what they
    bought since training; an unknown user's session through its temporal EASE.

    A known user's ranker scores from training depend only on the model, so they
    are scored at load, all users in the ranker's own batches as offline, when
    users x items float32 fit in ``table_bytes`` (Online Retail: 4,063 x 3,618,
    59 MB, ~20 s on one core); a call with nothing new reads its row. A known user
    with new items (not in their training row) is re-scored per call by
    :meth:`HybridRanker.score_with_new`: every signal of that one user with the
    new items bought now, then features and LightGBM, as a table row would be.
    That costs a little more than a per-call score: at 3,618 items, one OpenMP
    thread on a 2-core VM at load 4.6, median 23 ms against 19 ms for
    ``score([user])`` (the one-user view itself 1.1 ms; per-call scoring was
    ~8 ms on an unloaded core; 7 ms since ranks and basket closeness are taken
    at the candidates). The re-scored row is kept (:class:`RescoredRows`) until
    the user buys something else, so only a user's first call after a purchase
    pays for it, and the users who bought since training are scored at load
    (:meth:`ServingModel.warm`, from what the feature store has then). Without
    the table every known user is scored per call.
    """

    def __init__(self, model: Any, table_bytes: int = HYBRID_TABLE_BYTES) -> None:
        self.model = model
        self.session = TemporalEASEScorer(model.signals.temporal_ease)
        train: sp.csr_matrix = model.signals.train
        # Sorted rows: a user's new items are found by binary search (_new).
        self.train = train if train.has_sorted_indices else train.sorted_indices()
        self.n_items = self.session.n_items
        n_users = int(self.train.shape[0])
        self.table: np.ndarray | None = None
        if n_users * self.n_items * 4 <= table_bytes:
            self.table = np.asarray(model.score(np.arange(n_users)), np.float32)
        model.predict_threads = 1  # per call: one user's candidates, one thread
        self.rescored = RescoredRows(self.n_items)

    def _new(self, user_row: int, items: np.ndarray) -> np.ndarray:
        """What the user has beyond their training row."""
        start, end = self.train.indptr[user_row], self.train.indptr[user_row + 1]
        return items_beyond(self.train.indices[start:end], items)

    def keep(self, user_row: int, items: np.ndarray) -> bool:
        """Score and keep a known user's row for ``items`` now (at load, so their
        first call reads it); True when it had to be scored."""
        new = self._new(user_row, items)
        if not new.size or self.rescored.get(user_row, new) is not None:
            return False
        self._rescore(user_row, new)
        return True

    def _rescore(self, user_row: int, new: np.ndarray) -> np.ndarray:
        """The user's row with ``new`` bought now, scored and kept."""
        row = np.asarray(self.model.score_with_new(user_row, new), np.float32)
        self.rescored.put(user_row, new, row)
        return row

    def scores(self, user_row: int | None, new_items: np.ndarray) -> np.ndarray:
        if user_row is None:
            return self.session.scores(None, new_items)
        new = self._new(user_row, new_items)
        if new.size:
            row = self.rescored.get(user_row, new)
            return self._rescore(user_row, new) if row is None else row
        if self.table is not None:
            return self.table[user_row]
        return np.asarray(self.model.score(np.array([user_row]))[0], np.float32)


def items_beyond(trained: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``items`` not in the sorted ``trained`` (sorted, distinct): what
    ``np.setdiff1d`` gives, by binary search at less than half its cost (24 ->
    9.5 µs for a user's ~80 items; it runs on every known user's call)."""
    bought = np.unique(items)
    if not trained.size:
        return bought
    at = np.minimum(np.searchsorted(trained, bought), trained.size - 1)
    return bought[trained[at] != bought]


def user_scorer(model: Any) -> UserScorer:
    """The serving adapter of a rebuilt scorer model."""
    from interest_graph.models.graph_filter import GraphFilter
    from interest_graph.models.hybrid import HybridRanker
    from interest_graph.models.shop_signals import TemporalEASE

    if isinstance(model, TemporalEASE):
        return TemporalEASEScorer(model)
    if isinstance(model, GraphFilter):
        return GraphFilterScorer(model)
    if isinstance(model, HybridRanker):
        return HybridScorer(model)
    raise TypeError(f"{type(model).__name__} cannot be served")


class ScoreIndex:
    """The item index of a scorer: its queries are score rows, ranked as offline."""

    kind = "scores"

    def top_k(
        self,
        queries: np.ndarray,
        k: int,
        seen: Seen | None,
        candidates: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        return rank_items(queries, k, seen=seen, candidates=candidates)


class WeightReasons:
    """ "similar to <the user's item that weighs most toward it>" from an
    item-item weight matrix (temporal EASE's), for scorers without item vectors."""

    def __init__(self, weights: np.ndarray, titles: np.ndarray) -> None:
        self.weights = weights
        self.titles = titles

    def reasons(self, items: np.ndarray, history: np.ndarray) -> list[str]:
        if history.size == 0:
            return [""] * len(items)
        recent = history[-HISTORY_FOR_REASONS:]
        closest = recent[np.argmax(self.weights[np.ix_(recent, items)], axis=0)]
        return [f"similar to {title}" for title in self.titles[closest]]
