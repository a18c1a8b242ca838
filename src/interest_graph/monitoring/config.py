"""The ``monitoring`` settings section: drift methods and thresholds per check."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Evidently's stat tests by name (``evidently.legacy.calculations.stattests``;
# ``chi2_contingency`` is registered by ``monitoring.evidently_reports``).
# p-value tests by default: a fixed distance threshold has a false-alarm rate
# that depends on the rows compared (measured: 25% of stationary shops alarmed
# with normed Wasserstein / Jensen-Shannon at 0.1 on ~2000 users a window,
# 70% on ~1000), a p-value test holds it at ``alpha`` at any size. Evidently's
# ``chisquare`` is left out: it takes the reference shares as exact and alarms
# far above its level. Cramer-von Mises over KS: on the README's price shift
# it found the moved prices in every validation seed, KS missed 1 of 10; but
# its p-value assumes no ties, so columns of repeated values (counts, days) get
# KS (see ``evidently_reports.DISTINCT_FOR_CVM``).
NumericalMethod = Literal[
    "cramer_von_mises", "ks", "t_test", "wasserstein", "psi", "kl_div"
]
CategoricalMethod = Literal["chi2_contingency", "jensenshannon", "psi", "kl_div"]
EmbeddingMethod = Literal["model", "distance", "mmd", "ratio"]


class MonitoringConfig(BaseModel):
    """Drift checks: which method each uses and when it counts as drift."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(
        0.005,
        gt=0,
        lt=0.5,
        description="False-alarm rate each check is held to when nothing changed: "
        "a p-value check splits it over its columns (each at alpha / columns), the "
        "model embedding test's ROC AUC threshold is its null quantile for the rows "
        "compared. With 4-8 checks a run alarms in at most ~2-4% of quiet windows.",
    )
    drift_share: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Share of drifted columns that makes a tabular check (features, "
        "predictions) drift; the default makes one drifted column enough.",
    )
    num_method: NumericalMethod = Field(
        "cramer_von_mises",
        description="Drift test of numerical feature and prediction columns "
        "(cramer_von_mises: KS on columns of repeated values).",
    )
    num_threshold: float = Field(
        0.1,
        gt=0,
        description="With a distance num_method: a column drifts above this "
        "(p-value methods use alpha instead).",
    )
    cat_method: CategoricalMethod = Field(
        "chi2_contingency", description="Drift test of categorical columns."
    )
    cat_threshold: float = Field(
        0.1,
        gt=0,
        description="With a distance cat_method: a column drifts above this "
        "(p-value methods use alpha instead).",
    )
    interest_method: NumericalMethod = Field(
        "t_test",
        description="Test of the per-user interest overlap (a share of 0-1 in "
        "steps of 1/interest_events: KS is very conservative on so few values).",
    )
    embedding_method: EmbeddingMethod = Field(
        "model",
        description="model: a classifier tells the windows apart (ROC AUC); "
        "distance: between mean vectors; mmd; ratio of drifted components.",
    )
    embedding_threshold: float = Field(
        0.55,
        gt=0,
        description="Embeddings drift above this (ROC AUC for model, where the "
        "threshold is also no lower than the null quantile at alpha).",
    )
    embedding_sample: int = Field(
        500,
        ge=50,
        description="Vectors per window given to Evidently, a fixed-seed sample of "
        "the window's events (its t-SNE picture costs seconds per thousand rows).",
    )
    embedding_pca: int | None = Field(
        20, ge=2, description="PCA components before the embedding test (None: all)."
    )
    interest_events: int = Field(
        5,
        ge=1,
        description="Events per user the interest check samples on each side "
        "(users with fewer are left out).",
    )
    coverage_change: float = Field(
        0.2,
        gt=0,
        description="Predictions drift when catalogue coverage changes by more "
        "than this share of the reference's.",
    )
    attribution_days: int = Field(
        7, ge=1, description="A purchase this many days after a call counts for it."
    )
    outcome_drop: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Outcomes drift when hit rate falls by more than this share.",
    )
    min_rows: int = Field(
        100, ge=2, description="Fewer rows in a window: the check cannot run."
    )
    feature_sample: int = Field(
        200_000, ge=100, description="Feature rows per window at most (sampled)."
    )
    reference_days: int = Field(
        28, ge=1, description="'previous' / 'training' fallback reference length."
    )
    current_days: int = Field(7, ge=1, description="Default current window length.")
    workspace: Path | None = Field(
        None,
        description="Evidently workspace for `evidently ui` (default "
        "<work_dir>/monitoring/workspace); runs go to the project below.",
    )
    project: str = Field("interest-graph", description="Evidently project name.")
    seed: int = 0
