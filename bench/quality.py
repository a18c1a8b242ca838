"""Quality: the project's best model per protocol beside the baselines and papers,
and the hybrid ranker with its ablations.

    python bench/quality.py [--quick] [--protocol NAME] [--out-recs FILE]
                            [--data ../shared/data] [--shop DIR]
                            [--hybrid | --no-hybrid] [--ablation | --no-ablation]

For each protocol of EVALUATION.md (or the one named) this trains the best
configuration of :mod:`interest_graph.models.best` (hyperparameters chosen on
validation splits), scores it on the test users, runs the #2 baselines on the same
split, and prints one table with the published rows. ``--out-recs FILE`` writes
the best model's recommendation file for the protocol's test users (with several
protocols, the protocol name is added to the file name).

The hybrid ranker (``train.model: hybrid``) is scored on the Online Retail and
synthetic shop protocols beside them, with its ablations: without the graph
source, without text (no text source, and ID-only LightGCN as the graph source),
without recency signals. Its top features by gain are printed. ``shop-*``
protocols read ``--shop`` (default: the default synthetic shop, generated into
``.work/bench/synth`` when missing); they have no best configuration, so the
hybrid and the baselines are their rows.

--quick runs the two Online Retail protocols with the training budget cut (graph
models: 3 epochs, no validation run; the hybrid with one validation window and
the graph filter as its graph source, no ablations), so the numbers are below
the full run's.

The last line printed is one JSON object:
{PROTOCOL: {"model", "recall@20", "ndcg@20", "hit@20", "train_seconds",
"baselines": {NAME: {...}}, "hybrid": {VARIANT: {...}}, "published": {...},
"targets": {...}}}.
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

from interest_graph.config import HybridConfig, Settings  # noqa: E402
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
from interest_graph.models.best import BEST, best_configuration  # noqa: E402
from interest_graph.stages import evaluate_on_split  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SOURCES = {
    "online-retail-temporal": "online_retail/Online_Retail.parquet",
    "online-retail-cold-items": "online_retail/Online_Retail.parquet",
    "gowalla-lightgcn": "gowalla",
    "shop-temporal": "",  # --shop
    "shop-cold-items": "",
}
BASELINES = {
    "online-retail-temporal": ("popularity", "itemknn", "ease", "temporal-ease"),
    "online-retail-cold-items": ("random", "text-knn"),
    "gowalla-lightgcn": ("popularity", "itemknn"),
    "shop-temporal": ("popularity", "itemknn", "ease", "temporal-ease"),
    "shop-cold-items": ("random", "text-knn", "text-lightgcn"),
}
# The hybrid needs timestamps and item text: not Gowalla.
HYBRID_PROTOCOLS = (
    "online-retail-temporal",
    "online-retail-cold-items",
    "shop-temporal",
    "shop-cold-items",
)
METRICS = ("recall@20", "ndcg@20", "hit@20")
QUICK_TRAIN = {"epochs": 3, "early_stopping": False}
QUICK_HYBRID = {"windows": 1, "graph_model": "graph-filter"}
# Issue #15's targets for the hybrid ranker.
HYBRID_TARGETS = {
    "online-retail-temporal": {"ndcg@20": 0.160, "recall@20": 0.140},
    "online-retail-cold-items": {"recall@20": 0.28},
}


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
        if value is not None and hasattr(value, "model_dump"):
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


def hybrid_variants(config: HybridConfig, ablation: bool) -> dict[str, HybridConfig]:
    """The hybrid and, with ``ablation``, the hybrid less one signal at a time."""
    variants = {"hybrid": config}
    if not ablation:
        return variants

    def without(source: str, **update: Any) -> HybridConfig:
        kept = [s for s in config.sources if s != source]
        return config.model_copy(update={"sources": kept, **update})

    variants["hybrid - graph"] = without("graph")
    # Text also enters through text-lightgcn's item vectors: the ID-only GNN.
    text_free = "lightgcn" if config.graph_model == "text-lightgcn" else None
    variants["hybrid - text"] = without(
        "text", **({"graph_model": text_free} if text_free else {})
    )
    variants["hybrid - recency"] = config.model_copy(update={"recency": False})
    return variants


def run_hybrid(
    split: EvaluationSplit,
    settings: Settings,
    ablation: bool,
    out_recs: Path | None = None,
) -> dict[str, Any]:
    """Fit and score the hybrid (and its ablations) on ``split``; the full
    hybrid's recommendation file goes to ``out_recs`` with ``-hybrid`` added."""
    from interest_graph.models.hybrid import HybridRanker

    rows: dict[str, Any] = {}
    for name, config in hybrid_variants(settings.hybrid, ablation).items():
        model = HybridRanker(settings, config)
        started = time.perf_counter()
        model.fit(split)
        train_seconds = time.perf_counter() - started
        items, scores = rank_test_users(model, split, settings.evaluation.k)
        row: dict[str, Any] = _rounded(dict(score_ranking(split, items)))
        if out_recs is not None and name == "hybrid":
            path = out_recs.with_name(f"{out_recs.stem}-hybrid{out_recs.suffix}")
            write_recommendations(recommendation_frame(split, items, scores), path)
            row["recommendations"] = str(path)
        row["train_seconds"] = round(train_seconds, 1)
        row["ranker"] = model.facts.get("ranker", {})
        row["candidate_recall"] = model.facts.get("candidate_recall")
        row["feature_importance"] = model.feature_importance()[:10]
        rows[name] = row
    return rows


def shop_folder(path: Path | None) -> Path:
    """The shop the ``shop-*`` protocols read: ``path``, or the default synthetic
    shop (generated once into ``.work/bench/synth``)."""
    if path is not None:
        return path
    folder = REPO / ".work" / "bench" / "synth"
    if not (folder / "events.parquet").is_file():
        from interest_graph.config import SynthConfig
        from interest_graph.data.synth import generate_shop

        generate_shop(SynthConfig()).write(folder)
    return folder


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

    if "model" in row:
        add(f"{row['model']} (ours, best)", row, f"{row['train_seconds']} s to train")
    for name, metrics in row.get("hybrid", {}).items():
        add(f"{name} (ours)", metrics, f"{metrics['train_seconds']} s to train")
    for name, metrics in row["baselines"].items():
        add(name, metrics, "baseline, this run")
    for name, metrics in REFERENCE_METRICS.get(protocol, {}).items():
        add(name, metrics, "EVALUATION.md reference")
    for name, metrics in PUBLISHED_METRICS.get(protocol, {}).items():
        add(name, metrics, "published")
    console = Console(width=120)
    console.print(table)
    for name, metrics in row.get("hybrid", {}).items():
        top = ", ".join(
            f"{f['feature']} {f['gain_share']:.2f}"
            for f in metrics["feature_importance"][:6]
        )
        console.print(f"{name}: top features by gain share: {top}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--protocol", choices=sorted(SOURCES))
    parser.add_argument("--out-recs", type=Path)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--shop", type=Path, help="Canonical shop for shop-*.")
    parser.add_argument("--hybrid", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--ablation",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Hybrid ablations (default: on, off with --quick).",
    )
    args = parser.parse_args()
    if args.protocol:
        protocols = [args.protocol]
    elif args.quick:
        protocols = ["online-retail-temporal", "online-retail-cold-items"]
    else:
        protocols = list(SOURCES)
    ablation = (not args.quick) if args.ablation is None else args.ablation
    settings = Settings(paths={"work_dir": REPO / ".work" / "bench"})
    if args.quick:
        settings = settings.model_copy(
            update={
                "train": settings.train.model_copy(update=QUICK_TRAIN),
                "hybrid": settings.hybrid.model_copy(update=QUICK_HYBRID),
            }
        )
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for protocol in protocols:
        source = (
            shop_folder(args.shop)
            if protocol.startswith("shop-")
            else args.data / SOURCES[protocol]
        )
        split = build_split(protocol, source)
        out_recs = args.out_recs
        if out_recs is not None and len(protocols) > 1:
            out_recs = out_recs.with_name(
                f"{out_recs.stem}-{protocol}{out_recs.suffix}"
            )
        row = run_best(protocol, split, settings, out_recs) if protocol in BEST else {}
        if args.hybrid and protocol in HYBRID_PROTOCOLS:
            row["hybrid"] = run_hybrid(split, settings, ablation, out_recs)
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
            if metric in row
        }
        if "hybrid" in row:
            row["hybrid_targets"] = {
                metric: {
                    "target": goal,
                    "reached": row["hybrid"]["hybrid"][metric] >= goal,
                }
                for metric, goal in HYBRID_TARGETS.get(protocol, {}).items()
            }
            # Every baseline and the protocol's best other model.
            others = [*row["baselines"].values(), *([row] if "model" in row else [])]
            row["hybrid_beats_every_baseline"] = all(
                row["hybrid"]["hybrid"]["ndcg@20"] > other["ndcg@20"]
                for other in others
            )
        print_table(protocol, row)
        results[protocol] = row
    results["quick"] = args.quick
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
