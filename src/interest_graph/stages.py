"""Stage entry functions: explicit inputs and outputs (paths in, paths out, settings).

The CLI, the Kubeflow components and the tests are thin callers of these. Later
stages (features, embed, train, tune, register, serve, monitor) add theirs here in
the same shape.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from interest_graph.config import Settings
from interest_graph.data.custom_shop import load_custom_shop
from interest_graph.data.gowalla import load_gowalla
from interest_graph.data.online_retail import load_online_retail
from interest_graph.data.quarantine import IngestReport, RowTriage
from interest_graph.data.synth import generate_shop
from interest_graph.errors import ConfigError
from interest_graph.evaluation.baselines import make_baseline
from interest_graph.evaluation.protocols import EvaluationSplit, build_split
from interest_graph.evaluation.ranking import (
    Recommender,
    rank_test_users,
    read_recommendations,
    recommendation_frame,
    score_ranking,
    write_recommendations,
)
from interest_graph.logs import get_logger
from interest_graph.schema import ShopTables

if TYPE_CHECKING:
    from interest_graph.registry import PromotionDecision

log = get_logger("stages")

SourceKind = Literal["online-retail", "gowalla", "custom-shop", "synth"]


@dataclass(frozen=True)
class IngestResult:
    """What ``ingest`` wrote: table paths, the summary JSON and its content."""

    tables: dict[str, Path]
    summary_path: Path
    summary: dict[str, Any]


def ingest(
    kind: SourceKind,
    source: str | Path | None,
    out_dir: str | Path,
    settings: Settings,
) -> IngestResult:
    """Load a shop into canonical Parquet under ``out_dir``, quarantining bad rows.

    Args:
        kind: ``online-retail`` (file), ``gowalla`` (folder), ``custom-shop`` (files
            and column mapping from ``settings.shop``) or ``synth`` (generated from
            ``settings.synth``; ``source`` is ignored).
        source: the input file or folder.
        out_dir: the data directory to write.
        settings: the platform settings.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: IngestReport
    if kind == "gowalla":
        if source is None:
            raise ConfigError("gowalla needs the folder with train.txt and test.txt")
        data = load_gowalla(source)
        # No timestamps in this split: it stays two interaction tables, not events.
        paths = {}
        for split_name, pairs in (("train", data.train), ("test", data.test)):
            path = out / f"interactions_{split_name}.parquet"
            pairs.astype(str).rename(
                columns={"user": "user_id", "item": "item_id"}
            ).to_parquet(path, index=False)
            paths[f"interactions_{split_name}"] = path
        report = data.report
    else:
        tables: ShopTables
        if kind == "online-retail":
            if source is None:
                raise ConfigError("online-retail needs the path of the UCI file")
            tables, report = load_online_retail(source)
        elif kind == "custom-shop":
            tables, report = load_custom_shop(settings.shop)
        elif kind == "synth":
            tables = generate_shop(settings.synth)
            report = IngestReport(loader="synth")
            for name in ("events", "items", "users"):
                # Generated rows are canonical by construction: all accepted, counted.
                report.add(name, RowTriage(f"generated {name}", getattr(tables, name)))
        else:
            raise ConfigError(f"unknown source kind {kind!r}")
        paths = tables.write(out)
    summary_path = report.write(out)
    summary = report.as_dict()
    log.info(
        "ingested %s: %d rows in, %d accepted, %d quarantined -> %s",
        kind,
        summary["totals"]["rows_in"],
        summary["totals"]["accepted"],
        summary["totals"]["quarantined"],
        out,
    )
    return IngestResult(tables=paths, summary_path=summary_path, summary=summary)


def resolve_model(name: str, settings: Settings) -> Recommender:
    """A model by name (a baseline or a graph model), a trained artifact's path, or
    a registry / storage URI (``models:/recommender@champion``, ``s3://...``)."""
    from interest_graph.models.artifact import is_artifact
    from interest_graph.models.recommender import (
        GRAPH_MODELS,
        ArtifactRecommender,
        GraphModelRecommender,
    )

    if is_artifact(name):
        return ArtifactRecommender(name)
    if name.startswith(MODEL_URI_PREFIXES):
        from interest_graph.registry import resolve_model_uri

        return ArtifactRecommender(resolve_model_uri(name, settings).path)
    if name in GRAPH_MODELS:
        return GraphModelRecommender(settings, name)
    if name == "graph-filter":
        from interest_graph.models.graph_filter import GraphFilter

        return GraphFilter()
    if name == "temporal-ease":
        from interest_graph.models.shop_signals import TemporalEASE

        return TemporalEASE()
    if Path(name).exists():
        raise ConfigError(f"{name} is not a model artifact (no config.json + weights)")
    return make_baseline(name, settings)


MODEL_URI_PREFIXES = (
    "models:/",
    "runs:/",
    "s3://",
    "gs://",
    "file://",
    "mlflow-artifacts:/",
)


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` wrote: the artifact folder and the metrics JSON, and, when
    registered, the registry version and the promotion gate's decision."""

    artifact: Path
    metrics_path: Path
    metrics: dict[str, Any]
    registered: PromotionDecision | None = None


def train(
    protocol: str,
    source: str | Path,
    out_dir: str | Path,
    settings: Settings,
    model_name: str | None = None,
    *,
    register: bool = False,
) -> TrainResult:
    """Train ``settings.train.model`` (or ``model_name``) on the protocol's data.

    Writes the artifact (``<out_dir>/model``: safetensors + JSON + index) and
    ``<out_dir>/metrics.json``: validation metrics that chose the epochs, and the
    artifact's scores on the protocol's test users (reported, never used to choose).
    ``model_name`` may also be a scorer (``graph-filter``, ``temporal-ease``).
    With ``register``, the artifact becomes a registry version with its metrics and
    lineage, and the promotion gate decides whether it is the new champion.
    """
    from interest_graph.models.recommender import (
        SCORING_MODELS,
        GraphModelRecommender,
        scorer_artifact,
    )

    split = build_split(protocol, source)
    log.info("%s: %s", protocol, split.describe())
    scorer = model_name in SCORING_MODELS
    model: Any = (
        resolve_model(str(model_name), settings)
        if scorer
        else GraphModelRecommender(settings, model_name)
    )
    started = time.perf_counter()
    model.fit(split)
    fit_seconds = time.perf_counter() - started
    out = Path(out_dir)
    saved = scorer_artifact(model, split) if scorer else model.to_artifact(split)
    artifact = saved.save(out / "model")
    metrics = _test_metrics(model, split, settings, model.name)
    metrics["fit_seconds"] = round(fit_seconds, 2)
    if not scorer:
        metrics["training"] = model.training_facts()
    metrics["artifact"] = str(artifact)
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    log.info("trained %s -> %s", model.name, artifact)
    decision = (
        register_and_promote(artifact, split.protocol, source, metrics, settings)
        if register
        else None
    )
    return TrainResult(artifact, metrics_path, metrics, decision)


def register_and_promote(
    artifact: Path,
    protocol: str,
    source: str | Path,
    metrics: dict[str, Any],
    settings: Settings,
) -> PromotionDecision:
    """Register a trained artifact (metrics, params, lineage) and run the gate."""
    from interest_graph.models.artifact import read_config
    from interest_graph.registry import promote, register
    from interest_graph.registry.lineage import lineage

    config = read_config(artifact)  # the weights are copied, never read, here
    params = {"model": metrics["model"], **config.get("hyperparameters", {})}
    version = register(
        artifact,
        {protocol: metrics},
        settings,
        protocol=protocol,
        params=params,
        lineage=lineage(source, settings, config.get("text_model")),
    )
    return promote(settings, version.version)


def _fitted(
    split: EvaluationSplit, model_name: str, settings: Settings
) -> tuple[Recommender, float]:
    model = resolve_model(model_name, settings)
    started = time.perf_counter()
    model.fit(split)
    return model, time.perf_counter() - started


def _test_metrics(
    fitted: Recommender, split: EvaluationSplit, settings: Settings, label: str
) -> dict[str, Any]:
    """Rank the split's test users with a fitted model and score the ranking."""
    top_k, _ = rank_test_users(
        fitted, split, settings.evaluation.k, settings.evaluation.user_batch_size
    )
    return {"protocol": split.protocol, "model": label, **score_ranking(split, top_k)}


def evaluate_on_split(
    split: EvaluationSplit, model: str, settings: Settings
) -> dict[str, Any]:
    """Fit ``model`` on ``split.train``, rank the test users and score the ranking."""
    started = time.perf_counter()
    fitted, fit_seconds = _fitted(split, model, settings)
    result = _test_metrics(fitted, split, settings, model)
    result["fit_seconds"] = round(fit_seconds, 3)
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def evaluate(
    protocol: str,
    source: str | Path,
    model: str,
    settings: Settings,
    out: str | Path | None = None,
    recommendations: str | Path | None = None,
) -> dict[str, Any]:
    """Score ``model`` (or a recommendation file) on ``protocol``.

    Args:
        protocol: a protocol of EVALUATION.md (or ``shop-*`` for canonical data).
        source: the raw file or folder the protocol reads.
        model: a model name; only a label when ``recommendations`` is given.
        settings: the platform settings (``evaluation.k`` is the cut-off).
        out: where to write the metrics JSON.
        recommendations: a recommendation file to score instead of running ``model``.

    Returns:
        ``protocol``, ``model``, ``users``, ``recall@K``, ``ndcg@K``, ``hit@K``,
        ``coverage@K`` and timings.
    """
    split = build_split(protocol, source)
    log.info("%s: %s", protocol, split.describe())
    if recommendations is None:
        result = evaluate_on_split(split, model, settings)
    else:
        top_k = read_recommendations(split, recommendations, settings.evaluation.k)
        result = {"protocol": protocol, "model": model, **score_ranking(split, top_k)}
        result["recommendations"] = str(recommendations)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def recommend(
    protocol: str,
    source: str | Path,
    model: str,
    out: str | Path,
    settings: Settings,
    k: int | None = None,
) -> Path:
    """Write the top-``k`` recommendation file for the protocol's test users."""
    split = build_split(protocol, source)
    fitted, _ = _fitted(split, model, settings)
    k = k or settings.evaluation.k
    items, scores = rank_test_users(
        fitted, split, k, settings.evaluation.user_batch_size
    )
    path = write_recommendations(recommendation_frame(split, items, scores), out)
    log.info("wrote %d users' top-%d to %s", split.test_users.size, k, path)
    return path


@dataclass(frozen=True)
class InterestsResult:
    """What ``interests`` produced: files written, a user's explanation, pushes."""

    files: dict[str, Path]
    explanation: list[dict[str, Any]]
    pushed: int


def interests(
    model_path: str | Path,
    settings: Settings,
    *,
    user: str | None = None,
    out_dir: str | Path | None = None,
    push: bool = False,
    n_interests: int | None = None,
) -> InterestsResult:
    """Build the interest graph of a trained artifact; explain, export and push it.

    Args:
        model_path: the artifact folder ``train`` wrote.
        settings: the platform settings (the Feast store for ``push``).
        user: explain this user (their interests, weights and example items).
        out_dir: write nodes/edges Parquet, GraphML and, with ``user``, the user's
            neighbourhood as PNG and HTML here.
        push: push user interest vectors and top interests into Feast.
        n_interests: interest nodes (default from the item count).

    Raises:
        ConfigError: ``user`` is not in the model.
    """
    from datetime import UTC, datetime

    from interest_graph.interests import (
        build_from_artifact,
        draw_user_neighbourhood,
        explain_user,
        feast_interest_rows,
        write_all,
    )
    from interest_graph.models.artifact import ModelArtifact

    artifact = ModelArtifact.load(model_path)
    if not artifact.has_vectors:
        raise ConfigError(
            f"{model_path}: a {artifact.model} model has no user and item vectors "
            "to build interests from"
        )
    graph = build_from_artifact(artifact, n_interests, seed=settings.evaluation.seed)
    vectors = (artifact.user_vectors, artifact.item_vectors)
    explanation: list[dict[str, Any]] = []
    if user is not None:
        try:
            explanation = explain_user(graph, *vectors, user)
        except KeyError as exc:
            raise ConfigError(f"user {user!r} is not in {model_path}") from exc
    files: dict[str, Path] = {}
    if out_dir is not None:
        out = Path(out_dir)
        files.update(write_all(graph, out))
        if user is not None:
            png, html = draw_user_neighbourhood(
                graph,
                *vectors,
                user,
                out / f"user_{user}.png",
                out / f"user_{user}.html",
            )
            files.update(png=png, html=html)
    pushed = 0
    if push:
        from interest_graph.features import StoreProfile, open_store
        from interest_graph.features.online import push_user_interests

        store = open_store(
            settings.features_dir, StoreProfile.from_settings(settings.features)
        )
        rows = feast_interest_rows(
            graph, artifact.user_vectors, artifact.user_ids, datetime.now(UTC)
        )
        pushed = push_user_interests(store, rows)
    log.info("interest graph: %d interests", graph.n_interests)
    return InterestsResult(files=files, explanation=explanation, pushed=pushed)
