"""Baselines on the EVALUATION.md protocols, next to the reference numbers.

    python bench/baselines.py [--quick] [--data ../shared/data]

--quick leaves Gowalla out (under a minute). The last line printed is one JSON
object: {protocol: {model: {"recall@20", "ndcg@20", "hit@20", ...}}, "seconds": ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from interest_graph.config import Settings  # noqa: E402
from interest_graph.evaluation.protocols import build_split  # noqa: E402
from interest_graph.evaluation.reference import (  # noqa: E402
    REFERENCE_METRICS,
    REFERENCE_TOLERANCE,
    reference_deviations,
)
from interest_graph.stages import evaluate_on_split  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# protocol -> (source below the data folder, [(label, model, ease lambda)])
# protocol -> (data file, [(label, model, EASE lambda or None)])
PLAN: dict[str, tuple[str, list[tuple[str, str, float | None]]]] = {
    "online-retail-temporal": (
        "online_retail/Online_Retail.parquet",
        [
            ("popularity", "popularity", None),
            ("itemknn", "itemknn", None),
            ("ease", "ease", 500.0),
            ("ease@50", "ease", 50.0),
            ("ease@200", "ease", 200.0),
        ],
    ),
    "online-retail-cold-items": (
        "online_retail/Online_Retail.parquet",
        [("random", "random", None), ("text-knn", "text-knn", None)],
    ),
    "gowalla-lightgcn": (
        "gowalla",
        [("popularity", "popularity", None), ("itemknn", "itemknn", None)],
    ),
}
KEYS = ("users", "recall@20", "ndcg@20", "hit@20", "coverage@20", "seconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="leave Gowalla out")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()

    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    worst = 0.0
    for protocol, (source, models) in PLAN.items():
        if args.quick and protocol == "gowalla-lightgcn":
            continue
        started = time.perf_counter()
        split = build_split(protocol, args.data / source)
        seconds[f"{protocol}/split"] = round(time.perf_counter() - started, 2)
        results[protocol] = {}
        for label, model, ease_lambda in models:
            settings = Settings()
            if ease_lambda is not None:
                settings.evaluation.ease_lambda = ease_lambda
            row = evaluate_on_split(split, model, settings)
            results[protocol][label] = {key: row[key] for key in KEYS}
            seconds[f"{protocol}/{label}"] = row["seconds"]
            reference_label = "ease@500" if label == "ease" else label
            if reference_label in REFERENCE_METRICS[protocol]:
                deviation = reference_deviations(protocol, reference_label, row)
                results[protocol][label]["reference_max_abs_diff"] = round(
                    max(deviation.values()), 5
                )
                worst = max(worst, *deviation.values())
            print(
                f"{protocol:26s} {label:10s} "
                + "  ".join(f"{k}={row[k]:.4f}" for k in KEYS[1:5])
                + f"  ({row['seconds']:.1f}s)",
                flush=True,
            )
    results["seconds"] = seconds
    results["reference"] = {
        "max_abs_diff": round(worst, 5),
        "tolerance": REFERENCE_TOLERANCE,
        "reproduced": worst <= REFERENCE_TOLERANCE,
    }
    results["machine"] = (
        f"{platform.machine()} {os.cpu_count()} CPUs, {platform.node()}"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
