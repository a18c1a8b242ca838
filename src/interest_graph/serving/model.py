"""A loaded model ready to serve: vectors, item index, catalogue, reasons.

:class:`ServingModel` is immutable once built; hot reload builds a new one in the
background and swaps the reference, so a request that took the old one finishes
with it and no request sees a half-loaded model.

How a user's ranking is made (``fallback`` says when it is not the model's own):

- the model knows the user: their vector (``fallback`` null; with the feature
  store down, ``feature_store_unavailable``); a scorer (temporal EASE, graph
  filter) scores their training items plus what the store says they have since;
- the model does not know them, the feature store has their interest vector of
  the model's width: that vector (null);
- otherwise, with ``recent_items``: the mean vector of those items (a scorer
  scores them with what the store has) (``unknown_user:session_fold_in``), else
  popular items
  (``unknown_user:popular_items``); with the store down the prefix is
  ``feature_store_unavailable``.

Excluded always: what the user had in the model's training data (so a feature
store outage never brings back what they bought), the user's items from the
history (``serving.history_path``) and from the feature store, ``exclude`` and
``recent_items``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from interest_graph.evaluation.metrics import NO_ITEM
from interest_graph.evaluation.ranking import Seen, rank_items
from interest_graph.logs import get_logger
from interest_graph.models.artifact import ModelArtifact
from interest_graph.serving.catalogue import Catalogue, build_catalogue
from interest_graph.serving.history import UserHistory
from interest_graph.serving.index import (
    ANN_MIN_ITEMS,
    MIN_RECALL,
    ItemIndex,
    build_index,
)
from interest_graph.serving.reasons import ReasonBook
from interest_graph.serving.requests import RecommendationRequest, UserFeatures
from interest_graph.serving.scorers import (
    HybridScorer,
    ScoreIndex,
    TemporalEASEScorer,
    UserScorer,
    WeightReasons,
    user_scorer,
)

log = get_logger("serving.model")

POPULAR_REASON = "popular in the shop"
UNAVAILABLE = "feature_store_unavailable"
UNKNOWN_USER = "unknown_user"
# Users per feature-store read when the hybrid's users are scored at load.
WARM_USERS_PER_LOOKUP = 1000


@dataclass(frozen=True)
class Recommendation:
    """One user's answer.

    Attributes:
        user_id: the user asked about.
        items: dicts of ``item_id``, ``score``, ``title``, ``category``,
            ``reason``, best first.
        fallback: null when the model answered with everything it needs, else
            what was done instead (see the module notes).
        model_version: the version that answered.
    """

    user_id: str
    items: list[dict[str, Any]]
    fallback: str | None
    model_version: str

    def as_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "items": self.items,
            "fallback": self.fallback,
            "model_version": self.model_version,
        }


@dataclass(frozen=True, eq=False)
class ServingModel:
    """Everything a request needs, built once per model version."""

    version: str
    uri: str
    kind: str
    user_rows: dict[str, int]
    user_vectors: np.ndarray
    catalogue: Catalogue
    index: ItemIndex
    reasons: ReasonBook | WeightReasons
    item_vectors: np.ndarray
    history: UserHistory | None
    history_rows: np.ndarray | None
    trained: sp.csr_matrix | None = None
    scorer: UserScorer | None = None

    def needs_interests(self, user_ids: Sequence[str]) -> bool:
        """Whether any of these users needs the feature store's interest vector:
        only a vector model's user it does not know (a scorer ranks from items,
        and a known user's vector is the model's own, of its version)."""
        return self.scorer is None and any(u not in self.user_rows for u in user_ids)

    def recommend(
        self,
        requests: Sequence[RecommendationRequest],
        features: Sequence[UserFeatures],
    ) -> list[Recommendation]:
        """Top-K for each request, with the features the store had for its user."""
        k_max = max(r.k for r in requests)
        queries: list[np.ndarray | None] = []
        fallbacks: list[str | None] = []
        had: list[np.ndarray] = []
        for request, found in zip(requests, features, strict=True):
            owned = self._owned_rows(request, found)
            query, fallback = self._query(request, found, owned)
            queries.append(query)
            fallbacks.append(fallback)
            had.append(owned)
        excluded = [
            np.concatenate([h, self.catalogue.rows(r.exclude)])
            for h, r in zip(had, requests, strict=True)
        ]
        items = np.full((len(requests), k_max), NO_ITEM, dtype=np.int64)
        scores = np.full((len(requests), k_max), np.nan, dtype=np.float32)
        by_vector = [i for i, q in enumerate(queries) if q is not None]
        popular = [i for i, q in enumerate(queries) if q is None]
        if by_vector:
            matrix = np.stack([queries[i] for i in by_vector])  # type: ignore[misc]
            items[by_vector], scores[by_vector] = self.index.top_k(
                matrix,
                k_max,
                _seen(excluded, by_vector),
                self._candidates(requests, by_vector),
            )
        if popular:
            table = np.broadcast_to(
                self.catalogue.popularity, (len(popular), self.catalogue.size)
            )
            items[popular], scores[popular] = rank_items(
                table,
                k_max,
                seen=_seen(excluded, popular),
                candidates=self._candidates(requests, popular),
            )
        return [
            Recommendation(
                user_id=request.user_id,
                items=self._items(
                    items[i, : request.k],
                    scores[i, : request.k],
                    had[i],
                    popular=queries[i] is None,
                ),
                fallback=fallbacks[i],
                model_version=self.version,
            )
            for i, request in enumerate(requests)
        ]

    def warm(self, lookup: Callable[[list[str]], list[UserFeatures] | None]) -> int:
        """Before the model takes calls, score the known users whose first call
        would otherwise score them anew: the hybrid's users with purchases since
        training, as the feature store has them now (``lookup``: the users'
        features, None when the store cannot say; then their calls score them).
        At most what the scorer keeps; only where it scored a table at load (a
        shop too large for the table skips this). Returns the users scored."""
        scorer = self.scorer
        if not isinstance(scorer, HybridScorer) or scorer.table is None:
            return 0
        users = list(self.user_rows)
        scored = 0
        for start in range(0, len(users), WARM_USERS_PER_LOOKUP):
            chunk = users[start : start + WARM_USERS_PER_LOOKUP]
            found = lookup(chunk)
            if found is None or any(f.status == "unavailable" for f in found):
                break
            for user, features in zip(chunk, found, strict=True):
                owned = self._owned_rows(RecommendationRequest(user, 1), features)
                scored += scorer.keep(self.user_rows[user], owned)
                if scored >= scorer.rescored.max_rows:
                    return scored
        return scored

    def _owned_rows(
        self, request: RecommendationRequest, found: UserFeatures
    ) -> np.ndarray:
        """Item rows the user has: training data, history, feature store history,
        recent items."""
        parts = [
            self.catalogue.rows(found.history),
            self.catalogue.rows(request.recent_items),
        ]
        if self.history is not None and self.history_rows is not None:
            rows = self.history_rows[self.history.codes_of(request.user_id)]
            parts.insert(0, rows[rows >= 0])
        user = self.user_rows.get(request.user_id)
        if self.trained is not None and user is not None:
            start, end = self.trained.indptr[user], self.trained.indptr[user + 1]
            parts.insert(0, self.trained.indices[start:end].astype(np.int64))
        return np.concatenate(parts)

    def _query(
        self, request: RecommendationRequest, found: UserFeatures, owned: np.ndarray
    ) -> tuple[np.ndarray | None, str | None]:
        """The query vector (None: popular items) and the fallback flag; for a
        scorer, the user's score row."""
        down = found.status == "unavailable"
        row = self.user_rows.get(request.user_id)
        if self.scorer is not None:
            return self._scored(row, owned, down)
        if row is not None:
            return self.user_vectors[row], UNAVAILABLE if down else None
        vector = found.interest_vector
        if vector is not None and vector.shape == (self.item_vectors.shape[1],):
            return vector, None
        prefix = UNAVAILABLE if down else UNKNOWN_USER
        recent = self.catalogue.rows(request.recent_items)
        if recent.size:
            return self.item_vectors[recent].mean(axis=0), f"{prefix}:session_fold_in"
        return None, f"{prefix}:popular_items"

    def _scored(
        self, row: int | None, owned: np.ndarray, down: bool
    ) -> tuple[np.ndarray | None, str | None]:
        """A scorer's row for a user: known, or scored from the items they have."""
        assert self.scorer is not None
        if row is not None:
            return self.scorer.scores(row, owned), UNAVAILABLE if down else None
        prefix = UNAVAILABLE if down else UNKNOWN_USER
        if owned.size:
            return self.scorer.scores(None, owned), f"{prefix}:session_fold_in"
        return None, f"{prefix}:popular_items"

    def _candidates(
        self, requests: Sequence[RecommendationRequest], rows: list[int]
    ) -> np.ndarray | None:
        filtered = [requests[i].filters for i in rows]
        if all(f is None for f in filtered):
            return None
        mask = np.ones((len(rows), self.catalogue.size), dtype=bool)
        for position, filters in enumerate(filtered):
            if filters is not None:
                mask[position] = self.catalogue.allowed(filters)
        return mask

    def _items(
        self, rows: np.ndarray, scores: np.ndarray, owned: np.ndarray, *, popular: bool
    ) -> list[dict[str, Any]]:
        keep = rows != NO_ITEM
        rows, scores = rows[keep], scores[keep]
        catalogue = self.catalogue
        reasons = (
            [POPULAR_REASON] * len(rows)
            if popular
            else self.reasons.reasons(rows, owned)
        )
        return [
            {
                "item_id": str(catalogue.item_ids[row]),
                "score": float(score),
                "title": str(catalogue.titles[row]),
                "category": catalogue.categories[row],
                "reason": reason,
            }
            for row, score, reason in zip(
                rows.tolist(), scores.tolist(), reasons, strict=True
            )
        ]


def _seen(excluded: list[np.ndarray], rows: list[int]) -> Seen | None:
    """The excluded items of the ``rows`` requests as (row, item) index arrays."""
    parts = [excluded[i] for i in rows]
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    if not lengths.any():
        return None
    positions = np.repeat(np.arange(len(parts), dtype=np.int64), lengths)
    return positions, np.concatenate(parts).astype(np.int64)


def _reasons(
    scorer: UserScorer | None,
    items: np.ndarray,
    item_ids: np.ndarray,
    titles: np.ndarray,
) -> ReasonBook | WeightReasons:
    """Interest reasons over item vectors; a scorer without them (temporal EASE)
    names the user's item that weighs most toward each recommendation."""
    if isinstance(scorer, TemporalEASEScorer):
        return WeightReasons(scorer.model.ease, titles)
    return ReasonBook(items, item_ids, titles)


def _model_popularity(
    artifact: ModelArtifact, users: np.ndarray, items: np.ndarray
) -> np.ndarray | None:
    """Popularity when neither events nor Feast give it: training interactions per
    item, else the average user's score."""
    if artifact.trained is not None:
        return np.asarray(artifact.trained.sum(axis=0), dtype=np.float64).ravel()
    return users.mean(axis=0) @ items.T if len(users) else None


def load_serving_model(
    path: str | Path,
    *,
    version: str,
    uri: str,
    index_kind: str = "auto",
    ann_min_items: int = ANN_MIN_ITEMS,
    min_recall: float = MIN_RECALL,
    items_path: Path | None = None,
    item_features: Any = None,
    history: UserHistory | None = None,
) -> ServingModel:
    """Load an artifact folder into a :class:`ServingModel`.

    Args:
        path: the artifact folder.
        version: the registry version (or a label for a local folder).
        uri: the URI it was resolved from.
        index_kind: ``auto``, ``exact``, ``faiss-ivf`` or ``faiss-hnsw``.
        ann_min_items: catalogue size from which ``auto`` is approximate.
        min_recall: the IVF index's calibration target (on the model's users).
        items_path: canonical items.parquet (category, price).
        item_features: a callable ``item_ids -> DataFrame`` of Feast item
            statistics, or None.
        history: what users have (excluded; also popularity).

    Raises:
        MalformedFileError: the artifact or an input file cannot be read.
    """
    artifact = ModelArtifact.load(path)
    scorer = None
    if artifact.is_scorer:
        from interest_graph.models.recommender import rebuilt_scorer

        scorer = user_scorer(rebuilt_scorer(artifact))
    # A scorer may have no vectors (temporal EASE): width 0, never queried.
    n_users, n_items = len(artifact.user_ids), len(artifact.item_ids)
    users = np.ascontiguousarray(
        artifact.tensors.get("user_vectors", np.zeros((n_users, 0))), np.float32
    )
    items = np.ascontiguousarray(
        artifact.tensors.get("item_vectors", np.zeros((n_items, 0))), np.float32
    )
    history_rows = counts = None
    if history is not None:
        history_rows = pd.Index(artifact.item_ids.astype(str)).get_indexer(
            history.item_ids.astype(str)
        )
        counts = np.zeros(len(items))
        known = history_rows >= 0
        np.add.at(counts, history_rows[known], history.counts[known])
    catalogue = build_catalogue(
        artifact.item_ids,
        artifact.item_titles,
        items_path=items_path,
        item_features=None
        if item_features is None
        else item_features(artifact.item_ids),
        counts=counts,
        model_popularity=_model_popularity(artifact, users, items),
    )
    model = ServingModel(
        version=version,
        uri=uri,
        kind=artifact.model,
        user_rows={str(u): i for i, u in enumerate(artifact.user_ids)},
        user_vectors=users,
        catalogue=catalogue,
        index=ScoreIndex()
        if scorer
        else build_index(
            items,
            index_kind,
            ann_min_items=ann_min_items,
            calibration_queries=users,
            min_recall=min_recall,
        ),
        reasons=_reasons(scorer, items, artifact.item_ids, catalogue.titles),
        item_vectors=items,
        history=history,
        history_rows=history_rows,
        trained=artifact.trained,
        scorer=scorer,
    )
    log.info(
        "loaded %s version %s: %d users, %d items, %s index",
        artifact.model,
        version,
        len(users),
        len(items),
        model.index.kind,
    )
    return model
