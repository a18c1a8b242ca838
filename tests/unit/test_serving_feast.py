"""The predictor on a real Feast store (sqlite): what users bought comes from the
``user_recent_items`` view, categories from ``item_statistics``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from interest_graph.config import Settings
from interest_graph.features import open_store
from interest_graph.models.artifact import ModelArtifact
from interest_graph.schema import ShopTables
from interest_graph.serving.predictor import RecommenderModel
from interest_graph.serving.server import build_service


def _buyer_model(folder: Path, shop: ShopTables, buyer: str, bought: list[str]) -> Path:
    """A model whose buyer vector points at what they bought: those items would top
    the ranking if nothing excluded them."""
    rng = np.random.default_rng(0)
    item_ids = shop.items.item_id.astype(str).to_numpy(dtype=object)
    user_ids = shop.users.user_id.astype(str).to_numpy(dtype=object)
    items = rng.normal(size=(len(item_ids), 16)).astype(np.float32)
    users = rng.normal(size=(len(user_ids), 16)).astype(np.float32)
    rows = pd.Index(item_ids).get_indexer(bought)
    users[list(user_ids).index(buyer)] = items[rows].sum(axis=0)
    ModelArtifact(
        model="lightgcn",
        config={"protocol": "shop-temporal"},
        user_ids=user_ids,
        item_ids=item_ids,
        tensors={"user_vectors": users, "item_vectors": items},
        item_titles=shop.items.title.astype(str).to_numpy(dtype=object),
    ).save(folder)
    return folder


def _predictor(tmp_path: Path, model: Path, features: Path, feast: bool) -> Any:
    settings = Settings(
        paths={"work_dir": tmp_path / "work"},
        features={"features_dir": features},
        serving={
            "model_uri": str(model),
            "feast": feast,
            "inference_log_enabled": False,
            "reload_seconds": 0,
        },
    )
    predictor: RecommenderModel = build_service(settings).predictor
    predictor.load()
    return predictor


def _ask(predictor: RecommenderModel, user: str, k: int) -> dict[str, Any]:
    call = predictor.preprocess({"instances": [{"user_id": user, "k": k}]})
    answer = predictor.postprocess(predictor.predict(call))
    assert isinstance(answer, dict)
    return dict(answer["predictions"][0])


def test_feast_history_is_excluded_and_explains(
    tmp_path: Path, shop_store: Path, small_shop: ShopTables
) -> None:
    recent = pd.read_parquet(shop_store / "user_recent_items.parquet")
    row = recent.loc[recent.recent_items.map(lambda t: len(json.loads(t))).idxmax()]
    buyer, bought = str(row.user_id), json.loads(row.recent_items)
    assert len(bought) >= 3
    model = _buyer_model(tmp_path / "model", small_shop, buyer, bought)

    with_feast = _ask(_predictor(tmp_path, model, shop_store, feast=True), buyer, 10)
    assert with_feast["fallback"] is None
    answered = [item["item_id"] for item in with_feast["items"]]
    assert len(answered) == 10 and not set(answered) & set(bought)
    # Categories come from Feast's item statistics (no items file configured).
    categories = small_shop.items.set_index("item_id").category.astype(str)
    assert [i["category"] for i in with_feast["items"]] == [
        categories[i] for i in answered
    ]
    titles = set(small_shop.items.set_index("item_id").title[bought].astype(str))
    assert all(
        any(f"similar to {t}" in i["reason"] for t in titles)
        for i in with_feast["items"]
    )

    # The same model without Feast knows no history: it recommends what was bought.
    without = _ask(_predictor(tmp_path, model, shop_store, feast=False), buyer, 10)
    assert set(i["item_id"] for i in without["items"]) & set(bought)


def test_sqlite_store_is_read_inline_and_a_write_lock_costs_one_call(
    shop_store: Path,
) -> None:
    """The embedded store is read on the event loop's thread (no worker hop); a
    writer holding the file costs a call a flagged fallback within about its
    deadline (not sqlite's 5 s), and only SLOW_READS_TO_TRIP such calls in a row
    start the cool-down."""
    import asyncio
    import sqlite3
    import threading
    import time

    from interest_graph.serving.user_features import (
        SLOW_READS_TO_TRIP,
        DeadlineLookup,
        FeastUserFeatures,
        ServingLookup,
    )

    source = FeastUserFeatures(
        lambda: ServingLookup(open_store(shop_store), busy_timeout_ms=50)
    )
    assert source.inline
    recent = pd.read_parquet(shop_store / "user_recent_items.parquet")
    user = str(recent.user_id.iloc[0])
    threads: list[str] = []
    lookup = source.lookup

    def traced(ids: Any, **options: Any) -> Any:
        threads.append(threading.current_thread().name)
        return lookup(ids, **options)

    source.lookup = traced  # type: ignore[method-assign]
    deadline = DeadlineLookup()
    (found,) = asyncio.run(deadline.lookup(source, [user], 0.05))
    assert found.status == "ok" and found.history
    assert threads == [threading.current_thread().name]

    online = sqlite3.connect(shop_store / "online.db", timeout=0)
    online.execute("BEGIN EXCLUSIVE")  # a writer mid-commit
    try:
        for attempt in range(SLOW_READS_TO_TRIP):
            assert not source.skipping(), attempt
            started = time.perf_counter()
            # A long call deadline: the lock, not the slow-read count, trips.
            (found,) = asyncio.run(deadline.lookup(source, [user], 0.5))
            assert time.perf_counter() - started < 0.5
            assert found.status == "unavailable"
        assert source.skipping() and "locked" in str(source.last_error)
    finally:
        online.rollback()
        online.close()


def test_interest_vectors_are_read_only_for_users_the_model_does_not_know(
    tmp_path: Path, shop_store: Path, small_shop: ShopTables
) -> None:
    """A known user's vector is the model's own (of its version): the call
    reads their recent items alone, one online read instead of two; a user the
    model does not know gets the vector the pipeline pushed."""
    from interest_graph.features.online import push_user_interests
    from interest_graph.serving.user_features import (
        INTEREST_VECTOR,
        RECENT_ITEMS,
        ServingLookup,
    )

    recent = pd.read_parquet(shop_store / "user_recent_items.parquet")
    known = str(recent.user_id.iloc[0])
    model = _buyer_model(tmp_path / "model", small_shop, known, [])
    stranger = "pushed-but-not-trained"
    push_user_interests(
        open_store(shop_store),
        pd.DataFrame(
            {
                "user_id": [known, stranger],
                "interest_vector": [np.ones(16, np.float32)] * 2,
                "top_interests": ['["toys"]'] * 2,
                "event_timestamp": [pd.Timestamp.now(tz="UTC")] * 2,
            }
        ),
        to="online",
    )
    lookup = ServingLookup(open_store(shop_store))
    (both,) = lookup.users([known])
    (recent_only,) = lookup.users([known], interests=False)
    assert len(both["features"][INTEREST_VECTOR]) == 16
    assert INTEREST_VECTOR not in recent_only["features"]
    assert recent_only["features"][RECENT_ITEMS] == both["features"][RECENT_ITEMS]

    predictor = _predictor(tmp_path, model, shop_store, feast=True)
    asked: list[bool] = []
    read = predictor.features.lookup

    def traced(ids: Any, *, interests: bool = True) -> Any:
        asked.append(interests)
        return read(ids, interests=interests)

    predictor.features.lookup = traced
    known_call = predictor.preprocess({"instances": [{"user_id": known}]})
    stranger_call = predictor.preprocess({"instances": [{"user_id": stranger}]})
    assert asked == [False, True]
    assert known_call.requests[0].features.history
    assert known_call.requests[0].features.interest_vector is None
    assert stranger_call.requests[0].features.interest_vector is not None
    answer = predictor.postprocess(predictor.predict(stranger_call))
    assert answer["predictions"][0]["fallback"] is None  # ranked by its vector
