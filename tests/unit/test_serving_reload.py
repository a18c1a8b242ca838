"""Hot reload against a real MLflow registry (sqlite), request parsing, the log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from serving_support import random_model

from interest_graph.config import RegistryConfig, ServingConfig, Settings
from interest_graph.models.artifact import ModelArtifact
from interest_graph.serving.inference_log import InferenceLog
from interest_graph.serving.kserve_compat import InferInput, InferRequest, InvalidInput
from interest_graph.serving.requests import parse_v1, parse_v2
from interest_graph.serving.server import build_service


def test_hot_reload_follows_the_champion_alias_in_mlflow(tmp_path: Path) -> None:
    from interest_graph.registry import promote, register

    settings = Settings(
        paths={"work_dir": tmp_path / "work"},
        registry=RegistryConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
        serving=ServingConfig(
            model_uri="models:/recommender@champion",
            feast=False,
            inference_log_enabled=False,
            reload_seconds=0.1,
        ),
    )
    metrics = {"hand-made": {"ndcg@20": 0.1}}
    first = register(
        random_model(tmp_path / "a", users=12, items=40, seed=0, titles=True),
        metrics,
        settings,
        protocol="hand-made",
    )
    promote(settings, first.version, force=True)
    service = build_service(settings)
    service.predictor.load()
    assert service.reloader is not None
    assert service.predictor.serving is not None
    assert service.predictor.serving.version == first.version
    assert not service.reloader.check()  # the alias has not moved

    better = {"hand-made": {"ndcg@20": 0.2}}
    second = register(
        random_model(tmp_path / "b", users=12, items=40, seed=1, titles=True),
        better,
        settings,
        protocol="hand-made",
    )
    promote(settings, second.version)
    assert service.reloader.check()
    serving = service.predictor.serving
    assert serving.version == second.version
    expected = ModelArtifact.load(tmp_path / "b").user_vectors
    assert np.array_equal(serving.user_vectors, expected)


def test_v1_defaults_and_fields() -> None:
    (request,) = parse_v1(
        {
            "instances": [
                {
                    "user_id": "17850",
                    "exclude": ["I1"],
                    "filters": {"category": ["garden", "toys"], "max_price": 9.5},
                    "recent_items": ["I2"],
                }
            ]
        },
        default_k=20,
        max_k=1000,
        max_users=10,
        with_features=False,
    )
    assert request.k == 20
    assert request.exclude == ("I1",)
    assert request.recent_items == ("I2",)
    assert request.filters is not None
    assert request.filters.categories == frozenset({"garden", "toys"})
    assert request.filters.max_price == 9.5 and request.filters.min_price is None


def test_public_v1_bodies_cannot_carry_features() -> None:
    body = {"instances": [{"user_id": "U1", "features": {"history": []}}]}
    with pytest.raises(InvalidInput, match="unknown field"):
        parse_v1(body, 20, 1000, 10, with_features=False)
    (request,) = parse_v1(body, 20, 1000, 10, with_features=True)
    assert request.features is not None and request.features.status == "ok"


def test_v2_k_of_one_value_applies_to_every_user() -> None:
    request = InferRequest(
        model_name="recommender",
        infer_inputs=[
            InferInput("user_id", [3, 1], "BYTES", [["a"], ["b"], ["c"]]),
            InferInput("k", [1], "INT64", [4]),
        ],
    )
    parsed = parse_v2(request, default_k=20, max_k=1000, max_users=10)
    assert [(r.user_id, r.k) for r in parsed] == [("a", 4), ("b", 4), ("c", 4)]


def test_inference_log_writes_jsonl_and_parquet(tmp_path: Path) -> None:
    for name in ("log.jsonl", "log.parquet"):
        sink = InferenceLog(tmp_path / name)
        for i in range(3):
            sink.record("v1", [{"user_id": f"U{i}"}], [{"items": []}], "7", 1.5, None)
        sink.close()
        assert sink.written == 3 and sink.dropped == 0
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["request"][0]["user_id"] for line in lines] == [
        "U0",
        "U1",
        "U2",
    ]
    (parquet,) = tmp_path.glob("log-*.parquet")
    frame = pd.read_parquet(parquet)
    assert list(frame["model_version"]) == ["7"] * 3
    assert json.loads(frame["request"][0]) == [{"user_id": "U0"}]
