"""Hyperparameter search with Ray Tune (ASHA) over the graph model's settings.

``interest_graph.stages.tune`` runs the search and retrains the best configuration.
"""

from interest_graph.tuning.search import (
    TuneResult,
    best_settings,
    check_address,
    search,
)
from interest_graph.tuning.space import check_space

__all__ = ["TuneResult", "best_settings", "check_address", "check_space", "search"]
