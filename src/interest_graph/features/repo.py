"""The Feast repo: profiles, opening the store, applying the definitions.

``feature_repo/feature_store.yaml`` reads every environment-specific value from
``${VARIABLES}``. :class:`StoreProfile` resolves them (explicit value, then the
process environment, then the embedded default) so the library, ``feast serve``
and the ``feast`` CLI read the same file the same way.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from feast import (
    Entity,
    FeatureService,
    FeatureStore,
    FeatureView,
    FileSource,
    PushSource,
    RepoConfig,
)
from feast.data_source import DataSource
from feast.errors import FeastObjectNotFoundException
from feast.types import Array, ComplexFeastType, FeastType, PrimitiveFeastType
from pydantic import ValidationError

from interest_graph.config import FeaturesConfig
from interest_graph.errors import ConfigError
from interest_graph.features.errors import FeatureStoreError, FeatureTableError

OnlineStoreKind = Literal["sqlite", "redis"]
OfflineStoreKind = Literal["duckdb", "remote"]

FEATURE_STORE_YAML = "feature_store.yaml"
DEFINITIONS = "feature_definitions.py"
REPO_DIR_ENV = "INTEREST_GRAPH_FEATURE_REPO"
FEATURES_DIR_ENV = "INTEREST_GRAPH_FEATURES_DIR"

# Embedded defaults of the variables in feature_store.yaml (features-dir ones aside).
DEFAULTS: dict[str, str] = {
    "FEAST_PROJECT": "interest_graph",
    "FEAST_REGISTRY_TYPE": "file",
    "FEAST_ONLINE_STORE": "sqlite",
    "FEAST_OFFLINE_STORE": "duckdb",
    "REDIS_CONNECTION_STRING": "127.0.0.1:6379",
    "REDIS_TYPE": "redis",
    "FEAST_OFFLINE_HOST": "127.0.0.1",
    "FEAST_OFFLINE_PORT": "8815",
}

# Serving falls back when Redis is down, so fail within a second instead of
# redis-py's default three retries with up to 10 s of backoff. Feast passes these
# connection string parameters to redis-py; a value given in the string wins.
_REDIS_FAIL_FAST = {
    "socket_connect_timeout": "1",
    # A Redis that accepts and never answers must not hold a reader for ever.
    "socket_timeout": "1",
    "retry": "null",
}

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def default_repo_dir() -> Path:
    """``$INTEREST_GRAPH_FEATURE_REPO``, else ``feature_repo/`` of this checkout."""
    if REPO_DIR_ENV in os.environ:
        return Path(os.environ[REPO_DIR_ENV])
    checkout = Path(__file__).resolve().parents[3] / "feature_repo"
    return checkout if checkout.is_dir() else Path("feature_repo")


@dataclass(frozen=True)
class StoreProfile:
    """Which stores serve the feature repo; ``None`` means environment or default.

    Attributes:
        online_store: ``sqlite`` (embedded) or ``redis`` ($FEAST_ONLINE_STORE).
        redis_connection_string: ``host:port[,password=..,ssl=true,db=0]``
            ($REDIS_CONNECTION_STRING, default ``127.0.0.1:6379``).
        project: Feast project; also the Redis key suffix ($FEAST_PROJECT).
        registry: registry path or URL ($FEAST_REGISTRY, default
            ``<features_dir>/registry.db``).
        offline_store: ``duckdb`` or ``remote`` ($FEAST_OFFLINE_STORE).
        repo_dir: the folder with ``feature_store.yaml`` and the definitions.
    """

    online_store: OnlineStoreKind | None = None
    redis_connection_string: str | None = None
    project: str | None = None
    registry: str | None = None
    offline_store: OfflineStoreKind | None = None
    repo_dir: Path | None = None

    @classmethod
    def from_settings(
        cls, section: FeaturesConfig, online_store: OnlineStoreKind | None = None
    ) -> StoreProfile:
        """The profile the ``features`` settings describe; ``online_store`` wins."""
        return cls(
            online_store=online_store or section.online_store,
            redis_connection_string=section.redis_connection_string,
            project=section.project,
            registry=section.registry,
            offline_store=section.offline_store,
            repo_dir=section.repo_dir,
        )

    def environment(
        self, features_dir: Path, environ: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The variables ``feature_store.yaml`` and the definitions read.

        Args:
            features_dir: the feature tables folder (also holds the sqlite file and,
                by default, the registry).
            environ: the environment to take unset values from (``os.environ``).
        """
        environ = os.environ if environ is None else environ
        folder = features_dir.resolve()
        values = {
            **DEFAULTS,
            "FEAST_REGISTRY": str(folder / "registry.db"),
        }
        values.update({k: environ[k] for k in values if k in environ})
        explicit = {
            "FEAST_ONLINE_STORE": self.online_store,
            "REDIS_CONNECTION_STRING": self.redis_connection_string,
            "FEAST_PROJECT": self.project,
            "FEAST_REGISTRY": self.registry,
            "FEAST_OFFLINE_STORE": self.offline_store,
        }
        values.update({k: v for k, v in explicit.items() if v is not None})
        values["REDIS_CONNECTION_STRING"] = _fail_fast(
            values["REDIS_CONNECTION_STRING"]
        )
        # The folder is always the caller's: it is an argument, not a setting.
        values[FEATURES_DIR_ENV] = str(folder)
        return values

    @property
    def repo(self) -> Path:
        return self.repo_dir or default_repo_dir()


def _fail_fast(connection_string: str) -> str:
    given = {p.split("=", 1)[0] for p in connection_string.split(",") if "=" in p}
    extra = [f"{k}={v}" for k, v in _REDIS_FAIL_FAST.items() if k not in given]
    return ",".join([connection_string, *extra])


def repo_config(features_dir: Path, profile: StoreProfile | None = None) -> RepoConfig:
    """Read ``feature_store.yaml`` with the profile's variables expanded.

    Raises:
        ConfigError: the file is missing, a variable is unset, or Feast rejects it.
    """
    profile = profile or StoreProfile()
    path = profile.repo / FEATURE_STORE_YAML
    if not path.is_file():
        raise ConfigError(f"{path}: feature_store.yaml not found")
    env = profile.environment(features_dir)
    text = path.read_text(encoding="utf-8")
    unset = sorted({m for m in _VARIABLE.findall(text) if m not in env})
    if unset:
        raise ConfigError(f"{path}: no value for {', '.join(unset)}")
    try:
        raw = yaml.safe_load(_VARIABLE.sub(lambda m: env[m.group(1)], text))
        config = RepoConfig(repo_path=profile.repo, **raw)
        # Online and offline blocks are validated lazily by Feast; do it now.
        _ = config.online_store, config.offline_store, config.registry
    except (yaml.YAMLError, ValidationError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return config


def open_store(
    features_dir: Path, profile: StoreProfile | None = None, *, create: bool = False
) -> FeatureStore:
    """A FeatureStore on the repo, with the profile's stores.

    Hold on to it in a server: it caches the registry between lookups.

    Args:
        features_dir: the feature tables folder.
        profile: the stores (default: environment, else embedded).
        create: allow a local registry file that does not exist yet (``apply``);
            otherwise that is a :class:`FeatureStoreError` (Feast would quietly
            create an empty one).
    """
    profile = profile or StoreProfile()
    config = repo_config(features_dir, profile)
    registry = config.registry
    local = registry.registry_type == "file" and "://" not in str(registry.path)
    if local and not create and not Path(registry.path).exists():
        raise FeatureStoreError(
            f"no Feast registry at {registry.path}; run `interest-graph features "
            "apply` first"
        )
    return FeatureStore(repo_path=str(profile.repo), config=config)


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the block (the definitions read it)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_definitions(
    features_dir: Path, profile: StoreProfile | None = None
) -> list[Any]:
    """The Feast objects of ``feature_definitions.py``, with sources in features_dir.

    The module is executed fresh each time (never cached in ``sys.modules``), so
    two feature folders in one process get their own paths.
    """
    profile = profile or StoreProfile()
    path = profile.repo / DEFINITIONS
    if not path.is_file():
        raise ConfigError(f"{path}: feature definitions not found")
    name = "_interest_graph_feature_definitions"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    with _environment({FEATURES_DIR_ENV: str(features_dir.resolve())}):
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        finally:
            del sys.modules[name]
    kinds = (Entity, DataSource, FeatureView, FeatureService)
    return [v for v in vars(module).values() if isinstance(v, kinds)]


def apply_repo(
    features_dir: Path, profile: StoreProfile | None = None
) -> dict[str, list[str]]:
    """Register the definitions (and drop views/services no longer defined).

    Tables that exist are schema-checked first, so a bad table fails here with the
    view and column named, not later inside Feast.

    Returns:
        Names applied, by kind: ``entities``, ``feature_views``,
        ``feature_services``, and ``removed``.
    """
    features_dir.mkdir(parents=True, exist_ok=True)
    objects = load_definitions(features_dir, profile)
    views = [o for o in objects if isinstance(o, FeatureView)]
    check_tables(views, missing_ok=True)
    store = open_store(features_dir, profile, create=True)
    services = [o for o in objects if isinstance(o, FeatureService)]
    defined = {o.name for o in views} | {o.name for o in services}
    registered: list[Any] = [
        *store.list_feature_views(),
        *store.list_feature_services(),
    ]
    stale = [o for o in registered if o.name not in defined]
    store.apply(objects, objects_to_delete=stale, partial=False)
    return {
        "entities": sorted(o.name for o in objects if isinstance(o, Entity)),
        "feature_views": sorted(o.name for o in views),
        "feature_services": sorted(o.name for o in services),
        "removed": sorted(o.name for o in stale),
    }


def timestamp_field(view: FeatureView) -> str:
    """The event timestamp column of a view's table."""
    if view.batch_source is None:
        raise FeatureStoreError(f"feature view {view.name!r} has no batch source")
    return str(view.batch_source.timestamp_field)


def table_path(view: FeatureView) -> Path:
    """The Parquet table behind a view (through its push source's batch source)."""
    source = view.batch_source
    if isinstance(source, PushSource):
        source = source.batch_source
    if not isinstance(source, FileSource):
        raise FeatureStoreError(
            f"feature view {view.name!r}: source {type(source).__name__} is not a "
            "file; only Parquet tables are checked and materialised here"
        )
    return Path(source.path)


def check_tables(views: list[FeatureView], *, missing_ok: bool = False) -> None:
    """Check each view's table: entity keys, timestamp and feature columns.

    Raises:
        FeatureTableError: a table is missing (unless ``missing_ok``), or a column
            is missing or of the wrong type; the view and column are named.
    """
    for view in views:
        path = table_path(view)
        if not path.is_file():
            if missing_ok:
                continue
            raise FeatureTableError(
                view.name,
                path,
                "table not found; run `interest-graph features build` (or the "
                "stage that writes it)",
            )
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise FeatureTableError(view.name, path, f"not Parquet ({exc})") from exc
        check_schema(view, schema, path)


def check_schema(view: FeatureView, schema: pa.Schema, where: str | Path) -> None:
    """Check an Arrow schema against a view (``where`` names it in the error).

    Raises:
        FeatureTableError: a column is missing or of the wrong type.
    """
    expected: list[tuple[str, FeastType | None]] = [
        *((key, PrimitiveFeastType.STRING) for key in view.join_keys),
        (timestamp_field(view), None),
        *((f.name, f.dtype) for f in view.features),
    ]
    for column, dtype in expected:
        if column not in schema.names:
            raise FeatureTableError(view.name, where, "is missing", column)
        actual = schema.field(column).type
        ok = (
            pa.types.is_timestamp(actual)
            if dtype is None
            else _arrow_matches(actual, dtype)
        )
        if not ok:
            wanted = "a timestamp" if dtype is None else str(dtype)
            raise FeatureTableError(
                view.name, where, f"has type {actual}, expected {wanted}", column
            )


def _arrow_matches(actual: pa.DataType, dtype: FeastType) -> bool:
    if isinstance(dtype, ComplexFeastType):
        if not isinstance(dtype, Array):
            return False
        if not (
            pa.types.is_list(actual)
            or pa.types.is_large_list(actual)
            or pa.types.is_fixed_size_list(actual)
        ):
            return False
        return _arrow_matches(actual.value_type, dtype.base_type)
    checks = {
        PrimitiveFeastType.STRING: lambda t: (
            pa.types.is_string(t) or pa.types.is_large_string(t)
        ),
        PrimitiveFeastType.INT64: pa.types.is_integer,
        PrimitiveFeastType.INT32: pa.types.is_integer,
        PrimitiveFeastType.FLOAT64: pa.types.is_floating,
        PrimitiveFeastType.FLOAT32: lambda t: pa.types.is_float32(t),
        PrimitiveFeastType.BOOL: pa.types.is_boolean,
        PrimitiveFeastType.UNIX_TIMESTAMP: pa.types.is_timestamp,
    }
    check = checks.get(dtype)
    return bool(check is not None and check(actual))


def registered_views(
    store: FeatureStore, names: list[str] | None = None
) -> list[FeatureView]:
    """Registered feature views (all, or ``names``); a clear error if not applied."""
    try:
        if names is None:
            views = store.list_feature_views()
        else:
            views = [store.get_feature_view(name) for name in names]
    except FeastObjectNotFoundException as exc:
        raise FeatureStoreError(
            f"{exc}; run `interest-graph features apply` first"
        ) from exc
    if not views:
        raise FeatureStoreError(
            f"no feature views registered in project {store.project!r}; run "
            "`interest-graph features apply` first"
        )
    return views


def feature_service(store: FeatureStore, name: str) -> FeatureService:
    """A registered feature service, with a clear error if not applied."""
    try:
        return store.get_feature_service(name, allow_cache=True)
    except FeastObjectNotFoundException as exc:
        raise FeatureStoreError(
            f"feature service {name!r} is not registered in project "
            f"{store.project!r}; run `interest-graph features apply` first"
        ) from exc
