"""Hyperparameter search with Ray Tune (ASHA) over the graph model's settings."""

from interest_graph.tuning.search import TuneResult, check_address, tune_model
from interest_graph.tuning.space import check_space

__all__ = ["TuneResult", "check_address", "check_space", "tune_model"]
