"""The pipeline definitions in ``pipelines/`` (one file per pipeline), loaded by
name: from this checkout, or ``$INTEREST_GRAPH_PROJECT_DIR`` in an image."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from interest_graph.errors import ConfigError

PROJECT_DIR_ENV = "INTEREST_GRAPH_PROJECT_DIR"
# Pipeline name -> (module in pipelines/, pipeline function).
PIPELINES = {
    "training": ("training_pipeline", "training_pipeline"),
    "monitoring": ("monitoring_pipeline", "monitoring_pipeline"),
}


def project_dir() -> Path:
    """The folder holding ``pipelines/`` and ``components/``."""
    if PROJECT_DIR_ENV in os.environ:
        return Path(os.environ[PROJECT_DIR_ENV])
    return Path(__file__).resolve().parents[3]


def load_pipeline(name: str) -> Any:
    """The ``@dsl.pipeline`` function called ``name`` (``training``, ...).

    Raises:
        ConfigError: an unknown name, or no ``pipelines/`` folder to load from.
    """
    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline {name!r}; choose {sorted(PIPELINES)}")
    root = project_dir()
    if not (root / "pipelines").is_dir():
        raise ConfigError(
            f"no pipelines/ folder in {root}; set ${PROJECT_DIR_ENV} to the "
            "project checkout"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module_name, attribute = PIPELINES[name]
    try:
        module = importlib.import_module(f"pipelines.{module_name}")
    except ModuleNotFoundError as exc:
        raise ConfigError(f"pipeline {name!r} is not defined yet ({exc})") from exc
    return getattr(module, attribute)
