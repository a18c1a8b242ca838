"""Short reasons for recommendations: the interest and the history item behind them.

At load, the model's items are clustered into interests (the interest graph of
``interest-graph interests``) and each item's "because you like <interest>" is
written once. Per request only the history item most like each recommendation is
found: one small product of unit vectors (k × history).
"""

from __future__ import annotations

import numpy as np

from interest_graph.logs import get_logger

log = get_logger("serving.reasons")

# Only the latest history items are compared (a long history costs, adds little).
HISTORY_FOR_REASONS = 50


class ReasonBook:
    """Per-item interest phrases and unit vectors for the "similar to" part."""

    def __init__(
        self,
        item_vectors: np.ndarray,
        item_ids: np.ndarray,
        titles: np.ndarray,
        n_interests: int | None = None,
    ) -> None:
        from interest_graph.interests.graph import build_interest_graph

        vectors = np.asarray(item_vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.unit = np.divide(
            vectors, norms, out=np.zeros_like(vectors), where=norms > 0
        )
        self.titles = titles
        self.because = np.full(len(item_ids), "", dtype=object)
        if not (norms > 0).any():
            return
        # No users: serving needs item interests only, not user weights.
        graph = build_interest_graph(
            np.zeros((0, vectors.shape[1]), np.float32),
            vectors,
            np.empty(0, dtype=object),
            item_ids,
            titles,
            n_interests=n_interests,
        )
        labels = graph.labels()
        rows = {str(i): r for r, i in enumerate(item_ids)}
        for item, interest in zip(
            graph.item_interests["item_id"].astype(str),
            graph.item_interests["interest_id"].astype(str),
            strict=True,
        ):
            self.because[rows[item]] = f"because you like {labels[interest]}"
        log.info("reasons ready: %d interests", graph.n_interests)

    def reasons(self, items: np.ndarray, history: np.ndarray) -> list[str]:
        """A reason per recommended item row (``history``: the user's item rows)."""
        because = self.because[items]
        if history.size == 0:
            return [str(b) for b in because]
        recent = history[-HISTORY_FOR_REASONS:]
        closest = recent[np.argmax(self.unit[items] @ self.unit[recent].T, axis=1)]
        return [
            f"{b}; similar to {t}" if b else f"similar to {t}"
            for b, t in zip(because, self.titles[closest], strict=True)
        ]
