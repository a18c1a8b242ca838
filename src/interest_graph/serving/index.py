"""Item indexes: the top-K items for query vectors, excluding what a user has.

:class:`ExactIndex` scores every item (one matrix product) and ranks with
:func:`~interest_graph.evaluation.ranking.rank_items`, exactly as ``recommend``
does. :class:`FaissIndex` (``faiss-ivf`` or ``faiss-hnsw``) fetches a candidate
pool approximately, then ranks the pool with the same function; a row whose pool
runs dry after exclusions and filters is ranked exactly instead, so it never
returns fewer items than it could. ``auto`` (the default) is exact below
``ann_min_items`` items and IVF above: at 100k × 64 the exact product reads
25.6 MB per request (about 1 ms of a core, 1.5 ms with the ranking), the IVF
search about 0.1 ms.

The IVF index calibrates itself at load: it raises ``nprobe`` (lists searched)
until its top-:data:`CALIBRATION_K` of a sample of the model's own user vectors
agrees with the exact one on at least ``min_recall`` of the items.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from interest_graph.errors import ConfigError
from interest_graph.evaluation.metrics import NO_ITEM
from interest_graph.evaluation.ranking import Seen, rank_items, seen_pairs
from interest_graph.logs import get_logger

log = get_logger("serving.index")

# Candidates fetched per row beyond k and the row's exclusions.
POOL_FACTOR = 4
# Below this many items ``auto`` ranks exactly (Online Retail: 3.6k items).
ANN_MIN_ITEMS = 50_000
# Calibration: this many query vectors, recall measured at this depth (deeper
# than a request's k, since exclusions push the served top-k down the pool).
CALIBRATION_QUERIES = 512
CALIBRATION_K = 50
MIN_RECALL = 0.98
INDEX_KINDS = ("auto", "exact", "faiss-ivf", "faiss-hnsw")


class ItemIndex(Protocol):
    """Top-K search over the item vectors."""

    kind: str

    def top_k(
        self,
        queries: np.ndarray,
        k: int,
        seen: Seen | None,
        candidates: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Item rows and scores (queries × k, best first; ``NO_ITEM``/NaN pads)."""
        ...


class ExactIndex:
    """Inner product with every item; the reference the ANN indexes approximate."""

    kind = "exact"

    def __init__(self, item_vectors: np.ndarray) -> None:
        self.items_t = np.ascontiguousarray(np.asarray(item_vectors, np.float32).T)

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """Scores of every item for each query (queries × items)."""
        return np.asarray(queries, dtype=np.float32) @ self.items_t

    def top_k(
        self,
        queries: np.ndarray,
        k: int,
        seen: Seen | None,
        candidates: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        return rank_items(self.scores(queries), k, seen=seen, candidates=candidates)


class FaissIndex:
    """A FAISS inner-product index (IVF-flat or HNSW) with exact re-ranking rules.

    Attributes:
        kind: ``faiss-ivf`` or ``faiss-hnsw``.
        recall: the calibration recall@:data:`CALIBRATION_K` against exact (IVF
            with calibration queries; else None).
    """

    def __init__(
        self,
        item_vectors: np.ndarray,
        kind: str,
        *,
        calibration_queries: np.ndarray | None = None,
        min_recall: float = MIN_RECALL,
    ) -> None:
        import faiss

        vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self.kind = kind
        self.exact = ExactIndex(vectors)
        self.n_items, dim = vectors.shape
        self.recall: float | None = None
        self.index: Any
        if kind == "faiss-hnsw":
            self.index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = 80
        elif kind == "faiss-ivf":
            # About sqrt(n) lists, with at least 39 training vectors per list: at
            # 100k items 316 lists train in ~0.4 s on one core (4·sqrt(n): 2+ s)
            # and 16 of them find the exact top 20 (measured, clustered vectors).
            nlist = max(1, min(int(math.sqrt(self.n_items)), self.n_items // 39))
            quantizer = faiss.IndexFlatIP(dim)
            self.index = faiss.IndexIVFFlat(
                quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT
            )
            self.index.train(vectors)
            self.index.nprobe = min(nlist, max(16, nlist // 8))
            self._quantizer = quantizer  # FAISS does not own it from Python
        else:
            raise ConfigError(f"unknown index kind {kind!r}")
        self.index.add(vectors)
        if kind == "faiss-ivf" and calibration_queries is not None:
            self._calibrate(np.asarray(calibration_queries, np.float32), min_recall)

    def _calibrate(self, queries: np.ndarray, min_recall: float) -> None:
        """Smallest ``nprobe`` (doubling) whose recall reaches ``min_recall``."""
        if len(queries) == 0:
            return
        if len(queries) > CALIBRATION_QUERIES:
            picked = np.random.default_rng(0).choice(
                len(queries), CALIBRATION_QUERIES, replace=False
            )
            queries = queries[np.sort(picked)]
        depth = min(CALIBRATION_K, self.n_items)
        truth, _ = self.exact.top_k(queries, depth, None, None)
        nlist = int(self.index.nlist)
        nprobe = 1
        while True:
            self.index.nprobe = nprobe
            _, found = self.index.search(np.ascontiguousarray(queries), depth)
            self.recall = _recall(truth, found)
            if self.recall >= min_recall or nprobe >= nlist:
                break
            nprobe = min(nlist, 2 * nprobe)
        log.info(
            "IVF index: %d lists, nprobe %d, recall@%d %.4f against exact on %d "
            "user vectors",
            nlist,
            nprobe,
            depth,
            self.recall,
            len(queries),
        )

    def top_k(
        self,
        queries: np.ndarray,
        k: int,
        seen: Seen | None,
        candidates: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n_queries = len(queries)
        pairs = None if seen is None else seen_pairs(seen)
        n_seen = 0
        if pairs is not None and pairs[0].size:
            n_seen = int(np.bincount(pairs[0], minlength=n_queries).max())
        pool = min(self.n_items, POOL_FACTOR * k + n_seen)
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = max(64, pool)
        scores, rows = self.index.search(queries, pool)
        # Pool columns in item order, so ties break by item index as in rank_items.
        order = np.argsort(
            np.where(rows < 0, self.n_items, rows), axis=1, kind="stable"
        )
        rows = np.take_along_axis(rows, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        valid = rows >= 0
        safe = np.where(valid, rows, 0)
        if candidates is not None:
            allowed = candidates if candidates.ndim == 2 else candidates[None, :]
            allowed = np.broadcast_to(allowed, (n_queries, self.n_items))
            valid &= np.take_along_axis(allowed, safe, axis=1)
        if pairs is not None and pairs[0].size:
            # One key per (row, item): membership over the pool, never a
            # rows × items matrix.
            keys = np.arange(n_queries, dtype=np.int64)[:, None] * self.n_items + safe
            valid &= ~np.isin(keys, pairs[0] * self.n_items + pairs[1])
        picked, best = rank_items(scores, k, candidates=valid)
        items = np.where(
            picked == NO_ITEM,
            NO_ITEM,
            np.take_along_axis(safe, np.where(picked == NO_ITEM, 0, picked), axis=1),
        )
        short = (items == NO_ITEM).any(axis=1)
        if short.any():  # the pool ran dry: rank those rows exactly
            rows_short = np.flatnonzero(short)
            part_candidates = (
                candidates[rows_short]
                if candidates is not None and candidates.ndim == 2
                else candidates
            )
            items[rows_short], best[rows_short] = self.exact.top_k(
                queries[rows_short],
                k,
                None if pairs is None else _pairs_of_rows(pairs, rows_short),
                part_candidates,
            )
        return items, best


def _recall(truth: np.ndarray, found: np.ndarray) -> float:
    """Mean share of each row of ``truth`` that ``found`` has."""
    hits = [
        np.intersect1d(t[t != NO_ITEM], f[f >= 0]).size
        / max(int((t != NO_ITEM).sum()), 1)
        for t, f in zip(truth, found, strict=True)
    ]
    return float(np.mean(hits)) if hits else 1.0


def _pairs_of_rows(
    pairs: tuple[np.ndarray, np.ndarray], rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The (row, item) pairs of ``rows``, renumbered 0..len(rows)-1."""
    position = np.full(int(max(pairs[0].max(initial=-1), rows.max())) + 1, -1)
    position[rows] = np.arange(rows.size)
    mine = position[pairs[0]] >= 0
    return position[pairs[0][mine]], pairs[1][mine]


def build_index(
    item_vectors: np.ndarray,
    kind: str,
    *,
    ann_min_items: int = ANN_MIN_ITEMS,
    calibration_queries: np.ndarray | None = None,
    min_recall: float = MIN_RECALL,
) -> ItemIndex:
    """The index ``serving.index`` names over a model's item vectors.

    Args:
        item_vectors: items × dim.
        kind: ``auto`` (exact below ``ann_min_items`` items, else ``faiss-ivf``),
            ``exact``, ``faiss-ivf`` or ``faiss-hnsw``.
        ann_min_items: the catalogue size from which ``auto`` is approximate.
        calibration_queries: query vectors (the model's users) the IVF index
            tunes its ``nprobe`` on; without them it keeps a fixed one.
        min_recall: the calibration's target recall against exact.

    Raises:
        ConfigError: an unknown kind.
    """
    if kind not in INDEX_KINDS:
        raise ConfigError(
            f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}"
        )
    if kind == "auto":
        kind = "exact" if len(item_vectors) < ann_min_items else "faiss-ivf"
    if kind == "exact":
        return ExactIndex(item_vectors)
    return FaissIndex(
        item_vectors,
        kind,
        calibration_queries=calibration_queries,
        min_recall=min_recall,
    )
