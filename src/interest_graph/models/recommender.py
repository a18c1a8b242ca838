"""Graph models behind the evaluation's ``Recommender`` protocol, and artifacts.

:class:`GraphModelRecommender` trains LightGCN or the text-aware model on a
split: first on a validation split carved from the training data, early-stopping
on its NDCG@K, then (``train.refit``) again on all training data for the best
number of epochs. :class:`ArtifactRecommender` scores a split with a saved
artifact, matching users and items by id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from interest_graph.config import Settings
from interest_graph.errors import ConfigError
from interest_graph.evaluation.baselines import item_text_vectors
from interest_graph.evaluation.protocols import EvaluationSplit
from interest_graph.evaluation.ranking import Recommender
from interest_graph.evaluation.validation import (
    too_small_to_early_stop,
    validation_split,
)
from interest_graph.logs import get_logger
from interest_graph.models.artifact import ModelArtifact
from interest_graph.models.training import TrainingRun, train_graph_model

log = get_logger("models")

GRAPH_MODELS = ("lightgcn", "text-lightgcn", "hetero-sage")
# Trained by ``fit`` alone (closed form, training-free, or the hybrid ranker over
# other models' signals); their artifacts are scorers, rebuilt from their arrays.
SCORING_MODELS = ("graph-filter", "temporal-ease", "hybrid")


def feast_node_features(
    split: EvaluationSplit, settings: Settings
) -> tuple[np.ndarray, np.ndarray]:
    """User and item features of the split from Feast, as of its test start.

    Point in time: a validation split's start is earlier than its parent's, so
    each training run sees only features computed before its own ground truth.
    """
    from interest_graph.features import StoreProfile, open_store
    from interest_graph.models.node_features import node_features_from_feast

    if split.test_start is None:
        raise ConfigError(
            f"hetero-sage needs a timestamped shop split, not {split.protocol}"
        )
    store = open_store(
        settings.features_dir, StoreProfile.from_settings(settings.features)
    )
    users, items, _, _ = node_features_from_feast(store, split, split.test_start)
    return users, items


def edge_weights(split: EvaluationSplit, settings: Settings) -> sp.csr_matrix | None:
    """Edge weights from event type and recency, when configured and known."""
    train = settings.train
    if split.train_events is None or (
        train.event_weights is None and train.half_life_days is None
    ):
        return None
    from interest_graph.models.shop_signals import interaction_weights

    # Binary repeats: log-scaled counts scored worse on Online Retail validation.
    return interaction_weights(
        split, train.half_life_days, train.event_weights, count_transform="binary"
    )


class GraphModelRecommender:
    """LightGCN / text-aware LightGCN trained on a split (see the module notes)."""

    def __init__(self, settings: Settings, model: str | None = None) -> None:
        self.settings = settings
        self.config = settings.train.model_copy(
            update={"model": model} if model else {}
        )
        self.name: str = self.config.model
        self.run: TrainingRun | None = None
        self.selection: TrainingRun | None = None

    def _node_features(
        self, split: EvaluationSplit
    ) -> tuple[np.ndarray, np.ndarray] | None:
        if self.config.model != "hetero-sage":
            return None
        return feast_node_features(split, self.settings)

    def fit(self, split: EvaluationSplit) -> None:
        config = self.config
        text = (
            item_text_vectors(split, self.settings, self.name)
            if self._uses_text
            else None
        )
        epochs = config.epochs
        if config.early_stopping:
            validation = validation_split(
                split, seed=config.seed, days=config.validation_days
            )
            log.info("validation split: %s", validation.describe())
            problem = too_small_to_early_stop(validation)
            if problem is not None:
                log.warning(
                    "%s; lengthen train.validation_days (now %g), or set "
                    "train.early_stopping false and choose train.epochs",
                    problem,
                    config.validation_days,
                )
            self.selection = self._train(
                validation, text, "validation", validation=validation
            )
            epochs = max(self.selection.best_epoch, 1)
            if not config.refit:
                self.run = self.selection
                return
        self.run = self._train(split, text, "final", epochs=epochs)

    def _train(
        self,
        split: EvaluationSplit,
        text: np.ndarray | None,
        stage: str,
        **options: Any,
    ) -> TrainingRun:
        """One training run on ``split``: its edge weights, features, checkpoints."""
        return train_graph_model(
            split,
            self.config,
            weights=edge_weights(split, self.settings),
            item_text=text,
            k=self.settings.evaluation.k,
            device=self.settings.device,
            checkpoint_dir=_sub(self.config.checkpoint_dir, stage),
            node_features=self._node_features(split),
            **options,
        )

    @property
    def _uses_text(self) -> bool:
        return self.config.model in ("text-lightgcn", "hetero-sage")

    def score(self, users: np.ndarray) -> np.ndarray:
        assert self.run is not None, "fit first"
        return self.run.user_vectors[users] @ self.run.item_vectors.T

    def training_facts(self) -> dict[str, Any]:
        """Epochs, timings and validation metrics, for the metrics JSON."""
        assert self.run is not None, "fit first"
        facts: dict[str, Any] = {
            "epochs": self.run.epochs,
            "train_seconds": round(self.run.seconds, 2),
            "epoch_seconds": round(float(np.mean(self.run.epoch_seconds or [0])), 3),
        }
        if self.selection is not None:
            facts.update(
                best_epoch=self.selection.best_epoch,
                validation=self.selection.best_validation,
                validation_seconds=round(self.selection.seconds, 2),
                history=self.selection.history,
            )
        return facts

    def to_artifact(self, split: EvaluationSplit) -> ModelArtifact:
        """The trained model as an artifact (vectors, config, index)."""
        assert self.run is not None, "fit first"
        return ModelArtifact(
            model=self.name,
            config={
                "hyperparameters": self.config.model_dump(
                    mode="json", exclude={"checkpoint_dir"}
                ),
                "protocol": split.protocol,
                "text_model": self.settings.text.model if self._uses_text else None,
                "training": self.training_facts(),
                "training_window": training_window(split),
            },
            user_ids=split.user_ids,
            item_ids=split.item_ids,
            tensors={
                "user_vectors": self.run.user_vectors,
                "item_vectors": self.run.item_vectors,
            },
            item_titles=split.item_titles,
            trained=split.train,
        )


def training_window(split: EvaluationSplit) -> dict[str, str] | None:
    """The dates of the training events, ``[start, end)`` as ISO dates (the
    day of the first and the day after the last): monitoring's reference
    window "training". None where the data has no timestamps."""
    events = split.train_events
    if events is None or split.test_start is None or events.empty:
        return None
    days = events["days_before"]
    first = split.test_start - pd.Timedelta(days=float(days.max()))
    last = split.test_start - pd.Timedelta(days=float(days.min()))
    end = last.normalize() + pd.Timedelta(days=1)
    return {"start": first.date().isoformat(), "end": end.date().isoformat()}


def _sub(folder: Path | None, name: str) -> Path | None:
    return None if folder is None else folder / name


def scorer_artifact(model: Any, split: EvaluationSplit) -> ModelArtifact:
    """A fitted graph filter, temporal EASE or hybrid ranker as an artifact (its
    arrays, no pickle)."""
    from interest_graph.models.graph_filter import GraphFilter
    from interest_graph.models.hybrid import HybridRanker

    if isinstance(model, HybridRanker):
        return model.to_artifact(split)
    if isinstance(model, GraphFilter):
        tensors = model.to_tensors()
        tensors["user_vectors"] = model.user_vectors(np.arange(split.n_users))
        hyperparameters = model.hyperparameters()
    else:
        tensors = dict(model.to_arrays())
        hyperparameters = model.config()
    return ModelArtifact(
        model=model.name,
        config={
            "scorer": True,
            "hyperparameters": hyperparameters,
            "protocol": split.protocol,
            "training_window": training_window(split),
        },
        user_ids=split.user_ids,
        item_ids=split.item_ids,
        tensors=tensors,
        item_titles=split.item_titles,
        trained=split.train,
    )


def rebuilt_scorer(artifact: ModelArtifact) -> Recommender:
    """The fitted scorer (graph filter, temporal EASE, hybrid ranker) a scorer
    artifact holds."""
    from interest_graph.models.graph_filter import GraphFilter
    from interest_graph.models.hybrid import HybridRanker
    from interest_graph.models.shop_signals import TemporalEASE

    if artifact.model == HybridRanker.name:
        return HybridRanker.from_artifact(artifact)
    hyperparameters = artifact.config["hyperparameters"]
    if artifact.model == GraphFilter.name:
        return GraphFilter.from_tensors(artifact.tensors, hyperparameters)
    if artifact.model == TemporalEASE.name:
        return TemporalEASE.from_arrays(artifact.tensors, hyperparameters)
    raise ConfigError(f"unknown scorer {artifact.model!r} in the artifact")


def _positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of each wanted id in ``ids`` (-1 where unknown)."""
    import pandas as pd

    return pd.Index(ids).get_indexer(pd.Index(wanted.astype(str)))


class ArtifactRecommender:
    """Scores a split with a saved artifact; users and items are matched by id.

    Users or items the artifact does not know score 0 (zero vectors).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.artifact = ModelArtifact.load(self.path)
        self.name = self.artifact.model
        self.scorer = rebuilt_scorer(self.artifact) if self.artifact.is_scorer else None

    def fit(self, split: EvaluationSplit) -> None:
        """Map the split's users and items to the artifact's rows."""
        self.user_rows = _positions(self.artifact.user_ids, split.user_ids)
        self.item_rows = _positions(self.artifact.item_ids, split.item_ids)
        self.n_items = split.n_items
        unknown_users = int((self.user_rows < 0).sum())
        unknown_items = int((self.item_rows < 0).sum())
        if unknown_users or unknown_items:
            log.warning(
                "%s does not know %d users and %d items of %s; they score 0",
                self.path,
                unknown_users,
                unknown_items,
                split.protocol,
            )
        if self.scorer is None:
            users = _aligned(self.artifact.user_vectors, self.user_rows)
            items = _aligned(self.artifact.item_vectors, self.item_rows)
            self.users, self.items_t = users, np.ascontiguousarray(items.T)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self.scorer is None:
            return self.users[users] @ self.items_t
        rows = self.user_rows[users]
        known_users, known_items = rows >= 0, self.item_rows >= 0
        out = np.zeros((len(users), self.n_items), dtype=np.float32)
        scores = self.scorer.score(rows[known_users])[:, self.item_rows[known_items]]
        out[np.ix_(known_users, known_items)] = scores
        return out


def _aligned(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = np.zeros((rows.size, vectors.shape[1]), dtype=np.float32)
    out[rows >= 0] = vectors[rows[rows >= 0]]
    return out
