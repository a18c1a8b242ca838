"""Model stages: train, evaluate, recommend, tune, register, and the interest graph
of a trained model."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interest_graph.config import Settings
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

if TYPE_CHECKING:
    from interest_graph.registry import PromotionDecision, RegisteredVersion
    from interest_graph.tuning import TuneResult

log = get_logger("stages")


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
    if name == "hybrid":
        from interest_graph.models.hybrid import HybridRanker

        return HybridRanker(settings)
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
    ``model_name`` may also be a scorer (``graph-filter``, ``temporal-ease``,
    ``hybrid``; the hybrid also writes its ranker in LightGBM's text format and its
    feature importances beside the artifact).
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
    name = model_name or settings.train.model
    scorer = name in SCORING_MODELS
    model: Any = (
        resolve_model(name, settings)
        if scorer
        else GraphModelRecommender(settings, model_name)
    )
    started = time.perf_counter()
    model.fit(split)
    fit_seconds = time.perf_counter() - started
    out = Path(out_dir)
    saved = scorer_artifact(model, split) if scorer else model.to_artifact(split)
    artifact = saved.save(out / "model")
    if hasattr(model, "write_beside"):
        model.write_beside(artifact)
    metrics = _test_metrics(model, split, settings, model.name)
    metrics["fit_seconds"] = round(fit_seconds, 2)
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    if hasattr(model, "training_facts"):
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


@dataclass(frozen=True)
class Registration:
    """A registered version, the gate's decision on it and its ``models:/`` URI."""

    version: str
    promoted: bool
    reason: str
    champion_before: str | None
    model_uri: str

    def describe(self) -> str:
        state = "champion" if self.promoted else "challenger"
        return f"version {self.version}: {state} - {self.reason} ({self.model_uri})"


def register_run(
    run_dir: str | Path, source: str | Path, settings: Settings
) -> Registration:
    """Register a run folder of ``train`` (``model/`` + ``metrics.json``) and let
    the promotion gate decide on it.

    Raises:
        ConfigError: the folder has no ``metrics.json``.
    """
    run = Path(run_dir)
    metrics_path = run / "metrics.json"
    if not metrics_path.is_file():
        raise ConfigError(f"{run}: no metrics.json (run `interest-graph train`)")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    decision = register_and_promote(
        run / "model", metrics["protocol"], source, metrics, settings
    )
    return Registration(
        decision.version,
        decision.promoted,
        decision.reason,
        decision.champion_before,
        f"models:/{settings.registry.model_name}/{decision.version}",
    )


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
    """Rank the split's test users with a fitted model and score the ranking; a
    learned ranker (the hybrid) adds its feature importances, largest first."""
    top_k, _ = rank_test_users(
        fitted, split, settings.evaluation.k, settings.evaluation.user_batch_size
    )
    metrics = {
        "protocol": split.protocol,
        "model": label,
        **score_ranking(split, top_k),
    }
    importance = getattr(fitted, "feature_importance", None)
    if callable(importance):
        metrics["feature_importance"] = importance()
    return metrics


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
    picture_html: str | Path | None = None,
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
        picture_html: also write the user's neighbourhood (HTML) to this file.

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

    model_path = _artifact_folder(model_path)
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
            if picture_html is not None:
                Path(picture_html).write_bytes(html.read_bytes())
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


# The baselines the evaluation table shows beside a trained model, per protocol
# of canonical shop data (synthetic, a custom shop, or Online Retail loaded).
EVALUATION_TABLE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("shop-temporal", ("popularity", "itemknn", "ease")),
    ("shop-cold-items", ("random", "text-knn", "text-lightgcn")),
)


def evaluation_table(
    source: str | Path,
    settings: Settings,
    *,
    model: str | Path | None = None,
    table: tuple[tuple[str, tuple[str, ...]], ...] = EVALUATION_TABLE,
) -> list[dict[str, Any]]:
    """Fit and score the baselines of ``table`` on each protocol and, given a run
    folder of ``train``, its model: the artifact on the protocol it was trained
    for (``NAME (trained)``), and its kind fitted afresh with ``settings`` on every
    other protocol whose baselines do not already hold it (``NAME (refit)``), so
    the table shows the champion's kind beside every baseline of every protocol.

    Returns:
        One metrics row per (protocol, model), each with its ``seconds``.
    """
    trained: tuple[str, Path, str] | None = None
    if model is not None:
        run = Path(model)
        facts = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        trained = (facts["protocol"], run / "model", str(facts["model"]))
    rows: list[dict[str, Any]] = []
    for protocol, models in table:
        split = build_split(protocol, source)
        log.info("%s: %s", protocol, split.describe())
        rows.extend(evaluate_on_split(split, name, settings) for name in models)
        if trained is None:
            continue
        trained_protocol, artifact, kind = trained
        if trained_protocol == protocol:
            row = evaluate_on_split(split, str(artifact), settings)
            rows.append({**row, "model": f"{kind} (trained)"})
        elif kind not in models:
            row = evaluate_on_split(split, kind, settings)
            rows.append({**row, "model": f"{kind} (refit)"})
    return rows


def tune(
    protocol: str,
    source: str | Path,
    settings: Settings,
    *,
    trials: int | None = None,
    address: str | None = None,
    out_dir: str | Path | None = None,
    register: bool = False,
    retrain: bool = True,
) -> TuneResult:
    """Ray Tune search (ASHA) over ``tune.space``; retrain and test the best.

    Args:
        protocol: an evaluation protocol; trials score a validation split carved
            from its training data.
        source: the data the protocol reads.
        settings: ``train`` is the base configuration, ``tune`` the search.
        trials: samples to draw (default ``tune.trials``), the default included.
        address: a Ray cluster (default ``tune.address`` or ``$RAY_ADDRESS``).
        out_dir: tables, plot and the final model (default
            ``<runs>/tune-<protocol>``).
        register: register the retrained model and run the promotion gate.
        retrain: retrain the best configuration on all training data (``final``);
            a pipeline's own train step does it instead.

    Raises:
        ConfigError: zero trials, a bad space or an unreachable Ray, before any
            work starts.
    """
    from dataclasses import replace

    from interest_graph.tuning import best_settings, search

    result = search(
        protocol, source, settings, trials=trials, address=address, out_dir=out_dir
    )
    if not retrain:
        return result
    final = train(
        protocol,
        source,
        result.out_dir / "best",
        best_settings(settings, result),
        register=register,
    )
    return replace(result, final=final)


def best_train_settings(
    protocol: str,
    source: str | Path,
    settings: Settings,
    *,
    trials: int,
    report_html: str | Path | None = None,
) -> str:
    """The pipeline's tune step: search, and the best ``train`` settings as JSON.

    With 0 trials nothing is searched and the answer is ``{}`` (train as set);
    for the hybrid the search tunes its graph source's network, whose ``train.*``
    the hybrid trains it with. ``report_html`` gets the validation curves of
    every trial, or the reason none ran.
    """
    from interest_graph.kubeflow.outputs import write_png_html

    searched = _tuned_graph_model(settings)
    if trials == 0 or searched is None:
        reason = (
            "tune_trials = 0"
            if trials == 0
            else f"the hybrid's graph source ({settings.hybrid.graph_model}) "
            "has no network to tune"
        )
        if report_html is not None:
            Path(report_html).write_text(
                f"<p>tuning skipped: {reason}</p>\n", encoding="utf-8"
            )
        return "{}"
    from interest_graph.tuning import best_settings

    result = tune(protocol, source, searched, trials=trials, retrain=False)
    if report_html is not None:
        write_png_html(result.plot_path, report_html, "validation NDCG per trial")
    chosen = best_settings(searched, result).train
    return chosen.model_dump_json(
        include={*result.best_config, "epochs", "early_stopping"}
    )


def _tuned_graph_model(settings: Settings) -> Settings | None:
    """The settings a search tunes for ``train.model``: the GNN itself, the
    hybrid's graph source (whose ``train.*`` it trains with), or None for a
    model with no network (the graph filter, temporal EASE)."""
    model = settings.train.model
    if model == "hybrid":
        graph = settings.hybrid.graph_model
        if graph == "graph-filter":
            return None
        return settings.model_copy(
            update={"train": settings.train.model_copy(update={"model": graph})}
        )
    return settings


def list_models(settings: Settings) -> list[RegisteredVersion]:
    """Every registered version with its aliases, metrics, decision and lineage."""
    from interest_graph.registry import list_versions

    return list_versions(settings)


def promote_model(
    settings: Settings, version: str, *, force: bool = False
) -> PromotionDecision:
    """Run the promotion gate on a version: champion if it beats the current one."""
    from interest_graph.registry import promote

    return promote(settings, version, force=force)


def rollback_model(settings: Settings, version: str | None = None) -> PromotionDecision:
    """Point the champion alias back at an earlier version (default: the previous)."""
    from interest_graph.registry import rollback

    return rollback(settings, version)


def _artifact_folder(path: str | Path) -> Path:
    """An artifact folder, or the ``model/`` inside a run folder of ``train``."""
    folder = Path(path)
    inner = folder / "model"
    return inner if (folder / "metrics.json").is_file() and inner.is_dir() else folder
