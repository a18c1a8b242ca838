"""The MLflow model registry: versions with lineage, champion/challenger, URIs."""

from interest_graph.registry.store import (
    CHALLENGER,
    CHAMPION,
    PromotionDecision,
    RegisteredVersion,
    RegistryError,
    ResolvedModel,
    alias_version,
    get_version,
    list_versions,
    metric_key,
    promote,
    register,
    resolve_model_uri,
    rollback,
    tracking_uri,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PromotionDecision",
    "RegisteredVersion",
    "RegistryError",
    "ResolvedModel",
    "alias_version",
    "get_version",
    "list_versions",
    "metric_key",
    "promote",
    "register",
    "resolve_model_uri",
    "rollback",
    "tracking_uri",
]
