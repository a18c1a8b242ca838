"""Hyperparameter search with Ray Tune: ASHA over the graph model's ``train`` space.

Every trial trains on the validation split carved from the protocol's training data
(never the test users) and reports validation NDCG@k after each epoch; ASHA stops
the weak ones early. The default settings are trial 0, so the search always shows
what it gained over them. The best configuration is then retrained on the whole
training window for its best epoch count, evaluated on the test protocol and, on
request, registered (the promotion gate decides whether it serves).

Ray is local by default (``ray.init(num_cpus=...)``, no dashboard, temp files under
the work folder); ``tune.address`` / ``$RAY_ADDRESS`` / ``--address`` joins a cluster
(``ray://head:10001`` for KubeRay). Results go to ``tune.storage_path`` (a folder,
or shared storage such as ``s3://`` or a PVC for multi-node runs).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from interest_graph.config import Settings, TrainConfig
from interest_graph.errors import ConfigError
from interest_graph.evaluation.protocols import EvaluationSplit, build_split
from interest_graph.logs import get_logger
from interest_graph.tuning.space import check_space, default_point, ray_space

log = get_logger(__name__)

RAY_CLIENT_PORT = 10001
RAY_GCS_PORT = 6379
# Unix socket paths must stay under 108 bytes; Ray nests ~60 below its temp dir.
RAY_TEMP_MAX = 45


@dataclass(frozen=True)
class TrialData:
    """What every trial reads, shipped once through Ray's object store."""

    validation: EvaluationSplit
    base: TrainConfig
    weights: Any
    text: np.ndarray | None
    k: int
    max_epochs: int
    threads: int
    device: str


@dataclass(frozen=True)
class TuneResult:
    """What a search produced: tables, plot, the best configuration and its model."""

    out_dir: Path
    trials_path: Path
    curves_path: Path
    plot_path: Path
    trials: pd.DataFrame
    best_config: dict[str, Any]
    best_validation: float
    best_epoch: int
    default_validation: float
    wall_seconds: float
    # stages.TrainResult of the best configuration retrained on all training
    # data; None until ``stages.tune`` retrains it.
    final: Any = None

    @property
    def stopped_early(self) -> int:
        return int(self.trials["stopped_early"].sum())

    def summary(self) -> dict[str, Any]:
        return {
            "trials": len(self.trials),
            "stopped_early": self.stopped_early,
            "wall_s": round(self.wall_seconds, 1),
            "best_val_ndcg": round(self.best_validation, 4),
            "default_val_ndcg": round(self.default_validation, 4),
            "best_epoch": self.best_epoch,
            "best_config": self.best_config,
            "test": {}
            if self.final is None
            else {
                key: self.final.metrics[key] for key in self.final.metrics if "@" in key
            },
            "registered": None
            if self.final is None or self.final.registered is None
            else {
                "version": self.final.registered.version,
                "promoted": self.final.registered.promoted,
                "reason": self.final.registered.reason,
            },
        }


def check_address(address: str | None) -> str | None:
    """The Ray address to join (None: start a local Ray), checked to answer.

    Raises:
        ConfigError: the address is malformed or nothing listens there.
    """
    if address in (None, "", "local"):
        return None
    assert address is not None
    if address == "auto":
        return address
    parsed = urlparse(address if "://" in address else f"gcs://{address}")
    if parsed.scheme not in ("ray", "gcs") or not parsed.hostname:
        raise ConfigError(
            f"Ray address {address!r}: expected ray://HOST:PORT (Ray client, "
            "KubeRay) or HOST:PORT (the head's GCS)"
        )
    port = parsed.port or (RAY_CLIENT_PORT if parsed.scheme == "ray" else RAY_GCS_PORT)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=3):
            pass
    except OSError as exc:
        raise ConfigError(
            f"Ray at {address} is unreachable ({exc}); start the cluster, fix "
            "tune.address / $RAY_ADDRESS, or leave it empty for a local Ray"
        ) from exc
    return address


def search(
    protocol: str,
    source: str | Path,
    settings: Settings,
    *,
    trials: int | None = None,
    address: str | None = None,
    out_dir: str | Path | None = None,
) -> TuneResult:
    """Search ``tune.space`` for ``train.model`` on ``protocol``.

    Args:
        protocol: an evaluation protocol (``online-retail-temporal``, ...).
        source: the data the protocol reads.
        settings: ``train`` is the base configuration, ``tune`` the search.
        trials: samples to draw (default ``tune.trials``), the default included.
        address: a Ray cluster (default ``tune.address`` or ``$RAY_ADDRESS``).
        out_dir: where the tables and the plot go.

    Raises:
        ConfigError: zero trials, a bad space or an unreachable Ray, before any
            work starts.
    """
    started = time.perf_counter()
    config = settings.tune
    trials = config.trials if trials is None else trials
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    base = settings.train
    check_space(config.space, base)
    address = check_address(address or config.address or os.environ.get("RAY_ADDRESS"))
    out = Path(out_dir or settings.paths.runs_dir / f"tune-{protocol}")
    out.mkdir(parents=True, exist_ok=True)

    split = build_split(protocol, source)
    data = _trial_data(split, settings)
    frames = _search(data, settings, trials, address, out.name)
    table, curves = frames
    trials_path = out / "trials.parquet"
    curves_path = out / "curves.parquet"
    table.to_parquet(trials_path, index=False)
    curves.to_parquet(curves_path, index=False)
    plot_path = plot_curves(curves, table, out / "validation_ndcg.png", data.k)

    best = table.sort_values("best_validation", ascending=False).iloc[0]
    best_config = {field: _plain(best[f"config/{field}"]) for field in config.space}
    best_epoch = int(best["best_epoch"])
    log.info(
        "best trial %s: validation ndcg@%d %.4f at epoch %d with %s",
        best["trial_id"],
        data.k,
        best["best_validation"],
        best_epoch,
        best_config,
    )
    default_rows = table[table["default"]]
    return TuneResult(
        out_dir=out,
        trials_path=trials_path,
        curves_path=curves_path,
        plot_path=plot_path,
        trials=table,
        best_config=best_config,
        best_validation=float(best["best_validation"]),
        best_epoch=best_epoch,
        default_validation=float(default_rows["best_validation"].max())
        if len(default_rows)
        else float("nan"),
        wall_seconds=time.perf_counter() - started,
    )


def best_settings(settings: Settings, result: TuneResult) -> Settings:
    """``settings`` with the best configuration for its best epoch count: what the
    final model trains with on all training data (no early stopping left to do)."""
    train = settings.train.model_copy(
        update={
            **result.best_config,
            "early_stopping": False,
            "epochs": result.best_epoch,
        }
    )
    return settings.model_copy(update={"train": train})


def _trial_data(split: EvaluationSplit, settings: Settings) -> TrialData:
    from interest_graph.evaluation.baselines import item_text_vectors
    from interest_graph.evaluation.validation import validation_split
    from interest_graph.models.recommender import edge_weights

    base = settings.train
    validation = validation_split(split, seed=base.seed, days=base.validation_days)
    log.info("validation split: %s", validation.describe())
    uses_text = base.model in ("text-lightgcn", "hetero-sage")
    if base.model == "hetero-sage":
        raise ConfigError("tuning hetero-sage is not supported yet; tune lightgcn "
                          "or text-lightgcn")  # fmt: skip
    return TrialData(
        validation=validation,
        # ASHA is the early stopper here: no patience cut inside a trial.
        base=base.model_copy(update={"patience": settings.tune.max_epochs + 1}),
        weights=edge_weights(validation, settings),
        text=item_text_vectors(split, settings, base.model) if uses_text else None,
        k=settings.evaluation.k,
        max_epochs=settings.tune.max_epochs,
        threads=max(1, int(settings.tune.cpus_per_trial)),
        device="cuda" if settings.tune.gpus_per_trial > 0 else "cpu",
    )


def run_trial(config: dict[str, Any], data: TrialData) -> None:
    """One trial: train on the validation split, report NDCG@k after every epoch."""
    import torch
    from ray import tune

    from interest_graph.models.training import train_graph_model

    torch.set_num_threads(data.threads)
    train_config = TrainConfig.model_validate({**data.base.model_dump(), **config})
    metric = f"validation_ndcg@{data.k}"

    def report(record: dict[str, float]) -> None:
        tune.report(
            {
                "ndcg": record[metric],
                "recall": record[f"validation_recall@{data.k}"],
                "loss": record["loss"],
                "epoch": int(record["epoch"]),
                "epoch_seconds": record["seconds"],
            }
        )

    train_graph_model(
        data.validation,
        train_config,
        weights=data.weights,
        item_text=data.text,
        validation=data.validation,
        epochs=data.max_epochs,
        k=data.k,
        device=data.device,
        on_epoch=report,
    )


def _search(
    data: TrialData,
    settings: Settings,
    trials: int,
    address: str | None,
    name: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    config = settings.tune
    started_here, scratch = _start_ray(settings, address)
    try:
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, data=data),
            {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial},
        )
        tuner = tune.Tuner(
            trainable,
            param_space=ray_space(config.space),
            tune_config=tune.TuneConfig(
                metric="ndcg",
                mode="max",
                num_samples=trials,
                max_concurrent_trials=config.max_concurrent,
                scheduler=ASHAScheduler(
                    time_attr="training_iteration",
                    max_t=config.max_epochs,
                    grace_period=min(config.grace_epochs, config.max_epochs),
                    reduction_factor=config.reduction_factor,
                ),
                search_alg=BasicVariantGenerator(
                    points_to_evaluate=[default_point(config.space, data.base)],
                    random_state=config.seed,
                ),
            ),
            run_config=tune.RunConfig(
                name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=_storage_path(settings),
                verbose=0,
            ),
        )
        results = tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return _tables(results, config.max_epochs)


def _tables(results: Any, max_epochs: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, curves = [], []
    for index, result in enumerate(results):
        history = result.metrics_dataframe
        trial_id = (result.metrics or {}).get("trial_id", str(index))
        if history is None or history.empty or "ndcg" not in history:
            rows.append(
                {"trial_id": trial_id, "epochs": 0, "best_validation": np.nan,
                 "best_epoch": 0, "stopped_early": False, "default": index == 0,
                 "error": str(result.error),
                 **{f"config/{k}": v for k, v in result.config.items()}}
            )  # fmt: skip
            continue
        best = history.loc[history["ndcg"].idxmax()]
        epochs = int(history["epoch"].max())
        rows.append(
            {
                "trial_id": trial_id,
                "epochs": epochs,
                "best_validation": float(best["ndcg"]),
                "best_epoch": int(best["epoch"]),
                "stopped_early": epochs < max_epochs,
                "default": index == 0,
                "error": None if result.error is None else str(result.error),
                **{f"config/{k}": v for k, v in result.config.items()},
            }
        )
        curve = history[["epoch", "ndcg", "recall", "loss", "epoch_seconds"]].copy()
        curve.insert(0, "trial_id", trial_id)
        curves.append(curve)
    table = pd.DataFrame(rows)
    if table["best_validation"].isna().all():
        raise ConfigError(f"every trial failed; first error: {table['error'].iloc[0]}")
    return table, pd.concat(curves, ignore_index=True)


def _start_ray(settings: Settings, address: str | None) -> tuple[bool, Path | None]:
    """Connect to ``address`` or start a local Ray.

    Returns:
        Whether Ray was started here, and a scratch folder to delete afterwards
        (only when the work folder's path is too long for Ray's sockets).
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False, None
    if address is not None:
        ray.init(address=address, log_to_driver=False)
        return True, None
    temp = (settings.paths.cache_dir / "ray").resolve()
    scratch = None
    if len(str(temp)) > RAY_TEMP_MAX:
        # Ray's socket paths would not fit; a short private folder instead.
        temp = scratch = Path(tempfile.mkdtemp(prefix="ig-ray-"))
    temp.mkdir(parents=True, exist_ok=True)
    ray.init(
        num_cpus=settings.tune.num_cpus,
        include_dashboard=False,
        _temp_dir=str(temp),
        log_to_driver=False,
        configure_logging=False,
    )
    return True, scratch


def _storage_path(settings: Settings) -> str:
    path = settings.tune.storage_path
    if path and "://" in path:
        return path
    folder = Path(path) if path else settings.paths.work_dir / "tune"
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def plot_curves(curves: pd.DataFrame, table: pd.DataFrame, path: Path, k: int) -> Path:
    """Validation NDCG@k per trial over epochs; the best trial drawn bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = table.sort_values("best_validation", ascending=False)["trial_id"].iloc[0]
    default = set(table.loc[table["default"], "trial_id"])
    figure, axes = plt.subplots(figsize=(8, 5))
    for trial_id, curve in curves.groupby("trial_id", sort=False):
        style: dict[str, Any] = {"linewidth": 1, "alpha": 0.6}
        label = None
        if trial_id == best:
            style, label = {"linewidth": 3}, f"best ({trial_id!s})"
        elif trial_id in default:
            style, label = {"linewidth": 2, "linestyle": "--"}, "default settings"
        axes.plot(curve["epoch"], curve["ndcg"], marker=".", label=label, **style)
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"validation NDCG@{k}")
    axes.set_title(f"{len(table)} trials, ASHA")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
