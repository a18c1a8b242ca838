"""Feature store benchmark: online lookup latency, materialisation, build time.

    python bench/features.py [--quick]

Both modes build a 100k-user synthetic shop (build_seconds_100k_users), apply it,
materialise it into sqlite and into Redis at 127.0.0.1:6379 (a project of its own,
deleted after) and look users up through the Feast SDK
(``get_online_features(...).to_dict()`` for what serving reads of a user: activity
and a 64-d interest vector): one user per call (online_p50/p99_ms_*) and 100 per
call (*_100); floor_p99_ms_* read the same values without Feast (one sqlite3
SELECT per view / one redis-py HGETALL). Each latency figure is the median over
rounds of that round's percentile: the machine is shared, so per-round values and
the load average are printed too ("rounds", "load_avg").

Full (no --quick): also times build + apply + materialise of a 1M-user / 20M-event
shop into sqlite in a child process (build_materialize_seconds_1m_users,
peak_rss_gb); the shop is generated once and cached under .work/bench/features/.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from interest_graph.config import SynthConfig
from interest_graph.data.synth import generate_shop

if TYPE_CHECKING:
    from feast import FeatureStore

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".work" / "bench" / "features"
INTEREST_DIM = 64


def shop_config(users: int) -> SynthConfig:
    """The bench/synth.py shape: 10 items and 20 events per user, 50 categories."""
    return SynthConfig(users=users, items=users // 10, events=20 * users, categories=50)


def cached_shop(users: int) -> Path:
    """A canonical data folder for the shop, generated once."""
    folder = WORK / f"shop_{users}"
    if not (folder / "events.parquet").is_file():
        generate_shop(shop_config(users)).write(folder)
    return folder


def write_interest_vectors(features: Path, user_ids: list[str]) -> None:
    """What the GNN stage would push, as its batch table: one vector per user."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(user_ids), INTEREST_DIM), dtype=np.float32)
    table = pa.table(
        {
            "user_id": user_ids,
            "interest_vector": pa.FixedSizeListArray.from_arrays(
                vectors.ravel(), INTEREST_DIM
            ).cast(pa.list_(pa.float32())),
            "top_interests": [json.dumps(["garden", "toys"])] * len(user_ids),
            "event_timestamp": pa.array(
                [pd.Timestamp("2026-04-05", tz="UTC")] * len(user_ids),
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    pq.write_table(table, features / "user_interests.parquet")


def percentiles(
    call: Callable[[int], object], rounds: int, per_round: int
) -> list[tuple[float, float]]:
    """(p50, p99) in ms for each round of ``per_round`` calls (after a warm-up)."""
    for i in range(50):
        call(i)
    out = []
    for r in range(rounds):
        times = np.empty(per_round)
        for i in range(per_round):
            started = time.perf_counter()
            call(r * per_round + i)
            times[i] = time.perf_counter() - started
        times *= 1000
        out.append((float(np.percentile(times, 50)), float(np.percentile(times, 99))))
    return out


def sdk_lookup(
    store: FeatureStore, refs: list[str], rows: list[list[str]]
) -> Callable[[int], object]:
    """The i-th lookup: the users ``rows[i]`` through the Feast SDK."""

    def call(i: int) -> object:
        return store.get_online_features(
            features=refs, entity_rows={"user_id": rows[i]}
        ).to_dict()

    return call


def median_of(rounds: list[tuple[float, float]], which: int) -> float:
    return round(float(np.median([r[which] for r in rounds])), 3)


def pipeline_1m(data: Path, features: Path) -> None:
    """Child process: build + apply + materialise, one JSON line with seconds."""
    from interest_graph.features import (
        apply_repo,
        build_features,
        materialize,
        open_store,
    )

    started = time.perf_counter()
    build_features(data, features)
    built = time.perf_counter()
    apply_repo(features)
    results = materialize(open_store(features))
    done = time.perf_counter()
    rows = sum(r.entities for r in results)
    print(
        json.dumps(
            {
                "build_seconds": round(built - started, 1),
                "materialize_seconds": round(done - built, 1),
                "rows": rows,
            }
        )
    )


def run_1m() -> dict[str, float]:
    data = cached_shop(1_000_000)
    features = WORK / "features_1m"
    shutil.rmtree(features, ignore_errors=True)
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, __file__, "--pipeline-1m", str(data), str(features)],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    inner = json.loads(child.stdout.strip().splitlines()[-1])
    shutil.rmtree(features, ignore_errors=True)
    # ru_maxrss is in KiB on Linux; the only child that ran is the pipeline.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return {
        "build_materialize_seconds_1m_users": round(wall, 1),
        "build_seconds_1m_users": inner["build_seconds"],
        "materialize_seconds_1m_users": inner["materialize_seconds"],
        "peak_rss_gb": round(peak, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="under a minute")
    parser.add_argument("--pipeline-1m", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pipeline_1m:
        pipeline_1m(*args.pipeline_1m)
        return

    result: dict[str, object] = {}
    if not args.quick:
        result.update(run_1m())  # first: its child's RSS is the only one measured

    from interest_graph.features import (
        StoreProfile,
        apply_repo,
        build_features,
        materialize,
        open_store,
    )
    from interest_graph.features.online import OnlineLookup

    load_before = os.getloadavg()[0]
    data = cached_shop(100_000)
    features = WORK / "features_100k"
    shutil.rmtree(features, ignore_errors=True)
    started = time.perf_counter()
    build_features(data, features)
    result["build_seconds_100k_users"] = round(time.perf_counter() - started, 2)
    user_ids = pd.read_parquet(data / "users.parquet", columns=["user_id"])
    ids = user_ids["user_id"].tolist()
    write_interest_vectors(features, ids)

    sqlite_profile = StoreProfile(online_store="sqlite")
    project = f"bench_{uuid.uuid4().hex[:10]}"
    redis_profile = StoreProfile(online_store="redis", project=project)
    apply_repo(features, sqlite_profile)
    sqlite_store = open_store(features, sqlite_profile)
    started = time.perf_counter()
    written = sum(r.entities for r in materialize(sqlite_store))
    result["materialize_rows_per_s"] = round(written / (time.perf_counter() - started))

    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        apply_repo(features, redis_profile)
        redis_store = open_store(features, redis_profile)
        user_views = ["user_activity", "user_interest_vectors"]
        started = time.perf_counter()
        written = sum(r.entities for r in materialize(redis_store, views=user_views))
        result["materialize_rows_per_s_redis"] = round(
            written / (time.perf_counter() - started)
        )

        rounds, per_round, per_round_100 = (
            (3, 300, 30) if args.quick else (7, 2000, 200)
        )
        rng = random.Random(0)
        singles = [[rng.choice(ids)] for _ in range(rounds * per_round + 50)]
        batches = [rng.sample(ids, 100) for _ in range(rounds * per_round_100 + 50)]
        refs = OnlineLookup(sqlite_store).refs["user_id"]
        measured: dict[str, list[tuple[float, float]]] = {}
        for name, store in (("sqlite", sqlite_store), ("redis", redis_store)):
            measured[name] = percentiles(
                sdk_lookup(store, refs, singles), rounds, per_round
            )
            measured[f"{name}_100"] = percentiles(
                sdk_lookup(store, refs, batches), rounds, per_round_100
            )

        tables = [f"interest_graph_{view}" for view in user_views]
        connection = sqlite3.connect(features / "online.db")
        keys = {i: _sqlite_key(i) for i in ids}

        def floor_sqlite(i: int) -> object:
            key = keys[singles[i][0]]
            return [
                connection.execute(
                    f"SELECT feature_name, value FROM {t} WHERE entity_key = ?", (key,)
                ).fetchall()
                for t in tables
            ]

        redis_keys: dict[str, Any] = {i: keys[i] + project.encode() for i in ids}

        def floor_redis(i: int) -> object:
            return client.hgetall(redis_keys[singles[i][0]])

        measured["floor_sqlite"] = percentiles(floor_sqlite, rounds, per_round)
        measured["floor_redis"] = percentiles(floor_redis, rounds, per_round)
    finally:
        stale = list(client.scan_iter(match=b"*" + project.encode(), count=10_000))
        for start in range(0, len(stale), 10_000):
            client.delete(*stale[start : start + 10_000])
        shutil.rmtree(features, ignore_errors=True)

    result["online_p50_ms_sqlite"] = median_of(measured["sqlite"], 0)
    result["online_p99_ms_sqlite"] = median_of(measured["sqlite"], 1)
    result["online_p50_ms_redis"] = median_of(measured["redis"], 0)
    result["online_p99_ms_redis"] = median_of(measured["redis"], 1)
    result["online_p99_ms_sqlite_100"] = median_of(measured["sqlite_100"], 1)
    result["online_p99_ms_redis_100"] = median_of(measured["redis_100"], 1)
    result["floor_p99_ms_sqlite"] = median_of(measured["floor_sqlite"], 1)
    result["floor_p99_ms_redis"] = median_of(measured["floor_redis"], 1)
    result["rounds"] = {
        name: [round(p99, 3) for _, p99 in values] for name, values in measured.items()
    }
    result["load_avg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["machine"] = f"{platform.machine()} {os.cpu_count()} CPUs"
    print(json.dumps(result))


def _sqlite_key(user_id: str) -> bytes:
    """Feast's serialized entity key, the row key of its sqlite and Redis stores."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    key = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user_id)])
    return serialize_entity_key(key, entity_key_serialization_version=3)


if __name__ == "__main__":
    main()
