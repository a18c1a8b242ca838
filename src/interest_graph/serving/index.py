"""Item indexes: the top-K items for query vectors, excluding what a user has.

:class:`ExactIndex` scores every item (one matrix product) and ranks with
:func:`~interest_graph.evaluation.ranking.rank_items`, exactly as ``recommend``
does. :class:`FaissIndex` (``faiss-ivf`` or ``faiss-hnsw``) is for catalogues
over ~1M items: it fetches a candidate pool approximately, then ranks the pool
with the same function; a row whose pool runs dry after exclusions and filters
is ranked exactly instead, so it never returns fewer items than it could.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from interest_graph.errors import ConfigError
from interest_graph.evaluation.metrics import NO_ITEM
from interest_graph.evaluation.ranking import Seen, rank_items, seen_pairs

# Candidates fetched per row beyond k and the row's exclusions.
POOL_FACTOR = 4


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
    """A FAISS inner-product index (IVF-flat or HNSW) with exact re-ranking rules."""

    def __init__(self, item_vectors: np.ndarray, kind: str) -> None:
        import faiss

        vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self.kind = kind
        self.exact = ExactIndex(vectors)
        self.n_items, dim = vectors.shape
        self.index: Any
        if kind == "faiss-hnsw":
            self.index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = 80
        elif kind == "faiss-ivf":
            # About 4·sqrt(n) lists, with at least 39 training vectors per list.
            nlist = max(1, min(int(4 * math.sqrt(self.n_items)), self.n_items // 39))
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

    def top_k(
        self,
        queries: np.ndarray,
        k: int,
        seen: Seen | None,
        candidates: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        seen = None if seen is None else _as_matrix(seen, len(queries), self.n_items)
        n_seen = 0 if seen is None else int(np.diff(seen.indptr).max(initial=0))
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
            allowed = np.broadcast_to(allowed, (len(queries), self.n_items))
            valid &= np.take_along_axis(allowed, safe, axis=1)
        if seen is not None and seen.nnz:
            valid &= ~(seen[np.arange(len(queries))[:, None], safe].toarray() > 0)
        picked, best = rank_items(scores, k, candidates=valid)
        items = np.where(
            picked == NO_ITEM,
            NO_ITEM,
            np.take_along_axis(safe, np.where(picked == NO_ITEM, 0, picked), axis=1),
        )
        short = (items == NO_ITEM).any(axis=1)
        if short.any():  # the pool ran dry: rank those rows exactly
            rows_short = np.flatnonzero(short)
            part_seen = None if seen is None else seen[rows_short]
            part_candidates = (
                candidates[rows_short]
                if candidates is not None and candidates.ndim == 2
                else candidates
            )
            items[rows_short], best[rows_short] = self.exact.top_k(
                queries[rows_short], k, part_seen, part_candidates
            )
        return items, best


def _as_matrix(seen: Seen, n_rows: int, n_items: int) -> sp.csr_matrix:
    """``seen`` as a rows × items matrix (the ANN path slices it by row)."""
    if isinstance(seen, sp.csr_matrix):
        return seen
    rows, items = seen_pairs(seen)
    return sp.csr_matrix(
        (np.ones(rows.size, np.float32), (rows, items)), shape=(n_rows, n_items)
    )


def build_index(item_vectors: np.ndarray, kind: str) -> ItemIndex:
    """The index ``serving.index`` names over a model's item vectors."""
    if kind == "exact":
        return ExactIndex(item_vectors)
    return FaissIndex(item_vectors, kind)
