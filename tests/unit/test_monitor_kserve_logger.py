"""The monitor reads what KServe's request logger delivers: CloudEvents as an
HTTP sink captures them (binary mode: ``Ce-*`` headers and the body), as
structured CloudEvents, and as KServe's blob-storage logger writes them
(``<id>-request.json`` / ``<id>-response.json``, a JSON list of Go
``LogRequest`` structs); requests and responses pair by id, and broken events
are counted and skipped."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from interest_graph.monitoring.inference_log import read_inference_log

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
SOURCE = "http://localhost:9081/"


def _headers(event_id: str, kind: str, time: str) -> dict[str, str]:
    """The headers KServe's logger sends (Go's canonical header names)."""
    return {
        "Ce-Specversion": "1.0",
        "Ce-Id": event_id,
        "Ce-Type": kind,
        "Ce-Source": SOURCE,
        "Ce-Time": time,
        "Ce-Inferenceservicename": "recommender",
        "Ce-Namespace": "interest-graph",
        "Ce-Component": "predictor",
        "Ce-Endpoint": "default",
        "Ce-Metadata": "{}",
        "Content-Type": "application/json",
    }


def _v1_answer(user: str, fallback: str | None = None) -> dict[str, Any]:
    return {
        "user_id": user,
        "items": [
            {
                "item_id": "I1",
                "score": 0.9,
                "title": "Red kettle",
                "category": "kitchen",
                "reason": "bought with what you viewed",
            },
            {"item_id": "I2", "score": 0.4, "title": "Mug", "category": None},
        ],
        "fallback": fallback,
        "model_version": "3",
    }


def _v2_request(users: list[str]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "user_id",
                "datatype": "BYTES",
                "shape": [len(users)],
                "data": users,
            },
            {"name": "k", "datatype": "INT32", "shape": [1], "data": [2]},
        ]
    }


def _v2_response(event_id: str) -> dict[str, Any]:
    """Two users, k=2: the second got one item (a padded rank) and a fallback."""
    return {
        "model_name": "recommender",
        "model_version": "4",
        "id": event_id,
        "parameters": None,
        "outputs": [
            {
                "name": "item_id",
                "shape": [2, 2],
                "datatype": "BYTES",
                "data": ["I5", "I6", "I7", ""],
            },
            {
                "name": "score",
                "shape": [2, 2],
                "datatype": "FP32",
                "data": [0.8, 0.7, 0.3, None],
            },
            {
                "name": "category",
                "shape": [2, 2],
                "datatype": "BYTES",
                "data": ["garden", "garden", "toys", ""],
            },
            {
                "name": "fallback",
                "shape": [2],
                "datatype": "BYTES",
                "data": ["", "unknown_user:popular_items"],
            },
        ],
    }


def _go_url(scheme: str, host: str) -> dict[str, Any]:
    """A Go ``*url.URL`` as ``encoding/json`` writes it (it has no JSON form)."""
    return {
        "Scheme": scheme,
        "Opaque": "",
        "User": None,
        "Host": host,
        "Path": "",
        "RawPath": "",
        "OmitHost": False,
        "ForceQuery": False,
        "RawQuery": "",
        "Fragment": "",
        "RawFragment": "",
    }


def _log_request(event_id: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A ``LogRequest`` as KServe's JSON blob-store marshaller writes it."""
    return {
        "Url": _go_url("s3", "interest-graph"),
        "Bytes": base64.b64encode(json.dumps(body).encode()).decode(),
        "ContentType": "application/json",
        "ReqType": kind,
        "Id": event_id,
        "SourceUri": _go_url("http", "localhost:9081"),
        "InferenceService": "recommender",
        "Namespace": "interest-graph",
        "Component": "predictor",
        "Endpoint": "",
        "Metadata": {},
        "Annotations": None,
        "CertName": "",
        "TlsSkipVerify": False,
    }


def _sink_folder(root: Path) -> Path:
    sink = root / "sink"
    sink.mkdir()
    captured = [
        # A v1 call through the transformer, as an HTTP sink captured it.
        {
            "headers": _headers("a1", REQUEST, "2026-03-02T10:00:00.5Z"),
            "body": {"instances": [{"user_id": "U1", "k": 2}]},
        },
        {
            "headers": _headers("a1", RESPONSE, "2026-03-02T10:00:01.25Z"),
            "body": {"predictions": [_v1_answer("U1")]},
        },
        # The body as the text it arrived as, with a fallback.
        {
            "headers": _headers("a2", RESPONSE, "2026-03-02T11:00:00Z"),
            "body": json.dumps({"predictions": [_v1_answer("U2", "cold_start")]}),
        },
        # A request the model refused (400): KServe logs no response.
        {
            "headers": _headers("a3", REQUEST, "2026-03-02T12:00:00Z"),
            "body": {"instances": [{"user": "U3"}]},
        },
        # Corrupt: a cut body, an event of another type.
        {"headers": _headers("a4", RESPONSE, "2026-03-02T12:00:00Z"), "body": "{cut"},
        {"headers": _headers("a5", "dev.knative.ping", "2026-03-02T12:00:00Z")},
    ]
    lines = [json.dumps(record) for record in captured]
    (sink / "events-2026-03-02.jsonl").write_text(
        "\n".join(lines) + "\n{not json\n", "utf-8"
    )
    # A v2 call as structured CloudEvents, one file each; a v2 response whose
    # request was lost (its users are unknown): corrupt.
    structured = {
        "specversion": "1.0",
        "source": SOURCE,
        "time": "2026-03-03T09:30:00Z",
        "datacontenttype": "application/json",
        "inferenceservicename": "recommender",
        "namespace": "interest-graph",
        "component": "predictor",
        "endpoint": "default",
    }
    request = {
        **structured,
        "id": "b1",
        "type": REQUEST,
        "data": _v2_request(["U4", "U5"]),
    }
    response = {
        **structured,
        "id": "b1",
        "type": RESPONSE,
        "data_base64": base64.b64encode(
            json.dumps(_v2_response("b1")).encode()
        ).decode(),
    }
    orphan = {**structured, "id": "b2", "type": RESPONSE, "data": _v2_response("b2")}
    for name, event in (("b1-req", request), ("b1-res", response), ("b2", orphan)):
        (sink / f"{name}.json").write_text(json.dumps(event, indent=2), "utf-8")
    # KServe's blob-storage logger: objects under
    # <namespace>/<service>/<component>/<storage.path>/, no time in them (the
    # file's modification time stands in).
    blobs = sink / "interest-graph/recommender/predictor/inference-log/predictor"
    blobs.mkdir(parents=True)
    for kind, body in ((REQUEST, _v2_request(["U6"])), (RESPONSE, None)):
        if body is None:
            body = _v2_response("c1")
            body["outputs"] = [
                {**o, "shape": [1, 2] if o["name"] != "fallback" else [1]}
                for o in body["outputs"]
            ]
            for output in body["outputs"]:
                output["data"] = (
                    output["data"][:2] if output["name"] != "fallback" else [""]
                )
        path = blobs / f"c1-{kind.rsplit('.', 1)[-1]}.json"
        path.write_text(json.dumps([_log_request("c1", kind, body)]), "utf-8")
        stamp = pd.Timestamp("2026-03-04T08:00:00Z").timestamp()
        os.utime(path, (stamp, stamp))
    return sink


def test_kserve_logger_events_become_calls_and_broken_ones_are_counted(
    tmp_path: Path,
) -> None:
    records = read_inference_log(_sink_folder(tmp_path))

    calls = records.responses.set_index("user_id")
    assert sorted(calls.index) == ["U1", "U2", "U4", "U5", "U6"]
    # Time: the response event's ce-time, or the blob's modification time.
    assert calls.loc["U1", "timestamp"] == pd.Timestamp("2026-03-02 10:00:01.250")
    assert calls.loc["U4", "timestamp"] == pd.Timestamp("2026-03-03 09:30:00")
    assert calls.loc["U6", "timestamp"] == pd.Timestamp("2026-03-04 08:00:00")
    assert calls.loc["U2", "fallback"] == "cold_start"
    assert calls.loc["U5", "fallback"] == "unknown_user:popular_items"
    assert calls.loc["U1", "fallback"] == calls.loc["U4", "fallback"] == "none"
    assert calls.loc["U4", "model_version"] == "4"
    # v2 rows become ranked items; a padded rank ("") is no item.
    items = records.items
    u4 = items[items.user_id == "U4"]
    assert u4.item_id.tolist() == ["I5", "I6"] and u4["rank"].tolist() == [1, 2]
    assert u4.category.tolist() == ["garden", "garden"]
    assert u4.score.tolist() == [0.8, 0.7]
    assert items[items.user_id == "U5"].item_id.tolist() == ["I7"]
    assert items[items.user_id == "U1"].category.tolist() == ["kitchen", "unknown"]
    assert len(items) == 2 + 2 + 2 + 1 + 2
    # Corrupt, each with its reason: a line that is not JSON, a cut body, an
    # event of another type, a v2 response without its request.
    assert records.corrupt_total == 4
    reasons = " | ".join(records.examples)
    assert "not JSON" in reasons and "without its request" in reasons
    assert "dev.knative.ping" in reasons
    # The refused request is neither a call nor corrupt.
    assert records.unanswered == 1
    assert records.logged_events == 9  # kept; the broken two are corrupt


def test_the_service_log_and_kserve_events_read_together(tmp_path: Path) -> None:
    sink = _sink_folder(tmp_path)
    own = {
        "timestamp": pd.Timestamp("2026-03-05").timestamp(),
        "model_version": "3",
        "response": [_v1_answer("U9")],
    }
    (sink / "inference-log.jsonl").write_text(json.dumps(own) + "\n", "utf-8")
    records = read_inference_log(sink)
    assert "U9" in set(records.responses.user_id)
    assert len(records.responses) == 6
    assert records.corrupt_total == 4
