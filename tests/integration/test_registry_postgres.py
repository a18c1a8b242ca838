"""The production registry backend: MLflow on PostgreSQL at 127.0.0.1:5432 (CI has
one). Each test gets a database of its own, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

from interest_graph import registry
from interest_graph.config import Settings
from interest_graph.models.artifact import ModelArtifact

pytestmark = pytest.mark.integration


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
            connect_timeout=2,
            autocommit=True,
        )
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc})")


@pytest.fixture
def postgres_uri() -> Iterator[str]:
    name = f"mlflow_it_{uuid.uuid4().hex[:10]}"
    admin = _admin()
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        )
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.close()


def test_register_promote_and_load_on_postgres(
    postgres_uri: str, tmp_path: Path
) -> None:
    settings = Settings(
        paths={"work_dir": tmp_path / "work"},
        registry={
            "tracking_uri": postgres_uri,
            "artifact_location": (tmp_path / "artifacts").as_uri(),
        },
    )
    rng = np.random.default_rng(0)
    versions = []
    for ndcg in (0.10, 0.09, 0.13):
        artifact = ModelArtifact(
            model="lightgcn",
            config={"protocol": "shop-temporal"},
            user_ids=np.array(["u1", "u2"], dtype=object),
            item_ids=np.array(["i1", "i2", "i3"], dtype=object),
            tensors={
                "user_vectors": rng.normal(size=(2, 4)).astype(np.float32),
                "item_vectors": rng.normal(size=(3, 4)).astype(np.float32),
            },
        ).save(tmp_path / f"model-{ndcg}")
        version = registry.register(
            artifact,
            {"shop-temporal": {"ndcg@20": ndcg}},
            settings,
            protocol="shop-temporal",
            lineage={"data_fingerprint": f"fp-{ndcg}"},
        ).version
        versions.append((version, registry.promote(settings, version).promoted))

    assert [promoted for _, promoted in versions] == [True, False, True]
    listed = registry.list_versions(settings)
    assert [v.version for v in listed] == ["3", "2", "1"]
    assert listed[0].aliases == ("champion",) and listed[1].aliases == ("challenger",)
    assert listed[2].tags["lineage.data_fingerprint"] == "fp-0.1"

    resolved = registry.resolve_model_uri("models:/recommender@champion", settings)
    loaded = ModelArtifact.load(resolved.path)
    original = ModelArtifact.load(tmp_path / "model-0.13")
    np.testing.assert_array_equal(loaded.item_vectors, original.item_vectors)

    registry.rollback(settings)
    assert registry.alias_version("recommender", "champion", settings) == "1"
