"""Load the latest feature rows into the online store, incrementally; report staleness.

Rows are converted to Feast protos once per distinct value (counts and categories
repeat a lot) and written by Feast's own online store writer, except on sqlite:
Feast's sqlite writer issues one ``execute`` per feature value (13M for a 1M-user
shop, minutes), so there the same rows, built with Feast's own key and value
encoders, go in with one ``executemany``. Tests compare both writers row by row.
"""

from __future__ import annotations

import gc
import sqlite3
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureStore, FeatureView, PushSource
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import compute_table_id, extract_text_and_num
from feast.infra.online_stores.sqlite import (
    SqliteOnlineStore,
    SqliteOnlineStoreConfig,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

from interest_graph.features.online import online_store_errors
from interest_graph.features.repo import (
    check_tables,
    registered_views,
    table_path,
    timestamp_field,
)
from interest_graph.logs import get_logger

log = get_logger("features.materialize")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Rows per online write: bounds memory of the proto lists on big shops.
_CHUNK = 100_000


@dataclass(frozen=True)
class MaterializeResult:
    """What one view's materialisation did; ``entities`` 0 means nothing was new."""

    view: str
    entities: int
    start: datetime | None
    end: datetime | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("start", "end"):
            out[key] = None if out[key] is None else out[key].isoformat()
        return out


def materialize(
    store: FeatureStore,
    *,
    views: list[str] | None = None,
    end: datetime | None = None,
    full: bool = False,
) -> list[MaterializeResult]:
    """Write each online view's latest rows since its last materialisation.

    Running it twice changes nothing: the second run finds no row stamped at or
    after the recorded end and writes nothing (the registry is not touched).

    Args:
        store: the feature store (see :func:`open_store`).
        views: view names (default: every online view).
        end: exclusive upper bound of snapshot times (default: now, or just past
            the newest row if the tables are stamped in the future).
        full: start from the beginning instead of the last materialised end.

    Raises:
        FeatureTableError: a table is missing or has the wrong schema.
        OnlineStoreUnavailableError: the online store cannot be reached.
    """
    targets = sorted(
        (v for v in registered_views(store, views) if v.online), key=lambda v: v.name
    )
    check_tables(targets)
    results = []
    for view in targets:
        started = datetime.now(UTC)
        start = None if full else _aware(view.most_recent_end_time)
        path = table_path(view)
        latest = _latest_timestamp(path, timestamp_field(view))
        if latest is None or (start is not None and latest < start):
            results.append(MaterializeResult(view.name, 0, start, None, 0.0))
            continue
        stop = _aware(end) or max(datetime.now(UTC), latest + timedelta(seconds=1))
        rows = _latest_rows(view, path, start or _EPOCH, stop)
        with online_store_errors(store), _paused_gc():
            _write_online(store, view, rows)
        store.registry.apply_materialization(
            view, store.project, start or _EPOCH, stop, commit=True
        )
        seconds = (datetime.now(UTC) - started).total_seconds()
        log.info(
            "materialised %s: %d entities in %.1fs", view.name, rows.num_rows, seconds
        )
        results.append(
            MaterializeResult(view.name, rows.num_rows, start, stop, seconds)
        )
    return results


@dataclass(frozen=True)
class ViewStatus:
    """How fresh one view's online values are compared with its offline table.

    For a push view (``push_source``), pushes reach the online store directly;
    ``stale`` then only says that the table has rows no materialisation copied.
    """

    view: str
    table: str
    rows: int
    offline_latest: datetime | None
    materialized_until: datetime | None
    stale: bool
    push_source: bool

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("offline_latest", "materialized_until"):
            out[key] = None if out[key] is None else out[key].isoformat()
        return out


def status(store: FeatureStore) -> list[ViewStatus]:
    """Per online view: newest offline row, materialised-until, and staleness.

    A view is stale when its table has rows stamped at or after the end of its
    last materialisation (or was never materialised but has rows).
    """
    out = []
    for view in sorted(registered_views(store), key=lambda v: v.name):
        if not view.online:
            continue
        path = table_path(view)
        rows, latest = 0, None
        if path.is_file():
            rows = pq.read_metadata(path).num_rows
            latest = _latest_timestamp(path, timestamp_field(view))
        until = _aware(view.most_recent_end_time)
        stale = latest is not None and (until is None or latest >= until)
        pushed = isinstance(view.stream_source, PushSource)
        out.append(ViewStatus(view.name, str(path), rows, latest, until, stale, pushed))
    return out


@contextmanager
def _paused_gc() -> Iterator[None]:
    """Millions of short-lived tuples and protos: collections only slow them down."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _latest_timestamp(path: Path, column: str) -> datetime | None:
    """Newest stamp in a table, from the Parquet statistics when they are there."""
    metadata = pq.read_metadata(path)
    if metadata.num_rows == 0:
        return None
    index = pq.read_schema(path).get_field_index(column)
    maxima: list[Any] = []
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_min_max:
            maxima = []
            break
        maxima.append(stats.max)
    if maxima:
        latest = pd.Timestamp(max(maxima))
    else:
        latest = pd.Timestamp(
            pq.read_table(path, columns=[column])[column].to_pandas().max()
        )
    if pd.isna(latest):
        return None
    return (
        latest.tz_localize("UTC") if latest.tzinfo is None else latest
    ).to_pydatetime()


def _latest_rows(
    view: FeatureView, path: Path, start: datetime, stop: datetime
) -> pa.Table:
    """Each entity's newest row stamped in ``[start, stop)``."""
    keys = ", ".join(f'"{k}"' for k in view.join_keys)
    timestamp = timestamp_field(view)
    columns = ", ".join(
        f'"{c}"' for c in [*view.join_keys, timestamp, *(f.name for f in view.features)]
    )
    import duckdb  # here: serving imports this package without duckdb

    with duckdb.connect() as con:
        return con.sql(
            f"""
            SELECT {columns} FROM read_parquet($path)
            WHERE "{timestamp}" >= $start AND "{timestamp}" < $stop
            QUALIFY row_number() OVER (
                PARTITION BY {keys} ORDER BY "{timestamp}" DESC) = 1
            ORDER BY {keys}
            """,
            params={"path": str(path), "start": start, "stop": stop},
        ).to_arrow_table()


def _proto_columns(view: FeatureView, rows: pa.Table) -> dict[str, list[ValueProto]]:
    """Feast protos per feature column, as Feast's converter makes them.

    Its per-value checks cost microseconds, so each distinct value is converted
    once (counts and categories repeat a lot); doubles, mostly distinct, are built
    directly the way it builds them (NaN is null).
    """
    out = {}
    for field in view.features:
        column = rows.column(field.name).to_numpy(zero_copy_only=False)
        value_type = field.dtype.to_value_type()
        if value_type in (ValueType.FLOAT_LIST, ValueType.DOUBLE_LIST):
            # Vectors are all different: nothing to share.
            out[field.name] = python_values_to_proto_values(column, value_type)
            continue
        if value_type.name.endswith("_LIST"):
            hashable: Any = pd.Series(
                [None if v is None else tuple(v) for v in column], dtype=object
            )
        else:
            hashable = column
        codes, uniques = pd.factorize(hashable)
        if value_type == ValueType.DOUBLE and column.dtype.kind == "f":
            # As Feast builds doubles (factorize already took NaN out as null).
            protos = [ValueProto(double_val=v) for v in uniques.tolist()]
        else:
            representatives = [column[i] for i in _first_positions(codes, len(uniques))]
            protos = python_values_to_proto_values(representatives, value_type)
        missing = python_values_to_proto_values([None], value_type)[0]
        lookup = np.asarray([*protos, missing], dtype=object)
        out[field.name] = list(lookup[codes])  # -1 (null) picks ``missing``
    return out


def _first_positions(codes: np.ndarray, n: int) -> np.ndarray:
    first = np.full(n, -1, dtype=np.int64)
    valid = codes >= 0
    positions = np.flatnonzero(valid)
    # Reversed assignment leaves the first position of each code.
    first[codes[valid][::-1]] = positions[::-1]
    return first


def _event_times(rows: pa.Table, column: str) -> list[datetime]:
    stamps = pd.to_datetime(
        rows.column(column).to_numpy(zero_copy_only=False), utc=True
    )
    return list(stamps.to_pydatetime())


def _write_online(store: FeatureStore, view: FeatureView, rows: pa.Table) -> None:
    if rows.num_rows == 0:
        return
    if isinstance(store.config.online_store, SqliteOnlineStoreConfig):
        _write_sqlite(store, view, rows)
        return
    provider = store._get_provider()
    for offset in range(0, rows.num_rows, _CHUNK):
        data = _feast_rows(view, rows.slice(offset, _CHUNK))
        provider.online_write_batch(store.config, view, data, progress=None)


def _entity_key_protos(view: FeatureView, rows: pa.Table) -> list[EntityKeyProto]:
    (key,) = view.join_keys
    return [
        EntityKeyProto(join_keys=[key], entity_values=[ValueProto(string_val=v)])
        for v in rows.column(key).to_pylist()
    ]


def _serialized_entity_keys(
    view: FeatureView, rows: pa.Table, version: int
) -> list[bytes]:
    """Feast's entity key bytes for single string keys, built without a proto each.

    The layout is Feast's (a fixed prefix, then the value's length and bytes); the
    first key is checked against Feast's own serializer, and any difference falls
    back to calling it for every key.
    """
    (key,) = view.join_keys
    ids = rows.column(key).to_pylist()
    prefix = serialize_entity_key(
        EntityKeyProto(join_keys=[key], entity_values=[ValueProto(string_val="")]),
        entity_key_serialization_version=version,
    )[:-4]
    fast = [prefix + struct.pack("<I", len(b)) + b for b in (i.encode() for i in ids)]
    reference = serialize_entity_key(
        EntityKeyProto(join_keys=[key], entity_values=[ValueProto(string_val=ids[0])]),
        entity_key_serialization_version=version,
    )
    if fast[0] == reference:
        return fast
    return [
        serialize_entity_key(k, entity_key_serialization_version=version)
        for k in _entity_key_protos(view, rows)
    ]


def _write_sqlite(store: FeatureStore, view: FeatureView, rows: pa.Table) -> None:
    """Feast's sqlite upsert (same table, columns and encodings), by executemany.

    A worker thread prepares the next chunk's rows while sqlite (which releases
    the GIL) writes the current one.
    """
    config = store.config
    if config.online_store.vector_enabled or getattr(
        config.online_store, "enable_openai_compatible_store", False
    ):
        # Extra columns this writer does not fill: let Feast write them.
        store._get_provider().online_write_batch(
            config, view, _feast_rows(view, rows), progress=None
        )
        return
    table = compute_table_id(
        config.project, view, config.registry.enable_online_feature_view_versioning
    )
    columns = [
        "entity_key",
        "feature_name",
        "value",
        "value_text",
        "event_ts",
        "created_ts",
    ]
    update = ", ".join(f"{c} = excluded.{c}" for c in columns[2:])
    upsert = (
        f'INSERT INTO "{table}" ({", ".join(columns)}) '
        f"VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT(entity_key, feature_name) DO UPDATE SET {update};"
    )
    chunks = [rows.slice(o, _CHUNK) for o in range(0, rows.num_rows, _CHUNK)]
    connection = sqlite3.connect(SqliteOnlineStore._get_db_path(config))
    try:
        connection.execute("PRAGMA synchronous = NORMAL")
        with connection:
            for chunk in chunks:
                connection.executemany(upsert, _sqlite_rows(view, chunk, config))
    finally:
        connection.close()


def _sqlite_rows(
    view: FeatureView, rows: pa.Table, config: Any
) -> list[tuple[Any, ...]]:
    """Rows of Feast's sqlite table: (key, feature, value, text, event_ts, None).

    They come in primary key order (entity key bytes, then feature name), so sqlite
    appends to its B-trees instead of inserting all over them.
    """
    keys = _serialized_entity_keys(view, rows, config.entity_key_serialization_version)
    # Feast stores naive UTC datetimes (its sqlite adapter turns them into epochs).
    times = [t.replace(tzinfo=None) for t in _event_times(rows, timestamp_field(view))]
    encoded = []
    for name, protos in sorted(_proto_columns(view, rows).items()):
        cache: dict[int, tuple[bytes, str | None]] = {}
        values = []
        for proto in protos:
            hit = cache.get(id(proto))
            if hit is None:
                hit = (proto.SerializeToString(), extract_text_and_num(proto, False)[0])
                cache[id(proto)] = hit
            values.append(hit)
        encoded.append((name, values))
    out: list[tuple[Any, ...]] = []
    for i in sorted(range(len(keys)), key=keys.__getitem__):
        key, when = keys[i], times[i]
        for name, values in encoded:
            out.append((key, name, *values[i], when, None))
    return out


def _feast_rows(view: FeatureView, rows: pa.Table) -> list[tuple[Any, ...]]:
    protos = _proto_columns(view, rows)
    names = list(protos)
    keys = _entity_key_protos(view, rows)
    times = _event_times(rows, timestamp_field(view))
    return [
        (key, dict(zip(names, values, strict=True)), when, None)
        for key, when, *values in zip(keys, times, *protos.values(), strict=True)
    ]
