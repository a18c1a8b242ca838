"""The ``embed`` stage: item text → vectors in Parquet, incremental by content hash.

Output (``<features_dir>/item_text_embeddings.parquet``, read by the Feast item text
embedding view):

====================  ===============  ==========================================
column                type             meaning
====================  ===============  ==========================================
``item_id``           string           the canonical item id
``text_embedding``    list<float32>    L2-normalised vector of the item's text
``text_model``        string           the model id that made it
``event_timestamp``   timestamp[us]    naive UTC time the vector was computed
``content_hash``      string           hash of text + model + template + options
====================  ===============  ==========================================

The file is its own cache: a rerun re-encodes only rows whose content hash is new
(a changed text, template, model, pooling, prefix or max length); rows of
unchanged items keep their vector and timestamp, and when nothing changed the file
is not rewritten. Items whose text is empty after cleaning get no row: they are
counted and listed in ``item_text_embeddings_report.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from interest_graph import text_encoder
from interest_graph.config import TextModelConfig
from interest_graph.embeddings.text import DEFAULT_TEMPLATE, TEXT_VERSION, render_texts
from interest_graph.errors import ConfigError, MalformedFileError
from interest_graph.logs import get_logger

OUTPUT_FILE = "item_text_embeddings.parquet"
REPORT_FILE = "item_text_embeddings_report.json"
SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("text_embedding", pa.list_(pa.float32()), nullable=False),
        pa.field("text_model", pa.string(), nullable=False),
        pa.field("event_timestamp", pa.timestamp("us"), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
    ]
)
SAMPLE_IDS = 1000  # skipped item ids listed in the report, at most
_ROWS_PER_CHUNK = 65_536  # list offsets are int32: chunks keep them small

Encode = Callable[[list[str]], np.ndarray]

log = get_logger("embed")


@dataclass(frozen=True)
class EmbedOptions:
    """Everything that decides an item's vector (and so its content hash), plus
    how to run the encoder (device, precision, batch budget: not hashed)."""

    model: str = text_encoder.DEFAULT_TEXT_MODEL
    template: str = DEFAULT_TEMPLATE
    pooling: str = "mean"
    prefix: str = ""
    max_length: int = 128
    device: str = "auto"
    precision: str = "auto"
    batch_tokens: int | None = None
    batch_size: int | None = None
    cpu_threads: int | None = None

    @classmethod
    def from_config(cls, config: TextModelConfig, **overrides: Any) -> EmbedOptions:
        """Options from ``settings.text``, then ``overrides`` that are not None."""
        values = {
            name: getattr(config, name)
            for name in cls.__dataclass_fields__
            if name != "device"
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        options = cls(**values)
        if options.pooling not in text_encoder.POOLINGS:
            raise ConfigError(
                f"pooling must be one of {text_encoder.POOLINGS}, "
                f"not {options.pooling!r}"
            )
        return options

    def hash_key(self) -> bytes:
        """The part of every content hash that is not the text itself."""
        key = {
            "text_version": TEXT_VERSION,
            "model": self.model,
            "template": self.template,
            "pooling": self.pooling,
            "prefix": self.prefix,
            "max_length": self.max_length,
        }
        return json.dumps(key, sort_keys=True).encode("utf-8") + b"\x00"


@dataclass(frozen=True)
class EmbedResult:
    """What ``embed_items`` did; ``report`` is also written as JSON."""

    path: Path
    report_path: Path
    report: dict[str, Any]

    @property
    def embedded_now(self) -> int:
        return int(self.report["embedded_now"])

    @property
    def reused_from_cache(self) -> int:
        return int(self.report["reused_from_cache"])

    @property
    def skipped_empty(self) -> list[str]:
        return list(self.report["skipped_empty_ids"])


def content_hashes(texts: Sequence[str], options: EmbedOptions) -> list[str]:
    """A 128-bit hex hash per text under ``options``."""
    key = options.hash_key()
    blake = hashlib.blake2b
    return [blake(key + t.encode("utf-8"), digest_size=16).hexdigest() for t in texts]


def read_items(source: pd.DataFrame | str | Path) -> pd.DataFrame:
    """The items table: a frame, an ``items.parquet`` file or a data folder."""
    if isinstance(source, pd.DataFrame):
        return source
    path = Path(source)
    if path.is_dir():
        path = path / "items.parquet"
    if not path.is_file():
        raise MalformedFileError(path, "no items table (expected items.parquet)")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise MalformedFileError(path, f"not readable as Parquet ({exc})") from exc


def embed_items(
    items: pd.DataFrame | str | Path,
    features_dir: str | Path,
    config: TextModelConfig | None = None,
    *,
    device: str | None = None,
    template: str | None = None,
    pooling: str | None = None,
    prefix: str | None = None,
    precision: str | None = None,
    batch_tokens: int | None = None,
    full: bool = False,
    encode: Encode | None = None,
    now: pd.Timestamp | None = None,
) -> EmbedResult:
    """Embed every item's text into ``<features_dir>/item_text_embeddings.parquet``.

    Args:
        items: an items frame (``item_id`` and the template's columns), an
            ``items.parquet`` file, or a canonical data folder.
        features_dir: the feature data folder (output, report and cache).
        config: ``settings.text`` (model, max length, template, pooling, prefix,
            precision, batch_tokens, batch_size, cpu_threads).
        device: ``auto`` (default), ``cpu`` or ``cuda``; ``settings.device``.
        template, pooling, prefix, precision, batch_tokens: override ``config``.
        full: ignore the cache and embed every item again.
        encode: the function from texts to vectors (default: the transformers
            encoder of ``text_encoder``); tests pass a counting one.
        now: the timestamp for vectors computed now (default: the clock, UTC).

    Returns:
        The output path, the report path and the report.

    Raises:
        ConfigError: a bad template, pooling or model.
        MalformedFileError: the items cannot be read or lack ``item_id``.
    """
    started = time.perf_counter()
    options = EmbedOptions.from_config(
        config or TextModelConfig(),
        device=device,
        template=template,
        pooling=pooling,
        prefix=prefix,
        precision=precision,
        batch_tokens=batch_tokens,
    )
    frame = read_items(items)
    if "item_id" not in frame.columns:
        raise MalformedFileError("items", "no item_id column")
    frame, dropped = _unique_items(frame)
    item_ids = frame["item_id"].tolist()
    texts = render_texts(frame, options.template)
    empty = [i for i, text in enumerate(texts) if not text]
    keep = np.array([bool(text) for text in texts], dtype=bool)
    ids = [item_ids[i] for i in np.flatnonzero(keep)]
    kept_texts = [texts[i] for i in np.flatnonzero(keep)]
    hashes = content_hashes(kept_texts, options)

    out_dir = Path(features_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / OUTPUT_FILE
    cache = None if full else _read_cache(path)
    if now is None:
        now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    now = pd.Timestamp(now).floor("us")

    # Which rows can come from the cache: same item and hash (unchanged, keeps its
    # timestamp), or another cached row with the same hash (same text elsewhere).
    old_by_item: dict[tuple[str, str], int] = {}
    old_by_hash: dict[str, int] = {}
    if cache is not None:
        for row, (item, digest) in enumerate(
            zip(cache["item_id"], cache["content_hash"], strict=True)
        ):
            old_by_item[(item, digest)] = row
            old_by_hash.setdefault(digest, row)
    source_row = np.full(len(ids), -1, dtype=np.int64)
    unchanged = np.zeros(len(ids), dtype=bool)
    for i, (item, digest) in enumerate(zip(ids, hashes, strict=True)):
        same = old_by_item.get((item, digest))
        if same is not None:
            source_row[i] = same
            unchanged[i] = True
        else:
            source_row[i] = old_by_hash.get(digest, -1)
    todo = np.flatnonzero(source_row < 0)

    encode_seconds = 0.0
    rewrite = (
        cache is None
        or todo.size > 0
        or not unchanged.all()
        or len(cache["item_id"]) != len(ids)
    )
    if rewrite:
        dim = None
        vectors: np.ndarray | None = None
        if todo.size:
            encode_started = time.perf_counter()
            fresh = _encoder(options, encode)([kept_texts[i] for i in todo])
            encode_seconds = time.perf_counter() - encode_started
            fresh = _checked(fresh, todo.size)
            dim = fresh.shape[1]
        cached_rows = np.flatnonzero(source_row >= 0)
        old = (
            _read_vectors(path, source_row[cached_rows])
            if cached_rows.size and cache is not None
            else None
        )
        if old is not None and dim is not None and old.shape[1] != dim:
            raise ConfigError(
                f"{path}: cached vectors have dimension {old.shape[1]} but the "
                f"model gives {dim}; rerun with --full"
            )
        dim = dim or (old.shape[1] if old is not None else 0)
        vectors = np.empty((len(ids), dim), dtype=np.float32)
        if todo.size:
            vectors[todo] = fresh
        if old is not None:
            vectors[cached_rows] = old
        timestamps = np.full(len(ids), now.to_datetime64(), dtype="datetime64[us]")
        if cache is not None and unchanged.any():
            timestamps[unchanged] = cache["event_timestamp"][source_row[unchanged]]
        _write(path, ids, vectors, options.model, timestamps, hashes)

    seconds = time.perf_counter() - started
    report = {
        "output": str(path),
        "text_model": options.model,
        "template": options.template,
        "pooling": options.pooling,
        "prefix": options.prefix,
        "max_length": options.max_length,
        "items": len(item_ids),
        "embedded": len(ids),
        "embedded_now": int(todo.size),
        "reused_from_cache": int((source_row >= 0).sum()),
        "unchanged": int(unchanged.sum()),
        "skipped_empty": len(empty),
        "skipped_empty_ids": [str(item_ids[i]) for i in empty[:SAMPLE_IDS]],
        "dropped_duplicate_or_missing_ids": dropped,
        "removed_since_last_run": (
            len(set(cache["item_id"]) - set(ids)) if cache is not None else 0
        ),
        "rewritten": bool(rewrite),
        "seconds": round(seconds, 3),
        "encode_seconds": round(encode_seconds, 3),
        "items_per_s": round(len(item_ids) / seconds, 1) if seconds else None,
        "encoded_per_s": (
            round(todo.size / encode_seconds, 1) if encode_seconds else None
        ),
        "computed_at": now.isoformat(),
    }
    if empty:
        log.warning(
            "%d items have no text after cleaning and get no vector (e.g. %s)",
            len(empty),
            ", ".join(str(item_ids[i]) for i in empty[:5]),
        )
    log.info(
        "embedded %d items (%d now, %d from cache, %d skipped) in %.1f s -> %s",
        len(ids),
        todo.size,
        report["reused_from_cache"],
        len(empty),
        seconds,
        path,
    )
    report_path = out_dir / REPORT_FILE
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return EmbedResult(path=path, report_path=report_path, report=report)


def item_vectors(
    items: pd.DataFrame,
    features_dir: str | Path,
    cache_dir: str | Path,
    config: TextModelConfig | None = None,
    *,
    device: str | None = None,
    encode: Encode | None = None,
) -> np.ndarray:
    """The stage's vectors of ``items``: one row per item row, in their order.

    Every ranking model reads item text through here, so it gets what Feast's
    ``item_text_embeddings`` view holds: the same template, cleaning, model and
    content hashes. The vectors come from ``<features_dir>/item_text_embeddings
    .parquet`` when it holds every item's current content hash (the shop the
    ``embed`` stage ran on); otherwise the stage runs on ``items`` once, into a
    folder of ``cache_dir`` named after the item ids, and the next caller reads
    that file (only new or changed texts are encoded). An item without text gets
    a zero vector, as it has no row in the stage's output.

    Args:
        items: ``item_id`` and the template's columns, one row per item.
        features_dir: the feature data folder the ``embed`` stage writes.
        cache_dir: where the stage's output for other items is kept.
        config: ``settings.text``; device: ``settings.device``.
        encode: the function from texts to vectors (tests count its calls).

    Raises:
        ConfigError: no item has text, or the template names a missing column.
    """
    options = EmbedOptions.from_config(config or TextModelConfig(), device=device)
    item_ids = items["item_id"].astype(str).tolist()
    if len(set(item_ids)) != len(item_ids):
        raise ValueError("item ids repeat: one row per item expected")
    texts = render_texts(items, options.template)
    has_text = np.array([bool(text) for text in texts], dtype=bool)
    if not has_text.any():
        raise ConfigError(f"none of {len(texts)} items has text under the template")
    wanted = content_hashes([text for text in texts if text], options)
    vectors = _stored(Path(features_dir) / OUTPUT_FILE, wanted)
    if vectors is None:
        catalogue = "\x00".join(sorted(item_ids)).encode("utf-8")
        digest = hashlib.blake2b(catalogue, digest_size=8)
        folder = Path(cache_dir) / f"item-text-{digest.hexdigest()}"
        vectors = _stored(folder / OUTPUT_FILE, wanted)
        if vectors is None:
            log.info("item text of %d items not in %s: embedding", len(texts), folder)
            frame = items.assign(item_id=item_ids)
            embed_items(frame, folder, config, device=device, encode=encode)
            vectors = _stored(folder / OUTPUT_FILE, wanted)
            assert vectors is not None, "the embed stage wrote every item's vector"
    out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
    out[has_text] = vectors
    return out


def _stored(path: Path, hashes: list[str]) -> np.ndarray | None:
    """The vectors stored in ``path`` under ``hashes``, in order (a hash covers
    text, model and options, so any row with it will do); None when a hash is
    missing."""
    cache = _read_cache(path)
    if cache is None:
        return None
    by_hash: dict[str, int] = {}
    for row, digest in enumerate(cache["content_hash"]):
        by_hash.setdefault(digest, row)
    if any(digest not in by_hash for digest in hashes):
        return None
    rows = np.fromiter((by_hash[d] for d in hashes), np.int64, len(hashes))
    log.info("item text vectors of %d items read from %s", len(hashes), path)
    return _read_vectors(path, rows)


def _unique_items(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Rows with a present item id, first row per id; and how many were dropped."""
    item_id = frame["item_id"].astype("string")
    keep = item_id.notna() & ~item_id.duplicated(keep="first")
    dropped = int((~keep).sum())
    if dropped:
        log.warning("%d item rows dropped: missing or repeated item_id", dropped)
    out = frame.loc[keep.to_numpy()].copy()
    out["item_id"] = item_id[keep].astype(str).to_numpy()
    return out.reset_index(drop=True), dropped


def _encoder(options: EmbedOptions, encode: Encode | None) -> Encode:
    if encode is not None:
        return encode
    config = TextModelConfig(model=options.model, max_length=options.max_length)
    device = options.device

    def run(texts: list[str]) -> np.ndarray:
        # Looked up at call time, so tests can monkeypatch the module function.
        return text_encoder.encode_texts(
            texts,
            config,
            text_encoder.resolve_device(device),
            pooling=options.pooling,
            prefix=options.prefix,
            precision=options.precision,
            batch_tokens=options.batch_tokens,
            batch_size=options.batch_size,
            threads=options.cpu_threads,
        )

    return run


def _checked(vectors: np.ndarray, rows: int) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != rows:
        raise ValueError(f"encoder returned shape {vectors.shape} for {rows} texts")
    if not np.isfinite(vectors).all():
        raise ValueError("encoder returned non-finite values")
    return vectors


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """Item ids, hashes and timestamps of the existing output, or None.

    A file without ``content_hash`` (the empty placeholder ``features build``
    creates, or a file from elsewhere) is not a cache: everything is embedded.
    """
    if not path.is_file():
        return None
    try:
        names = set(pq.read_schema(path).names)
        if "content_hash" not in names:
            log.info("%s has no content hashes; embedding every item", path)
            return None
        table = pq.read_table(
            path, columns=["item_id", "content_hash", "event_timestamp"]
        )
        timestamps = table["event_timestamp"].cast(pa.timestamp("us"))  # naive UTC
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        log.warning("%s: unreadable as a cache (%s); embedding everything", path, exc)
        return None
    return {
        "item_id": np.asarray(table["item_id"].to_numpy(zero_copy_only=False)),
        "content_hash": np.asarray(
            table["content_hash"].to_numpy(zero_copy_only=False)
        ),
        "event_timestamp": timestamps.to_numpy().astype("datetime64[us]"),
    }


def _read_vectors(path: Path, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of the stored vectors as a float32 matrix."""
    column = pq.read_table(path, columns=["text_embedding"])["text_embedding"]
    lists = column.combine_chunks()
    if isinstance(lists, pa.ChunkedArray):  # pragma: no cover - pyarrow version
        lists = lists.chunk(0)
    values = lists.flatten().to_numpy(zero_copy_only=False)
    n = len(lists)
    dim = values.size // n if n else 0
    if dim * n != values.size:
        raise MalformedFileError(path, "stored vectors differ in length")
    return np.asarray(values, dtype=np.float32).reshape(n, dim)[rows]


def _write(
    path: Path,
    ids: list[str],
    vectors: np.ndarray,
    model: str,
    timestamps: np.ndarray,
    hashes: list[str],
) -> None:
    """Write the output atomically (a temp file renamed over the old one)."""
    n, dim = vectors.shape
    chunks = []
    for start in range(0, max(n, 1), _ROWS_PER_CHUNK):
        stop = min(n, start + _ROWS_PER_CHUNK)
        block = np.ascontiguousarray(vectors[start:stop]).reshape(-1)
        offsets = pa.array(np.arange(stop - start + 1, dtype=np.int32) * dim)
        chunks.append(pa.ListArray.from_arrays(offsets, pa.array(block)))
    embedding = pa.chunked_array(chunks, type=pa.list_(pa.float32()))
    table = pa.table(
        {
            "item_id": pa.array(ids, type=pa.string()),
            "text_embedding": embedding,
            "text_model": pa.array([model] * n, type=pa.string()),
            "event_timestamp": pa.array(timestamps, type=pa.timestamp("us")),
            "content_hash": pa.array(hashes, type=pa.string()),
        },
        schema=SCHEMA,
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, temporary, row_group_size=_ROWS_PER_CHUNK)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
