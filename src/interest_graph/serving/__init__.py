"""The recommendation service: KServe predictor and transformer, client, hot reload.

``interest-graph serve`` runs the predictor (model name ``recommender``) over REST
v1, REST v2 (Open Inference Protocol) and gRPC v2; it ranks with the same
:func:`interest_graph.evaluation.ranking.rank_items` as ``interest-graph
recommend``. Submodules import KServe, Feast and torch only when used, so
``import interest_graph.serving`` stays light.
"""

from __future__ import annotations

MODEL_NAME = "recommender"

__all__ = ["MODEL_NAME"]
