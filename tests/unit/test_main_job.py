"""The main job on a small synthetic shop: data, validation, baselines, table."""

from __future__ import annotations

import json
from pathlib import Path

from interest_graph.config import Settings
from interest_graph.features import StoreProfile, get_online, open_store
from interest_graph.main_job import run_main_job


def test_main_job_writes_the_evaluation_table(tmp_path: Path) -> None:
    settings = Settings(
        paths={"work_dir": tmp_path},
        synth={"users": 400, "items": 600, "categories": 10, "events": 20_000},
        train={"epochs": 4, "batch_size": 2048, "dim": 32},
    )
    report = run_main_job(settings)
    written = json.loads((Path(report["run_dir"]) / "evaluation.json").read_text())
    assert written["ingest"]["balanced"]
    rows = {(r["protocol"], r["model"]): r for r in written["evaluation"]}
    assert set(rows) == {
        ("shop-temporal", "popularity"),
        ("shop-temporal", "itemknn"),
        ("shop-temporal", "ease"),
        ("shop-temporal", "text-lightgcn"),
        ("shop-cold-items", "random"),
        ("shop-cold-items", "text-knn"),
        ("shop-cold-items", "text-lightgcn"),
    }
    # The synthetic shop carries signal in behaviour and in text.
    temporal_pop = rows[("shop-temporal", "popularity")]["ndcg@20"]
    assert rows[("shop-temporal", "ease")]["ndcg@20"] > temporal_pop
    cold_random = rows[("shop-cold-items", "random")]["recall@20"]
    assert rows[("shop-cold-items", "text-knn")]["recall@20"] > 2 * cold_random
    assert set(written["seconds"]) == {
        "ingest",
        "validate",
        "features build",
        "embed",
        "features apply + materialize",
        "shop-temporal",
        "shop-cold-items",
        "gnn train + register",
        "interest graph + Feast push",
        "serve champion (sample call)",
    }
    # The GNN beats popularity; its artifact and interest graph are on disk.
    gnn = rows[("shop-temporal", "text-lightgcn")]
    assert gnn["ndcg@20"] > temporal_pop
    assert (Path(written["model"]) / "model.safetensors").is_file()
    assert Path(written["interest_graph"]["graphml"]).is_file()
    assert written["pushed_user_interests"] > 0
    # The model is the registry's first champion, and the service answers with it,
    # leaving out what the user bought (from Feast's user_recent_items).
    assert written["registry"]["version"] == "1" and written["registry"]["promoted"]
    served = written["served_sample"]
    assert served["fallback"] is None and served["model_version"] == "1"
    assert len(served["items"]) == 5
    recent = get_online(
        open_store(settings.features_dir, StoreProfile()), [served["user_id"]], []
    )["users"][0]["features"]["user_recent_items__recent_items"]
    bought = set(json.loads(recent))
    assert bought and not bought & {i["item_id"] for i in served["items"]}
    # The feature store the job built serves a user online.
    store = open_store(
        settings.features_dir, StoreProfile.from_settings(settings.features)
    )
    user = get_online(store, ["U0000001"], [])["users"][0]
    assert user["found"]
    assert user["features"]["user_activity__views_90d"] > 0
    # ... and the interests the GNN pushed for them.
    top = json.loads(user["features"]["user_interest_vectors__top_interests"])
    assert len(top) >= 1
    assert len(user["features"]["user_interest_vectors__interest_vector"]) == 32
