"""Names the command help lists, without importing the libraries that define them.

``--help`` must answer in well under a second, and the modules that define these
names import torch and torch-geometric. ``tests/unit/test_cli.py`` keeps each
tuple equal to the library's own.
"""

from __future__ import annotations

# interest_graph.evaluation.protocols.PROTOCOLS
PROTOCOL_NAMES = (
    "online-retail-temporal",
    "online-retail-cold-items",
    "gowalla-lightgcn",
    "shop-temporal",
    "shop-cold-items",
)
# interest_graph.evaluation.baselines.BASELINES
BASELINE_NAMES = ("random", "popularity", "itemknn", "ease", "text-knn")
# interest_graph.models.recommender.GRAPH_MODELS and SCORING_MODELS
GRAPH_MODEL_NAMES = ("lightgcn", "text-lightgcn", "hetero-sage")
SCORING_MODEL_NAMES = ("graph-filter", "temporal-ease", "hybrid")
