"""The v2 answers the service encodes itself (REST JSON, gRPC messages) equal
KServe's own encoding."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from interest_graph.serving.dataplane import ServiceDataPlane
from interest_graph.serving.kserve_compat import (
    DataPlane,
    InferOutput,
    InferResponse,
    ModelRepository,
)
from interest_graph.serving.model import Recommendation
from interest_graph.serving.protocol import Call, grpc_response, v2_response
from interest_graph.serving.requests import RecommendationRequest


def _response(**kwargs: Any) -> InferResponse:
    nan = float("nan")
    return InferResponse(
        response_id="r1",
        model_name="recommender",
        model_version="3",
        infer_outputs=[
            InferOutput(
                name="item_id", shape=[2, 2], datatype="BYTES", data=["a", "é", "", "c"]
            ),
            InferOutput(
                name="score", shape=[2, 2], datatype="FP32", data=[0.5, 0.25, nan, 1.0]
            ),
            InferOutput(name="fallback", shape=[2], datatype="BYTES", data=["", "x"]),
        ],
        **kwargs,
    )


def _kserve_json(response: InferResponse) -> Any:
    """What KServe's endpoint sends: its dict, as its ORJSON response renders it."""
    body, _ = DataPlane(ModelRepository()).encode("recommender", response, {}, {})
    return orjson.loads(orjson.dumps(body))


def test_plain_answer_is_the_same_json_as_kserve_with_a_content_type() -> None:
    plane = ServiceDataPlane(ModelRepository())
    body, headers = plane.encode("recommender", _response(), {}, {})
    assert isinstance(body, bytes)
    assert orjson.loads(body) == _kserve_json(_response())
    assert orjson.loads(body)["outputs"][1]["data"][2] is None  # NaN as null
    # Capitalised: KServe's endpoint drops the lower-case keys (see encode).
    assert headers == {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
    }


@pytest.mark.parametrize(
    ("kwargs", "headers", "sign"),
    [
        ({"parameters": {"note": "x"}}, {}, b'"parameters":{"note":"x"}'),
        ({"use_binary_outputs": True}, {}, b'"binary_data_size"'),
        ({}, {"content-type": "application/cloudevents+json"}, b'"specversion"'),
        (
            {},
            {"ce-id": "1", "ce-source": "s", "ce-type": "t", "ce-specversion": "1.0"},
            b'"outputs"',
        ),
    ],
)
def test_other_answers_keep_kserves_encoding(
    kwargs: dict[str, Any], headers: dict[str, str], sign: bytes
) -> None:
    plane = ServiceDataPlane(ModelRepository())
    body, answer_headers = plane.encode("recommender", _response(**kwargs), headers, {})
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    assert sign in raw
    assert "Content-Type" not in answer_headers  # not the service's own JSON


def _call(outputs: list[str] | None) -> Call:
    """Two users at k=3: one answered in full, one with a single item."""
    item = {"item_id": "I1", "score": 0.5, "title": "Mug", "category": None}
    call = Call(
        "grpc",
        [RecommendationRequest("U1", 3), RecommendationRequest("U2", 3)],
        started=0.0,
        request_id="req-1",
        outputs=outputs,
    )
    call.recommendations = [
        Recommendation(
            "U1",
            [{**item, "reason": "because you like mugs"}] * 3,
            None,
            "4",
        ),
        Recommendation("U2", [{**item, "reason": "popular"}], "unknown_user", "4"),
    ]
    return call


@pytest.mark.parametrize("outputs", [None, ["score", "fallback"]])
def test_grpc_message_equals_kserves_from_the_v2_response(
    outputs: list[str] | None,
) -> None:
    call = _call(outputs)
    mine = grpc_response(call, "recommender")
    theirs = v2_response(call, "recommender").to_grpc()
    assert mine.SerializeToString(deterministic=True) == theirs.SerializeToString(
        deterministic=True
    )
    scores = next(o for o in mine.outputs if o.name == "score").contents
    assert math.isnan(scores.fp32_contents[4])  # U2's unfilled second rank
