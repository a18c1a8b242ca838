"""Evidently 0.7 reports for the checks: column drift (``DataDriftPreset``) with
every column's type declared, embedding drift (``EmbeddingsDrift``) and ranking
quality (``NDCG``, ``HitRate``, ``RecallTopK``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from interest_graph.monitoring.config import MonitoringConfig

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's usage telemetry

# Tests whose score is a p-value: drift below the threshold, not above it.
P_VALUE_METHODS = {"ks", "anderson", "chisquare"}


@dataclass(frozen=True)
class ColumnDrift:
    """One column's test: its score, the threshold, and whether it drifted."""

    column: str
    method: str
    value: float
    threshold: float
    drifted: bool


def column_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: list[str],
    categorical: list[str],
    config: MonitoringConfig,
) -> tuple[Any, list[ColumnDrift]]:
    """Drift of each column, types declared (Evidently would take a count
    column with few values for a category and test it as one).

    Returns:
        The Evidently snapshot (for HTML and the workspace) and each column's test.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=numerical, categorical_columns=categorical
    )
    columns = numerical + categorical
    preset = DataDriftPreset(
        columns=columns,
        drift_share=config.drift_share,
        num_method=config.num_method,
        cat_method=config.cat_method,
        num_threshold=config.num_threshold,
        cat_threshold=config.cat_threshold,
    )
    snapshot = Report([preset]).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    tests: list[ColumnDrift] = []
    for metric in snapshot.dict()["metrics"]:
        spec = metric["config"]
        if not spec["type"].endswith(":ValueDrift"):
            continue
        column = spec["column"]
        method = config.num_method if column in numerical else config.cat_method
        threshold = float(spec["threshold"])
        value = float(metric["value"])
        drifted = value < threshold if method in P_VALUE_METHODS else value >= threshold
        tests.append(ColumnDrift(column, spec["method"], value, threshold, drifted))
    return snapshot, tests


def embedding_drift(
    reference: np.ndarray, current: np.ndarray, name: str, config: MonitoringConfig
) -> tuple[Any, float, str]:
    """One drift test over whole vectors (not a test per dimension).

    Returns:
        The snapshot, the drift score (ROC AUC for ``model``) and the method.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift

    columns = [f"{name}_{i}" for i in range(reference.shape[1])]
    definition = DataDefinition(numerical_columns=columns, embeddings={name: columns})
    snapshot = Report(
        [EmbeddingsDrift(embeddings_name=name, drift_method=_drift_method(config))]
    ).run(
        Dataset.from_pandas(
            pd.DataFrame(current, columns=columns), data_definition=definition
        ),
        Dataset.from_pandas(
            pd.DataFrame(reference, columns=columns), data_definition=definition
        ),
    )
    (metric,) = snapshot.dict()["metrics"]
    return snapshot, float(metric["value"]), config.embedding_method


def _drift_method(config: MonitoringConfig) -> Any:
    from evidently.metrics.embeddings import (
        DistanceDriftMethod,
        MMDDriftMethod,
        ModelDriftMethod,
        RatioDriftMethod,
    )

    common = {
        "threshold": config.embedding_threshold,
        "pca_components": config.embedding_pca,
    }
    if config.embedding_method == "model":
        return ModelDriftMethod(bootstrap=False, **common)
    if config.embedding_method == "distance":
        return DistanceDriftMethod(bootstrap=False, **common)
    if config.embedding_method == "mmd":
        return MMDDriftMethod(bootstrap=False, **common)
    return RatioDriftMethod(**common)


def ranking_quality(frame: pd.DataFrame, k: int) -> tuple[Any, dict[str, float]]:
    """NDCG, hit rate and recall at ``k`` of served lists against what was
    bought after (``user_id`` = one call, ``prediction`` = rank, ``target``)."""
    from evidently import DataDefinition, Dataset, Recsys, Report
    from evidently.metrics import NDCG, HitRate, RecallTopK

    definition = DataDefinition(
        numerical_columns=["prediction", "target"],
        categorical_columns=["user_id", "item_id"],
        ranking=[Recsys(recommendations_type="rank")],
    )
    snapshot = Report([NDCG(k=k), HitRate(k=k), RecallTopK(k=k)]).run(
        Dataset.from_pandas(frame, data_definition=definition), None
    )
    values: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        name = metric["config"]["type"].rsplit(":", 1)[-1]
        value = metric["value"]
        values[name] = _at_k(value, k)
    return snapshot, values


def _at_k(value: Any, k: int) -> float:
    """A top-k metric's value at ``k`` (Evidently gives ``{"rank", "value"}``
    tables over ranks)."""
    if isinstance(value, dict) and "rank" in value:
        ranks, values = value["rank"], value["value"]
        at_k = [values[i] for i, rank in ranks.items() if int(rank) == k]
        return float(at_k[0] if at_k else list(values.values())[-1])
    return float(value)
