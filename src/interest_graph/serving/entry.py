"""What ``python -m serving`` (the container's entry point) reads from KServe's
arguments; it then runs ``interest_graph.stages.serve``.

KServe starts the container with its own arguments (``--model_name``,
``--http_port``, ``--predictor_host`` ...); settings come from the environment
(``INTEREST_GRAPH__SERVING__*``) and ``$INTEREST_GRAPH_CONFIG`` as everywhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from interest_graph.config import Settings, load_settings

# Where KServe's storage initializer puts a storageUri's files.
KSERVE_MODEL_DIR = Path("/mnt/models")


def settings_from_arguments(args: argparse.Namespace) -> Settings:
    """The settings with KServe's arguments applied."""
    settings = load_settings()
    update: dict[str, object] = {
        "http_port": args.http_port,
        "grpc_port": args.grpc_port,
    }
    if args.model_uri:
        update["model_uri"] = args.model_uri
    elif (KSERVE_MODEL_DIR / "config.json").is_file():
        update["model_uri"] = str(KSERVE_MODEL_DIR)
    if args.no_feast:
        update["feast"] = False
    serving = settings.serving.model_validate(
        {**settings.serving.model_dump(), **update}
    )
    return settings.model_copy(update={"serving": serving})


def predictor_options(args: argparse.Namespace) -> dict[str, object]:
    """KServe's predictor arguments as ``PredictorConfig`` fields (transformer)."""
    return {
        "predictor_use_ssl": args.predictor_use_ssl,
        "predictor_request_timeout_seconds": args.predictor_request_timeout_seconds,
        "predictor_request_retries": args.predictor_request_retries,
        "predictor_health_check": args.enable_predictor_health_check,
    }
