"""The feature store: feature tables, the Feast repo, online lookups, training frames.

Stage entry points (paths in, paths out) for the CLI, the pipelines and serving.
Feast is imported by the submodules, so ``import interest_graph.features.tables``
alone stays light.
"""

from __future__ import annotations

from interest_graph.features.errors import (
    FeatureStoreError,
    FeatureTableError,
    OnlineStoreUnavailableError,
)
from interest_graph.features.materialization import (
    MaterializeResult,
    ViewStatus,
    materialize,
    status,
)
from interest_graph.features.online import (
    OnlineLookup,
    get_online,
    push_user_interests,
)
from interest_graph.features.repo import (
    StoreProfile,
    apply_repo,
    check_tables,
    open_store,
)
from interest_graph.features.tables import build_features
from interest_graph.features.training import training_frame

__all__ = [
    "FeatureStoreError",
    "FeatureTableError",
    "MaterializeResult",
    "OnlineLookup",
    "OnlineStoreUnavailableError",
    "StoreProfile",
    "ViewStatus",
    "apply_repo",
    "build_features",
    "check_tables",
    "get_online",
    "materialize",
    "open_store",
    "push_user_interests",
    "status",
    "training_frame",
]
