"""Shared fixtures: the real data sets in ../shared, and small synthetic shops."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from interest_graph.config import Settings, SynthConfig  # noqa: E402
from interest_graph.data.synth import generate_shop  # noqa: E402
from interest_graph.schema import ShopTables  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def online_retail_file() -> Path:
    path = SHARED_DATA / "online_retail" / "Online_Retail.parquet"
    if not path.is_file():
        pytest.skip(f"Online Retail not found at {path} (CI has ../shared/data)")
    return path


@pytest.fixture(scope="session")
def gowalla_folder() -> Path:
    path = SHARED_DATA / "gowalla"
    if not (path / "train.txt").is_file():
        pytest.skip(f"Gowalla split not found at {path} (CI has ../shared/data)")
    return path


SMALL_SHOP = SynthConfig(users=400, items=200, categories=8, events=20_000, days=60)


@pytest.fixture(scope="session")
def small_shop() -> ShopTables:
    return generate_shop(SMALL_SHOP)


@pytest.fixture(scope="session")
def small_shop_dir(
    tmp_path_factory: pytest.TempPathFactory, small_shop: ShopTables
) -> Path:
    folder = tmp_path_factory.mktemp("small_shop")
    small_shop.write(folder)
    return folder


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings with the work folder in a temp dir."""
    return Settings(paths={"work_dir": tmp_path / "work"})
