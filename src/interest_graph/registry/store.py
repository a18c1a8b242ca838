"""The model registry on MLflow: register, gate promotions, roll back, resolve URIs.

A registered version is one MLflow run (params, metrics per protocol, lineage tags,
the model artifact folder under ``model/``) plus a model version whose source is
that folder. Aliases carry the decisions: ``champion`` is what serving loads,
``challenger`` the latest version that did not beat it. The registered model's
``champion_history`` tag lists every champion in order, so a rollback knows the
previous one.

Tracking and registry share one URI: sqlite under the work folder by default,
PostgreSQL (``postgresql://user@host:5432/db``) or an MLflow server in production;
artifacts go to a folder or an S3-compatible store (``registry.artifact_location``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interest_graph.config import Settings
from interest_graph.errors import ConfigError, InterestGraphError
from interest_graph.logs import get_logger

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = get_logger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
DECISION_TAG = "promotion.decision"
REASON_TAG = "promotion.reason"
PROTOCOL_TAG = "protocol"
MODEL_DIR = "model"


class RegistryError(InterestGraphError):
    """The registry cannot do what was asked (unknown version, no champion...)."""


def metric_key(protocol: str, metric: str) -> str:
    """MLflow key of a protocol's metric: ``ndcg@20`` → ``<protocol>/ndcg_at_20``."""
    return f"{protocol}/{metric.replace('@', '_at_')}"


def tracking_uri(settings: Settings) -> str:
    """``registry.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else local sqlite."""
    uri = settings.registry.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    folder = (settings.paths.work_dir / "mlflow").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def client(settings: Settings) -> MlflowClient:
    """An MLflow client on the configured tracking server and registry."""
    from mlflow import MlflowClient

    uri = tracking_uri(settings)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(mlflow_client: MlflowClient, settings: Settings) -> str:
    found = mlflow_client.get_experiment_by_name(settings.registry.experiment)
    if found is not None:
        return str(found.experiment_id)
    location = settings.registry.artifact_location
    if location is None:
        artifacts = (settings.paths.work_dir / "mlflow" / "artifacts").resolve()
        location = artifacts.as_uri()
    return str(
        mlflow_client.create_experiment(
            settings.registry.experiment, artifact_location=location
        )
    )


@dataclass(frozen=True)
class RegisteredVersion:
    """One registry entry as the CLI lists it."""

    version: str
    aliases: tuple[str, ...]
    protocol: str | None
    metrics: dict[str, float]
    decision: str | None
    reason: str | None
    run_id: str
    source: str
    tags: dict[str, str]

    def primary(self, metric: str) -> float | None:
        """This version's ``metric`` on its own protocol, if recorded."""
        if self.protocol is None:
            return None
        return self.metrics.get(metric_key(self.protocol, metric))

    def row(self, metric: str) -> dict[str, Any]:
        value = self.primary(metric)
        return {
            "version": self.version,
            "aliases": ",".join(self.aliases),
            "protocol": self.protocol,
            metric: None if value is None else round(value, 4),
            "decision": self.decision,
            "reason": self.reason,
            "data": self.tags.get("lineage.data_fingerprint", "")[:12],
            "code": self.tags.get("lineage.code_version", "")[:12],
            "text_model": self.tags.get("lineage.text_model"),
        }


def register(
    artifact: str | Path,
    metrics: dict[str, dict[str, Any]],
    settings: Settings,
    *,
    protocol: str,
    params: dict[str, Any] | None = None,
    lineage: dict[str, Any] | None = None,
) -> RegisteredVersion:
    """Log a run for the artifact and register it as a new model version.

    Args:
        artifact: the model folder ``train`` wrote.
        metrics: per protocol, the metrics it was evaluated with (``ndcg@20``...).
        settings: registry settings.
        protocol: the protocol the promotion gate compares on.
        params: hyperparameters to log.
        lineage: facts from :func:`interest_graph.registry.lineage.lineage`.

    Returns:
        The new version (no alias yet; call :func:`promote`).
    """
    from interest_graph.models.artifact import is_artifact

    if not is_artifact(artifact):
        raise ConfigError(f"{artifact} is not a model artifact")
    if protocol not in metrics:
        raise ConfigError(f"no metrics on the gate's protocol {protocol!r}")
    mlflow_client = client(settings)
    name = settings.registry.model_name
    run = mlflow_client.create_run(
        _experiment_id(mlflow_client, settings),
        run_name=f"{name}-{protocol}",
        tags={PROTOCOL_TAG: protocol, **_lineage_tags(lineage or {})},
    )
    run_id = run.info.run_id
    try:
        for key, value in (params or {}).items():
            mlflow_client.log_param(run_id, key, json.dumps(value, default=str))
        for proto, values in metrics.items():
            for metric, value in values.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    mlflow_client.log_metric(run_id, metric_key(proto, metric), value)
        mlflow_client.log_artifacts(run_id, str(artifact), MODEL_DIR)
        mlflow_client.set_terminated(run_id)
    except Exception:
        mlflow_client.set_terminated(run_id, status="FAILED")
        raise
    _ensure_registered_model(mlflow_client, name)
    version = mlflow_client.create_model_version(
        name,
        source=f"{run.info.artifact_uri}/{MODEL_DIR}",
        run_id=run_id,
        tags={PROTOCOL_TAG: protocol},
    )
    log.info("registered %s version %s (run %s)", name, version.version, run_id)
    return get_version(settings, str(version.version))


def _lineage_tags(lineage: dict[str, Any]) -> dict[str, str]:
    return {
        f"lineage.{key}": value if isinstance(value, str) else json.dumps(value)
        for key, value in lineage.items()
    }


def _ensure_registered_model(mlflow_client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        mlflow_client.create_registered_model(name)


def get_version(
    settings: Settings, version: str, name: str | None = None
) -> RegisteredVersion:
    """One version (of ``name``, default ``registry.model_name``) with its run's
    metrics and tags."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(settings)
    name = name or settings.registry.model_name
    try:
        found = mlflow_client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc
    return _describe(mlflow_client, found)


def _describe(mlflow_client: MlflowClient, found: ModelVersion) -> RegisteredVersion:
    run = mlflow_client.get_run(str(found.run_id))
    tags = dict(found.tags)
    return RegisteredVersion(
        version=str(found.version),
        aliases=tuple(found.aliases),
        protocol=tags.get(PROTOCOL_TAG),
        metrics=dict(run.data.metrics),
        decision=tags.get(DECISION_TAG),
        reason=tags.get(REASON_TAG),
        run_id=str(found.run_id),
        source=str(found.source),
        tags={**run.data.tags, **tags},
    )


def list_versions(settings: Settings) -> list[RegisteredVersion]:
    """Every version of the registered model, newest first."""
    mlflow_client = client(settings)
    name = settings.registry.model_name
    found = mlflow_client.search_model_versions(f"name = '{name}'")
    # Search results may leave aliases out; a version's own record has them.
    versions = [
        _describe(mlflow_client, mlflow_client.get_model_version(name, v.version))
        for v in found
    ]
    return sorted(versions, key=lambda v: int(v.version), reverse=True)


def alias_version(name: str, alias: str, settings: Settings) -> str | None:
    """The version ``alias`` points at now, or None (cheap: one registry call)."""
    from mlflow.exceptions import MlflowException

    try:
        found = client(settings).get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return str(found.version)


@dataclass(frozen=True)
class PromotionDecision:
    """What the gate decided for a version, and why."""

    version: str
    promoted: bool
    reason: str
    champion_before: str | None

    def describe(self) -> str:
        """``version N: champion - reason`` (or ``challenger``)."""
        state = CHAMPION if self.promoted else CHALLENGER
        return f"version {self.version}: {state} - {self.reason}"


def promote(
    settings: Settings, version: str, *, force: bool = False
) -> PromotionDecision:
    """Make ``version`` the champion if it beats the current one; else challenger.

    The gate compares ``registry.primary_metric`` on the candidate's protocol: the
    candidate must exceed the champion's value on that same protocol by
    ``registry.margin``. A champion never evaluated on that protocol cannot be
    compared, so the candidate stays challenger (``force`` skips the gate, e.g. for
    the first deployment of a new protocol). The decision and its reason are tags
    of the version.
    """
    mlflow_client = client(settings)
    name = settings.registry.model_name
    metric = settings.registry.primary_metric
    margin = settings.registry.margin
    candidate = get_version(settings, version)
    champion_version = alias_version(name, CHAMPION, settings)
    if candidate.protocol is None or candidate.primary(metric) is None:
        raise RegistryError(f"version {version} has no {metric} on its protocol")
    mine = float(candidate.primary(metric) or 0.0)
    protocol = candidate.protocol
    promoted, reason = _gate(
        settings, candidate, champion_version, mine, protocol, metric, margin, force
    )
    if promoted:
        _move_champion(mlflow_client, name, version)
        if alias_version(name, CHALLENGER, settings) == version:
            mlflow_client.delete_registered_model_alias(name, CHALLENGER)
    else:
        mlflow_client.set_registered_model_alias(name, CHALLENGER, version)
    decision = PromotionDecision(version, promoted, reason, champion_version)
    state = CHAMPION if promoted else CHALLENGER
    mlflow_client.set_model_version_tag(name, version, DECISION_TAG, state)
    mlflow_client.set_model_version_tag(name, version, REASON_TAG, reason)
    log.info("%s", decision.describe())
    return decision


def _gate(
    settings: Settings,
    candidate: RegisteredVersion,
    champion_version: str | None,
    mine: float,
    protocol: str,
    metric: str,
    margin: float,
    force: bool,
) -> tuple[bool, str]:
    here = f"{metric} {mine:.4f} on {protocol}"
    if champion_version is None:
        return True, f"first champion: {here}"
    if champion_version == candidate.version:
        return True, f"already champion: {here}"
    if force:
        return True, f"forced over version {champion_version}: {here}"
    champion = get_version(settings, champion_version)
    theirs = champion.metrics.get(metric_key(protocol, metric))
    if theirs is None:
        return False, (
            f"champion {champion_version} has no {metric} on {protocol}; "
            "cannot compare (promote --force to replace it)"
        )
    if mine >= theirs + margin:
        return True, (
            f"{here} beats champion {champion_version}'s {theirs:.4f} "
            f"by {mine - theirs:+.4f} (margin {margin})"
        )
    return False, (
        f"{here} does not beat champion {champion_version}'s {theirs:.4f} "
        f"by the margin {margin} ({mine - theirs:+.4f})"
    )


def _history(mlflow_client: MlflowClient, name: str) -> list[str]:
    tags = mlflow_client.get_registered_model(name).tags
    return [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]


def _move_champion(mlflow_client: MlflowClient, name: str, version: str) -> None:
    history = _history(mlflow_client, name)
    mlflow_client.set_registered_model_alias(name, CHAMPION, version)
    if not history or history[-1] != version:
        history.append(version)
    mlflow_client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))


def rollback(settings: Settings, version: str | None = None) -> PromotionDecision:
    """Point ``champion`` back at ``version`` (default: the previous champion)."""
    mlflow_client = client(settings)
    name = settings.registry.model_name
    current = alias_version(name, CHAMPION, settings)
    history = _history(mlflow_client, name)
    if version is None:
        earlier = [v for v in history if v != current]
        if not earlier:
            raise RegistryError(f"{name} has no previous champion to roll back to")
        version = earlier[-1]
    get_version(settings, version)  # must exist
    _move_champion(mlflow_client, name, version)
    reason = f"rolled back from version {current} to {version}"
    mlflow_client.set_model_version_tag(name, version, DECISION_TAG, CHAMPION)
    mlflow_client.set_model_version_tag(name, version, REASON_TAG, reason)
    log.info("%s: %s", name, reason)
    return PromotionDecision(version, True, reason, current)


@dataclass(frozen=True)
class ResolvedModel:
    """A model URI made local: the artifact folder and, from a registry, its version."""

    path: Path
    name: str | None
    version: str | None
    uri: str


def resolve_model_uri(
    uri: str, settings: Settings, dst: str | Path | None = None
) -> ResolvedModel:
    """A local artifact folder for a local path, ``models:/NAME@ALIAS``,
    ``models:/NAME/VERSION``, ``runs:/...``, ``s3://...`` or ``file://...``.

    Registry URIs are pinned to the version they point at when called (an alias
    may move later; :func:`alias_version` tells when), and downloaded into
    ``dst`` (default a fresh folder under the work folder's cache).
    """
    from interest_graph.models.artifact import is_artifact

    if "://" not in uri and not uri.startswith(("models:/", "runs:/")):
        if not is_artifact(uri):
            raise ConfigError(f"{uri} is not a model artifact folder")
        return ResolvedModel(Path(uri), None, None, uri)
    name = version = None
    source = uri
    if uri.startswith("models:/"):
        name, version = _registry_version(uri, settings)
        source = get_version(settings, version, name).source
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    if dst is None:
        cache = settings.paths.cache_dir / "models"
        cache.mkdir(parents=True, exist_ok=True)
        dst = tempfile.mkdtemp(prefix=f"{name or 'model'}-{version or 'x'}-", dir=cache)
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(dst), tracking_uri=tracking_uri(settings)
        )
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot fetch {uri}: {exc}") from exc
    path = Path(local)
    if not is_artifact(path) and is_artifact(path / MODEL_DIR):
        path = path / MODEL_DIR
    if not is_artifact(path):
        raise RegistryError(f"{uri} does not hold a model artifact")
    return ResolvedModel(path, name, version, uri)


def _registry_version(uri: str, settings: Settings) -> tuple[str, str]:
    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        version = alias_version(name, alias, settings)
        if version is None:
            raise RegistryError(f"{name} has no version with alias {alias!r}")
        return name, version
    name, _, version = rest.partition("/")
    if not version.isdigit():
        raise ConfigError(f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    return name, version
