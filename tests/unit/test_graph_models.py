"""LightGCN and the text-aware graph model: propagation, training, artifacts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from interest_graph.config import Settings, TrainConfig
from interest_graph.embeddings import render_texts
from interest_graph.errors import MalformedFileError
from interest_graph.evaluation.protocols import (
    EvaluationSplit,
    cold_item_split,
    shop_test_start,
    temporal_split,
)
from interest_graph.evaluation.ranking import rank_test_users, score_ranking
from interest_graph.evaluation.validation import validation_split
from interest_graph.models.artifact import ModelArtifact
from interest_graph.models.gnn import InterestGCN
from interest_graph.models.graph import Adjacency, edge_index, normalised_adjacency
from interest_graph.models.recommender import (
    ArtifactRecommender,
    GraphModelRecommender,
)
from interest_graph.models.training import train_graph_model
from interest_graph.schema import ShopTables
from interest_graph.stages import evaluate_on_split

FAST = {"epochs": 8, "batch_size": 2048, "patience": 2, "dim": 32, "lr": 0.01}


@pytest.fixture(scope="module")
def temporal(small_shop: ShopTables) -> EvaluationSplit:
    return temporal_split("shop-temporal", small_shop, shop_test_start(small_shop))


@pytest.fixture(scope="module")
def cold(small_shop: ShopTables) -> EvaluationSplit:
    return cold_item_split("shop-cold-items", small_shop, shop_test_start(small_shop))


def _settings(tmp_path: Path, **train: object) -> Settings:
    return Settings(paths={"work_dir": tmp_path / "work"}, train={**FAST, **train})


def _recall(model: object, split: EvaluationSplit) -> float:
    top_k, _ = rank_test_users(model, split, 20)  # type: ignore[arg-type]
    return float(score_ranking(split, top_k)["recall@20"])


def test_fast_propagation_equals_pyg_lightgcn(temporal: EvaluationSplit) -> None:
    adjacency = normalised_adjacency(temporal.train)
    degree = torch.from_numpy(np.diff(adjacency.indptr))
    torch.manual_seed(0)
    model = InterestGCN(temporal.n_users, temporal.n_items, 16, 3, degree)
    ours = model(Adjacency(adjacency))
    pyg = model.reference_embedding(edge_index(temporal.train))
    connected = degree > 0
    # Same arithmetic as PyG's LGConv on edge_index, on every connected node.
    torch.testing.assert_close(ours[connected], pyg[connected], rtol=1e-4, atol=1e-6)


def test_symmetric_backward_matches_autograd_of_dense(
    temporal: EvaluationSplit,
) -> None:
    adjacency = normalised_adjacency(temporal.train)
    degree = torch.from_numpy(np.diff(adjacency.indptr))
    torch.manual_seed(0)
    model = InterestGCN(temporal.n_users, temporal.n_items, 8, 2, degree)
    model(Adjacency(adjacency)).pow(2).sum().backward()
    ours = model.lightgcn.embedding.weight.grad.clone()
    model.zero_grad()
    dense = torch.from_numpy(adjacency.toarray())
    x0 = model.layer0()
    x1 = dense @ x0
    x2 = dense @ x1
    alpha = model.layer_weights
    (x0 * alpha[0] + x1 * alpha[1] + x2 * alpha[2]).pow(2).sum().backward()
    torch.testing.assert_close(ours, model.lightgcn.embedding.weight.grad)


@pytest.mark.parametrize("model", ["lightgcn", "text-lightgcn"])
def test_graph_models_beat_popularity(
    temporal: EvaluationSplit, tmp_path: Path, model: str
) -> None:
    settings = _settings(tmp_path)
    ours = evaluate_on_split(temporal, model, settings)
    popularity = evaluate_on_split(temporal, "popularity", settings)
    assert ours["recall@20"] > popularity["recall@20"] + 0.1
    assert ours["ndcg@20"] > popularity["ndcg@20"]


def test_bpr_loss_trains_too(temporal: EvaluationSplit, tmp_path: Path) -> None:
    settings = _settings(tmp_path, loss="bpr", lr=0.02, model="lightgcn")
    ours = evaluate_on_split(temporal, "lightgcn", settings)
    popularity = evaluate_on_split(temporal, "popularity", settings)
    assert ours["recall@20"] > popularity["recall@20"]


def test_cold_items_get_finite_distinct_scores_that_follow_text(
    cold: EvaluationSplit, tmp_path: Path
) -> None:
    model = GraphModelRecommender(_settings(tmp_path), "text-lightgcn")
    model.fit(cold)
    held_out = np.flatnonzero(cold.candidates)
    assert np.asarray(cold.train[:, held_out].sum()) == 0  # truly cold
    scores = model.score(cold.test_users[:50])[:, held_out]
    assert np.isfinite(scores).all()
    assert np.unique(np.round(scores, 6)).size > 0.9 * scores.size
    # Follows text: cold items with the same text get the same vector, and the
    # ranking of cold items beats a random one by a wide margin.
    assert model.run is not None
    vectors = model.run.item_vectors[held_out]
    assert cold.item_text is not None
    texts = render_texts(cold.item_text.iloc[held_out])
    _, first = np.unique(texts, return_index=True)
    assert np.linalg.norm(vectors[first], axis=1).min() > 0
    random = evaluate_on_split(cold, "random", _settings(tmp_path))["recall@20"]
    assert _recall(model, cold) > random + 0.15


def test_training_never_reads_the_ground_truth(
    temporal: EvaluationSplit, tmp_path: Path
) -> None:
    config = TrainConfig(**FAST, model="lightgcn")  # type: ignore[arg-type]
    honest = train_graph_model(temporal, config, epochs=2)
    # The same split with every test pair made part of the "truth" matrix: if
    # training looked at it, the vectors would differ.
    flooded = EvaluationSplit(
        protocol=temporal.protocol,
        user_ids=temporal.user_ids,
        item_ids=temporal.item_ids,
        train=temporal.train,
        test_users=np.arange(temporal.n_users),
        ground_truth=sp.csr_matrix(np.ones(temporal.train.shape, dtype=np.float32)),
        candidates=temporal.candidates,
    )
    other = train_graph_model(flooded, config, epochs=2)
    np.testing.assert_array_equal(honest.user_vectors, other.user_vectors)
    # And the validation split's truth is carved out of the training graph.
    validation = validation_split(temporal)
    overlap = validation.train[validation.test_users].multiply(validation.ground_truth)
    assert overlap.nnz == 0


def test_same_seed_same_metrics(temporal: EvaluationSplit, tmp_path: Path) -> None:
    first = evaluate_on_split(temporal, "lightgcn", _settings(tmp_path))
    second = evaluate_on_split(temporal, "lightgcn", _settings(tmp_path))
    third = evaluate_on_split(temporal, "lightgcn", _settings(tmp_path, seed=7))
    assert first["ndcg@20"] == second["ndcg@20"]
    assert first["recall@20"] == second["recall@20"]
    assert third["ndcg@20"] != first["ndcg@20"]


def test_artifact_round_trip_scores_identically(
    temporal: EvaluationSplit, tmp_path: Path
) -> None:
    model = GraphModelRecommender(_settings(tmp_path), "text-lightgcn")
    model.fit(temporal)
    folder = model.to_artifact(temporal).save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "items.parquet",
        "model.safetensors",
        "users.parquet",
    ]
    loaded = ArtifactRecommender(folder)
    loaded.fit(temporal)
    users = temporal.test_users
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    assert loaded.name == "text-lightgcn"
    config = ModelArtifact.load(folder).config
    assert config["hyperparameters"]["dim"] == FAST["dim"]
    assert config["training"]["best_epoch"] >= 1


def test_artifact_used_by_name_in_evaluate(
    temporal: EvaluationSplit, tmp_path: Path
) -> None:
    model = GraphModelRecommender(_settings(tmp_path), "lightgcn")
    model.fit(temporal)
    folder = model.to_artifact(temporal).save(tmp_path / "model")
    by_path = evaluate_on_split(temporal, str(folder), _settings(tmp_path))
    assert by_path["recall@20"] == pytest.approx(_recall(model, temporal))


def test_broken_artifact_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(MalformedFileError, match="no users.parquet"):
        ModelArtifact.load(folder)


def test_resume_from_checkpoint_continues_the_same_run(
    temporal: EvaluationSplit, tmp_path: Path
) -> None:
    config = TrainConfig(**FAST, model="lightgcn")  # type: ignore[arg-type]
    straight = train_graph_model(temporal, config, epochs=3)
    folder = tmp_path / "ckpt"
    # A run interrupted after 2 epochs, then a second call that resumes it.
    with pytest.raises(_Interrupted):
        train_graph_model(
            temporal, config, epochs=3, checkpoint_dir=folder, on_epoch=_stop_after(2)
        )
    resumed = train_graph_model(temporal, config, epochs=3, checkpoint_dir=folder)
    assert resumed.epochs == 3
    np.testing.assert_allclose(
        resumed.user_vectors, straight.user_vectors, rtol=1e-5, atol=1e-6
    )


class _Interrupted(Exception):
    pass


def _stop_after(epochs: int) -> Callable[[dict[str, float]], None]:
    def check(record: dict[str, float]) -> None:
        if record["epoch"] >= epochs:
            raise _Interrupted

    return check
