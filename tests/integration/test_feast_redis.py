"""The production online store: Redis at 127.0.0.1:6379 (CI runs one)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pandas as pd
import pytest
import redis

from interest_graph.features import (
    StoreProfile,
    apply_repo,
    build_features,
    get_online,
    materialize,
    open_store,
    status,
)
from interest_graph.features.online import ViewReader

pytestmark = pytest.mark.integration

REDIS = "127.0.0.1:6379"


@pytest.fixture
def redis_profile() -> Iterator[StoreProfile]:
    """A project of its own (Redis keys end with it); its keys are deleted after."""
    project = f"it_{uuid.uuid4().hex[:12]}"
    yield StoreProfile(
        online_store="redis", redis_connection_string=REDIS, project=project
    )
    client = redis.Redis(host="127.0.0.1", port=6379)
    keys = list(client.scan_iter(match=b"*" + project.encode(), count=10_000))
    if keys:
        client.delete(*keys)


def _project_keys(project: str) -> dict[bytes, dict[bytes, bytes]]:
    client = redis.Redis(host="127.0.0.1", port=6379)
    keys = client.scan_iter(match=b"*" + project.encode(), count=10_000)
    return {key: cast(dict[bytes, bytes], client.hgetall(key)) for key in keys}


def test_redis_serves_the_latest_offline_values_and_rematerialising_is_a_no_op(
    tmp_path: Path, small_shop_dir: Path, redis_profile: StoreProfile
) -> None:
    features = tmp_path / "features"
    build_features(small_shop_dir, features)
    apply_repo(features, redis_profile)
    store = open_store(features, redis_profile)
    assert store.config.online_store.type == "redis"
    first = {r.view: r.entities for r in materialize(store)}
    assert first["user_activity"] == 400
    assert not any(s.stale for s in status(store))

    assert redis_profile.project is not None
    stored = _project_keys(redis_profile.project)
    assert len(stored) == 400 + 200  # one hash per user and per item
    assert all(
        r.entities == 0 for r in materialize(open_store(features, redis_profile))
    )
    assert _project_keys(redis_profile.project) == stored

    table = pd.read_parquet(features / "user_activity.parquet")
    latest = table.sort_values("event_timestamp").groupby("user_id").tail(1)
    sample = latest.set_index("user_id").sample(20, random_state=0)
    online = get_online(store, [*sample.index, "no-such-user"])["users"]
    for found, (_, expected) in zip(online, sample.iterrows(), strict=False):
        assert found["found"]
        for name in ("views_7d", "purchases_90d", "spend_90d"):
            got = found["features"][f"user_activity__{name}"]
            assert got == pytest.approx(expected[name]), name
        assert found["features"]["user_activity__favourite_categories"] == list(
            expected["favourite_categories"]
        )
    assert online[-1]["found"] is False

    # The serving path's direct read agrees with get_online_features on Redis.
    reader = ViewReader(store, "user_activity")
    direct = reader.read([*sample.index, "no-such-user"])
    assert direct[-1] is None
    for found, values in zip(online[:-1], direct[:-1], strict=True):
        assert values is not None
        for name in ("views_7d", "purchases_90d", "spend_90d"):
            key = f"user_activity__{name}"
            assert values[key] == pytest.approx(found["features"][key]), name
