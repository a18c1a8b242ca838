"""Tuning: a Ray Tune search (ASHA) against the default settings, then the registry.

    python bench/tune.py [--quick] [--protocol NAME] [--trials N] [--data DIR]

Full run: 16 trials of the default graph model (``train.model``) on Online Retail
(``online-retail-temporal``) with a local Ray on this machine's cores, one CPU per
trial. Beside it, the default settings train the way ``interest-graph train`` does
(early stopping on the same validation split, then a refit), so both sides are
compared on validation NDCG@20 and on the test protocol. Both are registered in a
fresh MLflow registry (sqlite under ``.work/bench/tune``): the default first, then
the tuned model, which the promotion gate makes champion only if it beats the
default on test NDCG@20.

--quick: 4 trials of 3 epochs on a small synthetic shop (under a minute).

The last line printed is one JSON object: {"trials", "stopped_early", "wall_s",
"best_val_ndcg@20", "default_val_ndcg@20", "best_config", "test": {"tuned",
"default"}, "registry": [...], "machine"}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from interest_graph import registry, stages  # noqa: E402
from interest_graph.config import Settings, SynthConfig  # noqa: E402
from interest_graph.data.synth import generate_shop  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".work" / "bench" / "tune"
FULL_TUNE = {"max_epochs": 20, "grace_epochs": 2, "reduction_factor": 3}
QUICK_TUNE = {"max_epochs": 3, "grace_epochs": 1, "reduction_factor": 2}
QUICK_SHOP = SynthConfig(users=400, items=200, categories=8, events=20_000, days=60)
METRICS = ("recall@20", "ndcg@20", "hit@20")


def _settings(quick: bool) -> Settings:
    settings = Settings(paths={"work_dir": WORK})
    tune = settings.tune.model_copy(update=QUICK_TUNE if quick else FULL_TUNE)
    update: dict[str, Any] = {"tune": tune}
    if quick:
        update["train"] = settings.train.model_copy(
            update={"model": "lightgcn", "dim": 16, "batch_size": 2048, "epochs": 3}
        )
    return settings.model_copy(update=update)


def _source(args: argparse.Namespace) -> tuple[str, Path]:
    if not args.quick:
        return args.protocol, args.data / "online_retail" / "Online_Retail.parquet"
    folder = WORK / "quick-shop"
    if not (folder / "events.parquet").is_file():
        generate_shop(QUICK_SHOP).write(folder)
    return "shop-temporal", folder


def _test(metrics: dict[str, Any]) -> dict[str, float]:
    return {m: round(float(metrics[m]), 4) for m in METRICS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--protocol", default="online-retail-temporal")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    trials = args.trials or (4 if args.quick else 16)
    for stale in ("mlflow", "runs"):  # a fresh registry each run
        shutil.rmtree(WORK / stale, ignore_errors=True)
    settings = _settings(args.quick)
    protocol, source = _source(args)

    started = time.perf_counter()
    default = stages.train(
        protocol, source, WORK / "runs" / "default", settings, register=True
    )
    default_seconds = time.perf_counter() - started
    default_val = default.metrics["training"]["validation"]["ndcg@20"]

    result = stages.tune(
        protocol,
        source,
        settings,
        trials=trials,
        out_dir=WORK / "runs" / "tuned",
        register=True,
    )
    listing = [v.row("ndcg@20") for v in registry.list_versions(settings)]
    summary = result.summary()
    figures = {
        "protocol": protocol,
        "model": settings.train.model,
        "trials": summary["trials"],
        "stopped_early": summary["stopped_early"],
        "wall_s": summary["wall_s"],
        "best_val_ndcg@20": round(result.best_validation, 4),
        "default_val_ndcg@20": round(float(default_val), 4),
        "default_trial_val_ndcg@20": summary["default_val_ndcg"],
        "best_epoch": result.best_epoch,
        "best_config": result.best_config,
        "test": {
            "tuned": _test(result.final.metrics),
            "default": _test(default.metrics),
        },
        "default_train_s": round(default_seconds, 1),
        "registry": listing,
        "tune": settings.tune.model_dump(exclude={"space"}),
        "quick": args.quick,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
