"""Each check's threshold holds its false-alarm rate at ``monitoring.alpha``:
p-value thresholds shared over a check's columns, the two-sample chi-square
test registered with Evidently, the embedding test's ROC AUC threshold that
follows the rows compared; and the model's training window, recorded in the
artifact, is what the reference "training" reads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from interest_graph.errors import ConfigError
from interest_graph.evaluation.protocols import EvaluationSplit
from interest_graph.models.recommender import training_window as recorded_window
from interest_graph.monitoring import evidently_reports as reports
from interest_graph.monitoring.config import MonitoringConfig
from interest_graph.monitoring.windows import (
    current_window,
    reference_window,
    training_window,
)


def test_a_p_value_test_shares_alpha_over_the_columns() -> None:
    config = MonitoringConfig(alpha=0.01)
    assert reports.column_threshold("ks", 5, config, False) == pytest.approx(0.002)
    assert reports.column_threshold(
        "chi2_contingency", 4, config, True
    ) == pytest.approx(0.0025)
    # A distance keeps its configured threshold (it does not know the rows).
    assert reports.column_threshold("wasserstein", 5, config, False) == 0.1
    assert reports.column_threshold("jensenshannon", 5, config, True) == 0.1


def test_columns_of_repeated_values_are_not_given_to_cramer_von_mises() -> None:
    """CvM's p-value assumes no ties: two all-zero columns would get p = 0.0007."""
    rng = np.random.default_rng(1)
    frames = [
        pd.DataFrame(
            {
                "views_30d": np.zeros(800),  # purchases-only shop: no views
                "purchases_7d": rng.poisson(1.0, 800).astype(float),
                "price": rng.lognormal(3, 1, 800),
            }
        )
        for _ in range(2)
    ]
    _, tests = reports.column_drift(
        frames[0],
        frames[1],
        ["views_30d", "purchases_7d", "price"],
        [],
        MonitoringConfig(),
    )
    by_column = {t.column: t for t in tests}
    assert by_column["views_30d"].method == "ks"
    assert by_column["purchases_7d"].method == "ks"
    assert by_column["price"].method == "cramer_von_mises"
    assert not any(t.drifted for t in tests)
    assert by_column["views_30d"].value == 1.0
    assert by_column["price"].threshold == pytest.approx(0.005 / 3)


def test_the_embedding_threshold_follows_the_rows_compared() -> None:
    config = MonitoringConfig(alpha=0.005, embedding_threshold=0.55)
    small = reports.embedding_threshold(250, 250, config)
    # AUC of 125 against 125 scores that carry no signal: sd sqrt(251 / 12 / 125^2).
    expected = 0.5 + stats.norm.isf(0.005) * np.sqrt(251 / (12 * 125 * 125))
    assert small == pytest.approx(expected, abs=1e-4)
    assert reports.embedding_threshold(500, 500, config) < small
    # With many rows the practical floor holds: a tiny gap is not worth a look.
    assert reports.embedding_threshold(20_000, 20_000, config) == 0.55
    distance = MonitoringConfig(embedding_method="distance", embedding_threshold=0.2)
    assert reports.embedding_threshold(250, 250, distance) == 0.2


def test_the_embedding_threshold_holds_alpha_for_a_classifier_at_chance() -> None:
    """Simulated: a score unrelated to the label on 125 + 125 test rows."""
    config = MonitoringConfig(alpha=0.05, embedding_threshold=0.5)
    threshold = reports.embedding_threshold(250, 250, config)
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 125)
    aucs = np.array(
        [
            stats.mannwhitneyu(s[labels == 1], s[labels == 0]).statistic / 125**2
            for s in rng.random((2000, 250))
        ]
    )
    assert (aucs > threshold).mean() == pytest.approx(0.05, abs=0.015)


def test_the_two_sample_chi_square_test() -> None:
    rng = np.random.default_rng(0)
    shares = [0.5, 0.3, 0.15, 0.05]
    same = [
        reports.chi2_two_sample_p_value(
            pd.Series(rng.choice(4, 400, p=shares)),
            pd.Series(rng.choice(4, 300, p=shares)),
        )
        for _ in range(400)
    ]
    # Calibrated: about alpha of the p-values fall under alpha.
    assert np.mean(np.array(same) < 0.05) == pytest.approx(0.05, abs=0.03)
    moved = reports.chi2_two_sample_p_value(
        pd.Series(rng.choice(4, 400, p=shares)),
        pd.Series(rng.choice(4, 400, p=shares[::-1])),
    )
    assert moved < 1e-6
    # Rare categories are pooled (a category seen once must not decide it);
    # one category on both sides is no evidence of anything.
    rare = reports.chi2_two_sample_p_value(
        pd.Series(["a"] * 200 + ["b"] * 200 + ["x"]),
        pd.Series(["a"] * 200 + ["b"] * 200 + ["y"]),
    )
    assert rare > 0.5
    assert reports.chi2_two_sample_p_value(pd.Series(["a"] * 9), pd.Series(["a"])) == 1


def _split(days_before: list[float]) -> EvaluationSplit:
    ids = np.array(["u1", "u2"], dtype=object)
    matrix = sp.csr_matrix(np.ones((2, 2), dtype=np.float32))
    return EvaluationSplit(
        protocol="shop-temporal",
        user_ids=ids,
        item_ids=np.array(["i1", "i2"], dtype=object),
        train=matrix,
        test_users=np.array([0, 1]),
        ground_truth=matrix,
        candidates=np.ones(2, dtype=bool),
        train_events=pd.DataFrame(
            {
                "user": [0] * len(days_before),
                "item": [0] * len(days_before),
                "event_type": ["view"] * len(days_before),
                "days_before": days_before,
            }
        ),
        test_start=pd.Timestamp("2026-04-01"),
    )


def test_the_artifact_records_its_training_window_and_monitoring_reads_it() -> None:
    # Training events from 2026-01-01 06:00 to 2026-03-31 12:00.
    recorded = recorded_window(_split([90 - 0.25, 30.0, 0.5]))
    assert recorded == {"start": "2026-01-01", "end": "2026-04-01"}
    window = training_window({"training_window": recorded})
    assert window is not None
    assert (window.start, window.end) == (
        pd.Timestamp("2026-01-01"),
        pd.Timestamp("2026-04-01"),
    )
    current = current_window("last 7 days", pd.Timestamp("2026-05-01"))
    chosen, note = reference_window(
        "training", current, training=window, fallback_days=28
    )
    assert chosen == window and note is None
    # No timestamps (Gowalla): nothing recorded.
    no_time = dataclasses.replace(_split([1.0]), train_events=None, test_start=None)
    assert recorded_window(no_time) is None


def test_an_old_artifact_falls_back_with_the_reason() -> None:
    assert training_window({"model": "lightgcn"}) is None
    current = current_window("last 7 days", pd.Timestamp("2026-05-01"))
    fallback, note = reference_window(
        "training",
        current,
        training=None,
        fallback_days=28,
        why_no_training="the model at m/ records no training window",
    )
    assert fallback.end == current.start and fallback.days == 28
    assert note and "m/ records no training window" in note and "28 days" in note
    for bad in (
        {"start": "2026-01-01"},
        "2026",
        {"start": "2026-02", "end": "2026-01"},
    ):
        with pytest.raises(ConfigError, match="training_window"):
            training_window({"training_window": bad})
