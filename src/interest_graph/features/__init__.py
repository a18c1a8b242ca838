"""The feature store: feature tables, the Feast repo, online lookups, training frames.

Stage entry points (paths in, paths out) for the CLI, the pipelines and serving.
The names below are imported from their submodules on first use (PEP 562), so
``import interest_graph.features.tables`` alone does not import Feast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each exported name and the submodule that defines it.
_SOURCES = {
    "FeatureStoreError": "errors",
    "FeatureTableError": "errors",
    "OnlineStoreUnavailableError": "errors",
    "MaterializeResult": "materialization",
    "ViewStatus": "materialization",
    "materialize": "materialization",
    "status": "materialization",
    "OnlineLookup": "online",
    "get_online": "online",
    "push_user_interests": "online",
    "StoreProfile": "repo",
    "apply_repo": "repo",
    "check_tables": "repo",
    "open_store": "repo",
    "build_features": "tables",
    "training_frame": "training",
}

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


def __getattr__(name: str) -> Any:
    """Import ``name`` from its submodule on first use and keep it here."""
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{source}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
