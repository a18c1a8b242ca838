"""The hybrid ranker: LightGBM lambdarank over graph, text, temporal and interest
signals.

Candidates come from several sources (temporal EASE and the last basket's
item-to-item weights, the graph model's vectors, text neighbours of the user's
recent items, popular items within the user's interests); each (user, candidate)
gets the features of :mod:`interest_graph.models.hybrid_features`. The ranker
learns from a validation split carved from the training data (the last
``train.validation_days`` of a timestamped shop; pseudo-cold items on a cold-item
protocol): every signal is fitted on what precedes the window and the window's new
items are the labels. Then the signals are refitted on all training data and the
ranker scores their candidates. The test window is never seen.

The artifact is the usual safetensors + JSON folder (``"scorer": true``); the
LightGBM model is kept in its own text format, inside the weights file as bytes
(``ranker_model``) so that the artifact alone rebuilds the ranker, and beside it
as ``ranker.txt`` with ``feature_importance.json`` for people to read.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from interest_graph.config import HybridConfig, Settings
from interest_graph.errors import ConfigError
from interest_graph.evaluation.protocols import EvaluationSplit
from interest_graph.evaluation.validation import validation_split
from interest_graph.logs import get_logger
from interest_graph.models.artifact import ModelArtifact
from interest_graph.models.hybrid_features import (
    HybridSignals,
    candidate_features,
    item_facts,
    pair_facts,
)
from interest_graph.models.shop_signals import TemporalEASE

if TYPE_CHECKING:
    import lightgbm

log = get_logger("hybrid")

RANKER_FILE = "ranker.txt"
IMPORTANCE_FILE = "feature_importance.json"
SCORE_BATCH = 512  # users per feature batch: ~15 batch x items float32 matrices


def _user_batches(users: np.ndarray, size: int = SCORE_BATCH) -> list[np.ndarray]:
    return [users[start : start + size] for start in range(0, users.size, size)]


class HybridRanker:
    """Hybrid ranker (see the module notes); a ``Recommender`` and a scorer.

    Args:
        settings: ``hybrid`` configures the ranker; ``train`` the graph source and
            the validation window; ``text`` the item text encoder.
        config: overrides ``settings.hybrid`` (the ablations).
    """

    name = "hybrid"

    def __init__(self, settings: Settings, config: HybridConfig | None = None) -> None:
        self.settings = settings
        self.config = config or settings.hybrid
        self.signals: HybridSignals | None = None
        self.booster: lightgbm.Booster | None = None
        self.feature_names: list[str] = []
        self.candidates: np.ndarray | None = None
        self.graph_epochs: int | None = None
        self.facts: dict[str, Any] = {}
        # LightGBM's prediction threads (0: its OpenMP default). A server sets 1:
        # one user's few hundred candidates gain nothing from a thread team, and
        # OpenMP threads spinning beside busy cores stall the call.
        self.predict_threads = 0

    # --- fitting -------------------------------------------------------------

    def _uses(self, source: str) -> bool:
        return source in self.config.sources

    def fit(self, split: EvaluationSplit) -> None:
        """Fit the signals on validation windows, learn the ranker, refit."""
        started = time.perf_counter()
        self.facts = {}
        text = self._text_vectors(split)
        windows = self.validation_windows(split)
        rows = [self._training_rows(self._fit_signals(w, text), w) for w in windows]
        values, labels, groups = (
            np.concatenate(part) for part in zip(*rows, strict=True)
        )
        self.booster, ranker_facts = self._learn(values, labels, groups)
        self.candidates = split.candidates.copy()
        self.signals = self._fit_signals(split, text)
        self.facts.update(
            {
                "validation": [window.describe() for window in windows],
                "ranker": ranker_facts,
                "graph_epochs": self.graph_epochs,
                "train_seconds": round(time.perf_counter() - started, 2),
            }
        )

    def validation_windows(self, split: EvaluationSplit) -> list[EvaluationSplit]:
        """``hybrid.windows`` validation splits, each carved from the previous
        one's training data (the latest first); the ranker learns from all."""
        train = self.settings.train
        windows: list[EvaluationSplit] = []
        parent = split
        warm_protocol = bool(split.candidates.all())
        for _ in range(self.config.windows):
            window = validation_split(
                parent, seed=train.seed, days=train.validation_days
            )
            log.info("hybrid validation window: %s", window.describe())
            if window.test_users.size == 0:
                break
            if warm_protocol:
                # A window's candidates are the items it knows; every item, like
                # the protocol's, so that the next window and the graph model's
                # own early stopping are carved by days, not as cold items.
                window = replace(window, candidates=np.ones_like(window.candidates))
            windows.append(window)
            parent = window
        if not windows:
            raise ConfigError(
                f"{split.protocol}: the validation window holds no users to learn "
                "the ranker from; lengthen train.validation_days"
            )
        return windows

    def _text_vectors(self, split: EvaluationSplit) -> np.ndarray | None:
        needs_text = self._uses("text") or (
            self._uses("graph") and self.config.graph_model == "text-lightgcn"
        )
        if not needs_text or split.item_text is None:
            return None
        from interest_graph.evaluation.baselines import item_text_vectors

        vectors = item_text_vectors(split, self.settings, self.name)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)

    def _graph_vectors(
        self, split: EvaluationSplit
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The graph source's user and item vectors fitted on ``split``.

        The GNN early-stops on the validation split's own validation window; the
        final fit reuses that epoch count, so the test window chooses nothing.
        """
        if not self._uses("graph"):
            return None
        if self.config.graph_model == "graph-filter":
            from interest_graph.models.graph_filter import GraphFilter

            graph_filter = GraphFilter()
            graph_filter.fit(split)
            users = graph_filter.user_vectors(np.arange(split.n_users))
            return users.astype(np.float32), graph_filter.item_vectors()
        from interest_graph.models.recommender import GraphModelRecommender

        update: dict[str, Any] = {"model": self.config.graph_model}
        if self.graph_epochs is not None:
            update.update(epochs=self.graph_epochs, early_stopping=False)
        settings = self.settings.model_copy(
            update={"train": self.settings.train.model_copy(update=update)}
        )
        model = GraphModelRecommender(settings)
        model.fit(split)
        assert model.run is not None
        if self.graph_epochs is None:
            self.graph_epochs = int(model.run.epochs)
        return model.run.user_vectors, model.run.item_vectors

    def _fit_signals(
        self, split: EvaluationSplit, text: np.ndarray | None
    ) -> HybridSignals:
        """Every signal of ``split`` (its training data only)."""
        started = time.perf_counter()
        temporal_ease = TemporalEASE()
        temporal_ease.fit(split)
        graph = self._graph_vectors(split)
        days, counts = pair_facts(split.train, split.train_events)
        signals = HybridSignals(
            temporal_ease=temporal_ease,
            train=split.train.tocsr(),
            pair_days=days,
            pair_events=counts,
            graph_users=None if graph is None else graph[0],
            graph_items=None if graph is None else graph[1],
            text=text if self._uses("text") else None,
            text_half_life_days=self.config.text_half_life_days,
            recency=self.config.recency,
            **item_facts(split.n_items, split.train, split.train_events),
        )
        if self._uses("interest"):
            self._add_interests(signals, split, text)
        log.info(
            "hybrid signals of %s in %.1f s",
            split.protocol,
            time.perf_counter() - started,
        )
        return signals

    def _add_interests(
        self, signals: HybridSignals, split: EvaluationSplit, text: np.ndarray | None
    ) -> None:
        """The interest graph's clusters and user weights, over the graph model's
        vectors (or the text profile where there is no graph source)."""
        from interest_graph.interests.graph import build_interest_graph

        if signals.graph_users is not None and signals.graph_items is not None:
            users, items = signals.graph_users, signals.graph_items
        elif text is not None:
            items = text
            users = np.asarray(split.train @ text, dtype=np.float32)
        else:
            return
        graph = build_interest_graph(
            users,
            items,
            split.user_ids,
            split.item_ids,
            split.item_titles,
            seed=self.settings.train.seed,
        )
        interest_index = {
            str(i): n for n, i in enumerate(graph.interests["interest_id"])
        }
        item_rows = {str(i): n for n, i in enumerate(split.item_ids)}
        user_rows = {str(u): n for n, u in enumerate(split.user_ids)}
        item_interest = np.full(split.n_items, -1, dtype=np.int64)
        cosine = np.zeros(split.n_items, dtype=np.float32)
        for item, interest, weight in graph.item_interests[
            ["item_id", "interest_id", "weight"]
        ].itertuples(index=False):
            item_interest[item_rows[str(item)]] = interest_index[str(interest)]
            cosine[item_rows[str(item)]] = weight
        weights = np.zeros((split.n_users, len(interest_index)), dtype=np.float32)
        frame = graph.user_interests
        rows = frame["user_id"].astype(str).map(user_rows).to_numpy(np.int64)
        cols = frame["interest_id"].astype(str).map(interest_index).to_numpy(np.int64)
        weights[rows, cols] = frame["weight"].to_numpy(np.float32)
        signals.item_interest = item_interest
        signals.item_interest_cosine = cosine
        signals.user_interest_weight = weights

    def _features(
        self,
        signals: HybridSignals,
        users: np.ndarray,
        candidates: np.ndarray,
    ) -> Any:
        allowed = np.asarray(signals.train[users].todense()) == 0
        allowed &= candidates[None, :]
        batch, names = candidate_features(
            signals,
            users,
            allowed,
            self.config.candidates_per_source,
            tuple(self.config.sources),
        )
        if self.feature_names and names != self.feature_names:
            raise RuntimeError("feature columns changed between fit and score")
        self.feature_names = names
        return batch

    def _training_rows(
        self, signals: HybridSignals, validation: EvaluationSplit
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Feature rows, labels (1: bought in the window) and user groups, of at
        most ``hybrid.max_window_users`` of the window's users.

        Users none of whose window items is among their candidates teach a ranker
        nothing and are left out.
        """
        values, labels, groups = [], [], []
        learners = self._window_users(validation.test_users.size)
        truth = validation.ground_truth.tocsr()[learners]
        found = total = 0
        for start in range(0, learners.size, SCORE_BATCH):
            users = validation.test_users[learners[start : start + SCORE_BATCH]]
            batch = self._features(signals, users, validation.candidates)
            relevant = np.asarray(truth[start : start + users.size].todense()) > 0
            label = relevant[batch.rows, batch.items].astype(np.float32)
            found += int(label.sum())
            total += int(relevant.sum())
            per_user = np.bincount(batch.rows, minlength=users.size)
            positives = np.bincount(batch.rows, weights=label, minlength=users.size)
            keep_user = positives > 0
            keep = keep_user[batch.rows]
            values.append(batch.values[keep])
            labels.append(label[keep])
            groups.append(per_user[keep_user])
        self.facts.setdefault("candidate_recall", []).append(
            round(found / max(total, 1), 4)
        )
        log.info(
            "hybrid candidates hold %.1f%% of the validation window's items",
            100 * found / max(total, 1),
        )
        return np.concatenate(values), np.concatenate(labels), np.concatenate(groups)

    def _window_users(self, n_users: int) -> np.ndarray:
        """Positions of the window users the ranker learns from: all, or
        ``hybrid.max_window_users`` of them drawn by the seed (in order)."""
        cap = self.config.max_window_users
        if n_users <= cap:
            return np.arange(n_users)
        rng = np.random.default_rng(self.settings.train.seed)
        return np.sort(rng.choice(n_users, size=cap, replace=False))

    def _learn(
        self, values: np.ndarray, labels: np.ndarray, groups: np.ndarray
    ) -> tuple[lightgbm.Booster, dict[str, Any]]:
        """LightGBM lambdarank: early-stop on held-out window users, then refit on
        all of them for the chosen number of rounds."""
        import lightgbm

        config = self.config
        k = self.settings.evaluation.k
        params: dict[str, Any] = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [k],
            "lambdarank_truncation_level": 2 * k,
            "learning_rate": config.learning_rate,
            "num_leaves": config.num_leaves,
            "min_child_samples": config.min_child_samples,
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "seed": self.settings.train.seed,
            "deterministic": True,
            "num_threads": 0,
            "verbose": -1,
        }
        rng = np.random.default_rng(self.settings.train.seed)
        held = rng.random(groups.size) < config.holdout_share
        if held.all() or not held.any():
            raise ConfigError("the validation window holds too few users to rank")
        row_held = np.repeat(held, groups)
        fit_set = lightgbm.Dataset(
            values[~row_held],
            labels[~row_held],
            group=groups[~held],
            feature_name=self.feature_names,
            free_raw_data=False,
        )
        held_set = lightgbm.Dataset(
            values[row_held], labels[row_held], group=groups[held], reference=fit_set
        )
        started = time.perf_counter()
        history: dict[str, Any] = {}
        probe = lightgbm.train(
            params,
            fit_set,
            num_boost_round=config.rounds,
            valid_sets=[held_set],
            valid_names=["held"],
            callbacks=[
                lightgbm.early_stopping(config.early_stopping_rounds, verbose=False),
                lightgbm.record_evaluation(history),
            ],
        )
        rounds = max(int(probe.best_iteration), 1)
        held_ndcg = float(history["held"][f"ndcg@{k}"][rounds - 1])
        everything = lightgbm.Dataset(
            values, labels, group=groups, feature_name=self.feature_names
        )
        booster = lightgbm.train(params, everything, num_boost_round=rounds)
        facts = {
            "rows": int(labels.size),
            "users": int(groups.size),
            "positives": int(labels.sum()),
            "rounds": rounds,
            f"held_ndcg@{k}": round(held_ndcg, 4),
            "seconds": round(time.perf_counter() - started, 2),
        }
        log.info("hybrid ranker: %s", facts)
        return booster, facts

    # --- scoring -------------------------------------------------------------

    def score(self, users: np.ndarray) -> np.ndarray:
        """Ranker scores (len(users) x n_items, float32); candidates first, the
        rest after them in temporal EASE's order."""
        return self._score_rows(self._fitted_signals(), users)

    def score_with_new(self, user_row: int, new_items: np.ndarray) -> np.ndarray:
        """One known user's ranker scores (n_items, float32) as if ``new_items``
        had just been bought (see :meth:`HybridSignals.with_new_items`): the same
        path as :meth:`score`, on a one-user view of the signals. With no new
        items it is ``score([user_row])[0]``."""
        view = self._fitted_signals().with_new_items(int(user_row), new_items)
        return self._score_rows(view, np.zeros(1, dtype=np.int64))[0]

    def _fitted_signals(self) -> HybridSignals:
        if self.signals is None or self.booster is None or self.candidates is None:
            raise RuntimeError("fit the hybrid ranker (or load it) before scoring")
        return self.signals

    def _score_rows(self, signals: HybridSignals, users: np.ndarray) -> np.ndarray:
        """Ranker scores of rows ``users`` of ``signals``, in batches."""
        assert self.booster is not None and self.candidates is not None
        users = np.asarray(users, dtype=np.int64)
        out = np.empty((users.size, signals.n_items), dtype=np.float32)
        for start in range(0, users.size, SCORE_BATCH):
            block = users[start : start + SCORE_BATCH]
            batch = self._features(signals, block, self.candidates)
            predicted = np.asarray(
                self.booster.predict(batch.values, num_threads=self.predict_threads),
                np.float32,
            )
            # Non-candidates rank below every candidate, in temporal EASE's order.
            floor = predicted.min() if predicted.size else np.float32(0.0)
            fallback = batch.fallback
            finite = np.isfinite(fallback) & (fallback > -1e29)
            span = np.ptp(fallback[finite]) if finite.any() else 1.0
            rest = (
                floor
                - 2.0
                + (fallback - fallback[finite].min(initial=0.0))
                / max(float(span), 1e-6)
            )
            rest = np.where(finite, rest, floor - 3.0).astype(np.float32)
            rest[batch.rows, batch.items] = predicted
            out[start : start + block.size] = rest
        return out

    def feature_importance(self) -> list[dict[str, Any]]:
        """Total gain and split count per feature, largest gain first."""
        if self.booster is None:
            raise RuntimeError("fit the hybrid ranker first")
        gain = self.booster.feature_importance("gain")
        splits = self.booster.feature_importance("split")
        total = float(gain.sum()) or 1.0
        rows = [
            {
                "feature": name,
                "gain_share": round(float(g) / total, 4),
                "splits": int(s),
            }
            for name, g, s in zip(self.feature_names, gain, splits, strict=True)
        ]
        return sorted(rows, key=lambda row: -row["gain_share"])

    def training_facts(self) -> dict[str, Any]:
        """Validation window, ranker rounds and timings, for the metrics JSON."""
        return {**self.facts, "feature_importance": self.feature_importance()[:15]}

    def hyperparameters(self) -> dict[str, Any]:
        """The hybrid settings (and the graph source's epochs), JSON-serialisable."""
        return {
            **self.config.model_dump(mode="json"),
            "graph_epochs": self.graph_epochs,
        }

    # --- artifact ------------------------------------------------------------

    def to_artifact(self, split: EvaluationSplit) -> ModelArtifact:
        """The fitted ranker and its signals as an artifact (no pickle)."""
        if self.signals is None or self.booster is None or self.candidates is None:
            raise RuntimeError("fit the hybrid ranker before saving it")
        from interest_graph.models.recommender import training_window

        ranker_text = self.booster.model_to_string()
        tensors = self.signals.to_tensors()
        tensors["ranker_model"] = np.frombuffer(
            ranker_text.encode("utf-8"), dtype=np.uint8
        ).copy()
        tensors["candidates"] = self.candidates.astype(np.uint8)
        return ModelArtifact(
            model=self.name,
            config={
                "scorer": True,
                "hyperparameters": self.hyperparameters(),
                "temporal_ease": self.signals.temporal_ease.config(),
                "feature_names": self.feature_names,
                "protocol": split.protocol,
                "training_window": training_window(split),
                "text_model": (
                    self.settings.text.model if self.signals.text is not None else None
                ),
                "training": self.training_facts(),
            },
            user_ids=split.user_ids,
            item_ids=split.item_ids,
            tensors=tensors,
            item_titles=split.item_titles,
            trained=split.train,
        )

    def write_beside(self, folder: str | Path) -> None:
        """The ranker in LightGBM's text format and its feature importances."""
        if self.booster is None:
            raise RuntimeError("fit the hybrid ranker before saving it")
        out = Path(folder)
        self.booster.save_model(str(out / RANKER_FILE))
        (out / IMPORTANCE_FILE).write_text(
            json.dumps(self.feature_importance(), indent=2) + "\n", encoding="utf-8"
        )

    @classmethod
    def from_artifact(cls, artifact: ModelArtifact) -> HybridRanker:
        """The fitted ranker a hybrid artifact holds."""
        import lightgbm

        config = artifact.config
        hyperparameters = dict(config["hyperparameters"])
        graph_epochs = hyperparameters.pop("graph_epochs", None)
        ranker = cls(Settings(), HybridConfig.model_validate(hyperparameters))
        ranker.graph_epochs = graph_epochs
        tensors = artifact.tensors
        ranker.signals = HybridSignals.from_tensors(
            tensors,
            config["temporal_ease"],
            ranker.config.text_half_life_days,
            ranker.config.recency,
        )
        ranker.booster = lightgbm.Booster(
            model_str=bytes(tensors["ranker_model"]).decode("utf-8")
        )
        ranker.candidates = tensors["candidates"].astype(bool)
        ranker.feature_names = list(config["feature_names"])
        ranker.facts = dict(config.get("training", {}))
        return ranker
