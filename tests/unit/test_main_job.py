"""The main job: the training pipeline through kfp.local on a small synthetic shop,
training the hybrid ranker, then one call from the served champion; a second,
equal run is not promoted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interest_graph.config import Settings
from interest_graph.features import StoreProfile, get_online, open_store
from interest_graph.kubeflow.definitions import load_pipeline
from interest_graph.kubeflow.local import task_names
from interest_graph.main_job import run_training_pipeline

pytestmark = pytest.mark.slow


def test_pipeline_runs_twice_and_deploys_only_a_promoted_model(tmp_path: Path) -> None:
    settings = Settings(
        paths={"work_dir": tmp_path},
        synth={"users": 400, "items": 600, "categories": 10, "events": 20_000},
        train={"epochs": 4, "batch_size": 2048, "dim": 32},
        hybrid={"windows": 1},
    )
    report = run_training_pipeline(settings)
    written = json.loads((tmp_path / "runs" / "latest" / "summary.json").read_text())
    assert written == json.loads(report.summary_path.read_text())
    statuses = {t["name"]: t["status"] for t in written["tasks"]}
    assert statuses == dict.fromkeys(task_names(load_pipeline("training")), "SUCCESS")
    assert len(statuses) == 9
    assert all(t["seconds"] > 0 for t in written["tasks"])
    assert written["ingest"]["balanced"]
    rows = {(r["protocol"], r["model"]): r for r in written["evaluation"]}
    assert set(rows) == {
        ("shop-temporal", "popularity"),
        ("shop-temporal", "itemknn"),
        ("shop-temporal", "ease"),
        ("shop-temporal", "hybrid (trained)"),
        ("shop-cold-items", "random"),
        ("shop-cold-items", "text-knn"),
        ("shop-cold-items", "text-lightgcn"),
        ("shop-cold-items", "hybrid (refit)"),
    }
    # The synthetic shop carries signal in behaviour and in text.
    temporal_pop = rows[("shop-temporal", "popularity")]["ndcg@20"]
    assert rows[("shop-temporal", "ease")]["ndcg@20"] > temporal_pop
    cold_random = rows[("shop-cold-items", "random")]["recall@20"]
    assert rows[("shop-cold-items", "text-knn")]["recall@20"] > 2 * cold_random
    # The main job trains the hybrid: it beats popularity, and its kind refitted
    # on new items beats random; its artifact and interest graph are on disk.
    hybrid = rows[("shop-temporal", "hybrid (trained)")]
    assert hybrid["ndcg@20"] > temporal_pop
    assert rows[("shop-cold-items", "hybrid (refit)")]["recall@20"] > cold_random
    assert (
        json.loads((Path(written["model"]) / "config.json").read_text())["model"]
        == "hybrid"
    )
    assert (Path(written["model"]) / "model.safetensors").is_file()
    assert (Path(written["interest_graph"]) / "interest_graph.graphml").is_file()
    # The model is the registry's first champion, the deploy step checked it
    # serves, and the service answers with it, leaving out what the user bought.
    assert written["registry"]["version"] == "1" and written["registry"]["promoted"]
    assert written["deployed"]
    served = written["served_sample"]
    assert served["fallback"] is None and served["model_version"] == "1"
    assert len(served["items"]) == 5
    store = open_store(
        settings.features_dir.resolve(), StoreProfile.from_settings(settings.features)
    )
    recent = get_online(store, [served["user_id"]], [])["users"][0]["features"]
    bought = set(json.loads(recent["user_recent_items__recent_items"]))
    assert bought and not bought & {i["item_id"] for i in served["items"]}
    # The feature store the pipeline built serves a user online, with the
    # interests the interests step pushed.
    user = get_online(store, ["U0000001"], [])["users"][0]
    assert user["found"]
    assert user["features"]["user_activity__views_90d"] > 0
    top = json.loads(user["features"]["user_interest_vectors__top_interests"])
    assert len(top) >= 1
    assert len(user["features"]["user_interest_vectors__interest_vector"]) == 32

    # The same data and settings train an equal model: the gate keeps the
    # champion and the deploy branch does not run.
    again = run_training_pipeline(settings).summary
    assert again["registry"]["version"] == "2"
    assert not again["registry"]["promoted"]
    assert {t["name"]: t["status"] for t in again["tasks"]}["deploy"] == "SKIPPED"
    assert not again["deployed"]
    assert again["served_sample"]["model_version"] == "1"
