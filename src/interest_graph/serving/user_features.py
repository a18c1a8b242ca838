"""User features for a call, from the Feast online store: one batched lookup.

When the store fails, every user of the call is marked ``unavailable`` (the
model answers what it can and says so in ``fallback``), and the store is left
alone for :data:`RETRY_SECONDS` so a dead Redis costs requests nothing.
:class:`DeadlineLookup` runs the read in a worker thread with a deadline, so a
store that hangs (a socket that accepts and never answers) costs a call its
deadline, never the event loop that also answers the health probes.

The embedded sqlite online store (a local file: no socket to hang on) is read
inline instead, through the same Feast provider call: the hop to a worker thread
and back cost 0.4-0.6 ms per call on 2 busy cores, more than the read itself.
What can still make it wait is another process writing the file (a push or a
materialisation holding sqlite's write lock); Feast's connection gets a busy
timeout of the call's deadline for that, and a read that finds the file locked
costs its own call a flagged fallback, like a slow read (the cool-down starts
after :data:`SLOW_READS_TO_TRIP` in a row).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Protocol

import numpy as np

from interest_graph.logs import get_logger
from interest_graph.serving.observe import FEATURE_READ
from interest_graph.serving.requests import UserFeatures

log = get_logger("serving.user_features")

RETRY_SECONDS = 5.0
# Worker threads for online reads. A hung read holds its thread until the socket
# gives up; with every thread held, calls answer fallbacks at once.
LOOKUP_THREADS = 4
INTEREST_VIEW = "user_interest_vectors"
RECENT_VIEW = "user_recent_items"
RECENT_ITEMS = "user_recent_items__recent_items"
INTEREST_VECTOR = "user_interest_vectors__interest_vector"
TOP_INTERESTS = "user_interest_vectors__top_interests"

NO_FEATURES = UserFeatures(status="off")


class UserFeatureSource(Protocol):
    """Where a call's user features come from."""

    status: str

    def lookup(
        self, user_ids: Sequence[str], *, interests: bool = True
    ) -> list[UserFeatures]:
        """Features per user id, in order; never raises for a store outage.
        ``interests=False``: the caller needs no interest vectors (its model has
        the users' own), so the store skips that view."""
        ...


class NoUserFeatures:
    """No feature store (``--no-feast``): every user gets empty features."""

    status = "off"

    def lookup(
        self, user_ids: Sequence[str], *, interests: bool = True
    ) -> list[UserFeatures]:
        return [NO_FEATURES] * len(user_ids)


class ServingLookup:
    """The Feast reads of the service: per request the user's interest view (one
    direct online read), at model load the item statistics (the ``serving``
    service's item features).

    Attributes:
        inline: the online store is the embedded sqlite file, read on the caller's
            thread (see the module notes); Redis and remote stores are not.
    """

    def __init__(self, store: Any, busy_timeout_ms: float = 50.0) -> None:
        """Args:
        store: the Feast feature store.
        busy_timeout_ms: how long a sqlite read waits for another process's
            write lock before it fails (sqlite's own default is 5 s).
        """
        from interest_graph.features.online import OnlineLookup, ViewReader

        self._interests = ViewReader(store, INTEREST_VIEW)
        self._recent = ViewReader(store, RECENT_VIEW)
        self._items = OnlineLookup(store, "serving", views=("item_statistics",))
        self.inline = getattr(store.config.online_store, "type", None) == "sqlite"
        if self.inline:
            _tune_sqlite(store, busy_timeout_ms)

    def users(
        self, ids: Sequence[str], *, interests: bool = True
    ) -> list[dict[str, Any]]:
        """Rows shaped like ``OnlineLookup.users``: ``{"features": {...}}``;
        without ``interests``, the recent items alone (one read, not two)."""
        keys = self._interests.keys(ids)  # one user entity: the same keys
        vectors: list[dict[str, Any] | None] = (
            self._interests.read(ids, keys) if interests else [None] * len(ids)
        )
        recent = self._recent.read(ids, keys)
        return [
            {"features": {**(a or {}), **(b or {})}}
            for a, b in zip(vectors, recent, strict=True)
        ]

    def items(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        return list(self._items.items(ids))


class FeastUserFeatures:
    """Lookups through :class:`~interest_graph.features.online.OnlineLookup`.

    Attributes:
        status: ``ok`` or ``unavailable`` (the last lookup failed, or the store
            could not be opened); readiness reports it.
        last_error: the last failure, for the status endpoint.
    """

    def __init__(self, open_lookup: Any, retry_seconds: float = RETRY_SECONDS) -> None:
        """Args:
        open_lookup: a callable returning an ``OnlineLookup`` (called again
            after a failure to open, e.g. a registry that was not applied yet).
        retry_seconds: how long to skip the store after a failure.
        """
        self._open_lookup = open_lookup
        self._lookup: Any = None
        self._retry_seconds = retry_seconds
        self._skip_until = 0.0
        self._lock = threading.Lock()
        self._locked_in_a_row = 0
        self.status = "ok"
        self.last_error: str | None = None
        self._connect()

    @property
    def inline(self) -> bool:
        """Read on the caller's thread: an embedded store that cannot hang."""
        return bool(getattr(self._lookup, "inline", False))

    def _connect(self) -> Any:
        if self._lookup is None:
            try:
                self._lookup = self._open_lookup()
            except Exception as exc:  # any failure to open is an outage for us
                self._failed(exc)
        return self._lookup

    def warm_up(self) -> None:
        """One read before serving: the first read of a process builds Feast's
        clients (imports, connection), far over a request's deadline."""
        self.lookup(["warm-up"])

    def skipping(self) -> bool:
        """True during the cool-down after a failure (lookups answer at once)."""
        return self.status == "unavailable" and time.monotonic() < self._skip_until

    def failed(self, exc: Exception) -> None:
        """Count a failure seen outside :meth:`lookup` (a read past its deadline)."""
        self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            if self.status != "unavailable":
                log.warning("feature store unavailable, serving fallbacks: %s", exc)
            self.status = "unavailable"
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._skip_until = time.monotonic() + self._retry_seconds

    def lookup(
        self, user_ids: Sequence[str], *, interests: bool = True
    ) -> list[UserFeatures]:
        down = [UserFeatures(status="unavailable")] * len(user_ids)
        if self.status == "unavailable" and time.monotonic() < self._skip_until:
            return down
        lookup = self._connect()
        if lookup is None:
            return down
        try:
            rows = lookup.users(list(user_ids), interests=interests)
        except UnicodeError as exc:
            # The ids could not be encoded for the store: the call's own fault (the
            # request checks should have refused it), so no cool-down for others.
            log.warning("feature lookup refused the call's ids: %s", exc)
            return down
        except Exception as exc:  # Redis down, sqlite gone, Feast internals
            if _locked(exc):  # another process writes the sqlite file: busy
                self._locked(exc)
            else:
                self._failed(exc)
            return down
        self._locked_in_a_row = 0
        if self.status != "ok":
            log.info("feature store is back")
        self.status, self.last_error = "ok", None
        return [_user_features(row["features"]) for row in rows]

    def _locked(self, exc: Exception) -> None:
        with self._lock:
            self._locked_in_a_row += 1
            trip = self._locked_in_a_row >= SLOW_READS_TO_TRIP
            if trip:
                self._locked_in_a_row = 0
        if trip:
            self._failed(exc)

    def item_lookup(self) -> Any:
        """The OnlineLookup (for item statistics at model load), or None."""
        return self._connect()


# Slow calls in a row that count as a store failure (see DeadlineLookup).
SLOW_READS_TO_TRIP = 3


class DeadlineLookup:
    """Feature lookups in worker threads, each call bounded by a deadline.

    A call past the deadline answers ``unavailable`` features (flagged
    fallbacks). :data:`SLOW_READS_TO_TRIP` slow calls in a row count as a store
    failure, which starts the source's cool-down: a hung store trips it within a
    few calls, while one read slowed by a busy machine costs only its own call
    (bench/serve.py at 400/s on 2 busy cores: tripping on the first slow read
    turned 1,553 of 2,000 answers into fallbacks). With every worker thread held
    by hung reads, calls answer at once.

    Attributes:
        timeouts: calls that passed the deadline.
        last_seconds: how long the last completed read took.
    """

    def __init__(self, threads: int = LOOKUP_THREADS) -> None:
        self._threads = threads
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="feast-read")
        self._busy = 0
        self._lock = threading.Lock()
        self.timeouts = 0
        self._slow_in_a_row = 0
        self.last_seconds: float | None = None

    async def lookup(
        self,
        source: UserFeatureSource,
        user_ids: Sequence[str],
        seconds: float,
        *,
        interests: bool = True,
    ) -> list[UserFeatures]:
        """``source.lookup(user_ids, interests=...)`` within ``seconds``, else
        unavailable; an inline source (embedded sqlite) is read here, a read over
        ``seconds`` counting as slow."""
        read = partial(source.lookup, interests=interests)
        skipping = getattr(source, "skipping", None)
        if source.status == "off" or (skipping is not None and skipping()):
            return read(user_ids)  # answers without touching a store
        if getattr(source, "inline", False):
            return self._inline(source, read, user_ids, seconds)
        down = [UserFeatures(status="unavailable")] * len(user_ids)
        with self._lock:
            if self._busy >= self._threads:
                full = True
            else:
                full = False
                self._busy += 1
        if full:
            self._slow(source, TimeoutError("every feature read thread is held"))
            return down
        started = time.perf_counter()
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self._read, read, list(user_ids)
        )
        try:
            found = await asyncio.wait_for(future, seconds)
        except TimeoutError:
            FEATURE_READ.observe(seconds)
            self.timeouts += 1
            self._slow(
                source,
                TimeoutError(f"feature read took over {seconds * 1000:.0f} ms"),
            )
            return down
        with self._lock:
            self._slow_in_a_row = 0
        self.last_seconds = time.perf_counter() - started
        FEATURE_READ.observe(self.last_seconds)
        return found

    def _inline(
        self,
        source: UserFeatureSource,
        read: Callable[[Sequence[str]], list[UserFeatures]],
        user_ids: Sequence[str],
        seconds: float,
    ) -> list[UserFeatures]:
        """The read on this thread; its features are kept even when it was slow
        (the time is spent), but slow reads in a row trip the cool-down."""
        started = time.perf_counter()
        found = read(user_ids)
        took = time.perf_counter() - started
        self.last_seconds = took
        FEATURE_READ.observe(took)
        if took > seconds:
            self.timeouts += 1
            self._slow(source, TimeoutError(f"feature read took {took * 1000:.0f} ms"))
        else:
            with self._lock:
                self._slow_in_a_row = 0
        return found

    def _slow(self, source: UserFeatureSource, exc: Exception) -> None:
        with self._lock:
            self._slow_in_a_row += 1
            trip = self._slow_in_a_row >= SLOW_READS_TO_TRIP
            if trip:
                self._slow_in_a_row = 0
        if trip:
            _count_failure(source, exc)

    def _read(
        self, read: Callable[[Sequence[str]], list[UserFeatures]], user_ids: list[str]
    ) -> list[UserFeatures]:
        try:
            return read(user_ids)
        finally:
            with self._lock:
                self._busy -= 1


# sqlite's page cache of the serving connection (its default is 2 MB).
SQLITE_CACHE_BYTES = 128 * 2**20


def _tune_sqlite(store: Any, busy_timeout_ms: float) -> None:
    """The connection Feast's sqlite online store reads with (Feast opens it with
    sqlite3's defaults and has no setting for either): a busy timeout of
    ``busy_timeout_ms`` instead of 5 s, and a page cache of
    :data:`SQLITE_CACHE_BYTES`, filled now by reading the file's tables when it
    fits. Read inline, a page not in memory is a disk read on the event loop; the
    VM's kernel drops cold file pages early (2 GB of cache with 21 GB free), and a
    cold file put v1 p99 at 50-190 ms. sqlite keeps its cache while no other
    process writes the file (a push or a materialisation empties it; pages come
    back as they are read)."""
    online_store = store._get_provider().online_store
    connection = online_store._get_conn(store.config)
    connection.execute(f"PRAGMA busy_timeout = {max(int(busy_timeout_ms), 1)}")
    connection.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_BYTES // 1024}")
    try:
        size = os.path.getsize(online_store._get_db_path(store.config))
    except OSError:
        return
    if size > SQLITE_CACHE_BYTES:
        return
    tables = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
    ]
    for table in tables:  # every page of every table, through sqlite's cache
        quoted = table.replace('"', '""')
        connection.execute(f'SELECT * FROM "{quoted}"').fetchall()


def _locked(exc: BaseException) -> bool:
    """The error (or its cause) is sqlite finding the file locked by a writer."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, sqlite3.OperationalError) and "locked" in str(current):
            return True
        current = current.__cause__
    return False


def _count_failure(source: UserFeatureSource, exc: Exception) -> None:
    failed = getattr(source, "failed", None)
    if failed is not None:
        failed(exc)


def _user_features(values: dict[str, Any]) -> UserFeatures:
    vector = values.get(INTEREST_VECTOR)
    array = None
    if vector is not None and len(vector):
        array = np.asarray(vector, dtype=np.float32)
        if not np.isfinite(array).all():
            array = None
    return UserFeatures(
        interest_vector=array,
        top_interests=_json_strings(values.get(TOP_INTERESTS)),
        # Oldest first, as the request's history is: reasons use the latest.
        history=_json_strings(values.get(RECENT_ITEMS))[::-1],
        status="ok",
    )


def _json_strings(text: Any) -> tuple[str, ...]:
    """A JSON list of strings as a tuple; anything else (None, bad JSON) empty."""
    try:
        values = json.loads(text) if text else []
    except (ValueError, TypeError):
        return ()
    return tuple(str(v) for v in values) if isinstance(values, list) else ()
