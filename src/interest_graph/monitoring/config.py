"""The ``monitoring`` settings section: drift methods and thresholds per check."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Evidently's stat tests by name (``evidently.legacy.calculations.stattests``).
# Distances, not p-values: on windows of tens of thousands of rows a p-value
# test flags every harmless wobble, a distance stays put until the shape moves.
NumericalMethod = Literal["wasserstein", "psi", "kl_div", "ks", "anderson"]
CategoricalMethod = Literal["jensenshannon", "psi", "kl_div", "chisquare"]
EmbeddingMethod = Literal["model", "distance", "mmd", "ratio"]


class MonitoringConfig(BaseModel):
    """Drift checks: which method each uses and when it counts as drift."""

    model_config = ConfigDict(extra="forbid")

    drift_share: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Share of drifted columns that makes a tabular check (features, "
        "predictions) drift; the default makes one drifted column enough.",
    )
    num_method: NumericalMethod = Field(
        "wasserstein", description="Drift test of numerical columns."
    )
    num_threshold: float = Field(
        0.1, gt=0, description="Numerical column drifts above this (normed W1)."
    )
    cat_method: CategoricalMethod = Field(
        "jensenshannon", description="Drift test of categorical columns."
    )
    cat_threshold: float = Field(
        0.1, gt=0, description="Categorical column drifts above this (JS distance)."
    )
    embedding_method: EmbeddingMethod = Field(
        "model",
        description="model: a classifier tells the windows apart (ROC AUC); "
        "distance: between mean vectors; mmd; ratio of drifted components.",
    )
    embedding_threshold: float = Field(
        0.55, gt=0, description="Embeddings drift above this (ROC AUC for model)."
    )
    embedding_sample: int = Field(
        500,
        ge=50,
        description="Vectors per window given to Evidently (its t-SNE picture costs "
        "seconds per thousand rows).",
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
