"""The hybrid ranker served through the KServe predictor: the offline top-K for
known users, a purchase written to Feast's online store changes the user's next
answer without a reload (the ranker re-scores the user with it), and an unknown
user gets a flagged fallback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from interest_graph.config import HybridConfig, Settings
from interest_graph.evaluation.protocols import (
    EvaluationSplit,
    shop_test_start,
    temporal_split,
)
from interest_graph.evaluation.ranking import rank_items
from interest_graph.features import open_store
from interest_graph.models.hybrid import HybridRanker
from interest_graph.models.recommender import scorer_artifact
from interest_graph.schema import ShopTables
from interest_graph.serving.predictor import RecommenderModel
from interest_graph.serving.scorers import HybridScorer
from interest_graph.serving.server import build_service

K = 10
# As tests/unit/test_hybrid.py: the graph filter keeps the fit to seconds.
FAST = HybridConfig(graph_model="graph-filter", rounds=60, min_child_samples=5)


@pytest.fixture(scope="module")
def split(small_shop: ShopTables) -> EvaluationSplit:
    return temporal_split("shop-temporal", small_shop, shop_test_start(small_shop))


@pytest.fixture(scope="module")
def hybrid(
    split: EvaluationSplit, tmp_path_factory: pytest.TempPathFactory
) -> tuple[HybridRanker, Path]:
    """The fitted ranker and its artifact folder."""
    root = tmp_path_factory.mktemp("hybrid")
    settings = Settings(paths={"work_dir": root / "work"})
    train = settings.train.model_copy(update={"validation_days": 10.0})
    settings = settings.model_copy(update={"train": train, "hybrid": FAST})
    model = HybridRanker(settings)
    model.fit(split)
    return model, scorer_artifact(model, split).save(root / "model")


def _predictor(
    tmp_path: Path, model: Path, features: Path | None = None
) -> RecommenderModel:
    settings = Settings(
        paths={"work_dir": tmp_path / "work"},
        features={"features_dir": features or tmp_path / "no-features"},
        serving={
            "model_uri": str(model),
            "feast": features is not None,
            "inference_log_enabled": False,
            "reload_seconds": 0,
        },
    )
    predictor: RecommenderModel = build_service(settings).predictor
    predictor.load()
    return predictor


def _ask(predictor: RecommenderModel, instances: list[dict[str, Any]]) -> list[Any]:
    call = predictor.preprocess({"instances": instances})
    answer = predictor.postprocess(predictor.predict(call))
    assert isinstance(answer, dict)
    return list(answer["predictions"])


def test_known_users_get_the_offline_top_k(
    hybrid: tuple[HybridRanker, Path], split: EvaluationSplit, tmp_path: Path
) -> None:
    model, folder = hybrid
    predictor = _predictor(tmp_path, folder)
    assert predictor.serving is not None and predictor.serving.kind == "hybrid"
    users = split.test_users[:25]
    offline, _ = rank_items(model.score(users), K, seen=split.train[users])
    answers = _ask(
        predictor, [{"user_id": str(split.user_ids[u]), "k": K} for u in users]
    )
    for answer, expected in zip(answers, offline, strict=True):
        assert answer["fallback"] is None
        assert [i["item_id"] for i in answer["items"]] == list(split.item_ids[expected])


def test_the_load_time_table_scores_like_the_ranker(
    hybrid: tuple[HybridRanker, Path], split: EvaluationSplit
) -> None:
    model, _ = hybrid
    table = HybridScorer(model)
    per_call = HybridScorer(model, table_bytes=0)
    assert table.table is not None and per_call.table is None
    none = np.array([], dtype=np.int64)
    users = split.test_users[:5]
    # Candidates score the same; the order below them is relative to the batch
    # (the ranker's floor), so the rankings' tops are compared.
    by_table = np.stack([table.scores(int(u), none) for u in users])
    by_call = np.stack([per_call.scores(int(u), none) for u in users])
    seen = split.train[users]
    assert (
        rank_items(by_table, K, seen=seen)[0] == rank_items(by_call, K, seen=seen)[0]
    ).all()


def test_a_rescored_row_is_kept_until_the_user_buys_something_else(
    hybrid: tuple[HybridRanker, Path], split: EvaluationSplit
) -> None:
    model, _ = hybrid
    scorer = HybridScorer(model)
    calls: list[tuple[int, list[int]]] = []

    def counted(user_row: int, new_items: np.ndarray) -> np.ndarray:
        calls.append((user_row, new_items.tolist()))
        return model.score_with_new(user_row, new_items)

    scorer.model = _Counting(model, counted)
    user = int(split.test_users[0])
    owned = set(split.train[user].indices.tolist())
    new = [i for i in range(split.train.shape[1]) if i not in owned][:2]
    first = scorer.scores(user, np.array(new[:1]))
    again = scorer.scores(user, np.array(new[:1]))
    assert again is first and len(calls) == 1
    np.testing.assert_array_equal(first, model.score_with_new(user, np.array(new[:1])))
    # Another purchase is another row; the first is still kept.
    other = scorer.scores(user, np.array(new))
    assert len(calls) == 2 and not np.array_equal(other, first)
    assert scorer.scores(user, np.array(new[:1])) is first and len(calls) == 2
    # Bounded: a third row pushes the others out; the first is scored again.
    scorer.rescored.max_rows = 1
    scorer.scores(user, np.array(new[1:]))
    assert len(calls) == 3 and len(scorer.rescored) == 1
    scorer.scores(user, np.array(new[:1]))
    assert len(calls) == 4


class _Counting:
    """The ranker with its per-user re-scoring replaced by ``counted``."""

    def __init__(self, model: HybridRanker, counted: Any) -> None:
        self._model = model
        self.score_with_new = counted

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def test_a_purchase_written_to_feast_changes_the_next_answer(
    hybrid: tuple[HybridRanker, Path],
    split: EvaluationSplit,
    shop_store: Path,
    tmp_path: Path,
) -> None:
    _, folder = hybrid
    predictor = _predictor(tmp_path, folder, shop_store)
    user = str(split.user_ids[split.test_users[0]])
    (before,) = _ask(predictor, [{"user_id": user, "k": K}])
    assert before["fallback"] is None
    items = [i["item_id"] for i in before["items"]]
    bought = items[0]
    recent = pd.read_parquet(shop_store / "user_recent_items.parquet")
    had = recent.loc[recent.user_id.astype(str) == user, "recent_items"]
    history = json.loads(had.iloc[0]) if len(had) else []
    open_store(shop_store).write_to_online_store(
        "user_recent_items",
        pd.DataFrame(
            {
                "user_id": [user],
                "recent_items": [json.dumps([bought, *history])],
                "event_timestamp": [pd.Timestamp.now(tz="UTC")],
            }
        ),
    )
    (after,) = _ask(predictor, [{"user_id": user, "k": K}])
    assert after["fallback"] is None
    answered = [i["item_id"] for i in after["items"]]
    assert bought not in answered and len(answered) == K
    assert predictor.reloads == 0


def test_nothing_new_scores_exactly_as_offline(
    hybrid: tuple[HybridRanker, Path], split: EvaluationSplit
) -> None:
    model, _ = hybrid
    assert model.signals is not None
    scorer = HybridScorer(model)
    assert scorer.table is not None
    none = np.array([], dtype=np.int64)
    for user in split.test_users[:5]:
        user = int(user)
        np.testing.assert_array_equal(
            model.score_with_new(user, none), model.score(np.array([user]))[0]
        )
        # Items of the training row are not new: the load-time row answers.
        trained = split.train.tocsr()[user].indices
        np.testing.assert_array_equal(scorer.scores(user, trained), scorer.table[user])
    # The one-user view shares the item-level arrays, it does not copy them.
    view = model.signals.with_new_items(int(split.test_users[0]), np.array([0]))
    assert view.temporal_ease.ease is model.signals.temporal_ease.ease
    assert view.item_popularity is model.signals.item_popularity
    assert view.text is model.signals.text and view.text is not None
    assert view.train.shape == (1, model.signals.n_items)


def _recent_rows(shop_store: Path, split: EvaluationSplit, user: str) -> list[str]:
    """The item ids Feast's materialised ``user_recent_items`` holds for ``user``."""
    recent = pd.read_parquet(shop_store / "user_recent_items.parquet")
    had = recent.loc[recent.user_id.astype(str) == user, "recent_items"]
    return list(json.loads(had.iloc[0])) if len(had) else []


def test_a_purchase_re_scores_the_served_list(
    hybrid: tuple[HybridRanker, Path],
    split: EvaluationSplit,
    shop_store: Path,
    tmp_path: Path,
) -> None:
    """Bought item b (outside the previous top K): without re-scoring the answer
    would be the previous one (b removed, nothing to top up); re-scored, b's
    temporal EASE neighbours move the list."""
    model, folder = hybrid
    assert model.signals is not None and model.signals.temporal_ease.ease is not None
    predictor = _predictor(tmp_path, folder, shop_store)
    row = int(split.test_users[1])  # test_users[0]: the other Feast test's user
    user = str(split.user_ids[row])
    (before,) = _ask(predictor, [{"user_id": user, "k": K}])
    previous = [i["item_id"] for i in before["items"]]
    history = _recent_rows(shop_store, split, user)
    position = {str(item): n for n, item in enumerate(split.item_ids)}
    owned = set(split.train.tocsr()[row].indices.tolist())
    owned |= {position[str(item)] for item in history}
    listed = {position[item] for item in previous}
    # b: the item (not owned, not listed) with the strongest temporal EASE weight
    # toward an item that is neither owned nor listed.
    ease = np.abs(model.signals.temporal_ease.ease)
    outside = np.ones(split.n_items, dtype=bool)
    outside[list(owned | listed)] = False
    strength = np.where(outside[None, :], ease, 0.0)
    np.fill_diagonal(strength, 0.0)
    bought = int(np.argmax(np.where(outside, strength.max(axis=1), -1.0)))
    open_store(shop_store).write_to_online_store(
        "user_recent_items",
        pd.DataFrame(
            {
                "user_id": [user],
                "recent_items": [json.dumps([str(split.item_ids[bought]), *history])],
                "event_timestamp": [pd.Timestamp.now(tz="UTC")],
            }
        ),
    )
    (after,) = _ask(predictor, [{"user_id": user, "k": K}])
    answered = [i["item_id"] for i in after["items"]]
    assert after["fallback"] is None and len(answered) == K
    assert str(split.item_ids[bought]) not in answered
    # Not re-scored, the answer would be ``previous``: b was not in it.
    assert answered != previous
    # It is the ranker's re-scored list, ranked as offline.
    new = np.array(sorted(owned - set(split.train.tocsr()[row].indices.tolist())))
    rescored = model.score_with_new(row, np.append(new, bought).astype(np.int64))
    excluded = np.array(sorted(owned | {bought}))
    seen = (np.zeros(excluded.size, dtype=np.int64), excluded)
    expected, _ = rank_items(rescored[None, :], K, seen=seen)
    assert answered == [str(i) for i in split.item_ids[expected[0]]]
    assert predictor.reloads == 0


def test_unknown_users_get_a_flagged_fallback(
    hybrid: tuple[HybridRanker, Path], split: EvaluationSplit, tmp_path: Path
) -> None:
    _, folder = hybrid
    predictor = _predictor(tmp_path, folder)
    recent = [str(i) for i in split.item_ids[:3]]
    stranger, session = _ask(
        predictor,
        [
            {"user_id": "stranger", "k": K},
            {"user_id": "guest", "k": K, "recent_items": recent},
        ],
    )
    assert stranger["fallback"] == "unknown_user:popular_items"
    assert len(stranger["items"]) == K
    assert session["fallback"] == "unknown_user:session_fold_in"
    answered = [i["item_id"] for i in session["items"]]
    assert len(answered) == K and not set(recent) & set(answered)


def test_users_who_bought_since_training_are_scored_at_load(
    hybrid: tuple[HybridRanker, Path], shop_store: Path, tmp_path: Path
) -> None:
    model, folder = hybrid
    predictor = _predictor(tmp_path, folder, shop_store)
    serving = predictor.serving
    assert serving is not None and isinstance(serving.scorer, HybridScorer)
    scorer = serving.scorer
    # What the online store says each known user has (other tests of this
    # module write purchases to it), against their training rows.
    users = list(serving.user_rows)
    found = predictor.features.lookup(users)
    since_training = []
    for user, features in zip(users, found, strict=True):
        row = serving.user_rows[user]
        had = serving.catalogue.rows(features.history)
        start, end = scorer.train.indptr[row], scorer.train.indptr[row + 1]
        if np.setdiff1d(had, scorer.train.indices[start:end]).size:
            since_training.append(user)
    assert since_training and len(scorer.rescored) == len(since_training)
    # Their calls read the kept rows: nothing is scored per call.
    calls: list[int] = []
    scorer.model = _Counting(model, lambda row, new: calls.append(row))
    answers = _ask(predictor, [{"user_id": u, "k": K} for u in since_training[:10]])
    assert not calls and all(a["fallback"] is None for a in answers)
