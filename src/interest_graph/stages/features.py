"""Feature stages: feature tables into Feast (build, apply, materialise) and item
text embeddings (the embed stage writes the table one Feast view reads)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from interest_graph.config import Settings, TextModelConfig
from interest_graph.logs import get_logger

log = get_logger("stages")

TEXT_EMBEDDING_VIEW = "item_text_embeddings"


@dataclass(frozen=True)
class FeaturesResult:
    """What ``features`` did: the tables, the definitions applied, the rows
    loaded into the online store per view, and seconds per step."""

    features_dir: Path
    tables: dict[str, Path]
    applied: dict[str, list[str]]
    materialized: list[dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)


def features(
    data_dir: str | Path,
    settings: Settings,
    *,
    as_of: datetime | None = None,
    apply: bool = True,
) -> FeaturesResult:
    """Compute the feature tables (point in time correct) into
    ``settings.features_dir``, register the Feast definitions and materialise the
    online views.

    Args:
        data_dir: the canonical data folder.
        settings: ``features`` (stores, DuckDB memory) and the features folder.
        as_of: cut-off (UTC midnight); default after the last event.
        apply: also apply the Feast repo and materialise (``features build``
            alone writes only the tables).
    """
    from interest_graph.features import (
        StoreProfile,
        apply_repo,
        build_features,
        materialize,
        open_store,
    )

    section = settings.features
    features_dir = settings.features_dir
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    tables = build_features(
        Path(data_dir), features_dir, as_of=as_of, memory_limit=section.memory_limit
    )
    seconds["build"] = time.perf_counter() - started
    applied: dict[str, list[str]] = {}
    loaded: list[dict[str, Any]] = []
    if apply:
        started = time.perf_counter()
        profile = StoreProfile.from_settings(section)
        applied = apply_repo(features_dir, profile)
        loaded = [r.as_dict() for r in materialize(open_store(features_dir, profile))]
        seconds["apply + materialize"] = time.perf_counter() - started
    return FeaturesResult(features_dir, tables, applied, loaded, seconds)


@dataclass(frozen=True)
class EmbedStageResult:
    """The embeddings table and its report, and the online rows it loaded."""

    path: Path
    report_path: Path
    report: dict[str, Any]
    materialized: list[dict[str, Any]]


def embed(
    items: str | Path,
    settings: Settings,
    *,
    features_dir: str | Path | None = None,
    text: TextModelConfig | None = None,
    device: str | None = None,
    full: bool = False,
    materialize: bool = False,
) -> EmbedStageResult:
    """Embed item text into ``item_text_embeddings.parquet`` (incremental by
    content hash) and, with ``materialize``, load the new vectors into Feast.

    Args:
        items: a canonical data folder or its ``items.parquet``.
        settings: ``text`` and ``device`` unless overridden; the feature store.
        features_dir: output folder (default ``settings.features_dir``).
        text: text model settings (default ``settings.text``).
        device: ``auto``, ``cpu`` or ``cuda`` (default ``settings.device``).
        full: ignore the cache and embed every item again.
        materialize: load the view into the online store (the Feast repo must
            have been applied, as the ``features`` stage does).
    """
    from interest_graph.embeddings.stage import embed_items

    folder = Path(features_dir) if features_dir else settings.features_dir
    result = embed_items(
        items,
        folder,
        text or settings.text,
        device=device or settings.device,
        full=full,
    )
    log.info("item text embeddings: %s", result.report.get("embedded_now"))
    loaded: list[dict[str, Any]] = []
    if materialize:
        from interest_graph.features import StoreProfile, open_store
        from interest_graph.features import materialize as load_online

        store = open_store(folder, StoreProfile.from_settings(settings.features))
        loaded = [r.as_dict() for r in load_online(store, views=[TEXT_EMBEDDING_VIEW])]
    return EmbedStageResult(result.path, result.report_path, result.report, loaded)


def _store(settings: Settings, online_store: str | None = None) -> Any:
    from interest_graph.features import open_store

    return open_store(settings.features_dir, _profile(settings, online_store))


def _profile(settings: Settings, online_store: str | None) -> Any:
    from interest_graph.errors import ConfigError
    from interest_graph.features import StoreProfile

    if online_store not in (None, "sqlite", "redis"):
        raise ConfigError(f"online store {online_store!r}: choose sqlite or redis")
    return StoreProfile.from_settings(settings.features, online_store)  # type: ignore[arg-type]


def apply_features(
    settings: Settings, online_store: str | None = None
) -> dict[str, list[str]]:
    """Register the Feast definitions (``feature_repo/``) for the features folder."""
    from interest_graph.features import apply_repo

    return apply_repo(settings.features_dir, _profile(settings, online_store))


def materialize_features(
    settings: Settings,
    *,
    views: list[str] | None = None,
    full: bool = False,
    online_store: str | None = None,
) -> list[dict[str, Any]]:
    """Load new feature rows into the online store (a second run changes nothing)."""
    from interest_graph.features import materialize

    store = _store(settings, online_store)
    return [r.as_dict() for r in materialize(store, views=views, full=full)]


def lookup_features(
    settings: Settings,
    users: list[str],
    items: list[str],
    online_store: str | None = None,
) -> dict[str, Any]:
    """Online feature lookup; unknown ids come back with ``found`` false."""
    from interest_graph.features import get_online

    return get_online(_store(settings, online_store), users, items)


def feature_status(
    settings: Settings, online_store: str | None = None
) -> dict[str, Any]:
    """What each view is materialised up to, and whether the online store is stale."""
    from interest_graph.features import status

    store = _store(settings, online_store)
    rows = [s.as_dict() for s in status(store)]
    return {
        "project": store.project,
        "online_store": store.config.online_store.type,
        "stale": any(r["stale"] for r in rows),
        "views": rows,
    }


def feature_environment(
    settings: Settings, online_store: str | None = None
) -> dict[str, str]:
    """The variables that make ``feast -c feature_repo ...`` see the same profile."""
    profile = _profile(settings, online_store)
    values: dict[str, str] = profile.environment(settings.features_dir)
    values["FEATURE_REPO_DIR_ENV_VAR"] = str(profile.repo.resolve())
    return values
