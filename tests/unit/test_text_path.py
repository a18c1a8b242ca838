"""One text path: every ranking model reads the ``embed`` stage's vectors."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from interest_graph import text_encoder
from interest_graph.config import Settings
from interest_graph.embeddings import OUTPUT_FILE, embed_items, item_vectors
from interest_graph.evaluation.baselines import TextKNNBaseline, item_text_vectors
from interest_graph.evaluation.protocols import EvaluationSplit, build_split
from interest_graph.evaluation.validation import validation_split
from interest_graph.models import recommender


class FakeModel:
    """``text_encoder.encode_texts`` stand-in: a vector per text, calls counted."""

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim
        self.texts: list[list[str]] = []

    def __call__(self, texts: list[str], *args: Any, **kwargs: Any) -> np.ndarray:
        self.texts.append(list(texts))
        rows = [
            np.random.default_rng(
                int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            ).normal(size=self.dim)
            for t in texts
        ]
        vectors = np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> FakeModel:
    fake = FakeModel()
    monkeypatch.setattr(text_encoder, "encode_texts", fake)
    return fake


@pytest.fixture(scope="module")
def split(small_shop_dir: Path) -> EvaluationSplit:
    return build_split("shop-cold-items", small_shop_dir)


def _stage_vectors(path: Path, item_ids: np.ndarray) -> np.ndarray:
    frame = pd.read_parquet(path).set_index("item_id")
    return np.stack(frame.loc[list(item_ids), "text_embedding"].to_list())


def test_models_read_the_vectors_the_embed_stage_wrote(
    split: EvaluationSplit,
    small_shop_dir: Path,
    settings: Settings,
    model: FakeModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    embed_items(small_shop_dir, settings.features_dir, settings.text, device="cpu")
    assert len(model.texts) == 1  # the stage encoded the shop once
    written = _stage_vectors(settings.features_dir / OUTPUT_FILE, split.item_ids)

    knn = TextKNNBaseline(settings)
    knn.fit(split)
    np.testing.assert_array_equal(knn.item_vectors, written)

    seen: list[np.ndarray] = []
    real = recommender.train_graph_model

    def spy(*args: Any, item_text: np.ndarray | None = None, **kwargs: Any) -> Any:
        assert item_text is not None
        seen.append(item_text)
        return real(*args, item_text=item_text, **kwargs)

    monkeypatch.setattr(recommender, "train_graph_model", spy)
    train = {"model": "text-lightgcn", "epochs": 1, "early_stopping": False}
    gnn_settings = settings.model_copy(
        update={"train": settings.train.model_copy(update=train)}
    )
    recommender.GraphModelRecommender(gnn_settings).fit(split)
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], written)
    assert len(model.texts) == 1  # nothing encoded item text a second time


def test_text_is_the_stage_template_and_cleaning(
    split: EvaluationSplit, small_shop_dir: Path, settings: Settings, model: FakeModel
) -> None:
    from interest_graph.embeddings import render_texts

    item_text_vectors(split, settings, "text-knn")
    items = pd.read_parquet(small_shop_dir / "items.parquet").set_index("item_id")
    items = items.loc[list(split.item_ids)].reset_index()
    assert model.texts == [render_texts(items, settings.text.template)]
    assert "{category}" in settings.text.template


def test_a_second_consumer_reuses_the_first_ones_vectors(
    split: EvaluationSplit, settings: Settings, model: FakeModel
) -> None:
    assert not (settings.features_dir / OUTPUT_FILE).exists()
    first = item_text_vectors(split, settings, "text-knn")
    assert len(model.texts) == 1
    # Another model, and a validation split carved from the same items.
    again = item_text_vectors(split, settings, "text-lightgcn")
    window = validation_split(split, seed=0, days=14.0)
    carved = item_text_vectors(window, settings, "hybrid")
    assert len(model.texts) == 1
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, carved)
    assert first.shape == (split.n_items, model.dim)


def test_items_without_text_get_zeros_and_order_is_the_callers(
    tmp_path: Path, model: FakeModel
) -> None:
    items = pd.DataFrame(
        {
            "item_id": ["b", "a", "c"],
            "title": ["Mug", "", "Plate"],
            "description": [None, None, "<b>Stoneware</b>"],
            "category": ["kitchen", None, None],
        }
    )
    vectors = item_vectors(items, tmp_path / "features", tmp_path / "cache")
    assert model.texts == [["Mug. kitchen", "Plate. Stoneware"]]
    np.testing.assert_array_equal(vectors[1], 0.0)
    expected = FakeModel()(["Mug. kitchen", "Plate. Stoneware"])
    np.testing.assert_allclose(vectors[[0, 2]], expected)
    reordered = item_vectors(
        items.iloc[::-1], tmp_path / "features", tmp_path / "cache"
    )
    np.testing.assert_array_equal(reordered, vectors[::-1])
    assert len(model.texts) == 1
