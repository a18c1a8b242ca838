"""Baselines every model must beat: random, popularity, ItemKNN, EASE and text kNN."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from interest_graph.config import Settings
from interest_graph.errors import ConfigError
from interest_graph.evaluation.protocols import EvaluationSplit
from interest_graph.logs import get_logger

log = get_logger("baselines")

EASE_MAX_ITEMS = 20_000  # the dense item-item inverse needs items² × 8 bytes


class RandomBaseline:
    """Uniform random ranking of the candidates: the floor any model must clear.

    Each test user, in ``split.test_users`` order, draws one permutation of the
    candidate items from a single ``default_rng(seed)`` stream, the reference
    implementation's draw. The generator state before each user's draw is kept, so
    scores do not depend on how users are batched.
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, split: EvaluationSplit) -> None:
        self.candidates = np.flatnonzero(split.candidates)
        self.n_items = split.n_items
        rng = np.random.default_rng(self.seed)
        self.states: dict[int, Mapping[str, Any]] = {}
        for user in split.test_users:
            self.states[int(user)] = rng.bit_generator.state
            rng.permutation(self.candidates.size)

    def score(self, users: np.ndarray) -> np.ndarray:
        scores = np.full((len(users), self.n_items), -np.inf, dtype=np.float32)
        first_to_last = np.arange(self.candidates.size, 0, -1, dtype=np.float32)
        for row, user in enumerate(users):
            rng = np.random.default_rng([self.seed, int(user)])
            if int(user) in self.states:
                rng.bit_generator.state = self.states[int(user)]
            order = rng.permutation(self.candidates.size)
            scores[row, self.candidates[order]] = first_to_last
        return scores


class PopularityBaseline:
    """Score = number of training users who interacted with the item."""

    name = "popularity"

    def fit(self, split: EvaluationSplit) -> None:
        self.popularity = np.asarray(split.train.sum(axis=0), dtype=np.float32).ravel()

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(users), self.popularity.size))


class ItemKNNBaseline:
    """Item-based kNN with cosine similarity over all neighbours.

    score(u, j) = Σ_i x_ui · cos(i, j). The factored form (X_u Xnᵀ) Xn with
    Xn = X D^-1/2 never builds the items × items matrix. The self-similarity term
    only adds to the user's own items, which are never candidates.
    """

    name = "itemknn"

    def fit(self, split: EvaluationSplit) -> None:
        degree = np.asarray(split.train.sum(axis=0)).ravel()
        inv_sqrt = np.divide(
            1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0
        )
        self.train = split.train
        self.normalised = (split.train @ sp.diags(inv_sqrt.astype(np.float32))).tocsr()
        self.normalised_t = self.normalised.T.tocsr()

    def score(self, users: np.ndarray) -> np.ndarray:
        overlap = self.train[users] @ self.normalised_t  # users × users, sparse
        return np.asarray((overlap @ self.normalised).todense(), dtype=np.float32)


class EASEBaseline:
    """EASE (Steck 2019): closed-form item-item regression with a zero diagonal."""

    name = "ease"

    def __init__(self, l2: float = 500.0) -> None:
        self.l2 = l2

    def fit(self, split: EvaluationSplit) -> None:
        if split.n_items > EASE_MAX_ITEMS:
            raise ConfigError(
                f"EASE needs a dense {split.n_items}² inverse "
                f"({split.n_items**2 * 8 / 2**30:.1f} GiB); "
                f"the limit is {EASE_MAX_ITEMS} items"
            )
        gram = (split.train.T @ split.train).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        precision = np.linalg.inv(gram)
        weights = precision / -np.diag(precision)
        weights[np.diag_indices_from(weights)] = 0.0
        self.weights = weights.astype(np.float32)
        self.train = split.train

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.train[users] @ self.weights, dtype=np.float32)


def item_text_vectors(
    split: EvaluationSplit, settings: Settings, model: str
) -> np.ndarray:
    """The ``embed`` stage's text vectors of the split's items, in its item order.

    One text path: the vectors Feast's ``item_text_embeddings`` view serves
    (``settings.text``: template, cleaning, model), read from the stage's output
    in ``settings.features_dir`` when it covers these items, else embedded once
    into ``<work_dir>/cache`` for every later caller. Items without text get zeros.

    Raises:
        ConfigError: the protocol has no item text (``model`` names who needs it).
    """
    from interest_graph.embeddings.stage import item_vectors

    if split.item_text is None:
        raise ConfigError(f"protocol {split.protocol} has no item text for {model}")
    return item_vectors(
        split.item_text,
        settings.features_dir,
        settings.paths.cache_dir,
        settings.text,
        device=settings.device,
    )


class TextKNNBaseline:
    """Text kNN for cold items: user = mean of their items' normalised text vectors.

    Score = cosine between that profile and each item's text vector; works for items
    nobody has interacted with.
    """

    name = "text-knn"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def fit(self, split: EvaluationSplit) -> None:
        self.item_vectors = item_text_vectors(split, self.settings, self.name)
        counts = np.asarray(split.train.sum(axis=1)).ravel()
        profile = split.train @ self.item_vectors
        profile /= np.maximum(counts, 1.0)[:, None]
        norms = np.linalg.norm(profile, axis=1, keepdims=True)
        self.user_vectors = profile / np.maximum(norms, 1e-12)

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.user_vectors[users] @ self.item_vectors.T


BASELINES = ("random", "popularity", "itemknn", "ease", "text-knn")


def make_baseline(
    name: str, settings: Settings
) -> (
    RandomBaseline
    | PopularityBaseline
    | ItemKNNBaseline
    | EASEBaseline
    | TextKNNBaseline
):
    """Build a baseline by name (``ease`` takes ``evaluation.ease_lambda``)."""
    if name == "random":
        return RandomBaseline(settings.evaluation.seed)
    if name == "popularity":
        return PopularityBaseline()
    if name == "itemknn":
        return ItemKNNBaseline()
    if name == "ease":
        return EASEBaseline(settings.evaluation.ease_lambda)
    if name == "text-knn":
        return TextKNNBaseline(settings)
    raise ConfigError(f"unknown model {name!r}; choose one of {list(BASELINES)}")
