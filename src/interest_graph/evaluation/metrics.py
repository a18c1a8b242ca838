"""Ranking metrics with the LightGCN definitions, vectorised over users.

Recall@K = |top-K ∩ GT| / |GT|; NDCG@K with binary gains and IDCG over
min(|GT|, K) positions; Hit@K = 1 if any hit. Averaged over test users.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

NO_ITEM = -1  # padding in a top-K matrix where a model left a rank empty


def hits_at_k(top_k: np.ndarray, ground_truth: sp.csr_matrix) -> np.ndarray:
    """Boolean matrix: ``hits[u, r]`` is True when the item at rank r is relevant."""
    truth = ground_truth.tocsr()
    rows = np.repeat(np.arange(top_k.shape[0]), top_k.shape[1])
    cols = top_k.ravel()
    valid = cols != NO_ITEM
    hits = np.zeros(top_k.size, dtype=bool)
    # CSR fancy indexing returns the stored value (1) or 0 for each (row, col) pair.
    if valid.any():
        hits[valid] = np.asarray(truth[rows[valid], cols[valid]]).ravel() > 0
    return hits.reshape(top_k.shape)


@dataclass
class RankingMetrics:
    """Accumulates per-user metrics over batches; :meth:`compute` averages them."""

    k: int
    n_candidates: int
    _recall: list[np.ndarray] = field(default_factory=list)
    _ndcg: list[np.ndarray] = field(default_factory=list)
    _hit: list[np.ndarray] = field(default_factory=list)
    _recommended: set[int] = field(default_factory=set)

    def update(self, top_k: np.ndarray, ground_truth: sp.csr_matrix) -> None:
        """Add a batch: ``top_k`` item indices (users × k), ground truth rows alike."""
        if top_k.shape[1] != self.k:
            raise ValueError(f"top_k has {top_k.shape[1]} columns, expected {self.k}")
        hits = hits_at_k(top_k, ground_truth).astype(np.float64)
        n_relevant = np.diff(ground_truth.tocsr().indptr).astype(np.float64)
        if np.any(n_relevant == 0):
            raise ValueError("every evaluated user needs at least one relevant item")
        discounts = 1.0 / np.log2(np.arange(2, self.k + 2))
        ideal_dcg = np.cumsum(discounts)[np.minimum(n_relevant, self.k).astype(int) - 1]
        self._recall.append(hits.sum(1) / n_relevant)
        self._ndcg.append((hits * discounts).sum(1) / ideal_dcg)
        self._hit.append((hits.sum(1) > 0).astype(np.float64))
        self._recommended.update(np.unique(top_k[top_k != NO_ITEM]).tolist())

    def compute(self) -> dict[str, float | int]:
        """Mean Recall/NDCG/Hit@K over users, and catalogue coverage@K."""
        if not self._recall:
            raise ValueError("no users were evaluated")
        recall = np.concatenate(self._recall)
        return {
            "users": int(recall.size),
            f"recall@{self.k}": float(recall.mean()),
            f"ndcg@{self.k}": float(np.concatenate(self._ndcg).mean()),
            f"hit@{self.k}": float(np.concatenate(self._hit).mean()),
            f"coverage@{self.k}": len(self._recommended) / self.n_candidates,
        }
