"""The bench's two models and their Feast stores, built from scratch and cached.

* ``online_retail``: a LightGCN trained on the real Online Retail file (a few
  epochs, no early stopping: the bench measures serving, not quality), with the
  shop's feature store built, materialised and the interest vectors pushed, the
  way ``interest-graph run --online-retail`` does it.
* ``hybrid``: the hybrid ranker (``train.model: hybrid``, default settings)
  trained on ``online-retail-temporal``, served with the ``online_retail``
  model's feature store (same shop, same users and items). Training takes
  minutes, so the artifact is kept under ``.work/bench/hybrid/<key>/``, the key
  a hash of the data file (path, size, mtime) and the settings that shape it
  (``hybrid``, ``train``, ``text``); ``bench/served_quality.py`` reuses it.
* ``catalog_100k``: a synthetic artifact (20k users x 100k items, 64-d, clustered
  random vectors from a fixed seed, titled items) written with ``ModelArtifact``
  directly, and a Feast store holding only its users' pushed interest vectors.

Everything lands under ``.work/bench/serve/``; a ``built.json`` marker makes a
rerun skip the build.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / ".work" / "bench" / "serve"
ONLINE_RETAIL = REPO.parent / "shared" / "data" / "online_retail"
ONLINE_RETAIL = ONLINE_RETAIL / "Online_Retail.parquet"
MARKER = "built.json"
# Bump when what a build writes changes (2: full feature store, user_recent_items).
BUILD_VERSION = 2
# Pushed interest vectors live 90 days in Feast (the view's TTL): rebuild sooner.
MAX_AGE_S = 30 * 86400
# A serving bench needs vectors of the right shape, not a tuned model.
QUICK_TRAIN = {
    "model": "lightgcn",
    "epochs": 5,
    "early_stopping": False,
    "refit": False,
}
SYNTH_USERS = 20_000
SYNTH_ITEMS = 100_000
SYNTH_DIM = 64
SYNTH_CATEGORIES = 50
SYNTH_SEED = 7
SYNTH_PURCHASES = 10  # per user: the history a server excludes
# The canonical tables of each model, under <work_dir>/data/.
DATA_FOLDER = {"online_retail": "online-retail", "catalog_100k": "synthetic"}


@dataclass(frozen=True)
class BenchModel:
    """A model the bench serves: its artifact, its Feast store and its users."""

    name: str
    artifact: Path
    work_dir: Path
    features_dir: Path
    data_dir: Path
    user_ids: list[str]
    n_items: int
    description: str

    def server_env(self, feast: bool = True) -> dict[str, str]:
        """Settings for a server on this model: its Feast store and inference log.

        With Feast on, the server reads users' purchases (``user_recent_items``)
        and item categories and prices (``item_statistics``) from it; without,
        from the canonical events and items files.
        """
        prefix = "INTEREST_GRAPH__"
        env = {
            f"{prefix}PATHS__WORK_DIR": str(self.work_dir),
            f"{prefix}FEATURES__FEATURES_DIR": str(self.features_dir),
            f"{prefix}SERVING__FEAST": str(feast).lower(),
            f"{prefix}SERVING__INFERENCE_LOG_ENABLED": "true",
        }
        if not feast:  # Feast gives purchases and categories; without it, files do
            env[f"{prefix}SERVING__HISTORY_PATH"] = str(
                self.data_dir / "events.parquet"
            )
            env[f"{prefix}SERVING__ITEMS_PATH"] = str(self.data_dir / "items.parquet")
        return env


def settings_for(work_dir: Path) -> Any:
    """Platform settings rooted at ``work_dir`` (data, features, runs)."""
    from interest_graph.config import Settings

    return Settings(
        paths={"work_dir": work_dir}, features={"features_dir": work_dir / "features"}
    )


def _cached(root: Path) -> dict[str, Any] | None:
    """The build facts of a model built within ``MAX_AGE_DAYS`` by this version of
    the build, else None."""
    marker = root / MARKER
    if marker.is_file() and time.time() - marker.stat().st_mtime < MAX_AGE_S:
        facts = dict(json.loads(marker.read_text(encoding="utf-8")))
        if facts.get("build_version") == BUILD_VERSION:
            return facts
    return None


def _finish(root: Path, facts: dict[str, Any]) -> dict[str, Any]:
    facts = {**facts, "build_version": BUILD_VERSION}
    (root / MARKER).write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    return facts


def _load(name: str, root: Path, facts: dict[str, Any]) -> BenchModel:
    import pandas as pd

    artifact = root / "model" / "model"
    users = pd.read_parquet(artifact / "users.parquet")["user_id"].astype(str)
    return BenchModel(
        name=name,
        artifact=artifact,
        work_dir=root / "work",
        features_dir=root / "work" / "features",
        data_dir=root / "work" / "data" / DATA_FOLDER[name],
        user_ids=users.tolist(),
        n_items=int(facts["items"]),
        description=str(facts["description"]),
    )


def online_retail_model(source: Path = ONLINE_RETAIL) -> BenchModel:
    """The Online Retail LightGCN with its full feature store (built once)."""
    root = WORK / "online_retail"
    facts = _cached(root)
    if facts is None:
        facts = _build_online_retail(root, source)
    return _load("online_retail", root, facts)


def _build_online_retail(root: Path, source: Path) -> dict[str, Any]:
    """Ingest, feature store, training and push; a trained model is kept."""
    from interest_graph.models.artifact import ModelArtifact, is_artifact
    from interest_graph.stages import embed, features, ingest, interests, train

    settings = settings_for(root / "work")
    settings = settings.model_copy(
        update={"train": settings.train.model_copy(update=QUICK_TRAIN)}
    )
    started = time.perf_counter()
    shutil.rmtree(settings.features_dir, ignore_errors=True)
    data_dir = settings.paths.data_dir / "online-retail"
    ingest("online-retail", source, data_dir, settings)
    features(data_dir, settings)  # as the pipeline does
    embed(data_dir, settings, materialize=True)
    artifact_dir = root / "model" / "model"
    if not is_artifact(artifact_dir):
        train("online-retail-temporal", source, root / "model", settings)
    pushed = interests(artifact_dir, settings, push=True).pushed
    artifact = ModelArtifact.load(artifact_dir)
    return _finish(
        root,
        {
            "items": len(artifact.item_ids),
            "users": len(artifact.user_ids),
            "pushed_interests": pushed,
            "build_seconds": round(time.perf_counter() - started, 1),
            "description": "LightGCN (5 epochs) on the real Online Retail file; "
            "Feast: activity, item statistics, recent items, text embeddings, "
            "interest vectors",
        },
    )


HYBRID_WORK = REPO / ".work" / "bench" / "hybrid"
HYBRID_PROTOCOL = "online-retail-temporal"


def hybrid_key(source: Path, settings: Any) -> str:
    """What a hybrid artifact depends on, hashed: the data file and settings."""
    import hashlib

    stat = source.stat()
    shaped_by = {
        "source": [str(source.resolve()), stat.st_size, stat.st_mtime_ns],
        "protocol": HYBRID_PROTOCOL,
        "hybrid": settings.hybrid.model_dump(mode="json"),
        "train": settings.train.model_dump(mode="json"),
        "text": settings.text.model_dump(mode="json"),
    }
    text = json.dumps(shaped_by, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hybrid_artifact(source: Path = ONLINE_RETAIL) -> tuple[Path, dict[str, Any]]:
    """The hybrid trained on ``online-retail-temporal`` (trained once per key) and
    its ``metrics.json`` (offline test scores, training facts)."""
    from interest_graph import stages
    from interest_graph.config import Settings

    settings = Settings()
    root = HYBRID_WORK / hybrid_key(source, settings)
    metrics_path = root / "metrics.json"
    if not (root / MARKER).is_file():
        shutil.rmtree(root, ignore_errors=True)
        settings = Settings(paths={"work_dir": root / "work"})
        started = time.perf_counter()
        stages.train(HYBRID_PROTOCOL, source, root, settings, "hybrid")
        _finish(root, {"train_seconds": round(time.perf_counter() - started, 1)})
    metrics = dict(json.loads(metrics_path.read_text(encoding="utf-8")))
    return root / "model", metrics


def hybrid_model(source: Path = ONLINE_RETAIL) -> BenchModel:
    """The cached hybrid, served with the Online Retail model's feature store."""
    import pandas as pd

    shop = online_retail_model(source)
    artifact, metrics = hybrid_artifact(source)
    users = pd.read_parquet(artifact / "users.parquet")["user_id"].astype(str)
    items = pd.read_parquet(artifact / "items.parquet")
    ndcg = metrics.get("ndcg@20")
    return BenchModel(
        name="hybrid",
        artifact=artifact,
        work_dir=shop.work_dir,
        features_dir=shop.features_dir,
        data_dir=shop.data_dir,
        user_ids=users.tolist(),
        n_items=len(items),
        description=f"hybrid (default settings) on {HYBRID_PROTOCOL}, offline "
        f"NDCG@20 {ndcg}; Feast: the online_retail model's store",
    )


def _tables_without_text(data_dir: Path, settings: Any) -> None:
    """Activity, item statistics and recent items, applied and materialised; no
    text embeddings (100k synthetic titles would take the language model long)."""
    from interest_graph.features import (
        apply_repo,
        build_features,
        materialize,
        open_store,
    )

    build_features(data_dir, settings.features_dir)
    apply_repo(settings.features_dir)
    materialize(open_store(settings.features_dir))


def catalog_100k_model() -> BenchModel:
    """The synthetic 100k-item artifact with its users' interests in Feast."""
    root = WORK / "catalog_100k"
    facts = _cached(root)
    if facts is None:
        facts = _build_catalog_100k(root)
    return _load("catalog_100k", root, facts)


@dataclass(frozen=True)
class SyntheticCatalogue:
    """The 100k-item catalogue: vectors, categories and who likes what."""

    user_vectors: np.ndarray
    item_vectors: np.ndarray
    item_category: np.ndarray
    user_categories: np.ndarray

    @property
    def user_ids(self) -> np.ndarray:
        return np.array([f"U{i:07d}" for i in range(SYNTH_USERS)], dtype=object)

    @property
    def item_ids(self) -> np.ndarray:
        return np.array([f"I{i:06d}" for i in range(SYNTH_ITEMS)], dtype=object)

    @property
    def titles(self) -> np.ndarray:
        return np.array(
            [
                f"Product {i} of category {c:02d}"
                for i, c in enumerate(self.item_category)
            ],
            dtype=object,
        )


def synthetic_catalogue() -> SyntheticCatalogue:
    """20k users x 100k items: clustered random vectors from a fixed seed.

    Items sit around one of 50 category centres, users mix two categories, so
    top-k lists and interest clusters look like a shop's rather than noise.
    """
    rng = np.random.default_rng(SYNTH_SEED)
    centres = rng.standard_normal((SYNTH_CATEGORIES, SYNTH_DIM)).astype(np.float32)
    item_category = rng.integers(0, SYNTH_CATEGORIES, SYNTH_ITEMS)
    items = centres[item_category] + 0.7 * rng.standard_normal(
        (SYNTH_ITEMS, SYNTH_DIM), dtype=np.float32
    )
    pair = rng.integers(0, SYNTH_CATEGORIES, (SYNTH_USERS, 2))
    users = 0.5 * (centres[pair[:, 0]] + centres[pair[:, 1]]) + 0.3 * (
        rng.standard_normal((SYNTH_USERS, SYNTH_DIM), dtype=np.float32)
    )
    return SyntheticCatalogue(
        user_vectors=users.astype(np.float32),
        item_vectors=items.astype(np.float32),
        item_category=item_category,
        user_categories=pair,
    )


def synthetic_artifact(catalogue: SyntheticCatalogue) -> Any:
    """The catalogue as a model artifact (vectors, ids, titles)."""
    from interest_graph.models.artifact import ModelArtifact

    return ModelArtifact(
        model="synthetic-vectors",
        config={
            "hyperparameters": {"dim": SYNTH_DIM, "seed": SYNTH_SEED},
            "note": "random clustered vectors for the serving bench; not trained",
        },
        user_ids=catalogue.user_ids,
        item_ids=catalogue.item_ids,
        tensors={
            "user_vectors": catalogue.user_vectors,
            "item_vectors": catalogue.item_vectors,
        },
        item_titles=catalogue.titles,
    )


def synthetic_shop(catalogue: SyntheticCatalogue) -> Any:
    """Canonical tables: items with categories, ten purchases per user.

    Each user buys in their two categories, so history exclusion removes items
    the model would otherwise rank high.
    """
    import pandas as pd

    from interest_graph.schema import ShopTables

    rng = np.random.default_rng(SYNTH_SEED + 1)
    by_category = [
        np.flatnonzero(catalogue.item_category == c) for c in range(SYNTH_CATEGORIES)
    ]
    user_rows = np.repeat(np.arange(SYNTH_USERS), SYNTH_PURCHASES)
    side = rng.integers(0, 2, user_rows.size)
    categories = catalogue.user_categories[user_rows, side]
    bought = np.array([rng.choice(by_category[c]) for c in categories])
    start = pd.Timestamp("2026-01-01")
    category_names = np.array([f"category-{c:02d}" for c in range(SYNTH_CATEGORIES)])
    prices = np.round(rng.uniform(1, 100, SYNTH_ITEMS), 2)
    events = pd.DataFrame(
        {
            "user_id": catalogue.user_ids[user_rows],
            "item_id": catalogue.item_ids[bought],
            "event_type": "purchase",
            "timestamp": start
            + pd.to_timedelta(rng.integers(0, 90 * 86400, user_rows.size), unit="s"),
            "quantity": 1,
            "price": prices[bought],
        }
    )
    items = pd.DataFrame(
        {
            "item_id": catalogue.item_ids,
            "title": catalogue.titles,
            "description": "",
            "category": category_names[catalogue.item_category],
            "price": prices,
            "first_seen": start,
        }
    )
    users = pd.DataFrame(
        {"user_id": catalogue.user_ids, "country": "synthetic", "first_seen": start}
    )
    return ShopTables(events=events, items=items, users=users)


def _build_catalog_100k(root: Path) -> dict[str, Any]:
    from interest_graph.stages import interests

    shutil.rmtree(root, ignore_errors=True)
    settings = settings_for(root / "work")
    started = time.perf_counter()
    catalogue = synthetic_catalogue()
    artifact_dir = synthetic_artifact(catalogue).save(root / "model" / "model")
    synthetic_shop(catalogue).write(
        settings.paths.data_dir / DATA_FOLDER["catalog_100k"]
    )
    _tables_without_text(
        settings.paths.data_dir / DATA_FOLDER["catalog_100k"], settings
    )
    pushed = interests(artifact_dir, settings, push=True).pushed
    return _finish(
        root,
        {
            "items": SYNTH_ITEMS,
            "users": SYNTH_USERS,
            "pushed_interests": pushed,
            "build_seconds": round(time.perf_counter() - started, 1),
            "description": "synthetic: 20k users x 100k items, 64-d clustered random "
            "vectors (seed 7), built with ModelArtifact; 10 purchases per user as "
            "history; Feast: activity, item statistics, recent items, interest "
            "vectors (no text embeddings)",
        },
    )


if __name__ == "__main__":
    for build in (online_retail_model, catalog_100k_model, hybrid_model):
        model = build()
        print(model.name, model.artifact, len(model.user_ids), model.n_items)
