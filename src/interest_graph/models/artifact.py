"""The model artifact: safetensors weights, a JSON config and the user/item index.

Layout of an artifact folder (never pickle)::

    model.safetensors   tensors: user_vectors, item_vectors and model-specific ones,
                        and the training interactions (``trained_indptr``,
                        ``trained_items``: CSR rows over users × items)
    config.json         {"format", "model", "hyperparameters", "training", ...}
    users.parquet       user_id per row of user_vectors
    items.parquet       item_id (and title, where known) per row of item_vectors

Scores of a vector model are ``user_vectors @ item_vectors.T``. A scorer
(``config["scorer"]`` true: the graph filter, temporal EASE) stores the arrays its
``from_tensors`` / ``from_arrays`` rebuilds it from, and vectors only where it has
them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from interest_graph.errors import MalformedFileError

ARTIFACT_FORMAT = "interest-graph-model/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
USERS_FILE = "users.parquet"
ITEMS_FILE = "items.parquet"
# The training interactions as CSR arrays; popped from ``tensors`` on load.
_TRAINED_INDPTR = "trained_indptr"
_TRAINED_ITEMS = "trained_items"


@dataclass
class ModelArtifact:
    """A trained model as plain arrays and JSON, ready to save, load and serve.

    Attributes:
        model: the model kind (``lightgcn``, ``text-lightgcn``, ``graph-filter``...).
        config: hyperparameters and training facts, JSON-serialisable.
        user_ids: id of each row of ``tensors["user_vectors"]``.
        item_ids: id of each row of ``tensors["item_vectors"]``.
        tensors: named float32/int arrays; ``user_vectors`` and ``item_vectors``
            always.
        item_titles: optional title per item (labels for the interest graph).
        trained: optional binary users × items interactions the model was trained
            on: what each user already has, which serving excludes even when the
            feature store cannot say (older artifacts have none).
    """

    model: str
    config: dict[str, Any]
    user_ids: np.ndarray
    item_ids: np.ndarray
    tensors: dict[str, np.ndarray]
    item_titles: np.ndarray | None = field(default=None)
    trained: sp.csr_matrix | None = field(default=None)

    @property
    def is_scorer(self) -> bool:
        """True for models rebuilt from their arrays rather than scored by vectors."""
        return bool(self.config.get("scorer", False))

    @property
    def has_vectors(self) -> bool:
        return "user_vectors" in self.tensors and "item_vectors" in self.tensors

    @property
    def user_vectors(self) -> np.ndarray:
        return self.tensors["user_vectors"]

    @property
    def item_vectors(self) -> np.ndarray:
        return self.tensors["item_vectors"]

    def save(self, folder: str | Path) -> Path:
        """Write the artifact folder; returns it."""
        from safetensors.numpy import save_file

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        contiguous = {k: np.ascontiguousarray(v) for k, v in self.tensors.items()}
        if self.trained is not None:
            trained = sp.csr_matrix(self.trained)
            contiguous[_TRAINED_INDPTR] = trained.indptr.astype(np.int64)
            contiguous[_TRAINED_ITEMS] = trained.indices.astype(np.int32)
        save_file(contiguous, str(out / WEIGHTS_FILE))
        # safetensors writes its file owner-only; other users read artifacts too
        # (the serving image's uid 1000 from /mnt/models, a storage initializer).
        (out / WEIGHTS_FILE).chmod(0o644)
        config = {"format": ARTIFACT_FORMAT, "model": self.model, **self.config}
        (out / CONFIG_FILE).write_text(
            json.dumps(config, indent=2, default=_json_default) + "\n",
            encoding="utf-8",
        )
        pd.DataFrame({"user_id": pd.array(self.user_ids, dtype="string")}).to_parquet(
            out / USERS_FILE, index=False
        )
        items = pd.DataFrame({"item_id": pd.array(self.item_ids, dtype="string")})
        if self.item_titles is not None:
            items["title"] = pd.array(self.item_titles, dtype="string")
        items.to_parquet(out / ITEMS_FILE, index=False)
        return out

    @classmethod
    def load(cls, folder: str | Path) -> ModelArtifact:
        """Read an artifact folder written by :meth:`save`.

        Raises:
            MalformedFileError: a file is missing, of another format, or the index
                does not match the weights.
        """
        from safetensors.numpy import load_file

        root = Path(folder)
        for name in (WEIGHTS_FILE, CONFIG_FILE, USERS_FILE, ITEMS_FILE):
            if not (root / name).is_file():
                raise MalformedFileError(root, f"is not a model artifact: no {name}")
        config = read_config(root)
        try:
            tensors = load_file(str(root / WEIGHTS_FILE))
        except (ValueError, OSError) as exc:
            raise MalformedFileError(root, f"cannot be read: {exc}") from exc
        users = pd.read_parquet(root / USERS_FILE)
        items = pd.read_parquet(root / ITEMS_FILE)
        trained = _trained_matrix(root, tensors, len(users), len(items))
        artifact = cls(
            model=str(config.pop("model")),
            config=config,
            user_ids=users["user_id"].astype(str).to_numpy(dtype=object),
            item_ids=items["item_id"].astype(str).to_numpy(dtype=object),
            tensors=tensors,
            item_titles=(
                items["title"].astype(str).to_numpy(dtype=object)
                if "title" in items
                else None
            ),
            trained=trained,
        )
        for name, ids in (
            ("user_vectors", artifact.user_ids),
            ("item_vectors", artifact.item_ids),
        ):
            if artifact.is_scorer and name not in tensors:
                continue
            if name not in tensors or tensors[name].shape[0] != len(ids):
                raise MalformedFileError(
                    root, f"{name} does not match the {len(ids)} ids of its index"
                )
        return artifact


def _trained_matrix(
    root: Path, tensors: dict[str, np.ndarray], n_users: int, n_items: int
) -> sp.csr_matrix | None:
    """The training interactions popped from ``tensors`` (None when absent)."""
    if _TRAINED_INDPTR not in tensors:
        return None
    indptr = tensors.pop(_TRAINED_INDPTR).astype(np.int64)
    items = tensors.pop(_TRAINED_ITEMS, np.empty(0, np.int32))
    if (
        indptr.shape != (n_users + 1,)
        or indptr[-1] != len(items)
        or (len(items) and (items.min() < 0 or items.max() >= n_items))
    ):
        raise MalformedFileError(
            root, "its training interactions do not match the user and item index"
        )
    data = np.ones(len(items), dtype=np.float32)
    return sp.csr_matrix((data, items, indptr), shape=(n_users, n_items))


def read_config(folder: str | Path) -> dict[str, Any]:
    """An artifact's ``config.json`` (without ``format``), weights left unread.

    Raises:
        MalformedFileError: it cannot be read or is of another format.
    """
    path = Path(folder) / CONFIG_FILE
    try:
        config = dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, OSError) as exc:
        raise MalformedFileError(Path(folder), f"cannot be read: {exc}") from exc
    if config.pop("format", None) != ARTIFACT_FORMAT:
        raise MalformedFileError(path, f"is not {ARTIFACT_FORMAT}")
    return config


def is_artifact(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a model artifact."""
    return (Path(path) / CONFIG_FILE).is_file() and (
        Path(path) / WEIGHTS_FILE
    ).is_file()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
