"""The Feast repo on sqlite + duckdb in a temp dir: point in time, online lookups."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from feast import FeatureStore
from typer.testing import CliRunner

from interest_graph.cli.features import features_app
from interest_graph.config import Settings
from interest_graph.errors import ConfigError
from interest_graph.features import (
    FeatureStoreError,
    FeatureTableError,
    OnlineStoreUnavailableError,
    StoreProfile,
    apply_repo,
    build_features,
    get_online,
    materialize,
    open_store,
    push_user_interests,
    status,
    training_frame,
)
from interest_graph.features.online import ViewReader
from interest_graph.features.repo import default_repo_dir, repo_config
from interest_graph.schema import ShopTables

EMBEDDING = [0.5, -0.25, 0.125, 1.0]


def _stamp(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def _pit_shop() -> ShopTables:
    """U1 views on Jan 10, views and buys on Jan 12, comes back in April; U2 never."""
    rows = [
        ("U1", "I1", "view", "2026-01-10 10:00", 1, 10.0),
        ("U1", "I2", "view", "2026-01-12 09:00", 1, 7.5),
        ("U1", "I2", "purchase", "2026-01-12 09:30", 2, 5.0),
        ("U1", "I1", "view", "2026-01-12 12:00", 1, 10.0),
        ("U1", "I1", "view", "2026-04-20 08:00", 1, 10.0),
    ]
    events = pd.DataFrame(
        rows,
        columns=["user_id", "item_id", "event_type", "timestamp", "quantity", "price"],
    )
    events["timestamp"] = pd.to_datetime(events["timestamp"])
    items = pd.DataFrame(
        {
            "item_id": ["I1", "I2"],
            "title": ["Rake", "Kite"],
            "description": ["a rake", "a kite"],
            "category": ["garden", "toys"],
            "price": [10.0, 7.5],
            "first_seen": pd.to_datetime(["2026-01-01", "2026-01-01"]),
        }
    )
    users = pd.DataFrame(
        {
            "user_id": ["U1", "U2"],
            "country": ["GB", "DE"],
            "first_seen": pd.to_datetime(["2026-01-10", "2026-01-01"]),
        }
    )
    return ShopTables(events=events, items=items, users=users)


def _write_embeddings(folder: Path, item_ids: list[str]) -> None:
    table = pa.table(
        {
            "item_id": item_ids,
            "text_embedding": pa.array(
                [EMBEDDING] * len(item_ids), pa.list_(pa.float32())
            ),
            "text_model": ["test-model"] * len(item_ids),
            "event_timestamp": pa.array(
                [datetime(2026, 1, 1, tzinfo=UTC)] * len(item_ids),
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    pq.write_table(table, folder / "item_text_embeddings.parquet")


@pytest.fixture(scope="module")
def pit_store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    root = tmp_path_factory.mktemp("pit")
    _pit_shop().write(root / "data")
    features = root / "features"
    build_features(root / "data", features)
    _write_embeddings(features, ["I2"])
    apply_repo(features)
    store = open_store(features)
    materialize(store)
    return store


@pytest.fixture(scope="module")
def features_dir(
    tmp_path_factory: pytest.TempPathFactory, small_shop_dir: Path
) -> Path:
    folder = tmp_path_factory.mktemp("repo") / "features"
    build_features(small_shop_dir, folder)
    _write_embeddings(folder, ["I000001", "I000002"])
    apply_repo(folder)
    materialize(open_store(folder))
    return folder


@pytest.fixture
def scratch(tmp_path: Path, features_dir: Path) -> Path:
    """A private copy of the applied repo, to break or extend."""
    folder = tmp_path / "features"
    shutil.copytree(features_dir, folder)
    # The registry records absolute table paths: re-apply for the copy.
    apply_repo(folder)
    return folder


def _entity_rows(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_timestamp"])
    frame["event_timestamp"] = pd.to_datetime(
        frame["event_timestamp"], utc=True, format="ISO8601"
    )
    frame["label"] = range(len(frame))
    return frame


def test_training_frame_uses_only_events_before_the_row(
    pit_store: FeatureStore,
) -> None:
    rows = _entity_rows(
        [
            # At the purchase itself: the 09:00 view and the purchase must not count.
            ("U1", "I2", "2026-01-12 09:30"),
            ("U1", "I2", "2026-01-12 23:59:59"),
            # The next midnight sees all of Jan 12.
            ("U1", "I2", "2026-01-13 00:00"),
        ]
    )
    frame = training_frame(rows, pit_store)
    at_purchase, late_same_day, next_day = frame.to_dict("records")
    for row in (at_purchase, late_same_day):
        assert row["user_activity__views_7d"] == 1  # leaky: 2 or 3
        assert row["user_activity__purchases_7d"] == 0  # leaky: 1
        assert row["user_activity__spend_30d"] == 0.0  # leaky: 10.0
        assert row["user_activity__days_since_last_event"] == pytest.approx(38 / 24)
        assert list(row["user_activity__favourite_categories"]) == ["garden"]
        assert row["item_statistics__views_7d"] == 0  # leaky: 1
        assert row["item_statistics__price"] == 7.5  # catalogue: nothing paid yet
        assert pd.isna(row["item_statistics__conversion_30d"])
    assert next_day["user_activity__views_7d"] == 3
    assert next_day["user_activity__purchases_7d"] == 1
    assert next_day["user_activity__spend_30d"] == 10.0
    assert next_day["user_activity__days_since_last_event"] == pytest.approx(0.5)
    assert list(next_day["user_activity__favourite_categories"]) == ["garden", "toys"]
    assert next_day["item_statistics__purchases_7d"] == 1
    assert next_day["item_statistics__conversion_30d"] == 1.0
    assert next_day["item_statistics__price"] == 5.0
    assert list(next_day["item_text_embeddings__text_embedding"]) == EMBEDDING
    assert list(frame["label"]) == [0, 1, 2]


def test_every_entity_row_comes_back(pit_store: FeatureStore) -> None:
    rows = _entity_rows(
        [
            ("U1", "I1", "2026-07-30 12:00"),  # newest snapshot 100 days old > TTL
            ("U1", "I2", "2026-01-12 09:30"),
            ("U2", "I1", "2026-01-15 00:00"),  # only snapshot is later
            ("U9", "I9", "2026-01-15 00:00"),  # unknown ids
            ("U1", "I1", "2025-06-01 00:00"),  # before any data
            ("U1", "I2", "2026-01-12 09:30"),  # duplicate rows stay duplicates
        ]
    )
    frame = training_frame(rows, pit_store)
    assert len(frame) == len(rows)
    assert list(frame["label"]) == list(rows["label"])
    assert list(frame["user_id"]) == list(rows["user_id"])
    views = frame["user_activity__views_7d"]
    assert views.isna().tolist() == [True, False, True, True, True, False]


def test_training_frame_names_missing_entity_columns(pit_store: FeatureStore) -> None:
    rows = _entity_rows([("U1", "I2", "2026-01-12 09:30")]).drop(columns="item_id")
    with pytest.raises(ConfigError, match="item_id"):
        training_frame(rows, pit_store)


def _latest(folder: Path, table: str, key: str) -> pd.DataFrame:
    frame = pd.read_parquet(folder / f"{table}.parquet")
    return frame.sort_values("event_timestamp").groupby(key).tail(1).set_index(key)


def _same(got: object, expected: object) -> bool:
    if isinstance(expected, np.ndarray | list):
        return list(got) == list(expected)  # type: ignore[call-overload]
    if expected is None or (isinstance(expected, float) and np.isnan(expected)):
        return got is None
    return got == pytest.approx(expected)


def test_online_values_equal_the_latest_offline_rows(features_dir: Path) -> None:
    store = open_store(features_dir)
    users = _latest(features_dir, "user_activity", "user_id").sample(25, random_state=0)
    items = _latest(features_dir, "item_statistics", "item_id").sample(
        25, random_state=0
    )
    online = get_online(store, list(users.index), list(items.index))
    for found, (_, expected) in zip(online["users"], users.iterrows(), strict=True):
        for name, value in expected.drop("event_timestamp").items():
            got = found["features"][f"user_activity__{name}"]
            assert _same(got, value), (found["user_id"], name, got, value)
    for found, (_, expected) in zip(online["items"], items.iterrows(), strict=True):
        for name, value in expected.drop("event_timestamp").items():
            assert _same(found["features"][f"item_statistics__{name}"], value), name
    embedded = get_online(store, item_ids=["I000001"])["items"][0]["features"]
    assert embedded["item_text_embeddings__text_embedding"] == pytest.approx(EMBEDDING)


def _dump(folder: Path, project: str = "interest_graph") -> list[tuple]:
    with sqlite3.connect(folder / "online.db") as connection:
        rows = []
        for view in ("user_activity", "item_statistics", "item_text_embeddings"):
            rows += connection.execute(
                "SELECT entity_key, feature_name, value, value_text, event_ts, "
                f"created_ts FROM {project}_{view} ORDER BY entity_key, feature_name"
            ).fetchall()
    return rows


def test_materialising_twice_changes_nothing(scratch: Path) -> None:
    first = materialize(open_store(scratch), full=True)
    assert {r.view: r.entities for r in first}["user_activity"] == 400
    before = _dump(scratch)
    intervals = open_store(scratch).get_feature_view("user_activity")
    second = materialize(open_store(scratch))
    assert all(r.entities == 0 for r in second)
    assert _dump(scratch) == before
    again = open_store(scratch).get_feature_view("user_activity")
    assert again.materialization_intervals == intervals.materialization_intervals


def test_bulk_sqlite_writer_writes_what_feast_writes(
    scratch: Path, tmp_path: Path
) -> None:
    materialize(open_store(scratch))
    reference = tmp_path / "reference"
    reference.mkdir()
    for table in scratch.glob("*.parquet"):
        shutil.copy(table, reference)
    apply_repo(reference)
    store = open_store(reference)
    store.materialize(
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime.now(UTC),
        feature_views=["user_activity", "item_statistics", "item_text_embeddings"],
    )
    assert _dump(scratch) == _dump(reference)


def test_unknown_ids_come_back_flagged_missing(features_dir: Path) -> None:
    store = open_store(features_dir)
    result = get_online(store, ["no-such-user", "U0000001"], ["no-such-item"])
    unknown, known = result["users"]
    assert unknown["found"] is False
    assert set(unknown["missing"]) == set(unknown["features"])
    assert all(v is None for v in unknown["features"].values())
    assert known["found"] is True
    assert "user_activity__views_7d" not in known["missing"]
    # Nothing was pushed yet: the interest vector is missing, not an error.
    assert "user_interest_vectors__interest_vector" in known["missing"]
    assert result["items"][0]["found"] is False


def test_wrong_schema_names_the_view_and_column(scratch: Path) -> None:
    table = pq.read_table(scratch / "item_text_embeddings.parquet")
    doubles = table.set_column(
        1,
        "text_embedding",
        table.column("text_embedding").cast(pa.list_(pa.float64())),
    )
    pq.write_table(doubles, scratch / "item_text_embeddings.parquet")
    store = open_store(scratch)
    message = r"'item_text_embeddings': column 'text_embedding' has type list<"
    with pytest.raises(FeatureTableError, match=message):
        materialize(store)
    with pytest.raises(FeatureTableError, match=message):
        apply_repo(scratch)
    pq.write_table(
        table.drop_columns(["text_model"]), scratch / "item_text_embeddings.parquet"
    )
    with pytest.raises(FeatureTableError, match="column 'text_model' is missing"):
        training_frame(_entity_rows([("U0000001", "I000001", "2026-02-01")]), store)


def test_status_tracks_new_rows_until_materialised(scratch: Path) -> None:
    store = open_store(scratch)
    assert all(not s.stale for s in status(store))
    path = scratch / "user_activity.parquet"
    table = pq.read_table(path)
    later = datetime.now(UTC) + timedelta(days=1)
    extra = table.slice(0, 1).set_column(
        1, "event_timestamp", pa.array([later], pa.timestamp("us", tz="UTC"))
    )
    pq.write_table(pa.concat_tables([table, extra]), path)
    views = {s.view: s for s in status(store)}
    assert views["user_activity"].stale
    assert views["user_activity"].offline_latest == later.replace(
        microsecond=later.microsecond
    )
    assert not views["item_statistics"].stale
    assert views["user_interest_vectors"].push_source
    assert not views["user_activity"].push_source
    results = {r.view: r.entities for r in materialize(store)}
    assert results == {
        "user_activity": 1,
        "item_statistics": 0,
        "item_text_embeddings": 0,
        "user_interest_vectors": 0,
        "user_recent_items": 0,
    }
    assert not any(s.stale for s in status(store))


def test_pushed_interest_vectors_are_served(scratch: Path) -> None:
    store = open_store(scratch)
    frame = pd.DataFrame(
        {
            "user_id": ["U0000001"],
            "interest_vector": [np.asarray(EMBEDDING, dtype=np.float32)],
            "top_interests": [json.dumps(["garden", "toys"])],
            "event_timestamp": [pd.Timestamp.now(tz="UTC")],
        }
    )
    assert push_user_interests(store, frame) == 1
    features = get_online(store, ["U0000001"])["users"][0]["features"]
    assert features["user_interest_vectors__interest_vector"] == pytest.approx(
        EMBEDDING
    )
    assert json.loads(features["user_interest_vectors__top_interests"]) == [
        "garden",
        "toys",
    ]
    assert pq.read_table(scratch / "user_interests.parquet").num_rows == 1
    with pytest.raises(FeatureTableError, match="'interest_vector'"):
        push_user_interests(store, frame.assign(interest_vector=["not a vector"]))

    # The serving path's direct read returns the same values; unknown ids None.
    direct = ViewReader(store, "user_interest_vectors").read(["U0000001", "nobody"])
    assert direct[1] is None
    assert direct[0] is not None
    vector = direct[0]["user_interest_vectors__interest_vector"]
    assert vector.dtype == np.float32
    np.testing.assert_array_equal(
        vector,
        np.asarray(features["user_interest_vectors__interest_vector"], np.float32),
    )
    assert (
        direct[0]["user_interest_vectors__top_interests"]
        == features["user_interest_vectors__top_interests"]
    )


def test_profile_takes_explicit_then_environment_then_default(tmp_path: Path) -> None:
    env = StoreProfile().environment(tmp_path, environ={})
    assert env["FEAST_ONLINE_STORE"] == "sqlite"
    assert env["FEAST_REGISTRY"] == str(tmp_path.resolve() / "registry.db")
    assert env["INTEREST_GRAPH_FEATURES_DIR"] == str(tmp_path.resolve())
    outside = {"FEAST_ONLINE_STORE": "redis", "REDIS_CONNECTION_STRING": "h:1"}
    env = StoreProfile().environment(tmp_path, environ=outside)
    assert env["FEAST_ONLINE_STORE"] == "redis"
    assert env["REDIS_CONNECTION_STRING"].startswith("h:1,")
    env = StoreProfile(online_store="sqlite").environment(tmp_path, environ=outside)
    assert env["FEAST_ONLINE_STORE"] == "sqlite"


def test_one_yaml_serves_every_profile(tmp_path: Path) -> None:
    embedded = repo_config(tmp_path, StoreProfile(online_store="sqlite"))
    assert embedded.online_store.type == "sqlite"
    assert embedded.online_store.path == str(tmp_path.resolve() / "online.db")
    assert embedded.offline_store.type == "duckdb"
    production = repo_config(
        tmp_path,
        StoreProfile(
            online_store="redis",
            redis_connection_string="redis.prod:6380,ssl=true",
            registry="s3://bucket/registry.db",
            offline_store="remote",
        ),
    )
    assert production.online_store.type == "redis"
    assert production.online_store.connection_string == (
        "redis.prod:6380,ssl=true,socket_connect_timeout=1,socket_timeout=1,retry=null"
    )
    assert production.registry.path == "s3://bucket/registry.db"
    assert (production.offline_store.type, production.offline_store.port) == (
        "remote",
        8815,
    )


def test_unset_yaml_variable_is_a_config_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(default_repo_dir(), repo)
    yaml_path = repo / "feature_store.yaml"
    yaml_path.write_text(yaml_path.read_text() + "x-extra: ${NOT_A_SETTING}\n")
    with pytest.raises(ConfigError, match="NOT_A_SETTING"):
        repo_config(tmp_path, StoreProfile(repo_dir=repo))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_redis_is_a_clear_error(features_dir: Path) -> None:
    address = f"127.0.0.1:{_closed_port()}"
    store = open_store(
        features_dir,
        StoreProfile(online_store="redis", redis_connection_string=address),
    )
    with pytest.raises(
        OnlineStoreUnavailableError, match=f"Redis online store at {address}"
    ):
        get_online(store, ["U0000001"])
    with pytest.raises(OnlineStoreUnavailableError):
        materialize(store, views=["item_text_embeddings"], full=True)


def _cli(tmp_path: Path) -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = Settings(paths={"work_dir": tmp_path / "work"})

    app.add_typer(features_app, name="features")
    return app


def test_cli_get_prints_json_and_errors_are_one_line(
    features_dir: Path, scratch: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    app = _cli(tmp_path)
    folder = ["--features-dir", str(features_dir)]
    result = runner.invoke(app, ["features", "get", "--user", "U0000001", *folder])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["users"][0]["found"] is True
    result = runner.invoke(app, ["features", "status", *folder])
    assert json.loads(result.stdout)["stale"] is False
    result = runner.invoke(app, ["features", "get", *folder])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: give at least one --user or --item"
    pq.write_table(
        pq.read_table(scratch / "user_activity.parquet").drop_columns(["views_7d"]),
        scratch / "user_activity.parquet",
    )
    result = runner.invoke(
        app, ["features", "materialize", "--full", "--features-dir", str(scratch)]
    )
    assert result.exit_code == 2
    assert "'user_activity': column 'views_7d' is missing" in result.stderr
    assert "Traceback" not in result.output


def test_a_store_that_was_never_applied_says_so(tmp_path: Path) -> None:
    with pytest.raises(FeatureStoreError, match="run `interest-graph features apply`"):
        open_store(tmp_path / "features")
    assert not (tmp_path / "features").exists()  # nothing was created on the way
