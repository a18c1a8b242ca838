"""The main job behind ``make run``: data, validation, feature store, text
embeddings, baselines, the GNN (artifact, interest graph, Feast push), evaluation.

Later stages (tuning, registry) join this chain as they land; it runs on the
embedded default (a synthetic shop, sqlite + duckdb Feast) with no cluster.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from interest_graph.config import Settings
from interest_graph.data.validate import table_problems
from interest_graph.errors import InterestGraphError
from interest_graph.evaluation.protocols import build_split
from interest_graph.logs import get_logger
from interest_graph.schema import ShopTables
from interest_graph.stages import evaluate_on_split, ingest, interests, train

log = get_logger("main")

# (protocol, models) pairs the evaluation table shows, per kind of data.
SHOP_TABLE = (
    ("shop-temporal", ("popularity", "itemknn", "ease")),
    ("shop-cold-items", ("random", "text-knn", "text-lightgcn")),
)
ONLINE_RETAIL_TABLE = (
    ("online-retail-temporal", ("popularity", "itemknn", "ease")),
    ("online-retail-cold-items", ("random", "text-knn", "text-lightgcn")),
)
# The GNN trained into an artifact, whose interest graph is exported and pushed.
TRAIN_PROTOCOL = {"synth": "shop-temporal", "online-retail": "online-retail-temporal"}


def build_feature_store(data_dir: Path, settings: Settings) -> dict[str, float]:
    """Feature tables, item text embeddings, Feast registry and online store.

    Returns:
        Seconds per step.
    """
    from interest_graph.embeddings.stage import embed_items
    from interest_graph.features import (
        StoreProfile,
        apply_repo,
        build_features,
        materialize,
        open_store,
    )

    section = settings.features
    profile = StoreProfile.from_settings(section)
    features_dir = settings.features_dir
    timings = {}
    started = time.perf_counter()
    build_features(data_dir, features_dir, memory_limit=section.memory_limit)
    timings["features build"] = time.perf_counter() - started
    started = time.perf_counter()
    report = embed_items(data_dir, features_dir, settings.text, device=settings.device)
    log.info("item text embeddings: %s", report.report.get("embedded_now"))
    timings["embed"] = time.perf_counter() - started
    started = time.perf_counter()
    apply_repo(features_dir, profile)
    materialize(open_store(features_dir, profile))
    timings["features apply + materialize"] = time.perf_counter() - started
    return timings


def first_buyer(data_dir: Path) -> str:
    """A user with purchases (the sample the served model answers for)."""
    events = ShopTables.read(data_dir).events
    return str(events.loc[events.event_type == "purchase", "user_id"].min())


def serve_sample(settings: Settings, user_id: str) -> dict[str, Any]:
    """Load the registry's champion into the KServe predictor the service runs and
    answer one v1 call, with Feast lookups, as ``interest-graph serve`` would."""
    from interest_graph.serving.server import build_service

    serving = settings.serving.model_copy(
        update={"reload_seconds": 0, "inference_log_enabled": False}
    )
    model = build_service(settings.model_copy(update={"serving": serving})).predictor
    model.load()
    call = model.preprocess({"instances": [{"user_id": user_id, "k": 5}]})
    answer = model.postprocess(model.predict(call))
    assert isinstance(answer, dict)
    return dict(answer["predictions"][0])


def run_main_job(
    settings: Settings, online_retail: Path | None = None
) -> dict[str, Any]:
    """Run the chain end to end and write ``evaluation.json`` in a new run folder.

    Args:
        settings: platform settings; ``synth`` sizes the synthetic shop.
        online_retail: use this UCI file instead of the synthetic shop.

    Returns:
        Step timings, the ingest summary and one metrics row per (protocol, model).
    """
    run_dir = settings.paths.runs_dir / time.strftime("run-%Y%m%d-%H%M%S")
    timings: dict[str, float] = {}

    started = time.perf_counter()
    data_dir = settings.paths.data_dir / ("online-retail" if online_retail else "synth")
    if online_retail:
        result = ingest("online-retail", online_retail, data_dir, settings)
    else:
        result = ingest("synth", None, data_dir, settings)
    timings["ingest"] = time.perf_counter() - started

    started = time.perf_counter()
    problems = table_problems(ShopTables.read(data_dir))
    if problems:
        raise InterestGraphError(
            "canonical data failed validation: " + "; ".join(problems)
        )
    timings["validate"] = time.perf_counter() - started

    timings.update(build_feature_store(data_dir, settings))

    rows = []
    table = ONLINE_RETAIL_TABLE if online_retail else SHOP_TABLE
    for protocol, models in table:
        started = time.perf_counter()
        # Protocols re-read the raw file for Online Retail, the canonical folder else.
        split = build_split(protocol, online_retail or data_dir)
        log.info("%s: %s", protocol, split.describe())
        for model in models:
            rows.append(evaluate_on_split(split, model, settings))
        timings[protocol] = time.perf_counter() - started

    started = time.perf_counter()
    source = online_retail or data_dir
    trained = train(
        TRAIN_PROTOCOL[data_dir.name], source, run_dir / "gnn", settings, register=True
    )
    timings["gnn train + register"] = time.perf_counter() - started
    row = {k: v for k, v in trained.metrics.items() if k != "training"}
    rows.append({**row, "seconds": round(timings["gnn train + register"], 3)})
    started = time.perf_counter()
    graph = interests(
        trained.artifact, settings, out_dir=run_dir / "interest_graph", push=True
    )
    timings["interest graph + Feast push"] = time.perf_counter() - started
    started = time.perf_counter()
    served = serve_sample(settings, first_buyer(data_dir))
    timings["serve champion (sample call)"] = time.perf_counter() - started

    assert trained.registered is not None
    report = {
        "data": str(data_dir),
        "model": str(trained.artifact),
        "registry": {
            "version": trained.registered.version,
            "promoted": trained.registered.promoted,
            "reason": trained.registered.reason,
        },
        "served_sample": served,
        "interest_graph": {name: str(path) for name, path in graph.files.items()},
        "pushed_user_interests": graph.pushed,
        "ingest": result.summary,
        "evaluation": rows,
        "seconds": {step: round(s, 2) for step, s in timings.items()},
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    report["run_dir"] = str(run_dir)
    return report
