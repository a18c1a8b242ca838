"""Kubeflow Pipelines components: one thin, typed wrapper per stage of
``interest_graph.stages``, all run in the component image."""

from components.monitoring import drift_checks
from components.training import (
    COMPONENT_IMAGE,
    deploy,
    embed,
    evaluate,
    features,
    ingest,
    interests,
    register,
    train,
    tune,
)

__all__ = [
    "COMPONENT_IMAGE",
    "deploy",
    "drift_checks",
    "embed",
    "evaluate",
    "features",
    "ingest",
    "interests",
    "register",
    "train",
    "tune",
]
