"""The monitor's inputs: the inference log reader (files, rotated folders,
Parquet, corrupt lines counted, extra fields ignored) and the window specs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interest_graph.errors import ConfigError, MalformedFileError
from interest_graph.monitoring.inference_log import read_inference_log
from interest_graph.monitoring.windows import (
    Window,
    current_window,
    reference_window,
    training_window,
)


def _record(stamp: float, user: str, fallback: str | None = None) -> dict:
    return {
        "timestamp": stamp,
        "protocol": "v1",
        "request_id": None,
        "model_version": "3",
        "latency_ms": 1.0,
        "request": [{"user_id": user, "k": 2}],
        "response": [
            {
                "user_id": user,
                "items": [
                    {"item_id": "I1", "score": 0.9, "category": "toys", "reason": "r"},
                    {"item_id": "I2", "score": 0.5, "category": "books"},
                ],
                "fallback": fallback,
                "model_version": "3",
            }
        ],
        "sampled": True,  # a field a newer writer adds: ignored
    }


def test_a_folder_of_rotated_logs_is_read_and_corrupt_lines_are_counted(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "log"
    folder.mkdir()
    lines = [json.dumps(_record(1_767_600_000 + i, f"U{i}")) for i in range(3)]
    (folder / "inference-log.jsonl.1").write_text("\n".join(lines) + "\n")
    (folder / "inference-log.jsonl").write_text(
        json.dumps(_record(1_767_700_000, "U9", "unknown_user:popular_items"))
        + "\n{not json\n"
        + json.dumps({"timestamp": 1.0, "response": "oops"})
        + "\n"
        + lines[0][: len(lines[0]) // 2]  # a line cut by a crash
        + "\n"
    )
    rows = [{**_record(1_767_800_000, "U7"), "request": "[]"}]
    rows[0]["response"] = json.dumps(rows[0]["response"])
    pq.write_table(pa.Table.from_pylist(rows), folder / "inference-log-1-2.parquet")

    records = read_inference_log(folder)
    assert len(records.files) == 3
    assert records.corrupt_total == 3
    assert len(records.examples) == 3
    assert len(records.responses) == 5
    assert len(records.items) == 10
    assert set(records.items.columns) >= {"score", "category", "fallback", "rank"}
    unknown = records.responses[records.responses.user_id == "U9"]
    assert unknown.fallback.tolist() == ["unknown_user:popular_items"]
    assert records.items.timestamp.dtype.kind == "M"


def test_a_missing_log_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(MalformedFileError, match="no inference log"):
        read_inference_log(tmp_path / "nowhere.jsonl")


def test_window_specs() -> None:
    end = pd.Timestamp("2026-04-01")
    last = current_window("last 7 days", end)
    assert (last.start, last.end) == (pd.Timestamp("2026-03-25"), end)
    previous, note = reference_window(
        "previous 28 days", last, training=None, fallback_days=14
    )
    assert previous.end == last.start and previous.days == 28 and note is None
    fallback, note = reference_window("training", last, training=None, fallback_days=14)
    assert fallback.days == 14 and note and "no training window" in note
    trained = training_window(
        {"training_window": {"start": "2026-01-01", "end": "2026-03-01"}}
    )
    assert isinstance(trained, Window)
    chosen, note = reference_window("training", last, training=trained, fallback_days=1)
    assert chosen == trained and note is None
    explicit = current_window("2026-02-01..2026-02-15", end)
    assert explicit.days == 14
    for bad in ("yesterday", "2026-02-15..2026-02-01", "last 0 days"):
        with pytest.raises(ConfigError):
            current_window(bad, end)
    with pytest.raises(ConfigError, match="current window"):
        reference_window("last 7 days", last, training=None, fallback_days=1)
