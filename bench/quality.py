"""Quality: the project's best model per protocol beside the baselines and papers.

    python bench/quality.py [--quick] [--protocol NAME] [--out-recs FILE]
                            [--data ../shared/data]

For each protocol of EVALUATION.md (or the one named) this trains the best
configuration of :mod:`interest_graph.models.best` (hyperparameters chosen on
validation splits), scores it on the test users, runs the #2 baselines on the same
split, and prints one table with the published rows. ``--out-recs FILE`` writes
the best model's recommendation file for the protocol's test users (with several
protocols, the protocol name is added to the file name).

--quick runs the two Online Retail protocols with the training budget cut (graph
models: 3 epochs, no validation run), so the numbers are below the full run's.

The last line printed is one JSON object:
{PROTOCOL: {"model", "recall@20", "ndcg@20", "hit@20", "train_seconds",
"baselines": {NAME: {...}}, "published": {...}, "targets": {...}}}.
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

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from interest_graph.config import Settings  # noqa: E402
from interest_graph.evaluation.protocols import EvaluationSplit, build_split  # noqa: E402
from interest_graph.evaluation.ranking import (  # noqa: E402
    rank_test_users,
    recommendation_frame,
    score_ranking,
    write_recommendations,
)
from interest_graph.evaluation.reference import (  # noqa: E402
    PUBLISHED_METRICS,
    REFERENCE_METRICS,
    TARGETS,
)
from interest_graph.models.best import best_configuration  # noqa: E402
from interest_graph.stages import evaluate_on_split  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SOURCES = {
    "online-retail-temporal": "online_retail/Online_Retail.parquet",
    "online-retail-cold-items": "online_retail/Online_Retail.parquet",
    "gowalla-lightgcn": "gowalla",
}
BASELINES = {
    "online-retail-temporal": ("popularity", "itemknn", "ease"),
    "online-retail-cold-items": ("random", "text-knn"),
    "gowalla-lightgcn": ("popularity", "itemknn"),
}
METRICS = ("recall@20", "ndcg@20", "hit@20")
QUICK_TRAIN = {"epochs": 3, "early_stopping": False}


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        k: round(float(v), 4) if isinstance(v, float) else v for k, v in metrics.items()
    }


def hyperparameters_of(model: Any) -> dict[str, Any]:
    """The fitted model's full hyperparameters, whatever its kind."""
    for name in ("hyperparameters", "config"):
        value = getattr(model, name, None)
        if callable(value):
            return dict(value())
        if hasattr(value, "model_dump"):
            return dict(value.model_dump(mode="json", exclude={"checkpoint_dir"}))
    return {}


def run_best(
    protocol: str, split: EvaluationSplit, settings: Settings, out_recs: Path | None
) -> dict[str, Any]:
    """Fit the protocol's best configuration and score it; optionally write recs."""
    best = best_configuration(protocol)
    model = best.make(settings)
    started = time.perf_counter()
    model.fit(split)
    train_seconds = time.perf_counter() - started
    items, scores = rank_test_users(model, split, settings.evaluation.k)
    metrics = score_ranking(split, items)
    row: dict[str, Any] = {"model": best.model, **_rounded(dict(metrics))}
    row["train_seconds"] = round(train_seconds, 1)
    row["hyperparameters"] = hyperparameters_of(model)
    row["chosen_on"] = best.chosen_on
    facts = getattr(model, "training_facts", None)
    if callable(facts):
        training = facts()
        training.pop("history", None)
        row["training"] = training
    if out_recs is not None:
        write_recommendations(recommendation_frame(split, items, scores), out_recs)
        row["recommendations"] = str(out_recs)
    return row


def print_table(protocol: str, row: dict[str, Any]) -> None:
    table = Table(title=protocol)
    table.add_column("model")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    table.add_column("source")

    def add(name: str, metrics: dict[str, Any], source: str) -> None:
        values = [
            f"{metrics[m]:.4f}" if isinstance(metrics.get(m), float) else "–"
            for m in METRICS
        ]
        table.add_row(name, *values, source)

    add(f"{row['model']} (ours, best)", row, f"{row['train_seconds']} s to train")
    for name, metrics in row["baselines"].items():
        add(name, metrics, "baseline, this run")
    for name, metrics in REFERENCE_METRICS.get(protocol, {}).items():
        add(name, metrics, "EVALUATION.md reference")
    for name, metrics in PUBLISHED_METRICS.get(protocol, {}).items():
        add(name, metrics, "published")
    Console(width=120).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--protocol", choices=sorted(SOURCES))
    parser.add_argument("--out-recs", type=Path)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    if args.protocol:
        protocols = [args.protocol]
    elif args.quick:
        protocols = ["online-retail-temporal", "online-retail-cold-items"]
    else:
        protocols = list(SOURCES)
    settings = Settings(paths={"work_dir": REPO / ".work" / "bench"})
    if args.quick:
        settings = settings.model_copy(
            update={"train": settings.train.model_copy(update=QUICK_TRAIN)}
        )
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for protocol in protocols:
        split = build_split(protocol, args.data / SOURCES[protocol])
        out_recs = args.out_recs
        if out_recs is not None and len(protocols) > 1:
            out_recs = out_recs.with_name(
                f"{out_recs.stem}-{protocol}{out_recs.suffix}"
            )
        row = run_best(protocol, split, settings, out_recs)
        row["baselines"] = {
            name: _rounded(
                {
                    m: v
                    for m, v in evaluate_on_split(split, name, settings).items()
                    if m in (*METRICS, "seconds")
                }
            )
            for name in BASELINES[protocol]
        }
        row["published"] = PUBLISHED_METRICS.get(protocol, {})
        row["targets"] = {
            metric: {"target": goal, "reached": row[metric] >= goal}
            for metric, goal in TARGETS.get(protocol, {}).items()
        }
        print_table(protocol, row)
        results[protocol] = row
    results["quick"] = args.quick
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
