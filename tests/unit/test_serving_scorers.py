"""Scorer models served: temporal EASE and the graph filter answer like offline
ranking, and what the feature store says a user bought since training changes
their next answer without a reload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from interest_graph.config import RegistryConfig, ServingConfig, Settings
from interest_graph.evaluation.protocols import (
    EvaluationSplit,
    shop_test_start,
    temporal_split,
)
from interest_graph.evaluation.ranking import rank_items
from interest_graph.models.artifact import ModelArtifact
from interest_graph.models.graph_filter import GraphFilter
from interest_graph.models.recommender import scorer_artifact
from interest_graph.models.shop_signals import TemporalEASE
from interest_graph.schema import ShopTables
from interest_graph.serving.model import ServingModel, load_serving_model
from interest_graph.serving.requests import RecommendationRequest, UserFeatures
from interest_graph.serving.server import build_service

K = 10
STORE_OK = UserFeatures(status="ok")


@pytest.fixture(scope="module")
def split(small_shop: ShopTables) -> EvaluationSplit:
    return temporal_split("shop-temporal", small_shop, shop_test_start(small_shop))


@pytest.fixture(scope="module", params=["temporal-ease", "graph-filter"])
def served(
    request: pytest.FixtureRequest,
    split: EvaluationSplit,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ServingModel, TemporalEASE | GraphFilter]:
    model: TemporalEASE | GraphFilter = (
        TemporalEASE(l2=50.0) if request.param == "temporal-ease" else GraphFilter(32)
    )
    model.fit(split)
    folder = tmp_path_factory.mktemp(request.param)
    scorer_artifact(model, split).save(folder)
    return load_serving_model(folder, version="1", uri=str(folder)), model


def _ask(
    model: ServingModel, user: str, found: UserFeatures = STORE_OK, **fields: object
) -> tuple[list[str], str | None]:
    request = RecommendationRequest(user, K, **fields)  # type: ignore[arg-type]
    (answer,) = model.recommend([request], [found])
    return [item["item_id"] for item in answer.items], answer.fallback


def test_known_users_get_the_offline_ranking(
    served: tuple[ServingModel, TemporalEASE | GraphFilter], split: EvaluationSplit
) -> None:
    model, fitted = served
    users = split.test_users[:20]
    offline, _ = rank_items(fitted.score(users), K, seen=split.train[users])
    requests = [RecommendationRequest(str(split.user_ids[u]), K) for u in users]
    answers = model.recommend(requests, [STORE_OK] * len(requests))
    for answer, expected in zip(answers, offline, strict=True):
        assert answer.fallback is None
        assert [i["item_id"] for i in answer.items] == list(split.item_ids[expected])
        assert all(
            item["reason"].startswith(("because", "similar")) for item in answer.items
        )


def test_a_purchase_in_the_feature_store_changes_the_next_answer(
    served: tuple[ServingModel, TemporalEASE | GraphFilter], split: EvaluationSplit
) -> None:
    model, _ = served
    user = str(split.user_ids[split.test_users[0]])
    before, _ = _ask(model, user)
    bought = before[0]
    after, fallback = _ask(model, user, UserFeatures(history=(bought,), status="ok"))
    assert fallback is None
    assert bought not in after
    # Not only the bought item left: the rest was re-scored with it.
    assert after[: K - 1] != before[1:]


def test_unknown_users_are_scored_from_their_session(
    served: tuple[ServingModel, TemporalEASE | GraphFilter], split: EvaluationSplit
) -> None:
    model, _ = served
    recent = tuple(str(i) for i in split.item_ids[:3])
    items, fallback = _ask(model, "guest-1", recent_items=recent)
    assert fallback == "unknown_user:session_fold_in"
    assert len(items) == K and not set(recent) & set(items)
    popular, fallback = _ask(model, "guest-2")
    assert fallback == "unknown_user:popular_items" and len(popular) == K


def test_a_promoted_scorer_is_hot_reloaded(
    split: EvaluationSplit, tmp_path: Path
) -> None:
    from interest_graph.registry import promote, register

    settings = Settings(
        paths={"work_dir": tmp_path / "work"},
        registry=RegistryConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
        serving=ServingConfig(feast=False, inference_log_enabled=False),
    )
    vectors = _vector_model(split).save(tmp_path / "vectors")
    first = register(
        vectors, {"shop-temporal": {"ndcg@20": 0.1}}, settings, protocol="shop-temporal"
    )
    promote(settings, first.version, force=True)
    service = build_service(settings)
    service.predictor.load()
    assert service.reloader is not None and service.predictor.serving is not None
    assert service.predictor.serving.kind == "lightgcn"

    scorer = TemporalEASE(l2=50.0)
    scorer.fit(split)
    folder = scorer_artifact(scorer, split).save(tmp_path / "scorer")
    second = register(
        folder, {"shop-temporal": {"ndcg@20": 0.2}}, settings, protocol="shop-temporal"
    )
    promote(settings, second.version)
    assert service.reloader.check()
    serving = service.predictor.serving
    assert serving.kind == "temporal-ease" and serving.version == second.version
    items, fallback = _ask(serving, str(split.user_ids[split.test_users[0]]))
    assert fallback is None and len(items) == K


def _vector_model(split: EvaluationSplit) -> ModelArtifact:
    """A vector model over the split's ids (random vectors): the first champion."""
    rng = np.random.default_rng(0)
    return ModelArtifact(
        model="lightgcn",
        config={"protocol": split.protocol},
        user_ids=split.user_ids,
        item_ids=split.item_ids,
        tensors={
            "user_vectors": rng.normal(size=(split.n_users, 8)).astype(np.float32),
            "item_vectors": rng.normal(size=(split.n_items, 8)).astype(np.float32),
        },
    )


def test_items_beyond_training_are_a_set_difference() -> None:
    from interest_graph.serving.scorers import items_beyond

    rng = np.random.default_rng(3)
    for size in (0, 1, 5, 80):
        trained = np.sort(rng.choice(300, size, replace=False)).astype(np.int32)
        items = rng.integers(0, 300, 40)
        if size:
            items = np.concatenate([items, trained[: size // 2]])
        expected = np.setdiff1d(items, trained)
        np.testing.assert_array_equal(items_beyond(trained, items), expected)
    assert items_beyond(np.array([1, 2], np.int32), np.array([], np.int64)).size == 0
