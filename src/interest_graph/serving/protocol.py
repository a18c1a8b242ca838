"""One call through the service: parsed requests in, v1 or v2 answers out.

Shared by the predictor and the transformer, so both speak the same protocols.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from interest_graph.config import ServingConfig
from interest_graph.serving.kserve_compat import (
    InferOutput,
    InferRequest,
    InferResponse,
    InvalidInput,
    grpc_pb,
)
from interest_graph.serving.model import Recommendation
from interest_graph.serving.requests import (
    RecommendationRequest,
    parse_v1,
    parse_v2,
    request_json,
)

V2_OUTPUTS = ("item_id", "score", "title", "category", "reason", "fallback")


@dataclass
class Call:
    """A call on its way through preprocess, predict and postprocess.

    Attributes:
        protocol: ``v1``, ``v2`` (REST) or ``grpc``.
        requests: the parsed requests, one per user.
        started: ``time.perf_counter()`` when the call arrived.
        request_id: the v2 request id or the ``x-request-id`` header.
        outputs: v2 outputs the caller asked for (None: all).
        recommendations: the answers, once predicted.
    """

    protocol: str
    requests: list[RecommendationRequest]
    started: float
    request_id: str | None = None
    outputs: list[str] | None = None
    recommendations: list[Recommendation] = field(default_factory=list)


def parse_call(
    payload: Any, headers: dict[str, str] | None, config: ServingConfig
) -> Call:
    """Parse a v1 body or a v2 request (REST or gRPC) into a :class:`Call`.

    Raises:
        InvalidInput: the payload is malformed.
    """
    started = time.perf_counter()
    header_id = (headers or {}).get("x-request-id")
    if isinstance(payload, InferRequest):
        requests = parse_v2(payload, config.k, config.max_k, config.max_users)
        outputs = None
        if payload.request_outputs:
            outputs = [o.name for o in payload.request_outputs]
            unknown = sorted(set(outputs) - set(V2_OUTPUTS))
            if unknown:
                raise InvalidInput(
                    f"unknown output(s) {unknown}; available: {', '.join(V2_OUTPUTS)}"
                )
        return Call(
            protocol="grpc" if payload.from_grpc else "v2",
            requests=requests,
            started=started,
            request_id=payload.id or header_id,
            outputs=outputs,
        )
    if isinstance(payload, bytes | bytearray | str):
        # KServe hands over the raw body for content types it does not list
        # (``application/json; charset=utf-8``); JSON is JSON all the same.
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"the body is not valid JSON: {exc}") from exc
    requests = parse_v1(
        payload, config.k, config.max_k, config.max_users, with_features=True
    )
    return Call("v1", requests, started, request_id=header_id)


def v1_response(recommendations: Sequence[Recommendation]) -> dict[str, Any]:
    """``{"predictions": [...]}``, one per user."""
    return {"predictions": [r.as_json() for r in recommendations]}


def v2_response(call: Call, model_name: str) -> InferResponse:
    """Outputs ``item_id`` (BYTES), ``score`` (FP32), ``title``, ``category`` and
    ``reason`` (BYTES), all [batch, k], and ``fallback`` (BYTES, [batch]; empty
    when the model answered). Ranks a user could not fill hold "" and NaN."""
    recommendations = call.recommendations
    return InferResponse(
        response_id=call.request_id or str(uuid.uuid4()),
        model_name=model_name,
        model_version=recommendations[0].model_version if recommendations else None,
        infer_outputs=[
            InferOutput(name=name, shape=shape, datatype=datatype, data=data)
            for name, (datatype, shape, data) in _v2_columns(call).items()
        ],
    )


def grpc_response(call: Call, model_name: str) -> Any:
    """:func:`v2_response` as the gRPC ``ModelInferResponse`` itself.

    KServe's servicer sends a message it is given as it is; from an
    ``InferResponse`` it builds one with ``to_grpc`` (every value through numpy
    and back), which cost a third of a gRPC call's own work at k=20.
    """
    recommendations = call.recommendations
    message = grpc_pb.ModelInferResponse(
        model_name=model_name,
        model_version=recommendations[0].model_version if recommendations else "",
        id=call.request_id or str(uuid.uuid4()),
    )
    for name, (datatype, shape, data) in _v2_columns(call).items():
        tensor = message.outputs.add(name=name, datatype=datatype, shape=shape)
        if datatype == "FP32":
            tensor.contents.fp32_contents.extend(data)
        else:
            tensor.contents.bytes_contents.extend(v.encode() for v in data)
    return message


def _v2_columns(call: Call) -> dict[str, tuple[str, list[int], list[Any]]]:
    """The v2 outputs the caller asked for: datatype, shape and flat data.

    Plain lists, row by row, padded to k ("" and NaN): no per-call arrays.
    """
    recommendations = call.recommendations
    batch, k = len(recommendations), call.requests[0].k
    data: dict[str, list[Any]] = {name: [] for name in V2_OUTPUTS[:5]}
    nan = float("nan")
    for recommendation in recommendations:
        items = recommendation.items[:k]
        pad = k - len(items)
        data["item_id"] += [item["item_id"] for item in items] + [""] * pad
        data["score"] += [item["score"] for item in items] + [nan] * pad
        for name in V2_OUTPUTS[2:5]:
            data[name] += [item[name] or "" for item in items] + [""] * pad
    columns: dict[str, tuple[str, list[int], list[Any]]] = {
        name: ("FP32" if name == "score" else "BYTES", [batch, k], values)
        for name, values in data.items()
    }
    columns["fallback"] = (
        "BYTES",
        [batch],
        [r.fallback or "" for r in recommendations],
    )
    wanted = call.outputs or list(V2_OUTPUTS)
    return {name: columns[name] for name in wanted}


def log_request(call: Call) -> list[dict[str, Any]]:
    """The call's requests as v1 instances, for the inference log."""
    return [request_json(r) for r in call.requests]


V2_INPUT_TYPES = [
    {"name": "user_id", "datatype": "BYTES", "shape": [-1]},
    {"name": "k", "datatype": "INT32", "shape": [1]},
]
V2_OUTPUT_TYPES = [
    {"name": "item_id", "datatype": "BYTES", "shape": [-1, -1]},
    {"name": "score", "datatype": "FP32", "shape": [-1, -1]},
    {"name": "title", "datatype": "BYTES", "shape": [-1, -1]},
    {"name": "category", "datatype": "BYTES", "shape": [-1, -1]},
    {"name": "reason", "datatype": "BYTES", "shape": [-1, -1]},
    {"name": "fallback", "datatype": "BYTES", "shape": [-1]},
]
