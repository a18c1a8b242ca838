"""Evidently 0.7 reports for the checks: column drift (``DataDriftPreset``) with
every column's type declared and thresholds held to the check's false-alarm
rate, embedding drift (``EmbeddingsDrift``) and ranking quality (``NDCG``,
``HitRate``, ``RecallTopK``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from threadpoolctl import threadpool_limits

from interest_graph.monitoring.config import MonitoringConfig

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's usage telemetry

# The two-sample chi-square test this module registers with Evidently.
CHI2_TWO_SAMPLE = "chi2_contingency"
# Tests whose score is a p-value: drift below the threshold, not above it.
P_VALUE_METHODS = {"cramer_von_mises", "ks", "t_test", "anderson", CHI2_TWO_SAMPLE}
# Categories seen fewer times than this in both windows together are pooled
# into one cell: the chi-square approximation needs expected counts of ~5.
RARE_CATEGORY = 10
# Cramer-von Mises' p-value assumes no ties: two all-zero columns get p = 0.0007.
# A column whose values in a window are less distinct than this (counts, days)
# is tested with KS instead, whose p-value only grows with ties (conservative).
DISTINCT_FOR_CVM = 0.9


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
    *,
    num_method: str | None = None,
) -> tuple[Any, list[ColumnDrift]]:
    """Drift of each column, types declared (Evidently would take a count
    column with few values for a category and test it as one). A p-value test
    is held to ``config.alpha`` over all the columns (Bonferroni: each column
    at alpha / columns), so one check's false-alarm rate does not grow with
    the number of columns it looks at.

    Returns:
        The Evidently snapshot (for HTML and the workspace) and each column's test.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    _register_two_sample_chi2()
    definition = DataDefinition(
        numerical_columns=numerical, categorical_columns=categorical
    )
    columns = numerical + categorical
    method = {
        c: _numerical_method(num_method or config.num_method, reference[c], current[c])
        for c in numerical
    }
    method.update({c: config.cat_method for c in categorical})
    threshold = {
        c: column_threshold(method[c], len(columns), config, c in categorical)
        for c in columns
    }
    preset = DataDriftPreset(
        columns=columns,
        drift_share=config.drift_share,
        per_column_method=dict(method),
        per_column_threshold=threshold,
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
        value = float(metric["value"])
        limit = threshold[column]
        p_value = method[column] in P_VALUE_METHODS
        drifted = value < limit if p_value else value >= limit
        tests.append(ColumnDrift(column, method[column], value, limit, drifted))
    return snapshot, tests


def _numerical_method(method: str, reference: pd.Series, current: pd.Series) -> str:
    if method != "cramer_von_mises":
        return method
    # Each window on its own: the same items at the same prices in both windows
    # are ties across them, and counting those would make the choice depend on
    # whether anything moved.
    distinct = min(
        side.dropna().nunique() / max(side.notna().sum(), 1)
        for side in (reference, current)
    )
    return method if distinct >= DISTINCT_FOR_CVM else "ks"


def column_threshold(
    method: str, columns: int, config: MonitoringConfig, categorical: bool
) -> float:
    """A column's drift threshold: for a p-value test the check's ``alpha``
    shared by its columns; for a distance the configured distance (which does
    not adapt to the number of rows)."""
    if method in P_VALUE_METHODS:
        return config.alpha / max(columns, 1)
    return config.cat_threshold if categorical else config.num_threshold


def _register_two_sample_chi2() -> None:
    """Register ``chi2_contingency`` with Evidently: the chi-square test of
    homogeneity of the two windows' category counts. Evidently's own
    ``chisquare`` is a goodness-of-fit test that takes the reference shares as
    exact; their own sampling noise then roughly doubles the statistic and the
    false alarms with it."""
    from evidently.legacy.calculations.stattests.registry import (
        StatTest,
        _registered_stat_tests,
        register_stattest,
    )
    from evidently.legacy.core import ColumnType

    if CHI2_TWO_SAMPLE in _registered_stat_tests:
        return
    register_stattest(
        StatTest(
            name=CHI2_TWO_SAMPLE,
            display_name="chi-square (two windows' counts) p_value",
            allowed_feature_types=[ColumnType.Categorical],
            default_threshold=0.005,
        ),
        default_impl=_chi2_two_sample,
    )


def _chi2_two_sample(
    reference: pd.Series, current: pd.Series, feature_type: Any, threshold: float
) -> tuple[float, bool]:
    p_value = chi2_two_sample_p_value(reference, current)
    return p_value, p_value < threshold


def chi2_two_sample_p_value(reference: pd.Series, current: pd.Series) -> float:
    """p-value of the chi-square test that both windows draw their categories
    from one distribution (categories rarer than ``RARE_CATEGORY`` pooled)."""
    counts = pd.concat(
        [reference.astype(str).value_counts(), current.astype(str).value_counts()],
        axis=1,
    ).fillna(0)
    rare = counts.sum(axis=1) < RARE_CATEGORY
    table = counts[~rare].to_numpy()
    if rare.any():
        table = np.vstack([table, counts[rare].sum().to_numpy()])
    table = table[table.sum(axis=1) > 0]
    if table.shape[0] < 2:
        return 1.0  # one category on both sides: nothing can have moved
    return float(stats.chi2_contingency(table.T, correction=False)[1])


def embedding_drift(
    reference: np.ndarray, current: np.ndarray, name: str, config: MonitoringConfig
) -> tuple[Any, float, float]:
    """One drift test over whole vectors (not a test per dimension).

    Returns:
        The snapshot, the drift score (ROC AUC for ``model``) and the threshold
        it was held to (see ``embedding_threshold``).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift

    columns = [f"{name}_{i}" for i in range(reference.shape[1])]
    definition = DataDefinition(numerical_columns=columns, embeddings={name: columns})
    threshold = embedding_threshold(len(reference), len(current), config)
    # The report's t-SNE picture spins OpenMP threads that, on a busy machine,
    # wait on each other for most of its run (14 s against 2 s single-threaded
    # for 500 vectors, measured on 2 shared cores).
    with threadpool_limits(limits=1, user_api="openmp"):
        snapshot = Report(
            [
                EmbeddingsDrift(
                    embeddings_name=name, drift_method=_drift_method(config, threshold)
                )
            ]
        ).run(
            Dataset.from_pandas(
                pd.DataFrame(current, columns=columns), data_definition=definition
            ),
            Dataset.from_pandas(
                pd.DataFrame(reference, columns=columns), data_definition=definition
            ),
        )
    (metric,) = snapshot.dict()["metrics"]
    return snapshot, float(metric["value"]), threshold


def embedding_threshold(
    reference_rows: int, current_rows: int, config: MonitoringConfig
) -> float:
    """The drift threshold of the embedding test for the rows compared.

    ``model``: Evidently scores a classifier by ROC AUC on a random half of the
    rows. When nothing changed the classifier's scores on that half are
    independent of the window labels, so its AUC is a Mann-Whitney statistic
    with mean 0.5 and variance (n0 + n1 + 1) / (12 n0 n1); the threshold is its
    ``1 - alpha`` quantile, and no lower than ``embedding_threshold`` (a gap
    that large is worth a look however many rows there are). A fixed 0.55 on
    250 rows a side alarmed ~8% of the time. Other methods keep the fixed
    ``embedding_threshold``.
    """
    if config.embedding_method != "model":
        return config.embedding_threshold
    n0, n1 = max(reference_rows // 2, 1), max(current_rows // 2, 1)
    spread = np.sqrt((n0 + n1 + 1) / (12 * n0 * n1))
    null_quantile = 0.5 + float(stats.norm.isf(config.alpha)) * spread
    return round(max(config.embedding_threshold, null_quantile), 4)


def _drift_method(config: MonitoringConfig, threshold: float) -> Any:
    from evidently.metrics.embeddings import (
        DistanceDriftMethod,
        MMDDriftMethod,
        ModelDriftMethod,
        RatioDriftMethod,
    )

    common = {"threshold": threshold, "pca_components": config.embedding_pca}
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
