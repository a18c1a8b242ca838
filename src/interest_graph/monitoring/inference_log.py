"""Read the serving inference log for the checks: a JSONL or Parquet file, or a
folder of (rotated) files, of the service's own log or of what KServe's request
logger delivered (:mod:`interest_graph.monitoring.kserve_logger`); corrupt lines
are counted and skipped, never silently, and fields the checks do not use are
ignored."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from interest_graph.errors import MalformedFileError
from interest_graph.logs import get_logger
from interest_graph.monitoring.kserve_logger import (
    EventPairs,
    is_logged_event,
    logged_event,
)

log = get_logger("monitoring.inference_log")

RESPONSE_COLUMNS = ("timestamp", "user_id", "fallback", "model_version", "items")
ITEM_COLUMNS = (
    "timestamp",
    "user_id",
    "item_id",
    "rank",
    "score",
    "category",
    "fallback",
)
_SUFFIXES = (".jsonl", ".json", ".log", ".gz", ".parquet")


@dataclass
class InferenceRecords:
    """One row per answered user and one per recommended item.

    Attributes:
        responses: ``timestamp`` (naive UTC), ``user_id``, ``fallback`` (``none``
            when the model answered itself), ``model_version``, ``items``.
        items: ``timestamp``, ``user_id``, ``item_id``, ``rank`` (1 = best),
            ``score``, ``category`` and the response's ``fallback``.
        files: the files read.
        corrupt: lines (or Parquet rows) that could not be read, per file.
        examples: the first few corrupt lines' problems.
        logged_events: KServe logger events read (requests and responses).
        unanswered: KServe-logged requests without a logged response (the
            model did not answer 200); not corrupt, not calls.
    """

    responses: pd.DataFrame
    items: pd.DataFrame
    files: list[str] = field(default_factory=list)
    corrupt: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    logged_events: int = 0
    unanswered: int = 0

    @property
    def corrupt_total(self) -> int:
        return sum(self.corrupt.values())


def log_files(path: Path) -> list[Path]:
    """The log files under ``path`` (itself when a file), oldest name first.

    Raises:
        MalformedFileError: the path does not exist.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise MalformedFileError(path, "no inference log here")
    # Rotated names (inference-log.jsonl.1, ...-<pid>-<ns>.parquet) sort by name.
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and any(s in p.name for s in _SUFFIXES)
    )


def read_inference_log(path: str | Path) -> InferenceRecords:
    """Every record of the log at ``path`` (file or folder of rotated files).

    A line that is not JSON, a record without a timestamp or a response list, or
    a response that is not an object is corrupt: counted per file and skipped.
    KServe logger events are paired by id once every file is read; a broken
    event, or a response that cannot be read as a call, is corrupt likewise.
    """
    responses: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    result = InferenceRecords(pd.DataFrame(), pd.DataFrame())
    events = EventPairs()
    problems: dict[str, list[str]] = {}
    for file in log_files(Path(path)):
        result.files.append(str(file))
        records, bad = _records(file)
        problems[str(file)] = bad
        for number, record in records:
            where = f"{file.name}:{number}"
            try:
                if is_logged_event(record):
                    stamp = file.stat().st_mtime
                    events.add(logged_event(record, str(file), where, stamp))
                else:
                    _unpack(record, responses, items)
            except (KeyError, TypeError, ValueError) as exc:
                bad.append(f"{where}: {exc}")
    for response, call in events.calls():
        try:
            if isinstance(call, Exception):
                raise call
            _unpack(call, responses, items)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            problems[response.file].append(f"{response.where}: {exc}")
    for name, bad in problems.items():
        result.corrupt[name] = len(bad)
        result.examples.extend(bad[: max(0, 5 - len(result.examples))])
    result.logged_events, result.unanswered = len(events), events.unanswered
    result.responses = pd.DataFrame(responses, columns=list(RESPONSE_COLUMNS))
    result.items = pd.DataFrame(items, columns=list(ITEM_COLUMNS))
    for frame in (result.responses, result.items):
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s")
    if result.corrupt_total:
        log.warning(
            "inference log %s: %d corrupt records skipped",
            path,
            result.corrupt_total,
        )
    return result


Numbered = list[tuple[int, Any]]


def _records(file: Path) -> tuple[Numbered, list[str]]:
    """The file's records by line (or row) number, and its unreadable lines."""
    if file.suffix == ".parquet":
        return _parquet_records(file)
    opener: Any = gzip.open if file.suffix == ".gz" else open
    records: Numbered = []
    bad: list[str] = []
    if file.suffix == ".json":  # one document (KServe's stored events), if it is
        try:
            return _listed(1, json.loads(file.read_bytes())), bad
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass  # JSON lines, then
    with opener(file, "rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.extend(_listed(number, json.loads(line)))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                bad.append(f"{file.name}:{number}: not JSON ({exc.__class__.__name__})")
    return records, bad


def _listed(number: int, value: Any) -> Numbered:
    """A JSON list (KServe's blob store writes its events as one) as its
    records, anything else as one record."""
    return (
        [(number, v) for v in value] if isinstance(value, list) else [(number, value)]
    )


def _parquet_records(file: Path) -> tuple[Numbered, list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(file).to_pylist()
    except (OSError, pa.ArrowException) as exc:
        return [], [f"{file.name}: unreadable Parquet file ({exc})"]
    for row in rows:
        if isinstance(row.get("response"), str):
            try:
                row["response"] = json.loads(row["response"])
            except json.JSONDecodeError:
                row["response"] = None
    return list(enumerate(rows, 1)), []


def _unpack(
    record: Any, responses: list[dict[str, Any]], items: list[dict[str, Any]]
) -> None:
    if not isinstance(record, dict):
        raise TypeError("record is not an object")
    stamp = float(record["timestamp"])
    answers = record["response"]
    if not isinstance(answers, list):
        raise TypeError("response is not a list")
    rows: list[dict[str, Any]] = []
    item_rows: list[dict[str, Any]] = []
    for answer in answers:
        user = str(answer["user_id"])
        listed = answer.get("items") or []
        fallback = str(answer.get("fallback") or "none")
        rows.append(
            {
                "timestamp": stamp,
                "user_id": user,
                "fallback": fallback,
                "model_version": str(
                    answer.get("model_version") or record.get("model_version") or ""
                ),
                "items": len(listed),
            }
        )
        for rank, item in enumerate(listed, 1):
            item_rows.append(
                {
                    "timestamp": stamp,
                    "user_id": user,
                    "item_id": str(item["item_id"]),
                    "rank": rank,
                    "score": float(item.get("score", float("nan"))),
                    "category": str(item.get("category") or "unknown"),
                    "fallback": fallback,
                }
            )
    # Only a record read whole counts: no half-added responses.
    responses.extend(rows)
    items.extend(item_rows)
