"""The interest graph on vectors with planted structure: three item groups.

Items of a group point the same way (plus a little noise) and share a title word
("garden", "kitchen" or "toys"); every title also holds the filler word "deluxe".
Planted users point at one group; one item and one user have a zero vector.
"""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from interest_graph.interests import (
    InterestGraph,
    build_from_artifact,
    build_interest_graph,
    default_interest_count,
    draw_user_neighbourhood,
    explain_user,
    feast_interest_rows,
    interest_weights,
    write_all,
    write_graphml,
    write_parquet,
)
from interest_graph.models.artifact import ModelArtifact

GROUPS = {
    "garden": ("hose", "rake", "shovel", "planter", "sprinkler"),
    "kitchen": ("knife", "pan", "kettle", "whisk", "grater"),
    "toys": ("puzzle", "robot", "doll", "kite", "marbles"),
}
ITEMS_PER_GROUP = 30
USERS_PER_GROUP = 3
DIM = 16
ZERO_ITEM = "I-zero"
ZERO_USER = "U-zero"


class Shop:
    """Planted vectors, ids and titles, and which group each row belongs to."""

    def __init__(self, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        directions = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0][: len(GROUPS)]
        item_vectors, item_ids, titles, item_group = [], [], [], []
        for g, (word, things) in enumerate(GROUPS.items()):
            for i in range(ITEMS_PER_GROUP):
                noise = rng.normal(scale=0.08, size=DIM)
                item_vectors.append(directions[g] * rng.uniform(0.5, 2.0) + noise)
                item_ids.append(f"I-{word}-{i:02d}")
                titles.append(f"Deluxe {word} {things[i % len(things)]} no. {i}")
                item_group.append(word)
        item_vectors.append(np.zeros(DIM))
        item_ids.append(ZERO_ITEM)
        titles.append("Deluxe mystery box")
        item_group.append("")
        user_vectors, user_ids, user_group = [], [], []
        for g, word in enumerate(GROUPS):
            for u in range(USERS_PER_GROUP):
                noise = rng.normal(scale=0.1, size=DIM)
                user_vectors.append(3.0 * directions[g] + noise)
                user_ids.append(f"U-{word}-{u}")
                user_group.append(word)
        user_vectors.append(np.zeros(DIM))
        user_ids.append(ZERO_USER)
        user_group.append("")
        self.item_vectors = np.asarray(item_vectors, dtype=np.float32)
        self.user_vectors = np.asarray(user_vectors, dtype=np.float32)
        self.item_ids = np.asarray(item_ids, dtype=object)
        self.user_ids = np.asarray(user_ids, dtype=object)
        self.titles = np.asarray(titles, dtype=object)
        self.item_group = dict(zip(item_ids, item_group, strict=True))
        self.user_group = dict(zip(user_ids, user_group, strict=True))

    def build(self, **options: object) -> InterestGraph:
        defaults: dict[str, object] = {"item_titles": self.titles, "n_interests": 3}
        return build_interest_graph(
            self.user_vectors,
            self.item_vectors,
            self.user_ids,
            self.item_ids,
            **{**defaults, **options},  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def shop() -> Shop:
    return Shop()


@pytest.fixture(scope="module")
def graph(shop: Shop) -> InterestGraph:
    return shop.build()


def interest_of_word(graph: InterestGraph, word: str) -> str:
    labels = graph.labels()
    (match,) = [i for i, label in labels.items() if word in label]
    return match


def test_default_interest_count_is_clamped() -> None:
    assert default_interest_count(90) == 7  # round(sqrt(45))
    assert default_interest_count(4) == 2  # at least two...
    assert default_interest_count(1) == 1  # ...but never more than the items
    assert default_interest_count(10_000_000) == 64


def test_clusters_recover_the_planted_groups(shop: Shop, graph: InterestGraph) -> None:
    edges = graph.item_interests.assign(
        group=graph.item_interests["item_id"].astype(str).map(shop.item_group)
    )
    interests_per_group = edges.groupby("group")["interest_id"].nunique()
    groups_per_interest = edges.groupby("interest_id")["group"].nunique()
    assert interests_per_group.to_dict() == {word: 1 for word in GROUPS}
    assert (groups_per_interest == 1).all()
    assert graph.interests["size"].tolist() == [ITEMS_PER_GROUP] * len(GROUPS)
    assert np.allclose(np.linalg.norm(graph.centroids, axis=1), 1.0)
    assert graph.centroids.shape == (3, DIM)


def test_labels_name_the_planted_words(shop: Shop, graph: InterestGraph) -> None:
    interests = graph.interests.set_index("interest_id")
    for word in GROUPS:
        row = interests.loc[interest_of_word(graph, word)]
        assert str(row["label"]).split(" / ")[0] == word
        assert word in str(row["top_terms"]).split(",")
        assert "deluxe" not in str(row["label"])  # every title has it: no signal
        examples = json.loads(str(row["example_items"]))
        assert len(examples) == 5
        assert {shop.item_group[i] for i in examples} == {word}


def test_example_items_are_closest_to_the_centroid(graph: InterestGraph) -> None:
    interest = str(graph.interests["interest_id"].iloc[0])
    edges = graph.item_interests[graph.item_interests["interest_id"] == interest]
    closest = edges.sort_values("weight", ascending=False)["item_id"].head(5)
    examples = json.loads(str(graph.interests["example_items"].iloc[0]))
    assert examples == closest.astype(str).tolist()


def test_zero_vector_items_get_no_edge(shop: Shop, graph: InterestGraph) -> None:
    edges = graph.item_interests
    assert ZERO_ITEM not in set(edges["item_id"].astype(str))
    assert len(edges) == ITEMS_PER_GROUP * len(GROUPS)
    assert len(graph.items) == len(shop.item_ids)  # still listed as an item
    assert edges["weight"].between(0.7, 1.0 + 1e-6).all()  # cosine to centroid


def test_planted_users_rank_their_interest_first(
    shop: Shop, graph: InterestGraph
) -> None:
    edges = graph.user_interests
    for user_id, word in shop.user_group.items():
        if not word:
            continue
        mine = edges[edges["user_id"] == user_id].sort_values("rank")
        assert mine["rank"].tolist() == [1, 2, 3]  # 5 asked, only 3 interests
        assert mine["weight"].sum() == pytest.approx(1.0)
        assert mine["interest_id"].iloc[0] == interest_of_word(graph, word)
        assert mine["weight"].iloc[0] > mine["weight"].iloc[1:].max()
        assert mine["weight"].is_monotonic_decreasing


def test_zero_vector_user_has_no_interests(shop: Shop, graph: InterestGraph) -> None:
    assert ZERO_USER not in set(graph.user_interests["user_id"].astype(str))
    assert explain_user(graph, shop.user_vectors, shop.item_vectors, ZERO_USER) == []


def test_top_interests_per_user_keeps_that_many_summing_to_one(shop: Shop) -> None:
    graph = shop.build(n_interests=6, top_interests_per_user=2)
    counts = graph.user_interests.groupby("user_id")["rank"].agg(["count", "max"])
    assert (counts["count"] == 2).all() and (counts["max"] == 2).all()
    sums = graph.user_interests.groupby("user_id")["weight"].sum()
    assert np.allclose(sums, 1.0)
    assert len(counts) == len(shop.user_ids) - 1


def test_interest_weights_ignore_the_vector_length() -> None:
    scores = np.array([[3.0, 1.0, 0.0], [30.0, 10.0, 0.0], [0.0, 0.0, 0.0]])
    weights = interest_weights(scores)
    assert np.allclose(weights.sum(axis=1), 1.0)
    assert np.allclose(weights[0], weights[1])  # scaled by each user's spread
    assert weights[0, 0] > weights[0, 1] > weights[0, 2]
    assert weights[0, 0] < 0.95  # not one-hot
    assert np.allclose(weights[2], 1 / 3)  # no preference: uniform
    hot = interest_weights(scores[:1], temperature=0.1)
    assert hot[0, 0] > 0.99


def test_labels_without_titles_are_interest_ids(shop: Shop) -> None:
    graph = shop.build(item_titles=None)
    ids = graph.interests["interest_id"].astype(str).tolist()
    assert ids == ["interest-00", "interest-01", "interest-02"]
    assert graph.interests["label"].astype(str).tolist() == ids
    assert graph.items["title"].isna().all()


def test_default_interest_count_is_used(shop: Shop) -> None:
    graph = shop.build(n_interests=None)
    assert graph.n_interests == 7  # 90 nonzero items


def test_bad_inputs_are_value_errors(shop: Shop) -> None:
    with pytest.raises(ValueError, match="item ids"):
        build_interest_graph(
            shop.user_vectors, shop.item_vectors, shop.user_ids, shop.item_ids[:-1]
        )
    with pytest.raises(ValueError, match="n_interests"):
        shop.build(n_interests=1000)
    with pytest.raises(ValueError, match="nonzero"):
        build_interest_graph(
            shop.user_vectors,
            np.zeros_like(shop.item_vectors),
            shop.user_ids,
            shop.item_ids,
        )


def test_artifact_builds_the_same_graph(shop: Shop, graph: InterestGraph) -> None:
    artifact = ModelArtifact(
        model="test",
        config={},
        user_ids=shop.user_ids,
        item_ids=shop.item_ids,
        tensors={"user_vectors": shop.user_vectors, "item_vectors": shop.item_vectors},
        item_titles=shop.titles,
    )
    built = build_from_artifact(artifact, n_interests=3)
    pd.testing.assert_frame_equal(built.interests, graph.interests)
    pd.testing.assert_frame_equal(built.user_interests, graph.user_interests)


def test_explain_user_lists_the_users_best_items(
    shop: Shop, graph: InterestGraph
) -> None:
    user_id = "U-kitchen-1"
    explained = explain_user(
        graph, shop.user_vectors, shop.item_vectors, user_id, items_per_interest=4
    )
    assert [e["rank"] for e in explained] == [1, 2, 3]
    assert explained[0]["interest_id"] == interest_of_word(graph, "kitchen")
    assert "kitchen" in explained[0]["label"]
    membership = dict(
        zip(
            graph.item_interests["item_id"].astype(str),
            graph.item_interests["interest_id"].astype(str),
            strict=True,
        )
    )
    row = {str(i): r for r, i in enumerate(shop.item_ids)}
    user = shop.user_vectors[list(shop.user_ids).index(user_id)]
    for interest in explained:
        items = interest["items"]
        assert len(items) == 4
        assert {membership[i["item_id"]] for i in items} == {interest["interest_id"]}
        scores = [i["score"] for i in items]
        assert scores == sorted(scores, reverse=True)
        for item in items:
            expected = float(shop.item_vectors[row[item["item_id"]]] @ user)
            assert item["score"] == pytest.approx(expected, rel=1e-5)
            assert item["title"] == shop.titles[row[item["item_id"]]]
    best_kitchen = max(
        (i for i in row if shop.item_group[i] == "kitchen"),
        key=lambda i: float(shop.item_vectors[row[i]] @ user),
    )
    assert explained[0]["items"][0]["item_id"] == best_kitchen
    assert (
        len(explain_user(graph, shop.user_vectors, shop.item_vectors, user_id, 1)) == 1
    )


def test_unknown_user_is_a_key_error(shop: Shop, graph: InterestGraph) -> None:
    with pytest.raises(KeyError, match="U-nobody"):
        explain_user(graph, shop.user_vectors, shop.item_vectors, "U-nobody")


def test_parquet_round_trip_counts(
    shop: Shop, graph: InterestGraph, tmp_path: Path
) -> None:
    paths = write_parquet(graph, tmp_path / "graph")
    nodes = pd.read_parquet(paths["nodes"])
    edges = pd.read_parquet(paths["edges"])
    assert nodes["kind"].value_counts().to_dict() == {
        "item": len(shop.item_ids),
        "user": len(shop.user_ids),
        "interest": 3,
    }
    assert nodes["node_id"].is_unique
    assert edges["kind"].value_counts().to_dict() == {
        "item-interest": ITEMS_PER_GROUP * len(GROUPS),
        "user-interest": len(graph.user_interests),
    }
    assert set(edges["source"]) | set(edges["target"]) <= set(nodes["node_id"])
    assert edges["target"].str.startswith("interest:").all()
    labels = nodes.set_index("node_id")["label"]
    assert labels[f"item:{shop.item_ids[0]}"] == shop.titles[0]
    interests = pd.read_parquet(paths["interests"])
    assert interests["label"].tolist() == graph.interests["label"].tolist()


def test_graphml_loads_back(shop: Shop, graph: InterestGraph, tmp_path: Path) -> None:
    path = write_graphml(graph, tmp_path / "graph.graphml")
    loaded = nx.read_graphml(path)
    kinds = pd.Series(dict(loaded.nodes(data="kind"))).value_counts().to_dict()
    assert kinds == {
        "item": len(shop.item_ids),
        "user": len(shop.user_ids),
        "interest": 3,
    }
    edge_kinds = pd.Series([k for _, _, k in loaded.edges(data="kind")])
    assert edge_kinds.value_counts().to_dict() == {
        "item-interest": ITEMS_PER_GROUP * len(GROUPS),
        "user-interest": len(graph.user_interests),
    }
    weights = [w for _, _, w in loaded.edges(data="weight")]
    assert all(isinstance(w, float) and 0 < w <= 1.0 + 1e-6 for w in weights)
    label = loaded.nodes[f"interest:{interest_of_word(graph, 'toys')}"]["label"]
    assert "toys" in label


def test_graphml_keeps_only_the_chosen_users(
    shop: Shop, graph: InterestGraph, tmp_path: Path
) -> None:
    path = write_graphml(graph, tmp_path / "few.graphml", users=["U-toys-0"])
    loaded = nx.read_graphml(path)
    users = [n for n, kind in loaded.nodes(data="kind") if kind == "user"]
    assert users == ["user:U-toys-0"]
    assert loaded.out_degree("user:U-toys-0") == 3
    assert loaded.number_of_nodes() == 1 + 3 + len(shop.item_ids)
    with pytest.raises(KeyError, match="U-nobody"):
        write_graphml(graph, tmp_path / "bad.graphml", users=["U-nobody"])


def test_write_all_caps_graphml_users(graph: InterestGraph, tmp_path: Path) -> None:
    paths = write_all(graph, tmp_path / "all", max_graphml_users=2)
    assert set(paths) == {"nodes", "edges", "interests", "graphml"}
    assert all(p.is_file() for p in paths.values())
    loaded = nx.read_graphml(paths["graphml"])
    assert sum(kind == "user" for _, kind in loaded.nodes(data="kind")) == 2


def test_draw_writes_png_and_html(
    shop: Shop, graph: InterestGraph, tmp_path: Path
) -> None:
    png, html = draw_user_neighbourhood(
        graph,
        shop.user_vectors,
        shop.item_vectors,
        "U-garden-2",
        tmp_path / "pictures" / "user.png",
        tmp_path / "pictures" / "user.html",
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = html.read_text(encoding="utf-8")
    assert "U-garden-2" in page
    assert "garden" in page
    assert "plotly" in page and len(page) > 1_000_000  # plotly.js is embedded
    with pytest.raises(KeyError):
        draw_user_neighbourhood(
            graph,
            shop.user_vectors,
            shop.item_vectors,
            "U-nobody",
            tmp_path / "x.png",
            tmp_path / "x.html",
        )


def test_feast_rows_match_the_pushed_schema(shop: Shop, graph: InterestGraph) -> None:
    rows = feast_interest_rows(
        graph, shop.user_vectors, shop.user_ids, pd.Timestamp("2024-05-01 12:00")
    )
    assert rows.columns.tolist() == [
        "user_id",
        "interest_vector",
        "top_interests",
        "event_timestamp",
    ]
    assert pd.api.types.is_string_dtype(rows["user_id"])
    vector = rows["interest_vector"].iloc[0]
    assert vector.dtype == np.float32 and vector.shape == (DIM,)
    assert np.array_equal(vector, shop.user_vectors[0])
    assert str(rows["event_timestamp"].dt.tz) == "UTC"
    assert rows["event_timestamp"].iloc[0] == pd.Timestamp("2024-05-01 12:00", tz="UTC")
    top = rows.set_index("user_id")["top_interests"].map(json.loads)
    assert top["U-toys-2"][0] == graph.labels()[interest_of_word(graph, "toys")]
    assert len(top["U-toys-2"]) == 3
    assert top[ZERO_USER] == []
    schema = pa.Table.from_pandas(rows, preserve_index=False).schema
    assert pa.types.is_string(schema.field("user_id").type)
    assert schema.field("interest_vector").type == pa.list_(pa.float32())
    assert pa.types.is_string(schema.field("top_interests").type)
    assert schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")


def test_feast_rows_convert_other_time_zones(shop: Shop, graph: InterestGraph) -> None:
    stamp = pd.Timestamp("2024-05-01 14:00", tz="Europe/Berlin")
    rows = feast_interest_rows(graph, shop.user_vectors, shop.user_ids, stamp)
    assert rows["event_timestamp"].iloc[0] == pd.Timestamp("2024-05-01 12:00", tz="UTC")
    assert str(rows["event_timestamp"].dt.tz) == "UTC"
