"""What a pipeline step leaves in its output artifacts: a manifest and metadata
from a stage's result, metrics rows, and pages the KFP UI renders (HTML,
Markdown)."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

MANIFEST = "manifest.json"
# Metric columns of a metrics row that become KFP metrics, by prefix.
METRIC_PREFIXES = ("recall@", "ndcg@", "hit@", "coverage@")
_MAX_METADATA_KEYS = 64


class ArtifactLike(Protocol):
    """The part of a KFP artifact (``Dataset``, ``Model``) a step writes."""

    path: str
    metadata: dict[str, Any]


class MetricsLike(Protocol):
    """The part of KFP's ``Metrics`` artifact a step writes."""

    def log_metric(self, metric: str, value: float) -> None: ...


def as_plain(result: Any) -> Any:
    """A stage's result (dataclasses, paths, numpy scalars) as JSON values."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        result = dataclasses.asdict(result)
    return json.loads(json.dumps(result, default=_plain_value))


def _plain_value(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def scalar_metadata(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Scalars of ``payload`` and of its nested mappings one level down
    (``summary.totals`` → ``totals.rows_in``), for the KFP UI's metadata pane."""
    found: dict[str, Any] = {}
    for key, value in payload.items():
        if isinstance(value, str | int | float | bool):
            found[key] = value
        elif isinstance(value, Mapping):
            for inner, item in value.items():
                if isinstance(item, str | int | float | bool):
                    found[f"{key}.{inner}"] = item
    return dict(list(found.items())[:_MAX_METADATA_KEYS])


def record(
    artifact: ArtifactLike | None, result: Any, markdown_path: str | None = None
) -> dict[str, Any]:
    """Write ``result`` as ``manifest.json`` into the artifact's folder and its
    scalars into the artifact's metadata; optionally as a Markdown page.

    Returns:
        The result as JSON values.
    """
    payload = as_plain(result)
    if artifact is not None:
        folder = Path(artifact.path)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).write_text(
            json.dumps(payload, indent=2) + "\n", encoding="utf-8"
        )
        if isinstance(payload, Mapping):
            artifact.metadata.update(scalar_metadata(payload))
    if markdown_path is not None:
        Path(markdown_path).write_text(markdown_page(result, payload), "utf-8")
    return payload if isinstance(payload, dict) else {"result": payload}


def markdown_page(result: Any, payload: Any) -> str:
    """A short Markdown page: the result's own description, then its JSON."""
    title = type(result).__name__
    describe = getattr(result, "describe", None)
    lead = f"{describe()}\n\n" if callable(describe) else ""
    body = json.dumps(payload, indent=2)
    return f"# {title}\n\n{lead}```json\n{body}\n```\n"


def record_metrics(metrics: MetricsLike, rows: Iterable[Mapping[str, Any]]) -> int:
    """Log each row's recall/NDCG/hit/coverage as ``protocol/model/metric``.

    Returns:
        The number of metrics logged.
    """
    logged = 0
    for row in rows:
        for key, value in row.items():
            if key.startswith(METRIC_PREFIXES) and isinstance(value, int | float):
                metrics.log_metric(f"{row['protocol']}/{row['model']}/{key}", value)
                logged += 1
    return logged


def table_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Protocol, model, users, the metrics in row order, seconds."""
    metrics = [k for k in rows[0] if k.startswith(METRIC_PREFIXES)] if rows else []
    return ["protocol", "model", "users", *metrics, "seconds"]


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value or "")


def evaluation_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """The evaluation table as an HTML page."""
    columns = table_columns(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns)
        + "</tr>"
        for row in rows
    )
    style = "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px}"
    return (
        f"<html><head><meta charset='utf-8'><style>{style}</style></head><body>"
        f"<h2>Evaluation</h2><table><tr>{head}</tr>{body}</table></body></html>\n"
    )


def evaluation_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The evaluation table as a Markdown table."""
    columns = table_columns(rows)
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows),
    ]
    return "# Evaluation\n\n" + "\n".join(lines) + "\n"


def write_png_html(png: str | Path, out: str | Path, title: str) -> Path:
    """An HTML page holding a PNG inline (the KFP UI shows HTML artifacts)."""
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    Path(out).write_text(
        f"<html><body><h2>{html.escape(title)}</h2>"
        f"<img src='data:image/png;base64,{data}'></body></html>\n",
        encoding="utf-8",
    )
    return Path(out)
