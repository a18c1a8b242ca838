"""The MLflow registry: lineage, the promotion gate, rollback, loading by alias."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from interest_graph import registry
from interest_graph.cli import app
from interest_graph.config import Settings, load_settings
from interest_graph.errors import ConfigError
from interest_graph.evaluation.protocols import build_split
from interest_graph.models.artifact import ModelArtifact
from interest_graph.models.recommender import ArtifactRecommender
from interest_graph.registry.lineage import data_fingerprint, feature_versions

PROTOCOL = "shop-temporal"


def _artifact(folder: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    return ModelArtifact(
        model="lightgcn",
        config={"hyperparameters": {"dim": 4}, "protocol": PROTOCOL},
        user_ids=np.array(["u1", "u2", "u3"], dtype=object),
        item_ids=np.array(["i1", "i2", "i3", "i4"], dtype=object),
        tensors={
            "user_vectors": rng.normal(size=(3, 4)).astype(np.float32),
            "item_vectors": rng.normal(size=(4, 4)).astype(np.float32),
        },
    ).save(folder)


def _register(settings: Settings, tmp_path: Path, ndcg: float, seed: int) -> str:
    artifact = _artifact(tmp_path / f"model-{seed}", seed)
    version = registry.register(
        artifact,
        {PROTOCOL: {"ndcg@20": ndcg, "recall@20": ndcg * 1.1, "users": 3}},
        settings,
        protocol=PROTOCOL,
        params={"dim": 4, "seed": seed},
        lineage={"data_fingerprint": "abc123", "text_model": "minilm"},
    )
    return version.version


def test_the_gate_refuses_a_worse_model_and_accepts_a_better_one(
    settings: Settings, tmp_path: Path
) -> None:
    first = _register(settings, tmp_path, 0.10, seed=1)
    decision = registry.promote(settings, first)
    assert decision.promoted and decision.champion_before is None

    worse = _register(settings, tmp_path, 0.0995, seed=2)
    decision = registry.promote(settings, worse)
    assert not decision.promoted
    assert "does not beat champion 1" in decision.reason
    name = settings.registry.model_name
    assert registry.alias_version(name, registry.CHAMPION, settings) == first
    assert registry.alias_version(name, registry.CHALLENGER, settings) == worse
    described = registry.get_version(settings, worse)
    assert described.decision == "challenger" and described.reason == decision.reason

    # Within the margin (0.001) is not enough either.
    close = _register(settings, tmp_path, 0.1005, seed=3)
    assert not registry.promote(settings, close).promoted

    better = _register(settings, tmp_path, 0.12, seed=4)
    decision = registry.promote(settings, better)
    assert decision.promoted and decision.champion_before == first
    assert registry.alias_version(name, registry.CHAMPION, settings) == better
    assert "beats champion 1" in decision.reason


def test_rollback_restores_the_previous_champion(
    settings: Settings, tmp_path: Path
) -> None:
    first = _register(settings, tmp_path, 0.10, seed=1)
    registry.promote(settings, first)
    second = _register(settings, tmp_path, 0.20, seed=2)
    registry.promote(settings, second)
    name = settings.registry.model_name

    decision = registry.rollback(settings)
    assert decision.version == first and decision.champion_before == second
    assert registry.alias_version(name, registry.CHAMPION, settings) == first
    # Rolling forward again names the version explicitly.
    registry.rollback(settings, second)
    assert registry.alias_version(name, registry.CHAMPION, settings) == second
    with pytest.raises(registry.RegistryError, match="no version 99"):
        registry.rollback(settings, "99")


def test_a_champion_without_the_protocol_cannot_be_compared(
    settings: Settings, tmp_path: Path
) -> None:
    first = _register(settings, tmp_path, 0.10, seed=1)
    registry.promote(settings, first)
    other = registry.register(
        _artifact(tmp_path / "other", 5),
        {"online-retail-temporal": {"ndcg@20": 0.9}},
        settings,
        protocol="online-retail-temporal",
    ).version
    decision = registry.promote(settings, other)
    assert not decision.promoted and "cannot compare" in decision.reason
    assert registry.promote(settings, other, force=True).promoted


def test_versions_carry_metrics_params_lineage_and_the_artifact(
    settings: Settings, tmp_path: Path
) -> None:
    version = _register(settings, tmp_path, 0.1, seed=1)
    described = registry.get_version(settings, version)
    assert described.metrics[registry.metric_key(PROTOCOL, "ndcg@20")] == 0.1
    assert described.tags["lineage.data_fingerprint"] == "abc123"
    assert described.tags["lineage.text_model"] == "minilm"
    resolved = registry.resolve_model_uri(f"models:/recommender/{version}", settings)
    assert resolved.version == version
    loaded = ModelArtifact.load(resolved.path)
    original = ModelArtifact.load(tmp_path / "model-1")
    np.testing.assert_array_equal(loaded.user_vectors, original.user_vectors)


def test_resolve_errors_are_clear(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(registry.RegistryError, match="no version with alias"):
        _register(settings, tmp_path, 0.1, seed=1)
        registry.resolve_model_uri("models:/recommender@champion", settings)
    with pytest.raises(ConfigError, match="not a model artifact"):
        registry.resolve_model_uri(str(tmp_path), settings)
    with pytest.raises(ConfigError, match="expected models:/NAME@ALIAS"):
        registry.resolve_model_uri("models:/recommender/latest-ish", settings)


def test_lineage_fingerprints_data_and_feature_views(
    settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "events.csv").write_text("a,b\n1,2\n")
    before = data_fingerprint(folder)
    assert before == data_fingerprint(folder)
    (folder / "events.csv").write_text("a,b\n1,3\n")
    assert data_fingerprint(folder) != before

    views = feature_versions(settings)
    assert set(views) >= {"user_activity", "item_statistics"}
    assert all(len(v) == 12 for v in views.values())


def test_registered_model_scores_like_its_artifact(
    tmp_path: Path, small_shop_dir: Path
) -> None:
    """Train → register → promote → load by alias: identical scores."""
    config = tmp_path / "train.yaml"
    config.write_text(
        f"paths:\n  work_dir: {tmp_path / 'work'}\n"
        "train:\n  model: lightgcn\n  epochs: 2\n  dim: 8\n  batch_size: 4096\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    common = ["--protocol", PROTOCOL, "--source", str(small_shop_dir)]
    base = ["--config", str(config)]
    out = tmp_path / "run"
    result = runner.invoke(
        app, [*base, "train", *common, "--out", str(out), "--register"]
    )
    assert result.exit_code == 0, result.output
    assert "champion" in result.output

    listing = runner.invoke(app, [*base, "registry", "list", "--json"])
    assert listing.exit_code == 0, listing.output
    rows = json.loads(listing.output)
    assert rows[0]["version"] == "1" and rows[0]["aliases"] == "champion"
    assert rows[0]["data"] == data_fingerprint(small_shop_dir)[:12]

    scored_local = tmp_path / "local.json"
    scored_registry = tmp_path / "registry.json"
    for model, where in (
        (str(out / "model"), scored_local),
        ("models:/recommender@champion", scored_registry),
    ):
        result = runner.invoke(
            app, [*base, "evaluate", *common, "--model", model, "--out", str(where)]
        )
        assert result.exit_code == 0, result.output
    local = json.loads(scored_local.read_text())
    from_registry = json.loads(scored_registry.read_text())
    for metric in ("recall@20", "ndcg@20", "hit@20", "coverage@20"):
        assert from_registry[metric] == local[metric]

    # And score for score, on every user of the split.
    settings = load_settings(config)
    split = build_split(PROTOCOL, small_shop_dir)
    resolved = registry.resolve_model_uri("models:/recommender@champion", settings)
    assert resolved.version == "1"
    users = np.arange(split.n_users)
    scores = []
    for path in (out / "model", resolved.path):
        model = ArtifactRecommender(path)
        model.fit(split)
        scores.append(model.score(users))
    np.testing.assert_array_equal(scores[0], scores[1])
