"""Drift monitor benchmark: detection, false alarms, detection delay, scale.

    python bench/monitor.py [--quick]

detection_rate / false_alarm_rate: the monitor (features, interests, item text
embeddings; no model, no log) on synthetic 120-day shops of 2000 users / 80k
events, days 30-60 against days 90-120 (the README's setup), with the shift
magnitudes the README names (``synth.interest_drift 0.6`` for half the seeds'
shifted shops, ``synth.price_drift 0.5`` for the other half) and with both knobs
off; 20 seeds each (--quick: 2 each, one per knob, and says so in "seeds").
The monitor's settings were chosen on other seeds (1000-1029), not on these.
detected_with_shift: the checks that fired on the first shifted shop.

detection_delay_days: a stationary shop whose events from day 90 on move to the
neighbouring category with probability 0.6 (a step shift, unlike the knob's
linear ramp); the monitor runs once a day on the last 14 days against days 30-60
and the figure is the number of daily runs after the shift began until the
first alarm (null if none within 14 days; 1 = the first day's run).

events / seconds / peak_rss_gb: one full monitor run (all checks that have data;
item text embeddings for every item, of which the embedding check compares a
fixed-seed sample of 500 engaged per window, ``monitoring.embedding_sample``)
over a synthetic shop of 1M events and 100k items with 64-d item vectors
(--quick: 100k events, 10k items), in a child process: seconds is its wall
time, peak_rss_gb its peak RSS. Shop generation and the feature build are not
counted (printed as "prepare_seconds").
The last line printed is one JSON object.

Measured 2026-11-30 on 2 CPUs shared with three other agents' work (load 4-6;
upper bounds): full mode 5.5 min in all; 1M events / 100k items: 27.3 s, 1.48
GB peak RSS (before: 121 s; the embedding report's t-SNE, now single-threaded,
took most of it); detection 1.0 (20 of 20), false alarms 0.0 (0 of 20), delay
1 day. --quick: 69 s at load 4.3 with 3 seeds each, the child importing Feast
and torch through this file and the monitor importing the service for its log
path; without those, and with 2 seeds each, 47.8 s at load 0.6-0.9 (2026-12-01;
its monitor run over 100k events 14.3 s, 0.47 GB, mostly importing Evidently).
The full run's seconds and peak RSS above still include the Feast and torch
imports (measured before; not rerun).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from interest_graph.config import Settings, SynthConfig

REFERENCE = "2026-02-04..2026-03-06"  # days 30-60 of a shop starting 2026-01-05
START = pd.Timestamp("2026-01-05")
INTEREST_SHIFT = 0.6
PRICE_SHIFT = 0.5
SHIFT_DAY = 90
DELAY_WINDOW_DAYS = 14


def make_shop(
    root: Path,
    config: SynthConfig,
    *,
    dims: int = 32,
    step_shift: float = 0.0,
) -> Path:
    """A shop, its Feast feature tables and stand-in item text vectors (a
    direction per category plus noise per item); with ``step_shift``, events
    from ``SHIFT_DAY`` on move to the neighbouring category with that
    probability."""
    from interest_graph.data.synth import generate_shop
    from interest_graph.features.tables import build_features

    tables = generate_shop(config)
    data = root / "data"
    tables.write(data)
    items = tables.items
    if step_shift:
        _step_shift(data, items, config.seed, step_shift)
    features = root / "features"
    build_features(data, features, threads=1, memory_limit="4GB")
    codes = pd.Categorical(items["category"]).codes
    rng = np.random.default_rng(config.seed)
    centres = rng.normal(size=(codes.max() + 1, dims))
    vectors = centres[codes] + 0.5 * rng.normal(size=(len(items), dims))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    flat = pa.array(vectors.astype(np.float32).ravel())
    pq.write_table(
        pa.table(
            {
                "item_id": items["item_id"].astype(str),
                "text_embedding": pa.FixedSizeListArray.from_arrays(flat, dims).cast(
                    pa.list_(pa.float32())
                ),
            }
        ),
        features / "item_text_embeddings.parquet",
    )
    return root


def _step_shift(data: Path, items: pd.DataFrame, seed: int, share: float) -> None:
    path = data / "events.parquet"
    events = pd.read_parquet(path)
    category = items.set_index("item_id")["category"]
    cats = sorted(category.unique())
    following = {c: cats[(i + 1) % len(cats)] for i, c in enumerate(cats)}
    by_category = {c: g.index.to_numpy() for c, g in category.groupby(category)}
    rng = np.random.default_rng(seed + 1)
    after = events["timestamp"] >= START + pd.Timedelta(days=SHIFT_DAY)
    moved = after & (rng.random(len(events)) < share)
    targets = events.loc[moved, "item_id"].map(category).map(following)
    events.loc[moved, "item_id"] = [
        by_category[c][rng.integers(len(by_category[c]))] for c in targets
    ]
    events.to_parquet(path, index=False)


def run_monitor(root: Path, reference: str, current: str, seed: int = 0) -> dict:
    from interest_graph.stages.monitoring import monitor

    settings = Settings(
        paths={"work_dir": str(root / "work")},
        monitoring={"embedding_sample": 250, "seed": seed},
    )
    return monitor(
        settings,
        reference=reference,
        current=current,
        data_dir=root / "data",
        features_dir=root / "features",
        model="",
        workspace=False,
        out_dir=root / "out",
    ).summary


def small(seed: int, **knobs: float) -> SynthConfig:
    return SynthConfig(
        seed=seed, users=2000, items=800, events=80_000, days=120, **knobs
    )


def rates(work: Path, seeds: int) -> dict[str, Any]:
    detected, alarms, fired_first = 0, 0, None
    for seed in range(seeds):
        knob = (
            {"interest_drift": INTEREST_SHIFT}
            if seed % 2 == 0
            else {"price_drift": PRICE_SHIFT}
        )
        shifted = run_monitor(
            make_shop(work / f"shift{seed}", small(seed, **knob)),
            REFERENCE,
            "last 30 days",
            seed,
        )
        detected += shifted["drift_detected"]
        if fired_first is None:
            fired_first = shifted["checks_drifted"]
        quiet = run_monitor(
            make_shop(work / f"still{seed}", small(seed)),
            REFERENCE,
            "last 30 days",
            seed,
        )
        alarms += quiet["drift_detected"]
        print(
            f"seed {seed}: {knob} -> {shifted['checks_drifted']}; "
            f"off -> {quiet['checks_drifted']}",
            flush=True,
        )
    return {
        "seeds": seeds,
        "detected_with_shift": fired_first,
        "detection_rate": round(detected / seeds, 3),
        "false_alarm_rate": round(alarms / seeds, 3),
    }


def delay(work: Path) -> int | None:
    root = make_shop(work / "step", small(7), step_shift=INTEREST_SHIFT)
    for day in range(1, DELAY_WINDOW_DAYS + 1):
        end = START + pd.Timedelta(days=SHIFT_DAY + day)
        begin = end - pd.Timedelta(days=DELAY_WINDOW_DAYS)
        summary = run_monitor(root, REFERENCE, f"{begin.date()}..{end.date()}")
        print(f"day {day} after the shift: {summary['checks_drifted']}", flush=True)
        if summary["drift_detected"]:
            return day
    return None


def scale(work: Path, events: int, items: int) -> dict[str, Any]:
    started = time.perf_counter()
    config = SynthConfig(
        users=events // 20, items=items, events=events, days=120, categories=50
    )
    root = make_shop(work / "scale", config, dims=64)
    prepared = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--child", str(root)],
        check=True,
        env={**os.environ, "INTEREST_GRAPH_LOG_LEVEL": "WARNING"},
    )
    seconds = time.perf_counter() - started
    summary = json.loads((root / "out" / "summary.json").read_text())
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    return {
        "events": events,
        "items": items,
        "seconds": round(seconds, 2),
        "peak_rss_gb": round(peak, 3),
        "prepare_seconds": round(prepared, 1),
        "scale_checks_run": summary["checks_run"],
        "scale_rows_compared": {
            n: [c["rows_reference"], c["rows_current"]]
            for n, c in summary["checks"].items()
            if c["drift_detected"] is not None
        },
    }


def child(root: Path) -> None:
    from interest_graph.stages.monitoring import monitor

    settings = Settings(paths={"work_dir": str(root / "work")})
    monitor(
        settings,
        reference=REFERENCE,
        current="last 30 days",
        data_dir=root / "data",
        features_dir=root / "features",
        model="",
        workspace=False,
        out_dir=root / "out",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        work = Path(tmp)
        size = (100_000, 10_000) if args.quick else (1_000_000, 100_000)
        result: dict[str, Any] = scale(work, *size)
        print(f"scale: {json.dumps(result)}", flush=True)
        result.update(rates(work, 2 if args.quick else 20))
        result["detection_delay_days"] = delay(work)
    result["machine"] = (
        f"{platform.machine()} {os.cpu_count()} CPUs (shared), {platform.node()}"
    )
    result["quick"] = args.quick
    print(json.dumps(result))


if __name__ == "__main__":
    main()
