"""Read what KServe's request logger delivers (``logger: {mode: all}`` on the
InferenceService) as inference log records the checks understand.

KServe sends every call twice, as CloudEvents with the same ``id``: type
``org.kubeflow.serving.inference.request`` with the request body, and, only
when the model answered 200, ``org.kubeflow.serving.inference.response`` with
the response body; ``time`` is when the logger sent it, extensions name the
InferenceService (``inferenceservicename``), ``namespace``, ``component`` and
``endpoint``. Three ways these reach a folder, all read here:

- a structured CloudEvent (JSON with ``specversion``, ``id``, ``type``,
  ``time``, ``data`` or ``data_base64``), one per file or one per line;
- an HTTP sink's capture of a binary-mode event: ``{"headers": {"ce-id": ...,
  "ce-type": ..., "ce-time": ...}, "body": <the JSON body>}``;
- KServe's blob-storage logger (``logger.url: s3://...``, ``format: json``):
  objects ``<id>-request.json`` / ``<id>-response.json`` holding a JSON list of
  Go ``LogRequest`` structs (``Id``, ``ReqType``, ``Bytes`` in base64); they
  carry no time, so the file's modification time stands in (``aws s3 sync``
  sets it to the object's upload time).

A response is paired with its request by ``id``: a v1 answer names its users,
a v2 answer (``outputs`` item_id / score / category [batch, k], fallback
[batch]) takes them from the request's ``user_id`` input.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


@dataclass(frozen=True)
class LoggedEvent:
    """One logged request or response."""

    id: str
    kind: str  # "request" or "response"
    time: float  # seconds since the epoch, UTC
    body: Any
    file: str  # where it was read
    where: str  # file name:line, for messages


def is_logged_event(record: Any) -> bool:
    """Whether ``record`` is one of KServe's logged events (else it is a record
    of the service's own inference log)."""
    return isinstance(record, dict) and (
        "specversion" in record
        or isinstance(record.get("headers"), dict)
        or ("ReqType" in record and "Id" in record)
    )


def logged_event(
    record: dict[str, Any], file: str, where: str, file_time: float
) -> LoggedEvent:
    """The event ``record`` holds (see :func:`is_logged_event`).

    Args:
        record: a structured CloudEvent, a sink's headers-and-body capture or a
            blob-storage ``LogRequest``.
        file: the file it was read from.
        where: ``file name:line``, for messages.
        file_time: the file's modification time, for records without a time.

    Raises:
        ValueError, KeyError, TypeError: the record is broken (no id, an unknown
            type, a body that is not JSON).
    """
    if "specversion" in record:
        attributes = record
    elif "headers" in record:
        attributes = {
            str(k).lower().removeprefix("ce-"): v
            for k, v in record["headers"].items()
            if str(k).lower().startswith("ce-")
        }
    else:
        attributes = {"id": record["Id"], "type": record["ReqType"]}
    kind = {REQUEST_TYPE: "request", RESPONSE_TYPE: "response"}.get(
        str(attributes.get("type"))
    )
    if kind is None:
        raise ValueError(f"type {attributes.get('type')!r} is not an inference event")
    if "specversion" in record:
        body = _structured_data(record)
    elif "headers" in record:
        body = _json_body(record.get("body"))
    else:
        body = _json_body(base64.b64decode(record["Bytes"] or b"", validate=True))
    event_id = str(attributes["id"])
    if not event_id:
        raise ValueError("the event has no id")
    stamp = attributes.get("time")
    time = pd.Timestamp(stamp).timestamp() if stamp else file_time
    return LoggedEvent(event_id, kind, time, body, file, where)


def _structured_data(event: dict[str, Any]) -> Any:
    if "data_base64" in event:
        return _json_body(base64.b64decode(event["data_base64"], validate=True))
    return _json_body(event.get("data"))


def _json_body(body: Any) -> Any:
    """A body as JSON: bytes and text are decoded; None is an empty body."""
    if body is None or body == b"" or body == "":
        raise ValueError("the event has no body")
    if isinstance(body, bytes | str):
        return json.loads(body)
    return body


@dataclass
class EventPairs:
    """Logged events by id, paired into calls once every file is read."""

    requests: dict[str, LoggedEvent] = field(default_factory=dict)
    responses: dict[str, LoggedEvent] = field(default_factory=dict)

    def add(self, event: LoggedEvent) -> None:
        """Keep ``event``.

        Raises:
            ValueError: an event of the same kind and id was kept already.
        """
        kept = self.requests if event.kind == "request" else self.responses
        if event.id in kept:
            raise ValueError(f"a second {event.kind} with id {event.id}")
        kept[event.id] = event

    def __len__(self) -> int:
        return len(self.requests) + len(self.responses)

    @property
    def unanswered(self) -> int:
        """Requests without a logged response (KServe logs a response only
        when the model answered 200)."""
        return len(self.requests.keys() - self.responses.keys())

    def calls(self) -> list[tuple[LoggedEvent, dict[str, Any] | Exception]]:
        """Per response, oldest first: the response and the inference log
        record of its call, or why it cannot become one."""
        out: list[tuple[LoggedEvent, dict[str, Any] | Exception]] = []
        for response in sorted(self.responses.values(), key=lambda e: e.time):
            try:
                out.append((response, self._record(response)))
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                out.append((response, exc))
        return out

    def _record(self, response: LoggedEvent) -> dict[str, Any]:
        body = response.body
        if not isinstance(body, dict):
            raise TypeError("the response body is not an object")
        if "predictions" in body:
            answers = body["predictions"]
            version = None
        else:
            request = self.requests.get(response.id)
            if request is None:
                raise ValueError(
                    f"v2 response {response.id} without its request (the answer "
                    "does not name its users)"
                )
            answers = v2_answers(request.body, body)
            version = body.get("model_version")
        return {
            "timestamp": response.time,
            "model_version": version,
            "response": answers,
        }


def v2_answers(request: dict[str, Any], response: dict[str, Any]) -> list[dict]:
    """A v2 (Open Inference Protocol) call as v1 answers, one per user: the
    request's ``user_id`` input, the response's ``[batch, k]`` outputs (ranks a
    user could not fill hold "") and ``fallback`` ("" when the model answered).

    Raises:
        KeyError, ValueError: an input or output is missing or of the wrong size.
    """
    inputs = {t["name"]: t for t in request["inputs"]}
    users = [str(u) for u in _flat(inputs["user_id"]["data"])]
    outputs = {t["name"]: t for t in response["outputs"]}
    item_ids = _rows(outputs["item_id"], len(users))
    scores = _rows(outputs["score"], len(users)) if "score" in outputs else None
    categories = (
        _rows(outputs["category"], len(users)) if "category" in outputs else None
    )
    fallbacks = (
        _flat(outputs["fallback"]["data"])
        if "fallback" in outputs
        else [""] * len(users)
    )
    answers = []
    for row, user in enumerate(users):
        items = [
            {
                "item_id": item,
                "score": _score(None if scores is None else scores[row][rank]),
                "category": None if categories is None else categories[row][rank],
            }
            for rank, item in enumerate(item_ids[row])
            if item
        ]
        answers.append(
            {"user_id": user, "items": items, "fallback": fallbacks[row] or None}
        )
    return answers


def _score(value: Any) -> float:
    """A v2 score; NaN (JSON null) where the service had none."""
    return float("nan") if value is None else float(value)


def _flat(data: Any) -> list[Any]:
    """A tensor's data as a flat list (KServe accepts nested lists too)."""
    if not isinstance(data, list):
        raise TypeError("tensor data is not a list")
    flat: list[Any] = []
    for value in data:
        flat.extend(_flat(value) if isinstance(value, list) else [value])
    return flat


def _rows(tensor: dict[str, Any], batch: int) -> list[list[Any]]:
    values = _flat(tensor["data"])
    if batch == 0 or len(values) % batch:
        raise ValueError(
            f"output {tensor['name']!r} has {len(values)} values for {batch} users"
        )
    k = len(values) // batch
    return [values[row * k : (row + 1) * k] for row in range(batch)]
