"""Item text embeddings written by ``embed_items`` are what Feast serves online."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from interest_graph.embeddings.stage import embed_items
from interest_graph.features import (
    StoreProfile,
    apply_repo,
    build_features,
    get_online,
    materialize,
    open_store,
)
from interest_graph.schema import ShopTables


def test_feast_vectors_equal_the_parquet_vectors(
    tmp_path: Path, small_shop_dir: Path
) -> None:
    features = tmp_path / "features"
    build_features(small_shop_dir, features)
    result = embed_items(small_shop_dir, features)
    profile = StoreProfile(online_store="sqlite", project="embed_test")
    apply_repo(features, profile)
    store = open_store(features, profile)
    materialize(store)

    written = pd.read_parquet(result.path)
    item_ids = ShopTables.read(small_shop_dir).items["item_id"].tolist()[:25]
    online = get_online(store, [], item_ids)["items"]
    assert len(online) == len(item_ids)
    by_id = written.set_index("item_id")["text_embedding"]
    for row in online:
        assert row["found"], row["item_id"]
        served = np.asarray(row["features"]["item_text_embeddings__text_embedding"])
        stored = np.asarray(by_id[row["item_id"]], dtype=np.float32)
        assert served.shape == stored.shape == (384,)
        np.testing.assert_array_equal(served.astype(np.float32), stored)
