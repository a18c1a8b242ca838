"""What a user already has stays out of their recommendations even when the
feature store cannot say: the model's own training data travels in the artifact,
and the served title is the product's title, not its text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from interest_graph.errors import MalformedFileError
from interest_graph.evaluation.protocols import _item_titles
from interest_graph.models.artifact import ModelArtifact
from interest_graph.serving.model import load_serving_model
from interest_graph.serving.requests import RecommendationRequest, UserFeatures

N_USERS, N_ITEMS = 4, 12


def _artifact(trained: sp.csr_matrix | None) -> ModelArtifact:
    # User 0's vector points at items 0-4: the ones they bought.
    items = np.zeros((N_ITEMS, 1), dtype=np.float32)
    items[:5, 0] = 5.0 - np.arange(5)
    users = np.ones((N_USERS, 1), dtype=np.float32)
    return ModelArtifact(
        model="lightgcn",
        config={"protocol": "hand-made"},
        user_ids=np.array([f"U{i}" for i in range(N_USERS)], dtype=object),
        item_ids=np.array([f"I{i}" for i in range(N_ITEMS)], dtype=object),
        tensors={"user_vectors": users, "item_vectors": items},
        item_titles=np.array([f"Title {i}" for i in range(N_ITEMS)], dtype=object),
        trained=trained,
    )


def _bought() -> sp.csr_matrix:
    rows, cols = [0] * 5 + [1], [0, 1, 2, 3, 4, 7]
    return sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(N_USERS, N_ITEMS)
    )


def _answer(folder: Path, user: str = "U0") -> list[str]:
    model = load_serving_model(folder, version="1", uri=str(folder))
    store_down = UserFeatures(status="unavailable")
    (answer,) = model.recommend([RecommendationRequest(user, 5)], [store_down])
    assert answer.fallback == "feature_store_unavailable"
    return [item["item_id"] for item in answer.items]


def test_training_purchases_are_excluded_with_the_feature_store_down(
    tmp_path: Path,
) -> None:
    with_training = _artifact(_bought()).save(tmp_path / "with")
    without = _artifact(None).save(tmp_path / "without")
    # Without the training data the store outage brings the purchases back...
    assert _answer(without)[:5] == ["I0", "I1", "I2", "I3", "I4"]
    # ...with it, none of them.
    served = _answer(with_training)
    assert len(served) == 5
    assert not {"I0", "I1", "I2", "I3", "I4"} & set(served)


def test_training_interactions_round_trip_and_stay_out_of_the_tensors(
    tmp_path: Path,
) -> None:
    loaded = ModelArtifact.load(_artifact(_bought()).save(tmp_path / "model"))
    assert loaded.trained is not None
    assert (loaded.trained != _bought()).nnz == 0
    assert set(loaded.tensors) == {"user_vectors", "item_vectors"}
    assert ModelArtifact.load(_artifact(None).save(tmp_path / "old")).trained is None


def test_training_interactions_outside_the_index_are_refused(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = _artifact(_bought()).save(tmp_path / "model")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["trained_items"] = np.full_like(tensors["trained_items"], N_ITEMS)
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(MalformedFileError, match="training interactions"):
        ModelArtifact.load(folder)


def test_served_titles_are_titles_not_title_and_description() -> None:
    items = pd.DataFrame(
        {
            "item_id": ["A", "B", "C"],
            "title": ["CAROUSEL DESIGN WASHBAG", "MUG", None],
            "description": ["CAROUSEL DESIGN WASHBAG", "A big mug", None],
        }
    )
    titles = _item_titles(items, pd.Index(["A", "B", "C"]))
    assert list(titles) == ["CAROUSEL DESIGN WASHBAG", "MUG", "C"]
