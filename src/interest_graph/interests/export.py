"""Write the interest graph as Parquet node and edge tables and as GraphML.

Node ids are prefixed with their kind (``user:U0000001``, ``interest:interest-03``,
``item:I000042``) because user and item ids may collide (Gowalla numbers both
from 0); the unprefixed id is kept in the ``entity_id`` column (node attribute).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from interest_graph.interests.graph import InterestGraph
from interest_graph.logs import get_logger

log = get_logger("interests.export")

NODES_FILE = "nodes.parquet"
EDGES_FILE = "edges.parquet"
INTERESTS_FILE = "interests.parquet"
GRAPHML_FILE = "interest_graph.graphml"
MAX_GRAPHML_USERS = 10_000

USER = "user"
INTEREST = "interest"
ITEM = "item"
USER_INTEREST = "user-interest"
ITEM_INTEREST = "item-interest"


def node_id(kind: str, entity_id: str) -> str:
    """The graph node id of a user, interest or item id.

    Args:
        kind: ``user``, ``interest`` or ``item``.
        entity_id: the user, interest or item id.

    Returns:
        ``kind:entity_id``, e.g. ``user:U0000001``.
    """
    return f"{kind}:{entity_id}"


def _node_ids(kind: str, ids: pd.Series) -> pd.Series:
    return f"{kind}:" + ids.astype("string").reset_index(drop=True)


def node_table(
    graph: InterestGraph, users: Sequence[str] | None = None
) -> pd.DataFrame:
    """All nodes: ``node_id``, ``kind``, ``label`` and ``entity_id``.

    Users are labelled by their id, interests by their label and items by their
    title (their id when untitled).

    Args:
        graph: the interest graph.
        users: keep only these users (all interests and items are kept).

    Returns:
        One row per node: users, then interests, then items.
    """
    user_ids = _selected_users(graph, users)
    items = graph.items
    item_labels = items["title"].fillna(items["item_id"]).astype("string")
    parts = [
        _nodes(USER, user_ids, user_ids),
        _nodes(INTEREST, graph.interests["interest_id"], graph.interests["label"]),
        _nodes(ITEM, items["item_id"], item_labels),
    ]
    return pd.concat(parts, ignore_index=True)


def edge_table(
    graph: InterestGraph, users: Sequence[str] | None = None
) -> pd.DataFrame:
    """All edges: ``source``, ``target``, ``kind`` and ``weight``.

    Args:
        graph: the interest graph.
        users: keep only the edges of these users (all item edges are kept).

    Returns:
        user→interest edges, then item→interest edges.
    """
    user_edges = graph.user_interests
    if users is not None:
        keep = set(_selected_users(graph, users).astype(str))
        user_edges = user_edges[user_edges["user_id"].astype(str).isin(keep)]
    parts = [
        _edges(USER, user_edges["user_id"], user_edges, USER_INTEREST),
        _edges(
            ITEM, graph.item_interests["item_id"], graph.item_interests, ITEM_INTEREST
        ),
    ]
    return pd.concat(parts, ignore_index=True)


def write_parquet(graph: InterestGraph, folder: str | Path) -> dict[str, Path]:
    """Write ``nodes.parquet``, ``edges.parquet`` and ``interests.parquet``.

    Args:
        graph: the interest graph.
        folder: where to write; created if missing.

    Returns:
        ``{"nodes": path, "edges": path, "interests": path}``.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "nodes": out / NODES_FILE,
        "edges": out / EDGES_FILE,
        "interests": out / INTERESTS_FILE,
    }
    node_table(graph).to_parquet(paths["nodes"], index=False)
    edge_table(graph).to_parquet(paths["edges"], index=False)
    graph.interests.to_parquet(paths["interests"], index=False)
    log.info("wrote the interest graph's Parquet tables to %s", out)
    return paths


def write_graphml(
    graph: InterestGraph, path: str | Path, users: Sequence[str] | None = None
) -> Path:
    """Write the graph as GraphML (node attributes kind/label, edge weight/kind).

    Args:
        graph: the interest graph.
        path: the ``.graphml`` file; its folder is created if missing.
        users: write only these users (and their edges) to keep the file small;
            all interests and items are always written.

    Returns:
        ``path``.

    Raises:
        KeyError: a user of ``users`` is not in the graph.
    """
    import networkx as nx

    nodes = node_table(graph, users)
    edges = edge_table(graph, users)
    network = nx.DiGraph()
    network.add_nodes_from(
        (node, {"kind": kind, "label": label, "entity_id": entity})
        for node, kind, label, entity in zip(
            nodes["node_id"].astype(str),
            nodes["kind"].astype(str),
            nodes["label"].astype(str),
            nodes["entity_id"].astype(str),
            strict=True,
        )
    )
    network.add_edges_from(
        (source, target, {"kind": kind, "weight": float(weight)})
        for source, target, kind, weight in zip(
            edges["source"].astype(str),
            edges["target"].astype(str),
            edges["kind"].astype(str),
            edges["weight"],
            strict=True,
        )
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    nx.write_graphml(network, target)
    log.info(
        "wrote %d nodes and %d edges to %s",
        network.number_of_nodes(),
        network.number_of_edges(),
        target,
    )
    return target


def write_all(
    graph: InterestGraph,
    folder: str | Path,
    *,
    max_graphml_users: int = MAX_GRAPHML_USERS,
) -> dict[str, Path]:
    """Write the Parquet tables and the GraphML file into ``folder``.

    Args:
        graph: the interest graph.
        folder: where to write; created if missing.
        max_graphml_users: GraphML holds at most this many users (the first ones,
            in the order of ``graph.users``); Parquet always holds all of them.

    Returns:
        The Parquet paths of :func:`write_parquet` and ``graphml``.
    """
    paths = write_parquet(graph, folder)
    users = None
    if len(graph.users) > max_graphml_users:
        users = list(graph.users["user_id"].astype(str)[:max_graphml_users])
        log.info(
            "GraphML keeps %d of %d users; Parquet has them all",
            max_graphml_users,
            len(graph.users),
        )
    paths["graphml"] = write_graphml(graph, Path(folder) / GRAPHML_FILE, users)
    return paths


def _selected_users(graph: InterestGraph, users: Sequence[str] | None) -> pd.Series:
    known = graph.users["user_id"].astype("string")
    if users is None:
        return known
    wanted = pd.Series(list(users), dtype="string").drop_duplicates()
    unknown = wanted[~wanted.isin(known)]
    if len(unknown):
        raise KeyError(
            f"{len(unknown)} users are not in the interest graph, e.g. "
            f"{list(unknown.astype(str)[:3])}"
        )
    return wanted.reset_index(drop=True)


def _nodes(kind: str, ids: pd.Series, labels: pd.Series) -> pd.DataFrame:
    ids = ids.astype("string").reset_index(drop=True)
    return pd.DataFrame(
        {
            "node_id": _node_ids(kind, ids),
            "kind": pd.array(np.full(len(ids), kind, dtype=object), dtype="string"),
            "label": labels.astype("string").reset_index(drop=True),
            "entity_id": ids,
        }
    )


def _edges(
    kind: str, sources: pd.Series, edges: pd.DataFrame, edge_kind: str
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": _node_ids(kind, sources),
            "target": _node_ids(INTEREST, edges["interest_id"]),
            "kind": pd.array(
                np.full(len(edges), edge_kind, dtype=object), dtype="string"
            ),
            "weight": edges["weight"].to_numpy(dtype=np.float64),
        }
    )
