"""Hetero GraphSAGE with Feast node features: features, interface, training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from feast import FeatureStore

import interest_graph.models.training as training
from interest_graph.config import TrainConfig
from interest_graph.evaluation.baselines import PopularityBaseline
from interest_graph.evaluation.protocols import (
    EvaluationSplit,
    shop_test_start,
    temporal_split,
)
from interest_graph.evaluation.ranking import rank_test_users, score_ranking
from interest_graph.features import StoreProfile, apply_repo, build_features, open_store
from interest_graph.models.hetero import (
    INTERACTS,
    REV_INTERACTS,
    HeteroSAGE,
)
from interest_graph.models.node_features import (
    has_features,
    node_features_from_feast,
    numeric_feature_matrix,
)
from interest_graph.schema import ShopTables

PROFILE = StoreProfile(online_store="sqlite", project="hetero_sage_test")
Features = tuple[np.ndarray, np.ndarray, list[str], list[str]]


@pytest.fixture(scope="module")
def temporal(small_shop: ShopTables) -> EvaluationSplit:
    return temporal_split("shop-temporal", small_shop, shop_test_start(small_shop))


@pytest.fixture(scope="module")
def features_dir(
    tmp_path_factory: pytest.TempPathFactory, small_shop_dir: Path
) -> Path:
    """The small shop's feature tables behind an applied repo (offline store)."""
    features = tmp_path_factory.mktemp("hetero") / "features"
    build_features(small_shop_dir, features)
    apply_repo(features, PROFILE)
    return features


@pytest.fixture(scope="module")
def store(features_dir: Path) -> FeatureStore:
    return open_store(features_dir, PROFILE)


@pytest.fixture(scope="module")
def features(
    store: FeatureStore, temporal: EvaluationSplit, small_shop: ShopTables
) -> Features:
    return node_features_from_feast(store, temporal, shop_test_start(small_shop))


def test_numeric_feature_matrix_fills_nulls_logs_counts_and_keeps_order() -> None:
    frame = pd.DataFrame(
        {
            "item_statistics__conversion_30d": [0.5, None, 0.25],
            "user_activity__views_7d": [3.0, np.nan, 0.0],
            "label": ["a", "b", "c"],
        }
    )
    columns = ["user_activity__views_7d", "item_statistics__conversion_30d"]
    matrix = numeric_feature_matrix(frame, columns)
    assert matrix.dtype == np.float32
    expected = np.array([[np.log1p(3.0), 0.5], [0.0, 0.0], [0.0, 0.25]])
    np.testing.assert_allclose(matrix, expected, rtol=1e-6)
    np.testing.assert_array_equal(has_features(frame, columns), [1.0, 0.0, 1.0])
    with pytest.raises(KeyError, match="spend_30d"):
        numeric_feature_matrix(frame, ["user_activity__spend_30d"])


def _tiny_model(layers: int = 1) -> HeteroSAGE:
    """3 users, 4 items: u0–i0, u0–i1, u1–i1, u2–i2; item 3 is cold."""
    pairs = torch.tensor([[0, 0, 1, 2], [0, 1, 1, 2]])
    torch.manual_seed(0)
    return HeteroSAGE(
        3,
        4,
        8,
        layers,
        pairs,
        user_features=torch.randn(3, 5),
        item_features=torch.randn(4, 2),
        item_text=torch.randn(4, 6),
    )


def test_hetero_sage_has_the_training_loop_interface() -> None:
    model = _tiny_model(layers=2)
    assert (model.n_users, model.n_items) == (3, 4)
    assert model.has_isolated
    torch.testing.assert_close(model.isolated[:, 0], torch.tensor([0.0] * 6 + [1.0]))
    # Lazy SAGEConv weights are sized at construction: the optimiser sees them.
    assert not any(
        isinstance(p, torch.nn.parameter.UninitializedParameter)
        for p in model.parameters()
    )
    edges = model.edge_index_dict
    assert set(edges) == {INTERACTS, REV_INTERACTS}
    torch.testing.assert_close(edges[REV_INTERACTS], edges[INTERACTS].flip(0))

    x0 = model.layer0()
    nodes = model(None)
    assert x0.shape == nodes.shape == (7, 8)
    torch.testing.assert_close(nodes, model.propagate(None, x0))
    users, items = model.split(nodes)
    assert users.shape == (3, 8) and items.shape == (4, 8)
    # The cold item's ID vector is masked: its layer 0 is its inputs alone.
    assert model.item_projection is not None and model.text_projection is not None
    torch.testing.assert_close(
        x0[6],
        model.item_projection(model.item_features[3])
        + model.text_projection(model.item_text[3]),
    )

    model.train()
    torch.manual_seed(1)
    dropped = model.layer0(id_dropout=0.99)
    assert not torch.allclose(dropped[3:6], x0[3:6])
    torch.testing.assert_close(dropped[:3], x0[:3])  # users keep their IDs

    model(None).pow(2).sum().backward()
    for name in (
        "user_id.weight",
        "item_id.weight",
        "user_projection.weight",
        "item_projection.weight",
        "text_projection.weight",
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert sum(1 for n, _ in model.named_parameters() if "convs" in n) >= 4


def test_messages_follow_the_edges_of_both_types() -> None:
    model = _tiny_model(layers=1)
    model.eval()
    before = model(None).detach()
    with torch.no_grad():
        model.item_features[1] += 5.0  # item 1: bought by users 0 and 1
        model.user_features[2] += 5.0  # user 2: bought item 2
    after = model(None).detach()
    changed = (after - before).abs().sum(1) > 1e-6
    # Nodes 0..2 are users, 3..6 items 0..3: one layer reaches direct neighbours.
    assert changed.tolist() == [True, True, True, False, True, True, False]


def test_trains_with_the_training_loop_and_beats_popularity(
    temporal: EvaluationSplit, features: Features
) -> None:
    user_features, item_features, _, _ = features
    # A small graph: one thread is faster than two contending for busy cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    config = TrainConfig(
        model="hetero-sage", dim=32, layers=2, epochs=8, batch_size=2048, lr=0.01
    )
    try:
        run = training.train_graph_model(
            temporal,
            config,
            device="cpu",
            node_features=(user_features, item_features),
        )
    finally:
        torch.set_num_threads(threads)
    assert run.epochs == 8 and run.history[-1]["loss"] < run.history[0]["loss"]
    assert run.user_vectors.shape == (temporal.n_users, 32)
    assert run.item_vectors.shape == (temporal.n_items, 32)
    with pytest.raises(ValueError, match="node features"):
        training.train_graph_model(temporal, config, epochs=1)

    popularity = PopularityBaseline()
    popularity.fit(temporal)
    ours = training.VectorScorer("hetero-sage", run.user_vectors, run.item_vectors)
    recall = {}
    for name, model in (("ours", ours), ("popularity", popularity)):
        top_k, _ = rank_test_users(model, temporal, 20)
        recall[name] = float(score_ranking(temporal, top_k)["recall@20"])
    assert recall["ours"] > recall["popularity"] + 0.1, recall


def test_feast_node_features_are_aligned_and_point_in_time(
    store: FeatureStore,
    temporal: EvaluationSplit,
    small_shop: ShopTables,
    features: Features,
) -> None:
    users, items, user_names, item_names = features
    assert users.shape == (temporal.n_users, len(user_names))
    assert items.shape == (temporal.n_items, len(item_names))
    assert users.dtype == items.dtype == np.float32
    assert np.isfinite(users).all() and np.isfinite(items).all()
    assert (users.std(0) > 0).sum() >= 5 and (items.std(0) > 0).sum() >= 5

    # The shop spans 60 days, so the 90-day views are every view before the test
    # start: row by row, the split's users must match the events.
    test_start = shop_test_start(small_shop)
    events = small_shop.events
    views = events[
        (events["event_type"] == "view") & (events["timestamp"] < test_start)
    ]
    counts = views.groupby("user_id").size().reindex(temporal.user_ids, fill_value=0)
    column = user_names.index("user_activity__views_90d")
    np.testing.assert_allclose(
        users[:, column], np.log1p(counts.to_numpy(dtype=np.float64)), rtol=1e-6
    )
    assert counts.to_numpy().std() > 0  # a misaligned row would show

    before_everything = events["timestamp"].min().normalize() - pd.Timedelta(days=1)
    early_users, early_items, _, _ = node_features_from_feast(
        store, temporal, before_everything
    )
    assert not early_users.any() and not early_items.any()


def test_hetero_sage_trains_end_to_end_from_the_feast_store(
    features_dir: Path, temporal: EvaluationSplit, tmp_path: Path
) -> None:
    """``train.model=hetero-sage`` reads features from Feast as of each split."""
    from interest_graph.config import Settings
    from interest_graph.models.recommender import GraphModelRecommender

    settings = Settings(
        paths={"work_dir": tmp_path / "work"},
        features={
            "features_dir": features_dir,
            "online_store": PROFILE.online_store,
            "project": PROFILE.project,
        },
        train={"epochs": 6, "batch_size": 2048, "dim": 32, "lr": 0.01},
    )
    model = GraphModelRecommender(settings, "hetero-sage")
    model.fit(temporal)
    assert model.selection is not None and model.selection.best_epoch >= 1
    top_k, _ = rank_test_users(model, temporal, 20)
    popularity = PopularityBaseline()
    popularity.fit(temporal)
    top_pop, _ = rank_test_users(popularity, temporal, 20)
    ours = score_ranking(temporal, top_k)["recall@20"]
    assert ours > score_ranking(temporal, top_pop)["recall@20"]
