"""The drift checks: feature tables, item text and model vectors, what the
service answered, and what shoppers bought after. Each compares a reference
window with a current one and says drift, no drift, or why it could not run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from interest_graph.monitoring import evidently_reports as reports
from interest_graph.monitoring.config import MonitoringConfig
from interest_graph.monitoring.inference_log import InferenceRecords
from interest_graph.monitoring.windows import Window

# Feature columns and their type, per Feast view (feature_repo/feature_definitions.py).
USER_FEATURES = {
    "numerical": [
        *(f"{n}_{d}d" for d in (7, 30, 90) for n in ("views", "carts", "purchases")),
        "spend_30d",
        "spend_90d",
        "days_since_last_event",
    ],
    "categorical": ["favourite_category"],
}
ITEM_FEATURES = {
    "numerical": [
        *(f"{n}_{d}d" for d in (7, 30) for n in ("views", "carts", "purchases")),
        "conversion_30d",
        "price",
    ],
    "categorical": ["category"],
}
_WINDOWED = re.compile(r"_(\d+)d$")
PROFILE_CATEGORIES = 3  # a user's interests: their top categories (as Feast keeps)


class NotRun(Exception):
    """A check that cannot run, with the reason that goes into the summary."""


@dataclass
class CheckResult:
    """One check's outcome: ``drift_detected`` is None when it did not run."""

    name: str
    method: str
    drift_detected: bool | None = None
    value: float | None = None
    threshold: float | None = None
    rows_reference: int = 0
    rows_current: int = 0
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    snapshot: Any = None
    html: Path | None = None

    @property
    def ran(self) -> bool:
        return self.drift_detected is not None

    @property
    def verdict(self) -> str:
        if self.drift_detected is None:
            return "not run"
        return "drift" if self.drift_detected else "no drift"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "drift_detected": self.drift_detected,
            "value": self.value,
            "threshold": self.threshold,
            "method": self.method,
            "rows_reference": self.rows_reference,
            "rows_current": self.rows_current,
            "reason": self.reason,
            "details": self.details,
            "html": None if self.html is None else str(self.html),
        }


@dataclass
class ShopData:
    """What the checks read, loaded once: events, feature tables, vectors."""

    events: pd.DataFrame | None = None
    item_categories: pd.Series | None = None  # category by item_id
    user_activity: pd.DataFrame | None = None
    item_statistics: pd.DataFrame | None = None
    text_vectors: tuple[np.ndarray, np.ndarray] | None = None  # ids, vectors
    model_vectors: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    inference: InferenceRecords | None = None
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def data_start(self) -> pd.Timestamp | None:
        if self.events is None or self.events.empty:
            return None
        return pd.Timestamp(self.events["timestamp"].min())


def _in(frame: pd.DataFrame, column: str, window: Window) -> pd.DataFrame:
    stamps = frame[column]
    return frame[(stamps >= window.start) & (stamps < window.end)]


def _enough(name: str, rows: tuple[int, int], config: MonitoringConfig) -> None:
    reference, current = rows
    for label, count in (("reference", reference), ("current", current)):
        if count == 0:
            raise NotRun(f"the {label} window is empty")
        if count < config.min_rows:
            raise NotRun(
                f"the {label} window has {count} rows, fewer than the "
                f"{config.min_rows} (monitoring.min_rows) a {name} test needs"
            )


def read_feature_table(path: Path) -> pd.DataFrame:
    """A Feast offline table with naive UTC ``event_timestamp``."""
    frame = pq.read_table(path).to_pandas()
    stamps = pd.to_datetime(frame["event_timestamp"], utc=True)
    frame["event_timestamp"] = stamps.dt.tz_localize(None)
    if "favourite_categories" in frame:
        frame["favourite_category"] = frame["favourite_categories"].map(
            lambda v: v[0] if v is not None and len(v) else "none"
        )
    return frame


def _latest_per_entity(frame: pd.DataFrame, key: str, window: Window) -> pd.DataFrame:
    """Each entity's newest snapshot inside the window: its state there."""
    rows = _in(frame, "event_timestamp", window)
    return rows.sort_values("event_timestamp").drop_duplicates(key, keep="last")


def feature_check(
    name: str,
    table: pd.DataFrame | None,
    key: str,
    columns: dict[str, list[str]],
    reference: Window,
    current: Window,
    data_start: pd.Timestamp | None,
    config: MonitoringConfig,
) -> CheckResult:
    """Distribution drift of a feature view's columns (each entity's state in
    the window). Counts over N days are left out when the data before the
    reference window is shorter than N days (they would still be filling up)."""
    result = CheckResult(
        name,
        f"{config.num_method} / {config.cat_method} per column "
        f"(alpha {config.alpha} over the columns), drifted share",
    )
    result.threshold = config.drift_share
    if table is None:
        raise NotRun("the feature table is missing (run `interest-graph features`)")
    missing = [c for cols in columns.values() for c in cols if c not in table]
    if missing:
        raise NotRun(f"schema mismatch: the table lacks columns {missing}")
    ref = _latest_per_entity(table, key, reference)
    cur = _latest_per_entity(table, key, current)
    result.rows_reference, result.rows_current = len(ref), len(cur)
    _enough(name, (len(ref), len(cur)), config)
    history = (
        (reference.start - data_start) / pd.Timedelta(days=1)
        if data_start is not None
        else float("inf")
    )
    numerical, skipped = [], {}
    for column in columns["numerical"]:
        match = _WINDOWED.search(column)
        if match and int(match.group(1)) > history:
            skipped[column] = (
                f"{match.group(1)}-day window, {history:.0f} days of data before "
                "the reference"
            )
        elif ref[column].isna().all() or cur[column].isna().all():
            # e.g. conversion_30d of a shop that logs purchases only (no views):
            # Evidently refuses an empty column and would fail the whole check.
            skipped[column] = "no values in a window (all null)"
        else:
            numerical.append(column)
    categorical = []
    for column in columns["categorical"]:
        if ref[column].isna().all() or cur[column].isna().all():
            skipped[column] = "no values in a window (all null)"
        else:
            categorical.append(column)
    ref, cur = _sample(ref, config), _sample(cur, config)
    snapshot, tests = reports.column_drift(ref, cur, numerical, categorical, config)
    drifted = [t for t in tests if t.drifted]
    share = len(drifted) / max(len(tests), 1)
    result.value = share
    result.drift_detected = share >= config.drift_share
    result.snapshot = snapshot
    result.details = {
        "columns": {
            t.column: {
                "method": t.method,
                "value": _rounded(t.value),
                "threshold": t.threshold,
                "drifted": t.drifted,
            }
            for t in tests
        },
        "drifted_columns": [t.column for t in drifted],
        "left_out": skipped,
    }
    return result


def _rounded(value: float) -> float:
    """Five significant digits: a p-value of 1e-9 must not print as 0."""
    return float(f"{value:.5g}")


def _sample(frame: pd.DataFrame, config: MonitoringConfig) -> pd.DataFrame:
    if len(frame) <= config.feature_sample:
        return frame
    return frame.sample(config.feature_sample, random_state=config.seed)


def _event_sample(
    events: pd.DataFrame, window: Window, column: str, size: int, seed: int
) -> np.ndarray:
    """Ids of a uniform sample of the window's events: weighted by engagement."""
    ids = _in(events, "timestamp", window)[column].to_numpy()
    if ids.size > size:
        ids = np.random.default_rng(seed).choice(ids, size, replace=False)
    return ids


def vector_check(
    name: str,
    vectors: tuple[np.ndarray, np.ndarray] | None,
    events: pd.DataFrame | None,
    entity: str,
    reference: Window,
    current: Window,
    config: MonitoringConfig,
    why_missing: str,
) -> CheckResult:
    """Embedding drift of the vectors of what shoppers engaged with in each
    window (items) or of who was active (users): one test over whole vectors."""
    result = CheckResult(name, f"{config.embedding_method} (Evidently EmbeddingsDrift)")
    if vectors is None:
        raise NotRun(why_missing)
    if events is None:
        raise NotRun("no events to tell which vectors each window engaged")
    ids, matrix = vectors
    row_of = pd.Index(ids)
    picked = []
    for offset, window in enumerate((reference, current)):
        sample = _event_sample(
            events, window, entity, config.embedding_sample, config.seed + offset
        )
        rows = row_of.get_indexer(sample)
        picked.append(matrix[rows[rows >= 0]])
    result.rows_reference, result.rows_current = len(picked[0]), len(picked[1])
    _enough(name, (len(picked[0]), len(picked[1])), config)
    snapshot, score, threshold = reports.embedding_drift(
        picked[0].astype(np.float64), picked[1].astype(np.float64), name, config
    )
    result.value = score
    result.threshold = threshold
    result.drift_detected = score > threshold
    result.snapshot = snapshot
    result.details = {
        "dimensions": int(matrix.shape[1]),
        "method": config.embedding_method,
        "sample_per_window": config.embedding_sample,
        "alpha": config.alpha,
    }
    return result


def prediction_check(
    inference: InferenceRecords | None,
    reference: Window,
    current: Window,
    config: MonitoringConfig,
    why_missing: str,
) -> CheckResult:
    """What the service answered: score distribution, category mix, share and
    kind of fallbacks, unknown-user share, and catalogue coverage."""
    result = CheckResult(
        "predictions",
        f"{config.num_method} / {config.cat_method} per column (alpha "
        f"{config.alpha} over the columns); coverage change",
    )
    result.threshold = config.drift_share
    if inference is None:
        raise NotRun(why_missing)
    items = inference.items
    ref = _in(items, "timestamp", reference)
    cur = _in(items, "timestamp", current)
    result.rows_reference, result.rows_current = len(ref), len(cur)
    result.details["corrupt_log_records"] = inference.corrupt_total
    _enough("predictions", (len(ref), len(cur)), config)
    frames = [_prediction_columns(f) for f in (ref, cur)]
    snapshot, tests = reports.column_drift(
        frames[0],
        frames[1],
        ["score"],
        ["category", "fallback", "unknown_user"],
        config,
    )
    drifted = [t for t in tests if t.drifted]
    share = len(drifted) / len(tests)
    coverage = [_coverage(f) for f in (ref, cur)]
    change = abs(coverage[1] - coverage[0]) / max(coverage[0], 1e-12)
    result.value = share
    result.drift_detected = (
        share >= config.drift_share or change > config.coverage_change
    )
    result.snapshot = snapshot
    result.details.update(
        columns={
            t.column: {
                "method": t.method,
                "value": _rounded(t.value),
                "threshold": t.threshold,
                "drifted": t.drifted,
            }
            for t in tests
        },
        drifted_columns=[t.column for t in drifted],
        coverage={
            "reference": coverage[0],
            "current": coverage[1],
            "relative_change": round(change, 4),
            "threshold": config.coverage_change,
        },
        fallback_share={
            "reference": _share(frames[0]["fallback"] != "none"),
            "current": _share(frames[1]["fallback"] != "none"),
        },
        unknown_user_share={
            "reference": _share(frames[0]["unknown_user"] == "yes"),
            "current": _share(frames[1]["unknown_user"] == "yes"),
        },
    )
    return result


def _prediction_columns(items: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "score": items["score"].astype(float).to_numpy(),
            "category": items["category"].astype(str).to_numpy(),
            "fallback": items["fallback"].astype(str).to_numpy(),
            "unknown_user": np.where(
                items["fallback"].astype(str).str.contains("unknown_user"), "yes", "no"
            ),
        }
    )


def _share(mask: pd.Series) -> float:
    return round(float(mask.mean()), 4) if len(mask) else 0.0


def _coverage(items: pd.DataFrame) -> float:
    """Distinct items recommended per recommendation made: comparable between
    windows with different traffic."""
    return round(items["item_id"].nunique() / max(len(items), 1), 4)


def outcome_check(
    inference: InferenceRecords | None,
    events: pd.DataFrame | None,
    reference: Window,
    current: Window,
    data_end: pd.Timestamp,
    config: MonitoringConfig,
    k: int,
    why_missing: str,
) -> CheckResult:
    """Purchases that followed recommendations: each call's list against what
    the user bought within ``attribution_days`` after it, scored with
    Evidently's ranking metrics per window; drift when the hit rate falls."""
    result = CheckResult(
        "outcomes", f"HitRate@{k} relative drop (Evidently NDCG / HitRate / Recall)"
    )
    result.threshold = config.outcome_drop
    if inference is None:
        raise NotRun(why_missing)
    if events is None:
        raise NotRun("no events to join the inference log with")
    if not inference.items.empty:
        # Evidently scores every rank up to k: no deeper than the lists served.
        k = min(k, int(inference.items["rank"].max()))
        result.method = f"HitRate@{k} relative drop (Evidently NDCG / HitRate / Recall)"
    horizon = pd.Timedelta(days=config.attribution_days)
    judged_until = data_end - horizon
    purchases = events[events["event_type"] == "purchase"]
    frames, too_recent = [], 0
    for window in (reference, current):
        calls = _in(inference.items, "timestamp", window)
        recent = calls["timestamp"] > judged_until
        too_recent += len(calls[recent].drop_duplicates(["user_id", "timestamp"]))
        frames.append(_outcome_rows(calls[~recent], purchases, horizon, k))
    calls_seen = [f["user_id"].nunique() for f in frames]
    result.rows_reference, result.rows_current = calls_seen
    result.details["calls_too_recent_to_judge"] = too_recent
    _enough("outcomes", (calls_seen[0], calls_seen[1]), config)
    values = []
    snapshot = None
    for frame in frames:
        snapshot, scores = reports.ranking_quality(frame, k)
        values.append(scores)
    hit = [v.get("HitRate", 0.0) for v in values]
    drop = (hit[0] - hit[1]) / hit[0] if hit[0] > 0 else 0.0
    result.value = round(drop, 4)
    result.drift_detected = drop > config.outcome_drop
    result.snapshot = snapshot  # the current window's quality
    result.details.update(reference=values[0], current=values[1])
    return result


def _outcome_rows(
    calls: pd.DataFrame, purchases: pd.DataFrame, horizon: pd.Timedelta, k: int
) -> pd.DataFrame:
    """Evidently's ranking rows: one query per call (user and time), its served
    items by rank, and items bought after it that it did not serve (rank k+1)."""
    if calls.empty:
        return pd.DataFrame(columns=["user_id", "item_id", "prediction", "target"])
    served = calls[calls["rank"] <= k]
    query = served["user_id"] + "@" + served["timestamp"].astype(str)
    heads = served[["user_id", "timestamp"]].drop_duplicates()
    bought = heads.merge(
        purchases[["user_id", "item_id", "timestamp"]],
        on="user_id",
        suffixes=("", "_bought"),
    )
    after = bought[
        (bought["timestamp_bought"] > bought["timestamp"])
        & (bought["timestamp_bought"] <= bought["timestamp"] + horizon)
    ]
    after = after.assign(query=after["user_id"] + "@" + after["timestamp"].astype(str))
    relevant = set(zip(after["query"], after["item_id"], strict=True))
    rows = pd.DataFrame(
        {
            "user_id": query.to_numpy(),
            "item_id": served["item_id"].to_numpy(),
            "prediction": served["rank"].to_numpy(),
        }
    )
    rows["target"] = [
        int((q, i) in relevant)
        for q, i in zip(rows["user_id"], rows["item_id"], strict=True)
    ]
    listed = set(zip(rows["user_id"], rows["item_id"], strict=True))
    missed = after[
        [
            (q, i) not in listed
            for q, i in zip(after["query"], after["item_id"], strict=True)
        ]
    ].drop_duplicates(["query", "item_id"])
    extra = pd.DataFrame(
        {
            "user_id": missed["query"].to_numpy(),
            "item_id": missed["item_id"].to_numpy(),
            "prediction": k + 1,
            "target": 1,
        }
    )
    return pd.concat([rows, extra], ignore_index=True)


def interest_check(
    events: pd.DataFrame | None,
    item_categories: pd.Series | None,
    reference: Window,
    current: Window,
    config: MonitoringConfig,
) -> CheckResult:
    """Whether shoppers still buy into the interests they had: each user's top
    categories in the first half of the reference window are their profile;
    ``interest_overlap`` is the share of their events in those categories, in
    the second half of the reference and in the current window.

    Aggregate category mixes hardly move when every user's interest drifts to
    a neighbouring category; this sees it. Each user contributes the same
    number of events (``interest_events``) on both sides, so the overlap has
    the same sampling noise however long the windows are.
    """
    result = CheckResult(
        "user_interests", f"{config.interest_method} on interest_overlap per user"
    )
    if events is None:
        raise NotRun("no events to build interest profiles from")
    if item_categories is None:
        raise NotRun("no item categories (items.parquet) to build profiles from")
    if item_categories.isna().all():
        raise NotRun("the items have no categories to build profiles from")
    middle = reference.start + (reference.end - reference.start) / 2
    first = Window(reference.start, middle, "reference, first half")
    # Equal lengths on both sides: who has enough events depends on the length.
    span = min(reference.end - middle, current.end - current.start)
    second = Window(reference.end - span, reference.end, "reference, end")
    current = Window(current.end - span, current.end, "current, end")
    tagged = events.assign(category=events["item_id"].map(item_categories))
    profile = _profiles(_in(tagged, "timestamp", first))
    sides = [
        _overlap(_in(tagged, "timestamp", w), profile, config)
        for w in (second, current)
    ]
    result.rows_reference, result.rows_current = len(sides[0]), len(sides[1])
    _enough("user_interests", (len(sides[0]), len(sides[1])), config)
    snapshot, tests = reports.column_drift(
        sides[0],
        sides[1],
        ["interest_overlap"],
        [],
        config,
        num_method=config.interest_method,
    )
    (test,) = tests
    result.value = test.value
    result.threshold = test.threshold
    result.drift_detected = test.drifted
    result.snapshot = snapshot
    result.details = {
        "profile_window": first.as_dict(),
        "reference_sample_window": second.as_dict(),
        "current_sample_window": current.as_dict(),
        "mean_overlap": {
            "reference": round(float(sides[0]["interest_overlap"].mean()), 4),
            "current": round(float(sides[1]["interest_overlap"].mean()), 4),
        },
        "events_per_user": config.interest_events,
        "p_value": test.method in reports.P_VALUE_METHODS,
    }
    return result


def _profiles(events: pd.DataFrame) -> pd.DataFrame:
    """(user_id, category) pairs of each user's top categories by events."""
    counts = events.groupby(["user_id", "category"], observed=True).size()
    ranked = counts.reset_index(name="n").sort_values(
        ["user_id", "n", "category"], ascending=[True, False, True]
    )
    return ranked.groupby("user_id", observed=True).head(PROFILE_CATEGORIES)[
        ["user_id", "category"]
    ]


def _overlap(
    events: pd.DataFrame, profile: pd.DataFrame, config: MonitoringConfig
) -> pd.DataFrame:
    """Per profiled user with enough events: the share of ``interest_events``
    sampled events in their profile categories."""
    m = config.interest_events
    known = events[events["user_id"].isin(profile["user_id"])]
    counts = known.groupby("user_id", observed=True)["item_id"].transform("size")
    known = known[counts >= m]
    picked = (
        known.sample(frac=1.0, random_state=config.seed)
        .groupby("user_id", observed=True)
        .head(m)
    )
    hits = picked.merge(profile.assign(hit=1), on=["user_id", "category"], how="left")
    share = hits.groupby("user_id", observed=True)["hit"].sum() / m
    return pd.DataFrame({"interest_overlap": share.to_numpy(dtype=float)})
