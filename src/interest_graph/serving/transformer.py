"""The transformer: feature store lookups in front of a separate predictor.

KServe deploys it as its own process (``--predictor_host``): it parses the call,
looks the users up in Feast (one batched lookup, off the event loop with a
deadline), forwards the requests with
their ``features`` to the predictor over REST v1, and answers the caller in the
protocol it used (v1, v2 or gRPC). Run locally, the predictor does the same
lookups itself, so the two-process and one-process answers agree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from interest_graph.config import ServingConfig
from interest_graph.serving import MODEL_NAME
from interest_graph.serving.kserve_compat import InferResponse, InvalidInput, Model
from interest_graph.serving.model import Recommendation
from interest_graph.serving.protocol import (
    V2_INPUT_TYPES,
    V2_OUTPUT_TYPES,
    Call,
    parse_call,
    v1_response,
    v2_response,
)
from interest_graph.serving.requests import features_json, request_json
from interest_graph.serving.user_features import DeadlineLookup, UserFeatureSource

Forward = Callable[[dict[str, Any], dict[str, str] | None], Awaitable[Any]]


class RecommenderTransformer(Model):
    """Enriches calls with user features and forwards them to the predictor."""

    def __init__(
        self,
        features: UserFeatureSource,
        config: ServingConfig,
        *,
        forward: Forward | None = None,
        name: str = MODEL_NAME,
    ) -> None:
        """Args:
        features: the feature store lookups.
        config: limits and defaults of requests.
        forward: sends a v1 body to the predictor and returns its JSON answer;
            default KServe's own REST client to ``--predictor_host``.
        name: the model name (the predictor's).
        """
        super().__init__(name)
        self.features = features
        self.config = config
        self._forward = forward
        self.deadline = DeadlineLookup()
        self.ready = True

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Call:
        return parse_call(payload, headers, self.config)

    async def predict(self, call: Call, headers: dict[str, str] | None = None) -> Call:
        # The lookup runs here, after every check, in a worker thread with a
        # deadline: a hung store costs the call its deadline, not the event loop.
        found = await self.deadline.lookup(
            self.features,
            [r.user_id for r in call.requests],
            self.config.feature_timeout_ms / 1000,
        )
        call.requests = [
            replace(r, features=f) for r, f in zip(call.requests, found, strict=True)
        ]
        body = {
            "instances": [
                {**request_json(r), "features": features_json(r.features)}
                for r in call.requests
                if r.features is not None
            ]
        }
        forward = self._forward or self._http_predict
        answer = await forward(body, headers)
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if not isinstance(predictions, list) or len(predictions) != len(call.requests):
            raise InvalidInput("the predictor's answer has no predictions per user")
        call.recommendations = [
            Recommendation(
                user_id=p["user_id"],
                items=p["items"],
                fallback=p["fallback"],
                model_version=p["model_version"],
            )
            for p in predictions
        ]
        return call

    def postprocess(
        self,
        call: Call,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        if call.protocol == "v1":
            return v1_response(call.recommendations)
        return v2_response(call, self.name)

    def get_input_types(self) -> list[dict[str, Any]]:
        return V2_INPUT_TYPES

    def get_output_types(self) -> list[dict[str, Any]]:
        return V2_OUTPUT_TYPES
