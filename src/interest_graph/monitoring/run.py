"""One monitoring run: load what the checks read, run every check, write an
HTML report per check, the verdict page, the JSON summary and an entry in the
Evidently workspace."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from interest_graph.errors import InterestGraphError, MalformedFileError
from interest_graph.logs import get_logger
from interest_graph.monitoring import checks
from interest_graph.monitoring.config import MonitoringConfig
from interest_graph.monitoring.inference_log import read_inference_log
from interest_graph.monitoring.windows import (
    Window,
    current_window,
    reference_window,
    training_window,
)

log = get_logger("monitoring")

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
CHECKS = (
    "user_features",
    "item_features",
    "user_interests",
    "item_text_embeddings",
    "user_vectors",
    "item_vectors",
    "predictions",
    "outcomes",
)


@dataclass(frozen=True)
class MonitorInputs:
    """Where each check reads from; None where there is nothing to read."""

    data_dir: Path | None
    features_dir: Path | None
    model_dir: Path | None
    inference_log: Path | None
    model_problem: str | None = None  # why there is no model folder


@dataclass(frozen=True)
class MonitorResult:
    """What a run found and wrote."""

    drift_detected: bool
    summary: dict[str, Any]
    summary_path: Path
    report_html: Path
    check_html: dict[str, Path]
    checks: list[checks.CheckResult]


def run_monitor(
    inputs: MonitorInputs,
    reference: str,
    current: str,
    out_dir: Path,
    config: MonitoringConfig,
    *,
    k: int = 20,
    workspace: Path | None = None,
) -> MonitorResult:
    """Compare the reference window with the current one on every check.

    Raises:
        InterestGraphError: the windows cannot be resolved (a bad spec, or
            ``last N days`` with no events to anchor on).
    """
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    data = _load(inputs)
    data_end = _data_end(data)
    cur = current_window(current, data_end)
    model_config = _model_config(inputs.model_dir)
    no_model = inputs.model_problem or "none given"
    ref, note = reference_window(
        reference,
        cur,
        training=training_window(model_config),
        fallback_days=config.reference_days,
        why_no_training=(
            f"no model to read a training window from ({no_model})"
            if inputs.model_dir is None
            else f"the model at {inputs.model_dir} records no training window "
            "(written before models recorded it; retrain to record one)"
        ),
    )
    results = [
        _attempt(name, partial(_check, name, data, ref, cur, data_end, config, k))
        for name in CHECKS
    ]
    check_html: dict[str, Path] = {}
    for result in results:
        if result.snapshot is not None:
            path = out_dir / f"{result.name}.html"
            result.snapshot.save_html(str(path))
            result.html = check_html[result.name] = path
    drift = any(r.drift_detected for r in results if r.ran)
    summary: dict[str, Any] = {
        "drift_detected": drift,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "reference": ref.as_dict(),
        "current": cur.as_dict(),
        "notes": [n for n in [note] if n],
        "checks_run": [r.name for r in results if r.ran],
        "checks_drifted": [r.name for r in results if r.drift_detected],
        "checks_not_run": {r.name: r.reason for r in results if not r.ran},
        "checks": {r.name: r.as_dict() for r in results},
        "inputs": {
            key: None if value is None else str(value)
            for key, value in vars(inputs).items()
        },
        "load_problems": data.missing,
    }
    if data.inference is not None:
        summary["inference_log"] = {
            "files": len(data.inference.files),
            "records": len(data.inference.responses),
            "corrupt_records": data.inference.corrupt_total,
            "corrupt_examples": data.inference.examples,
            "kserve_logger_events": data.inference.logged_events,
            "unanswered_requests": data.inference.unanswered,
        }
    if workspace is not None:
        summary["workspace"] = _to_workspace(workspace, config.project, results, cur)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary_path = out_dir / SUMMARY_FILE
    summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n", "utf-8")
    report = out_dir / REPORT_FILE
    report.write_text(verdict_page(summary), "utf-8")
    log.info(
        "monitor: %s (%d checks run, %d not run) -> %s",
        "DRIFT" if drift else "no drift",
        len(summary["checks_run"]),
        len(summary["checks_not_run"]),
        report,
    )
    return MonitorResult(drift, summary, summary_path, report, check_html, results)


def _attempt(name: str, run: Callable[[], checks.CheckResult]) -> checks.CheckResult:
    """A check's result, or its reason for not running (never a silent pass)."""
    try:
        return run()
    except checks.NotRun as exc:
        result = checks.CheckResult(name, "")
        result.reason = str(exc)
        log.warning("%s: not run: %s", name, exc)
        return result
    except (ValueError, KeyError, IndexError) as exc:  # Evidently refuses the data
        result = checks.CheckResult(name, "")
        result.reason = f"failed: {exc.__class__.__name__}: {exc}"
        log.warning("%s: failed: %s", name, exc)
        return result


def _check(
    name: str,
    data: checks.ShopData,
    ref: Window,
    cur: Window,
    data_end: pd.Timestamp,
    config: MonitoringConfig,
    k: int,
) -> checks.CheckResult:
    events = data.events
    if name == "user_features":
        result = checks.feature_check(
            name,
            data.user_activity,
            "user_id",
            checks.USER_FEATURES,
            ref,
            cur,
            data.data_start,
            config,
        )
    elif name == "item_features":
        result = checks.feature_check(
            name,
            data.item_statistics,
            "item_id",
            checks.ITEM_FEATURES,
            ref,
            cur,
            data.data_start,
            config,
        )
    elif name == "user_interests":
        result = checks.interest_check(events, data.item_categories, ref, cur, config)
    elif name == "item_text_embeddings":
        result = checks.vector_check(
            name,
            data.text_vectors,
            events,
            "item_id",
            ref,
            cur,
            config,
            data.missing.get("text", "no item text embeddings"),
        )
    elif name in ("user_vectors", "item_vectors"):
        vectors = (data.model_vectors or {}).get(name)
        result = checks.vector_check(
            name,
            vectors,
            events,
            "user_id" if name == "user_vectors" else "item_id",
            ref,
            cur,
            config,
            data.missing.get("model", "the model has no user and item vectors"),
        )
    elif name == "predictions":
        result = checks.prediction_check(
            data.inference, ref, cur, config, data.missing.get("log", "no log")
        )
    else:
        result = checks.outcome_check(
            data.inference,
            events,
            ref,
            cur,
            data_end,
            config,
            k,
            data.missing.get("log", "no inference log"),
        )
    log.info("%s: %s (value %s)", name, result.verdict, result.value)
    return result


def _load(inputs: MonitorInputs) -> checks.ShopData:
    data = checks.ShopData()
    if inputs.data_dir is not None:
        path = inputs.data_dir / "events.parquet"
        try:
            data.events = pq.read_table(
                path, columns=["user_id", "item_id", "event_type", "timestamp"]
            ).to_pandas()
        except (OSError, pa.ArrowException, KeyError) as exc:
            data.missing["events"] = f"{path}: {exc}"
        items = inputs.data_dir / "items.parquet"
        if items.is_file():
            frame = pq.read_table(items, columns=["item_id", "category"]).to_pandas()
            data.item_categories = frame.set_index("item_id")["category"]
    else:
        data.missing["events"] = "no data folder given"
    _load_features(inputs.features_dir, data)
    _load_model(inputs, data)
    if inputs.inference_log is None:
        data.missing["log"] = "no inference log given"
    else:
        try:
            data.inference = read_inference_log(inputs.inference_log)
        except MalformedFileError as exc:
            data.missing["log"] = str(exc)
    return data


def _load_features(features_dir: Path | None, data: checks.ShopData) -> None:
    if features_dir is None:
        data.missing["features"] = data.missing["text"] = "no features folder given"
        return
    for attribute, file in (
        ("user_activity", "user_activity.parquet"),
        ("item_statistics", "item_statistics.parquet"),
    ):
        path = features_dir / file
        if path.is_file():
            setattr(data, attribute, checks.read_feature_table(path))
    text = features_dir / "item_text_embeddings.parquet"
    if not text.is_file():
        data.missing["text"] = f"{text} not found (run `interest-graph embed`)"
        return
    table = pq.read_table(text, columns=["item_id", "text_embedding"])
    if table.num_rows == 0:
        data.missing["text"] = f"{text} is empty (run `interest-graph embed`)"
        return
    data.text_vectors = (
        table["item_id"].to_numpy().astype(str),
        _stack(table["text_embedding"]),
    )


def _stack(column: pa.ChunkedArray) -> np.ndarray:
    """A list<float> column as a (rows, dims) array, without Python lists."""
    flat = pa.concat_arrays([c.flatten() for c in column.chunks]).to_numpy()
    return flat.reshape(len(column), -1)


def _load_model(inputs: MonitorInputs, data: checks.ShopData) -> None:
    if inputs.model_dir is None:
        data.missing["model"] = inputs.model_problem or "no model given"
        return
    from interest_graph.models.artifact import ModelArtifact

    try:
        artifact = ModelArtifact.load(inputs.model_dir)
    except (OSError, InterestGraphError) as exc:
        data.missing["model"] = f"{inputs.model_dir}: {exc}"
        return
    if not artifact.has_vectors:
        data.missing["model"] = f"a {artifact.model} model has no user/item vectors"
        return
    data.model_vectors = {
        "user_vectors": (artifact.user_ids.astype(str), artifact.user_vectors),
        "item_vectors": (artifact.item_ids.astype(str), artifact.item_vectors),
    }


def _model_config(model_dir: Path | None) -> dict[str, Any]:
    path = None if model_dir is None else model_dir / "config.json"
    if path is None or not path.is_file():
        return {}
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}


def _data_end(data: checks.ShopData) -> pd.Timestamp:
    """The midnight after the newest event (or logged call): "now" for the data."""
    newest: list[pd.Timestamp] = []
    if data.events is not None and not data.events.empty:
        newest.append(pd.Timestamp(data.events["timestamp"].max()))
    if data.inference is not None and not data.inference.responses.empty:
        newest.append(pd.Timestamp(data.inference.responses["timestamp"].max()))
    if not newest:
        return pd.Timestamp.now("UTC").tz_localize(None).normalize()
    return max(newest).normalize() + pd.Timedelta(days=1)


def _to_workspace(
    path: Path, project_name: str, results: list[checks.CheckResult], cur: Window
) -> dict[str, Any]:
    """Each check's snapshot as a run of the project, for ``evidently ui``."""
    from evidently.ui.workspace import Workspace

    try:
        workspace = Workspace.create(str(path))
        found = workspace.search_project(project_name)
        project = found[0] if found else workspace.create_project(project_name)
        runs = {}
        for result in results:
            if result.snapshot is not None:
                name = f"{result.name} {cur.start.date()}..{cur.end.date()}"
                ref = workspace.add_run(project.id, result.snapshot, name=name)
                runs[result.name] = str(ref.id)
    except (OSError, ValueError) as exc:
        return {"path": str(path), "error": str(exc)}
    return {"path": str(path), "project": project_name, "runs": runs}


def verdict_page(summary: dict[str, Any]) -> str:
    """The page a reviewer opens first: the verdict, each check's line, links."""
    verdict = "DRIFT DETECTED" if summary["drift_detected"] else "NO DRIFT DETECTED"
    colour = "#b42318" if summary["drift_detected"] else "#067647"
    rows = []
    for check in summary["checks"].values():
        link = (
            f'<a href="{Path(check["html"]).name}">Evidently report</a>'
            if check["html"]
            else ""
        )
        value = "" if check["value"] is None else f"{check['value']:.4g}"
        threshold = "" if check["threshold"] is None else f"{check['threshold']:.4g}"
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(cell))}</td>"
                for cell in (
                    check["name"],
                    check["verdict"],
                    value,
                    threshold,
                    check["method"],
                    f"{check['rows_reference']} / {check['rows_current']}",
                    check["reason"]
                    or ", ".join(check["details"].get("drifted_columns", [])),
                )
            )
            + f"<td>{link}</td></tr>"
        )
    ref, cur = summary["reference"], summary["current"]
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in summary["notes"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; background: #fff; color: #111; }}
h1 {{ color: {colour}; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}
</style></head><body>
<h1 id="verdict">{verdict}</h1>
<p>reference {html.escape(ref["start"])} to {html.escape(ref["end"])}
({html.escape(str(ref["label"]))}); current {html.escape(cur["start"])} to
{html.escape(cur["end"])} ({html.escape(str(cur["label"]))})</p>
{notes}
<table><tr><th>check</th><th>verdict</th><th>value</th><th>threshold</th>
<th>method</th><th>rows reference / current</th><th>why / drifted</th><th></th></tr>
{"".join(rows)}
</table></body></html>
"""
