"""Shared by the serving tests: a small model of random vectors, and Prometheus
text read as samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from interest_graph.models.artifact import ModelArtifact


def random_model(
    folder: Path,
    *,
    users: int,
    items: int,
    seed: int = 0,
    titles: bool = False,
) -> Path:
    """A LightGCN artifact saved at ``folder``: users ``U0..``, items ``I0..``,
    4-d normal vectors from ``seed``; with ``titles``, item ``i`` is "thing i"."""
    rng = np.random.default_rng(seed)
    ModelArtifact(
        model="lightgcn",
        config={"protocol": "hand-made"},
        user_ids=np.array([f"U{i}" for i in range(users)], dtype=object),
        item_ids=np.array([f"I{i}" for i in range(items)], dtype=object),
        tensors={
            "user_vectors": rng.normal(size=(users, 4)).astype(np.float32),
            "item_vectors": rng.normal(size=(items, 4)).astype(np.float32),
        },
        item_titles=(
            np.array([f"thing {i}" for i in range(items)], dtype=object)
            if titles
            else None
        ),
    ).save(folder)
    return folder


def metric_samples(metrics: str) -> dict[str, float]:
    """Prometheus text as {name{labels}: value}."""
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
