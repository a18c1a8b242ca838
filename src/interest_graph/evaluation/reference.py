"""Reference numbers of EVALUATION.md (independent implementation), K = 20.

The project's baselines must reproduce these within ``REFERENCE_TOLERANCE``; the
baseline benchmark and the integration tests compare against this one table.
"""

from __future__ import annotations

REFERENCE_TOLERANCE = 0.002

# protocol -> model label -> metric -> value. "ease@L" is EASE with lambda = L.
REFERENCE_METRICS: dict[str, dict[str, dict[str, float]]] = {
    "online-retail-temporal": {
        "popularity": {"recall@20": 0.0373, "ndcg@20": 0.0397, "hit@20": 0.368},
        "itemknn": {"recall@20": 0.0709, "ndcg@20": 0.0716, "hit@20": 0.465},
        "ease@50": {"recall@20": 0.0953, "ndcg@20": 0.0967, "hit@20": 0.599},
        "ease@200": {"recall@20": 0.1054, "ndcg@20": 0.1043, "hit@20": 0.612},
        "ease@500": {"recall@20": 0.1062, "ndcg@20": 0.1048, "hit@20": 0.608},
    },
    "online-retail-cold-items": {
        "random": {"recall@20": 0.0245, "ndcg@20": 0.0216, "hit@20": 0.237},
        "text-knn": {"recall@20": 0.2051, "ndcg@20": 0.1735, "hit@20": 0.681},
    },
    "gowalla-lightgcn": {
        "popularity": {"recall@20": 0.0416, "ndcg@20": 0.0317},
        "itemknn": {"recall@20": 0.1273, "ndcg@20": 0.0944},
    },
}

REFERENCE_SIZES: dict[str, dict[str, int]] = {
    "online-retail-temporal": {
        "train_users": 4063,
        "train_items": 3618,
        "train_pairs": 230_662,
        "test_users": 1287,
    },
    "online-retail-cold-items": {"candidate_items": 723, "test_users": 3747},
    "gowalla-lightgcn": {
        "train_users": 29_858,
        "train_items": 40_981,
        "train_pairs": 810_128,
        "test_pairs": 217_242,
        "test_users": 29_858,
    },
}


def reference_deviations(
    protocol: str, model: str, metrics: dict[str, float]
) -> dict[str, float]:
    """|measured − reference| per metric for one (protocol, model) row."""
    reference = REFERENCE_METRICS[protocol][model]
    return {name: abs(metrics[name] - value) for name, value in reference.items()}


# Published rows of EVALUATION.md's Gowalla leaderboard (papers and their code).
PUBLISHED_METRICS: dict[str, dict[str, dict[str, float]]] = {
    "gowalla-lightgcn": {
        "EASE (Open-CF)": {"recall@20": 0.1765},
        "LightGCN (paper)": {"recall@20": 0.1830, "ndcg@20": 0.1554},
        "LightGCN (official PyTorch)": {"recall@20": 0.1824, "ndcg@20": 0.1547},
        "LightGCN (PyG, 40 min here)": {"recall@20": 0.1663, "ndcg@20": 0.1406},
        "GF-CF": {"recall@20": 0.1849, "ndcg@20": 0.1518},
        "UltraGCN": {"recall@20": 0.1862, "ndcg@20": 0.1580},
        "BSPM-EM": {"recall@20": 0.1920, "ndcg@20": 0.1597},
        "NESCL": {"recall@20": 0.1917, "ndcg@20": 0.1617},
    },
}

# The targets of the GNN issue: our best model per protocol must reach these.
TARGETS: dict[str, dict[str, float]] = {
    "online-retail-temporal": {"recall@20": 0.117, "ndcg@20": 0.115},
    "online-retail-cold-items": {"recall@20": 0.25},
    "gowalla-lightgcn": {"recall@20": 0.1925, "ndcg@20": 0.162},
}
