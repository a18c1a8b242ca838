"""The predictor: a ``kserve.Model`` named ``recommender``.

``preprocess`` parses the call and looks its users up in the feature store (one
batched lookup in a worker thread with a deadline; skipped for instances a
transformer already enriched),
``predict`` ranks with the current :class:`ServingModel` (read once, so a hot
reload mid-call cannot mix versions), ``postprocess`` answers in the caller's
protocol and queues the inference log record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from interest_graph.config import ServingConfig
from interest_graph.serving import MODEL_NAME
from interest_graph.serving.inference_log import InferenceLog
from interest_graph.serving.kserve_compat import (
    InferenceVerb,
    InferResponse,
    InvalidInput,
    Model,
)
from interest_graph.serving.model import ServingModel
from interest_graph.serving.observe import record_call, record_state
from interest_graph.serving.protocol import (
    V2_INPUT_TYPES,
    V2_OUTPUT_TYPES,
    Call,
    grpc_response,
    log_request,
    parse_call,
    v1_response,
    v2_response,
)
from interest_graph.serving.requests import UserFeatures
from interest_graph.serving.user_features import (
    NO_FEATURES,
    DeadlineLookup,
    NoUserFeatures,
    UserFeatureSource,
)


class RecommenderModel(Model):
    """Top-K recommendations over REST v1, REST v2 and gRPC v2.

    Attributes:
        serving: the model answering now (swapped whole by hot reload).
        features: where user features come from.
    """

    def __init__(
        self,
        load_model: Callable[[], ServingModel],
        config: ServingConfig,
        *,
        features: UserFeatureSource | None = None,
        inference_log: InferenceLog | None = None,
        name: str = MODEL_NAME,
    ) -> None:
        super().__init__(name)
        self._load_model = load_model
        self.config = config
        self.features: UserFeatureSource = features or NoUserFeatures()
        self.inference_log = inference_log
        self.serving: ServingModel | None = None
        self.reloads = 0
        self.deadline = DeadlineLookup()

    def load(self) -> bool:
        """Load the model (``ready`` once it can answer)."""
        self.serving = self._load_model()
        self.ready = True
        record_state(self.serving.version)
        return self.ready

    def swap(self, serving: ServingModel) -> None:
        """Answer with ``serving`` from the next call on (one reference write)."""
        self.serving = serving
        self.reloads += 1
        record_state(serving.version)

    async def __call__(
        self,
        body: Any,
        headers: dict[str, str] | None = None,
        verb: Any = InferenceVerb.PREDICT,
    ) -> Any:
        """KServe's entry per call: parse and check the call, look its users up
        off the event loop within ``feature_timeout_ms``, then KServe's own
        preprocess -> predict -> postprocess (metrics, timing) on the result."""
        if verb != InferenceVerb.PREDICT:
            raise InvalidInput(
                f"{verb.name.lower()} is not served; use predict or infer"
            )
        # Every check runs before the feature store is asked: bad input never
        # reaches a dependency, so it cannot start the store's cool-down.
        call = parse_call(body, headers, self.config)
        missing = [r.user_id for r in call.requests if r.features is None]
        if missing:
            found = await self.deadline.lookup(
                self.features,
                missing,
                self.config.feature_timeout_ms / 1000,
                interests=self._needs_interests(missing),
            )
            _fill_features(call, iter(found))
        return await super().__call__(call, headers, verb)

    def _needs_interests(self, user_ids: list[str]) -> bool:
        serving = self.serving
        return serving is None or serving.needs_interests(user_ids)

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Call:
        """The parsed call (as :meth:`__call__` made it), or parse and look up
        here, blocking, for callers in this process (``stages.sample_call``)."""
        if isinstance(payload, Call):
            return payload
        call = parse_call(payload, headers, self.config)
        missing = [r.user_id for r in call.requests if r.features is None]
        if missing:
            found = self.features.lookup(
                missing, interests=self._needs_interests(missing)
            )
            _fill_features(call, iter(found))
        return call

    def predict(self, call: Call, headers: dict[str, str] | None = None) -> Call:
        serving = self.serving
        assert serving is not None, "load() first"
        call.recommendations = serving.recommend(
            call.requests, [r.features or NO_FEATURES for r in call.requests]
        )
        return call

    def postprocess(
        self,
        call: Call,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        """The answer in the call's protocol (v1: a dict; v2 REST: an
        ``InferResponse``; gRPC: the ``ModelInferResponse`` message) after
        metrics and the inference log record."""
        answer: dict[str, Any] | InferResponse | Any
        if call.protocol == "v1":
            answer = v1_response(call.recommendations)
        elif call.protocol == "grpc":
            answer = grpc_response(call, self.name)
        else:
            answer = v2_response(call, self.name)
        recommendations = call.recommendations
        record_call(
            call.protocol,
            call.request_id,
            recommendations[0].model_version,
            [r.fallback for r in recommendations],
            time.perf_counter() - call.started,
        )
        if self.inference_log is not None:
            self.inference_log.record(
                call.protocol,
                log_request(call),
                [r.as_json() for r in call.recommendations],
                call.recommendations[0].model_version,
                (time.perf_counter() - call.started) * 1000,
                call.request_id,
            )
        return answer

    def get_input_types(self) -> list[dict[str, Any]]:
        return V2_INPUT_TYPES

    def get_output_types(self) -> list[dict[str, Any]]:
        return V2_OUTPUT_TYPES

    def degraded(self) -> bool:
        """True while the feature store is unavailable (fallbacks flagged)."""
        return self.features.status == "unavailable"

    def status(self) -> dict[str, Any]:
        """What readiness cannot say: version, feature store, reloads, log."""
        serving = self.serving
        feature_store = self.features.status
        return {
            "model": self.name,
            "ready": bool(self.ready),
            "model_version": None if serving is None else serving.version,
            "model_uri": None if serving is None else serving.uri,
            "items": None if serving is None else serving.catalogue.size,
            "index": None if serving is None else serving.index.kind,
            "feature_store": feature_store,
            "feature_store_error": getattr(self.features, "last_error", None),
            "degraded": self.degraded(),
            "reloads": self.reloads,
            "inference_log": (
                None
                if self.inference_log is None
                else {
                    "path": str(self.inference_log.path),
                    "written": self.inference_log.written,
                    "dropped": self.inference_log.dropped,
                    "bytes_written": self.inference_log.bytes_written,
                    "rotations": self.inference_log.rotations,
                }
            ),
        }


def _fill_features(call: Call, found: Iterator[UserFeatures]) -> None:
    """Give each request without features the next looked-up ones."""
    call.requests = [
        r if r.features is not None else replace(r, features=next(found))
        for r in call.requests
    ]
