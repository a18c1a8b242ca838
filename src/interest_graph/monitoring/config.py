"""The ``monitoring`` settings section: drift methods and thresholds per check."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MonitoringConfig(BaseModel):
    """Drift checks: which method each uses and when it counts as drift."""

    model_config = ConfigDict(extra="forbid")

    drift_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of drifted feature columns that makes the features drift.",
    )
