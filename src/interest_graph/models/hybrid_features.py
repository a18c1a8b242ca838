"""The hybrid ranker's signals: candidate sources and per-(user, item) features.

:class:`HybridSignals` holds everything fitted on one split that the ranker reads:
temporal EASE, the graph model's vectors, item text vectors, the interest graph's
clusters and user weights, and the recency and popularity facts of the training
events. :func:`candidate_features` turns a batch of users into candidates (the
union of each source's top items) and one feature row per (user, candidate).

Every signal is computed from ``split.train`` and ``split.train_events`` only, so a
validation split carved from training gives the ranker the same features it will
see at test time, shifted by the validation window.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from interest_graph.models.shop_signals import TemporalEASE

# Sources whose score and rank are features (candidate sources and helpers).
SCORED = (
    "temporal_ease",
    "graph",
    "text_profile",
    "text_recent",
    "basket_ease",
    "interest_popularity",
)
DAYS_WINDOW_SHORT = 7.0
DAYS_WINDOW_LONG = 30.0
# An event within this many days of a user's latest counts to their last basket.
BASKET_DAYS = 1.0
_NO_DAYS = 1e4  # "never": older than any shop history


@dataclass
class HybridSignals:
    """The fitted signals of one split (see the module notes).

    Attributes:
        temporal_ease: the fitted temporal EASE (its ``ease`` weights are also the
            item-to-item source of the last basket).
        train: binary users x items training matrix (what each user has).
        pair_days: days before the split's end of each training pair's latest
            event, aligned with ``train.data``.
        pair_events: events per training pair, aligned with ``train.data``.
        graph_users, graph_items: the graph model's vectors, or None.
        text: unit text vector per item, or None.
        item_interest: interest id per item (-1: none), from the interest graph.
        item_interest_cosine: the item's cosine to its interest's centroid.
        user_interest_weight: users x interests weights of the interest graph.
        item_popularity: distinct users per item over all training.
        item_popularity_short, item_popularity_long: distinct users in the last
            ``DAYS_WINDOW_SHORT`` and ``DAYS_WINDOW_LONG`` days.
        item_age_days: days since the item's first event.
        item_idle_days: days since the item's latest event.
        text_half_life_days: recency half life of the user's text profile.
        recency: whether recency signals are used (the "without recency" ablation
            sets it False: recency features are then constant).
    """

    temporal_ease: TemporalEASE
    train: sp.csr_matrix
    pair_days: np.ndarray
    pair_events: np.ndarray
    item_popularity: np.ndarray
    item_popularity_short: np.ndarray
    item_popularity_long: np.ndarray
    item_age_days: np.ndarray
    item_idle_days: np.ndarray
    graph_users: np.ndarray | None = None
    graph_items: np.ndarray | None = None
    text: np.ndarray | None = None
    item_interest: np.ndarray | None = None
    item_interest_cosine: np.ndarray | None = None
    user_interest_weight: np.ndarray | None = None
    text_half_life_days: float = 30.0
    recency: bool = True
    _interest_onehot: sp.csr_matrix | None = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])

    def to_tensors(self) -> dict[str, np.ndarray]:
        """The signals as named arrays (``signals.*``, ``temporal_ease.*`` and the
        graph source's ``user_vectors`` / ``item_vectors``)."""
        arrays: dict[str, np.ndarray] = {
            f"temporal_ease.{name}": array
            for name, array in self.temporal_ease.to_arrays().items()
        }
        train = self.train
        own = {
            "train_indptr": train.indptr.astype(np.int64),
            "train_indices": train.indices.astype(np.int64),
            "train_shape": np.asarray(train.shape, dtype=np.int64),
            "pair_days": self.pair_days,
            "pair_events": self.pair_events,
            "item_popularity": self.item_popularity,
            "item_popularity_short": self.item_popularity_short,
            "item_popularity_long": self.item_popularity_long,
            "item_age_days": self.item_age_days,
            "item_idle_days": self.item_idle_days,
            "text": self.text,
            "item_interest": self.item_interest,
            "item_interest_cosine": self.item_interest_cosine,
            "user_interest_weight": self.user_interest_weight,
        }
        arrays.update(
            {
                f"signals.{k}": np.ascontiguousarray(v)
                for k, v in own.items()
                if v is not None
            }
        )
        # The graph source's vectors under the artifact's vector names: the
        # interest graph (``interests``) and serving's reasons read them.
        if self.graph_users is not None and self.graph_items is not None:
            arrays["user_vectors"] = np.ascontiguousarray(self.graph_users)
            arrays["item_vectors"] = np.ascontiguousarray(self.graph_items)
        return arrays

    @classmethod
    def from_tensors(
        cls,
        tensors: Mapping[str, np.ndarray],
        temporal_ease_config: Mapping[str, Any],
        text_half_life_days: float,
        recency: bool,
    ) -> HybridSignals:
        """Signals rebuilt from :meth:`to_tensors` output."""
        prefix = "temporal_ease."
        ease = TemporalEASE.from_arrays(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)},
            temporal_ease_config,
        )

        def get(name: str) -> np.ndarray | None:
            return tensors.get(f"signals.{name}")

        shape = tuple(int(n) for n in tensors["signals.train_shape"])
        indices, indptr = (
            tensors["signals.train_indices"],
            tensors["signals.train_indptr"],
        )
        train = sp.csr_matrix(
            (np.ones(indices.size, dtype=np.float32), indices, indptr), shape=shape
        )
        required = {
            name: tensors[f"signals.{name}"]
            for name in (
                "pair_days",
                "pair_events",
                "item_popularity",
                "item_popularity_short",
                "item_popularity_long",
                "item_age_days",
                "item_idle_days",
            )
        }
        return cls(
            temporal_ease=ease,
            train=train,
            graph_users=tensors.get("user_vectors"),
            graph_items=tensors.get("item_vectors"),
            text=get("text"),
            item_interest=get("item_interest"),
            item_interest_cosine=get("item_interest_cosine"),
            user_interest_weight=get("user_interest_weight"),
            text_half_life_days=text_half_life_days,
            recency=recency,
            **required,
        )

    def with_new_items(self, user_row: int, new_items: np.ndarray) -> HybridSignals:
        """A one-user view: its row 0 is ``user_row``'s training row plus
        ``new_items`` as if bought just now.

        New items are 0 days old with one event each, and enter temporal EASE's
        histories at a purchase's event weight (as the temporal EASE scorer serves
        them); items the row already has keep their facts. User-level arrays (the
        graph user vector, the interest graph's user weights) are sliced to the
        user's row, as trained; item-level arrays, the fitted weights and the
        interest membership are shared, not copied. With no new items every signal
        reads exactly what it reads for ``user_row`` in the full signals.
        """
        start, end = self.train.indptr[user_row], self.train.indptr[user_row + 1]
        train = row_with_new(self.train, user_row, new_items, 1.0)
        added = train.nnz - (end - start)
        ease = copy.copy(self.temporal_ease)  # shares ``ease`` and ``next``
        fresh = float(ease.event_weights.get("purchase", 1.0))
        if ease.history is not None:
            ease.history = row_with_new(ease.history, user_row, new_items, fresh)
        if ease.next_history is not None:
            ease.next_history = row_with_new(
                ease.next_history, user_row, new_items, fresh
            )

        def one_row(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[user_row : user_row + 1]

        return replace(
            self,
            temporal_ease=ease,
            train=train,
            pair_days=np.concatenate(
                [self.pair_days[start:end], np.zeros(added, self.pair_days.dtype)]
            ),
            pair_events=np.concatenate(
                [self.pair_events[start:end], np.ones(added, self.pair_events.dtype)]
            ),
            graph_users=one_row(self.graph_users),
            user_interest_weight=one_row(self.user_interest_weight),
            _interest_onehot=self.interest_onehot(),
        )

    # --- per-batch matrices ----------------------------------------------------

    def _history_rows(self, users: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """The users' training rows with pair days and event counts as data."""
        rows = self.train[users]
        starts = self.train.indptr[users]
        lengths = np.diff(rows.indptr)
        position = np.repeat(starts - rows.indptr[:-1], lengths) + np.arange(rows.nnz)
        days = sp.csr_matrix(
            (self.pair_days[position], rows.indices, rows.indptr), shape=rows.shape
        )
        events = sp.csr_matrix(
            (self.pair_events[position], rows.indices, rows.indptr), shape=rows.shape
        )
        return days, events

    def interest_onehot(self) -> sp.csr_matrix | None:
        """Items x interests membership (None without an interest graph)."""
        if self.item_interest is None or self.user_interest_weight is None:
            return None
        if self._interest_onehot is None:
            has = self.item_interest >= 0
            self._interest_onehot = sp.csr_matrix(
                (
                    np.ones(int(has.sum()), dtype=np.float32),
                    (np.flatnonzero(has), self.item_interest[has]),
                ),
                shape=(self.n_items, self.user_interest_weight.shape[1]),
            )
        return self._interest_onehot


def row_with_new(
    weights: sp.csr_matrix, user_row: int | None, new_items: np.ndarray, fresh: float
) -> sp.csr_matrix:
    """One user's weighted row (1 x items CSR) with ``new_items`` at ``fresh``.

    ``user_row`` None: the new items alone. Items the row already has keep their
    weight; the row's own entries keep their order, so with no new items the row
    is exactly ``weights[[user_row]]``.
    """
    if user_row is None:
        indices = np.zeros(0, dtype=weights.indices.dtype)
        data = np.zeros(0, dtype=weights.data.dtype)
    else:
        start, end = weights.indptr[user_row], weights.indptr[user_row + 1]
        indices, data = weights.indices[start:end], weights.data[start:end]
    new = np.setdiff1d(np.asarray(new_items, dtype=np.int64), indices)
    indices = np.concatenate([indices, new.astype(indices.dtype)])
    data = np.concatenate([data, np.full(new.size, fresh, dtype=data.dtype)])
    return sp.csr_matrix(
        (data, indices, np.array([0, indices.size])), shape=(1, weights.shape[1])
    )


@dataclass
class BatchFeatures:
    """Candidates of a batch of users and their feature rows.

    Attributes:
        rows: position of the user in the batch, per candidate.
        items: item column, per candidate.
        values: candidates x features, float32.
        fallback: batch x items order for non-candidates (higher is better).
    """

    rows: np.ndarray
    items: np.ndarray
    values: np.ndarray
    fallback: np.ndarray


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


def _row_spans(rows: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """``(row, start, end)`` of each run of equal values in ``rows`` (ascending,
    as ``np.nonzero`` gives them): positions ``start:end`` belong to ``row``."""
    present, starts = np.unique(rows, return_index=True)
    ends = np.append(starts[1:], rows.size)
    return zip(present.tolist(), starts.tolist(), ends.tolist(), strict=True)


def _ranks_at(scores: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """1-based rank of item ``items[i]`` in row ``rows[i]`` of ``scores`` (best =
    1; ``rows`` ascending): one plus the row's items scored strictly higher, so
    tied items share a rank (a source that cannot tell items apart, like temporal
    EASE on items nobody bought, gives them all one rank instead of an order by
    column); -inf items rank last. Per row one sort, then a binary search per
    asked item: only the candidates are ranked, not every item."""
    ordered = np.sort(scores, axis=1)
    ranks = np.empty(rows.size, dtype=np.int64)
    n_items = scores.shape[1]
    for row, start, end in _row_spans(rows):
        values = scores[row, items[start:end]]
        higher = n_items - np.searchsorted(ordered[row], values, side="right")
        ranks[start:end] = higher + 1
    return ranks


def _tells_apart(masked: np.ndarray) -> np.ndarray:
    """Per row, whether a source's scores differ among the row's allowed items
    (``masked``: -inf where not allowed); a source that gives every allowed item
    one score has no candidates to offer that row."""
    finite = np.isfinite(masked)
    highest = np.where(finite, masked, -np.inf).max(axis=1)
    lowest = np.where(finite, masked, np.inf).min(axis=1)
    return finite.any(axis=1) & (highest > lowest)


def source_scores(
    signals: HybridSignals, users: np.ndarray
) -> tuple[dict[str, np.ndarray | BasketCloseness], dict[str, np.ndarray]]:
    """Each scored source's batch x items scores (basket closeness: evaluated
    where indexed), and per-user facts.

    Returns:
        ``(scores, user_facts)``; sources the signals lack are left out.
    """
    days, events = signals._history_rows(users)
    n_items = signals.n_items
    recency = signals.recency
    # Recency weight of each owned pair (1 everywhere without recency).
    weight = days.copy()
    weight.data = (
        0.5 ** (days.data / signals.text_half_life_days)
        if recency
        else np.ones_like(days.data)
    ).astype(np.float32)
    latest = np.full(len(users), _NO_DAYS, dtype=np.float32)
    nonempty = np.diff(days.indptr) > 0
    latest[nonempty] = np.minimum.reduceat(days.data, days.indptr[:-1][nonempty])
    basket = days.copy()
    owner_latest = np.repeat(latest, np.diff(days.indptr))
    basket.data = (days.data <= owner_latest + BASKET_DAYS).astype(np.float32)
    basket.eliminate_zeros()

    scores: dict[str, np.ndarray | BasketCloseness] = {
        "temporal_ease": np.asarray(signals.temporal_ease.score(users), np.float32)
    }
    if recency and signals.temporal_ease.ease is not None:
        scores["basket_ease"] = np.asarray(
            basket @ signals.temporal_ease.ease, dtype=np.float32
        )
    if signals.graph_users is not None and signals.graph_items is not None:
        scores["graph"] = signals.graph_users[users] @ signals.graph_items.T
    if signals.text is not None:
        profile = signals.train[users] @ signals.text
        scores["text_profile"] = _unit(profile) @ signals.text.T
        if recency:
            scores["text_recent"] = _unit(weight @ signals.text) @ signals.text.T
            scores["text_basket_max"] = BasketCloseness(basket, signals.text)
    popularity = (
        np.log1p(signals.item_popularity_long)
        if recency
        else np.log1p(signals.item_popularity)
    ).astype(np.float32)
    onehot = signals.interest_onehot()
    user_facts: dict[str, np.ndarray] = {
        "user_items": np.log1p(np.diff(days.indptr)).astype(np.float32),
        "user_repeat": (
            np.asarray(events.sum(axis=1)).ravel() / np.maximum(np.diff(days.indptr), 1)
        ).astype(np.float32),
    }
    if recency:
        user_facts["user_idle_days"] = latest
    if onehot is not None and signals.user_interest_weight is not None:
        share = np.asarray((weight @ onehot).todense(), dtype=np.float32)
        share /= np.maximum(share.sum(axis=1, keepdims=True), 1e-12)
        item_interest = signals.item_interest
        assert item_interest is not None
        has = item_interest >= 0
        per_item = np.zeros((len(users), n_items), dtype=np.float32)
        per_item[:, has] = share[:, item_interest[has]]
        scores["interest_share"] = per_item
        graph_weight = np.zeros_like(per_item)
        graph_weight[:, has] = signals.user_interest_weight[users][
            :, item_interest[has]
        ]
        scores["interest_weight"] = graph_weight
        scores["interest_popularity"] = per_item * popularity[None, :]
    return scores, user_facts


class BasketCloseness:
    """Per (user, item), the best cosine of the item to an item of the user's last
    basket, computed only where indexed (``closeness[rows, items]``): a feature,
    never a candidate source or a rank, so no row needs every item."""

    def __init__(self, basket: sp.csr_matrix, text: np.ndarray) -> None:
        self.basket = basket
        self.text = text

    def __getitem__(self, at: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        rows, items = at
        out = np.zeros(rows.size, dtype=np.float32)
        basket = self.basket
        for row, start, end in _row_spans(rows):
            owned = basket.indices[basket.indptr[row] : basket.indptr[row + 1]]
            if owned.size:
                cosines = self.text[items[start:end]] @ self.text[owned].T
                out[start:end] = cosines.max(axis=1)
        return out


# Which score matrix each candidate source reads, best first.
CANDIDATE_SCORES: dict[str, tuple[str, ...]] = {
    "temporal-ease": ("temporal_ease", "basket_ease"),
    "graph": ("graph",),
    "text": ("text_recent", "text_profile"),
    "interest": ("interest_popularity",),
}


def _feature_names(
    scores: Mapping[str, object], facts: Mapping[str, np.ndarray]
) -> list[str]:
    names: list[str] = []
    for name in scores:
        names.append(f"{name}_score")
        if name in SCORED:
            names.append(f"{name}_rank")
    names += [
        "item_popularity",
        "item_popularity_short",
        "item_popularity_long",
        "item_age_days",
        "item_idle_days",
        "item_interest_cosine",
        *facts,
        "candidate_sources",
    ]
    return names


def candidate_features(
    signals: HybridSignals,
    users: np.ndarray,
    allowed: np.ndarray,
    per_source: int,
    sources: tuple[str, ...],
) -> tuple[BatchFeatures, list[str]]:
    """Candidates of ``users`` and their features.

    Args:
        signals: the fitted signals.
        users: rows of the signals' training matrix.
        allowed: batch x items mask of the items that may be recommended (not
            owned, among the protocol's candidates).
        per_source: top items each candidate source contributes.
        sources: the candidate sources in use (``HybridConfig.sources``).

    Returns:
        The batch's candidates with their feature rows, and the feature names.
    """
    scores, facts = source_scores(signals, users)
    masked = {
        name: np.where(allowed, matrix, -np.inf).astype(np.float32)
        for name, matrix in scores.items()
        if isinstance(matrix, np.ndarray)
    }
    chosen = np.zeros(allowed.shape, dtype=np.int8)
    take = min(per_source, allowed.shape[1] - 1)
    for source in sources:
        for name in CANDIDATE_SCORES[source]:
            if name not in masked:
                continue
            top = np.argpartition(-masked[name], take, axis=1)[:, :take]
            picked = np.zeros(allowed.shape, dtype=bool)
            np.put_along_axis(picked, top, True, axis=1)
            picked &= _tells_apart(masked[name])[:, None]
            chosen += picked & allowed
    unserved = ~chosen.any(axis=1)
    chosen[unserved] = allowed[unserved]  # no source for a row: every allowed item
    rows, items = np.nonzero(chosen)
    columns: list[np.ndarray] = []
    for name, matrix in scores.items():
        columns.append(matrix[rows, items])
        if name in SCORED:
            columns.append(_ranks_at(masked[name], rows, items).astype(np.float32))
    no_interest = np.zeros(signals.n_items, dtype=np.float32)
    item_columns = (
        np.log1p(signals.item_popularity),
        np.log1p(signals.item_popularity_short) if signals.recency else no_interest,
        np.log1p(signals.item_popularity_long) if signals.recency else no_interest,
        signals.item_age_days if signals.recency else no_interest,
        signals.item_idle_days if signals.recency else no_interest,
        (
            no_interest
            if signals.item_interest_cosine is None
            else signals.item_interest_cosine
        ),
    )
    columns += [np.asarray(c, dtype=np.float32)[items] for c in item_columns]
    columns += [fact[rows] for fact in facts.values()]
    columns.append(chosen[rows, items].astype(np.float32))
    values = np.column_stack(columns).astype(np.float32)
    primary = masked["temporal_ease"]
    fallback = np.where(np.isfinite(primary), primary, np.float32(-1e30))
    return (
        BatchFeatures(rows=rows, items=items, values=values, fallback=fallback),
        _feature_names(scores, facts),
    )


def pair_facts(
    train: sp.csr_matrix, events: Any | None
) -> tuple[np.ndarray, np.ndarray]:
    """Days since each training pair's latest event, and its event count.

    Aligned with ``train.data`` (CSR order). Without events (no timestamps) every
    pair is 0 days old with one event.
    """
    train = train.tocsr()
    if events is None or len(events) == 0:
        return np.zeros(train.nnz, np.float32), np.ones(train.nnz, np.float32)
    n_items = train.shape[1]
    keys = events["user"].to_numpy(np.int64) * n_items + events["item"].to_numpy(
        np.int64
    )
    pairs, inverse = np.unique(keys, return_inverse=True)
    latest = np.full(pairs.size, np.inf)
    np.minimum.at(latest, inverse, events["days_before"].to_numpy(np.float64))
    counts = np.bincount(inverse, minlength=pairs.size)
    rows = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
    train_keys = rows * n_items + train.indices.astype(np.int64)
    position = np.clip(np.searchsorted(pairs, train_keys), 0, max(pairs.size - 1, 0))
    found = pairs[position] == train_keys
    days = np.where(found, latest[position], _NO_DAYS)
    count = np.where(found, counts[position], 1)
    return days.astype(np.float32), count.astype(np.float32)


def item_facts(
    n_items: int, train: sp.csr_matrix, events: Any | None
) -> dict[str, np.ndarray]:
    """Popularity (all, last 7 and 30 days), age and idle days per item."""
    popularity = np.asarray(train.getnnz(axis=0), dtype=np.float32)
    zeros = np.zeros(n_items, dtype=np.float32)
    if events is None or len(events) == 0:
        return {
            "item_popularity": popularity,
            "item_popularity_short": zeros,
            "item_popularity_long": zeros,
            "item_age_days": zeros,
            "item_idle_days": zeros,
        }
    item = events["item"].to_numpy(np.int64)
    user = events["user"].to_numpy(np.int64)
    days = events["days_before"].to_numpy(np.float64)

    def distinct_users(window: float) -> np.ndarray:
        recent = days <= window
        keys = np.unique(item[recent] * (int(user.max()) + 1) + user[recent])
        counted = np.bincount(keys // (int(user.max()) + 1), minlength=n_items)
        return counted.astype(np.float32)

    first = np.full(n_items, -np.inf)
    np.maximum.at(first, item, days)
    last = np.full(n_items, np.inf)
    np.minimum.at(last, item, days)
    seen = np.isfinite(last)
    return {
        "item_popularity": popularity,
        "item_popularity_short": distinct_users(DAYS_WINDOW_SHORT),
        "item_popularity_long": distinct_users(DAYS_WINDOW_LONG),
        "item_age_days": np.where(seen, first, -1.0).astype(np.float32),
        "item_idle_days": np.where(seen, last, _NO_DAYS).astype(np.float32),
    }
