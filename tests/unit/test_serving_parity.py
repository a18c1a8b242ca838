"""The server agrees with the batch command: same model, same users, same top-K.

Also the ranking pieces the server owns: the FAISS indexes against the exact one,
the history read from events, and the predictor behind a transformer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from interest_graph import stages
from interest_graph.config import ServingConfig, Settings
from interest_graph.errors import ConfigError
from interest_graph.evaluation.protocols import build_split
from interest_graph.models.artifact import ModelArtifact
from interest_graph.serving.history import UserHistory
from interest_graph.serving.index import ExactIndex, FaissIndex, build_index
from interest_graph.serving.model import ServingModel, load_serving_model
from interest_graph.serving.predictor import RecommenderModel
from interest_graph.serving.requests import UserFeatures
from interest_graph.serving.transformer import RecommenderTransformer

K = 10


@pytest.fixture(scope="module")
def shop_model(
    tmp_path_factory: pytest.TempPathFactory, small_shop_dir: Path
) -> tuple[Path, Any]:
    """A vector artifact over the small shop's shop-temporal split."""
    split = build_split("shop-temporal", small_shop_dir)
    rng = np.random.default_rng(3)
    folder = tmp_path_factory.mktemp("parity") / "model"
    ModelArtifact(
        model="lightgcn",
        config={"protocol": split.protocol},
        user_ids=split.user_ids,
        item_ids=split.item_ids,
        tensors={
            "user_vectors": rng.normal(size=(split.n_users, 16)).astype(np.float32),
            "item_vectors": rng.normal(size=(split.n_items, 16)).astype(np.float32),
        },
        item_titles=split.item_titles,
    ).save(folder)
    return folder, split


def _predictor(serving: ServingModel) -> RecommenderModel:
    predictor = RecommenderModel(lambda: serving, ServingConfig(feast=False))
    predictor.load()
    return predictor


async def _call(model: Any, body: dict[str, Any]) -> Any:
    """One call through preprocess, predict and postprocess, as KServe makes it."""
    payload = model.preprocess(body, {})
    result = model.predict(payload, {})
    if asyncio.iscoroutine(result):
        result = await result
    return model.postprocess(result, {})


def _ask(model: Any, body: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_call(model, body))  # type: ignore[no-any-return]


def test_server_top_k_equals_offline_recommend(
    shop_model: tuple[Path, Any], small_shop_dir: Path, tmp_path: Path
) -> None:
    folder, split = shop_model
    recs = stages.recommend(
        "shop-temporal",
        small_shop_dir,
        str(folder),
        tmp_path / "recs.parquet",
        Settings(),
        k=K,
    )
    offline = pd.read_parquet(recs)
    serving = load_serving_model(
        folder,
        version="1",
        uri=str(folder),
        history=UserHistory.from_matrix(split.user_ids, split.item_ids, split.train),
    )
    users = [str(u) for u in split.user_ids[split.test_users]]
    assert len(users) > 20
    answer = _ask(
        _predictor(serving), {"instances": [{"user_id": u, "k": K} for u in users]}
    )
    for user, prediction in zip(users, answer["predictions"], strict=True):
        expected = offline[offline["user_id"] == user].sort_values("rank")
        assert [i["item_id"] for i in prediction["items"]] == list(
            expected["item_id"]
        ), user
        assert [i["score"] for i in prediction["items"]] == pytest.approx(
            list(expected["score"]), rel=1e-5
        )
        assert prediction["fallback"] is None


def test_history_from_events_excludes_purchases(
    shop_model: tuple[Path, Any], small_shop_dir: Path
) -> None:
    folder, _ = shop_model
    history = UserHistory.from_events(small_shop_dir / "events.parquet")
    events = pd.read_parquet(small_shop_dir / "events.parquet")
    bought = events[events["event_type"] == "purchase"]
    user = str(bought["user_id"].value_counts().index[0])
    assert set(history.item_ids_of(user)) == set(
        bought.loc[bought["user_id"] == user, "item_id"].astype(str)
    )
    serving = load_serving_model(folder, version="1", uri="x", history=history)
    answer = _ask(_predictor(serving), {"instances": [{"user_id": user, "k": 50}]})
    recommended = {i["item_id"] for i in answer["predictions"][0]["items"]}
    assert recommended.isdisjoint(history.item_ids_of(user))
    assert len(recommended) == 50


@pytest.mark.parametrize("kind", ["faiss-hnsw", "faiss-ivf"])
def test_faiss_indexes_find_the_exact_top_k(kind: str) -> None:
    rng = np.random.default_rng(0)
    items = rng.normal(size=(2000, 16)).astype(np.float32)
    queries = rng.normal(size=(20, 16)).astype(np.float32)
    exact_items, exact_scores = ExactIndex(items).top_k(queries, K, None, None)
    found_items, found_scores = FaissIndex(items, kind).top_k(queries, K, None, None)
    recall = np.mean(
        [
            len(set(a) & set(b)) / K
            for a, b in zip(exact_items, found_items, strict=True)
        ]
    )
    assert recall >= 0.9
    hits = found_items == exact_items
    assert np.allclose(found_scores[hits], exact_scores[hits], rtol=1e-5)


def test_faiss_index_honours_exclusions_and_filters() -> None:
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    items = rng.normal(size=(500, 8)).astype(np.float32)
    queries = rng.normal(size=(3, 8)).astype(np.float32)
    exact = ExactIndex(items)
    top, _ = exact.top_k(queries, K, None, None)
    seen = sp.csr_matrix(
        (np.ones(3 * 5), top[:, :5].ravel(), np.arange(0, 16, 5)), shape=(3, 500)
    )
    allowed = np.arange(500) % 7 == 0  # only a few items pass: the pool runs dry
    want, _ = exact.top_k(queries, K, seen, allowed)
    got, _ = FaissIndex(items, "faiss-hnsw").top_k(queries, K, seen, allowed)
    assert (got == want).all()


def _clustered(n_items: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Items around 20 centres and queries mixing two: a shop's shape, not noise."""
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(20, 16)).astype(np.float32)
    items = centres[rng.integers(0, 20, n_items)] + 0.7 * rng.normal(
        size=(n_items, 16)
    ).astype(np.float32)
    pair = rng.integers(0, 20, (n_queries, 2))
    queries = 0.5 * (centres[pair[:, 0]] + centres[pair[:, 1]])
    return items.astype(np.float32), queries.astype(np.float32)


def test_auto_index_is_exact_below_the_threshold_and_calibrated_above() -> None:
    items, queries = _clustered(4000, 300)
    assert build_index(items, "auto", ann_min_items=5000).kind == "exact"
    index = build_index(
        items, "auto", ann_min_items=1000, calibration_queries=queries[:200]
    )
    assert isinstance(index, FaissIndex) and index.kind == "faiss-ivf"
    assert index.recall is not None and index.recall >= 0.98
    # Held-out queries: recall@20 against exact, as the bench measures it.
    want, _ = ExactIndex(items).top_k(queries[200:], 20, None, None)
    got, _ = index.top_k(queries[200:], 20, None, None)
    shared = [np.intersect1d(a, b).size for a, b in zip(want, got, strict=True)]
    recall = np.mean(shared) / 20
    assert recall >= 0.95
    with pytest.raises(ConfigError, match="unknown index kind"):
        build_index(items, "annoy")


def test_ivf_index_excludes_pairs_and_ranks_dry_rows_exactly() -> None:
    items, queries = _clustered(3000, 4)
    exact = ExactIndex(items)
    index = FaissIndex(items, "faiss-ivf", calibration_queries=queries)
    top, _ = exact.top_k(queries, K, None, None)
    # Each row leaves out its own best three, given as (row, item) pairs out of
    # row order; row 2 may only have every 50th item, so its pool runs dry and
    # is ranked exactly with its own exclusions.
    rows = np.repeat([3, 0, 2, 1], 3)
    seen = (rows, top[rows, np.tile([0, 1, 2], 4)])
    allowed = np.ones((4, len(items)), dtype=bool)
    allowed[2] = np.arange(len(items)) % 50 == 0
    allowed[2, top[2, :3]] = True
    want, want_scores = exact.top_k(queries, K, seen, allowed)
    got, got_scores = index.top_k(queries, K, seen, allowed)
    assert (got[2] == want[2]).all()
    assert not np.isin(top[:, :3], got).any()
    hits = got == want
    assert hits.mean() >= 0.9
    assert np.allclose(got_scores[hits], want_scores[hits], rtol=1e-5)


def test_transformer_and_predictor_answer_like_one_process(
    shop_model: tuple[Path, Any],
) -> None:
    folder, split = shop_model
    serving = load_serving_model(folder, version="1", uri=str(folder))
    user = str(split.user_ids[0])
    history = [str(split.item_ids[i]) for i in (0, 1, 2)]

    class StoreWithHistory:
        status = "ok"

        def lookup(
            self, user_ids: list[str], *, interests: bool = True
        ) -> list[UserFeatures]:
            return [UserFeatures(history=tuple(history), status="ok")] * len(user_ids)

    local = _predictor(serving)
    local.features = StoreWithHistory()
    remote = _predictor(serving)
    forwarded: list[dict[str, Any]] = []

    async def forward(body: dict[str, Any], headers: Any) -> Any:
        forwarded.append(body)
        return await _call(remote, body)

    transformer = RecommenderTransformer(
        StoreWithHistory(), ServingConfig(feast=False), forward=forward
    )
    body = {"instances": [{"user_id": user, "k": 30}]}
    via_transformer = _ask(transformer, body)
    assert forwarded[0]["instances"][0]["features"]["history"] == history
    assert via_transformer == _ask(local, body)
    items = [i["item_id"] for i in via_transformer["predictions"][0]["items"]]
    assert set(items).isdisjoint(history)
