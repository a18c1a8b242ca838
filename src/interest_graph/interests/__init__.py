"""The user interest graph: interests found in the model's item vectors.

Items are clustered into interest nodes, users are weighted over them; the graph
exports to Parquet and GraphML, draws one user's neighbourhood, and gives the
rows pushed to Feast.
"""

from __future__ import annotations

from interest_graph.interests.draw import draw_user_neighbourhood
from interest_graph.interests.export import (
    edge_table,
    node_id,
    node_table,
    write_all,
    write_graphml,
    write_parquet,
)
from interest_graph.interests.graph import (
    InterestGraph,
    build_from_artifact,
    build_interest_graph,
    default_interest_count,
    explain_user,
    feast_interest_rows,
    interest_weights,
)

__all__ = [
    "InterestGraph",
    "build_from_artifact",
    "build_interest_graph",
    "default_interest_count",
    "draw_user_neighbourhood",
    "edge_table",
    "explain_user",
    "feast_interest_rows",
    "interest_weights",
    "node_id",
    "node_table",
    "write_all",
    "write_graphml",
    "write_parquet",
]
