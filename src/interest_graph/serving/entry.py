"""What ``python -m serving`` (the container's entry point) runs.

KServe starts the container with its own arguments (``--model_name``,
``--http_port``, ``--predictor_host`` ...); settings come from the environment
(``INTEREST_GRAPH__SERVING__*``) and ``$INTEREST_GRAPH_CONFIG`` as everywhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from interest_graph.config import Settings, load_settings
from interest_graph.errors import ConfigError

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


def run_from_arguments(args: argparse.Namespace) -> None:
    """Run the predictor, or with ``--transformer`` the Feast transformer."""
    settings = settings_from_arguments(args)
    if not args.transformer:
        from interest_graph.serving.server import serve

        serve(settings)
        return
    if not args.predictor_host:
        raise ConfigError("--transformer needs --predictor_host")
    from kserve import PredictorConfig

    from interest_graph.serving.kserve_compat import model_server
    from interest_graph.serving.server import (
        feature_source,
        prepare_process,
        quiet_per_request_logs,
    )
    from interest_graph.serving.transformer import RecommenderTransformer

    prepare_process(settings.serving)
    transformer = RecommenderTransformer(feature_source(settings), settings.serving)
    server = model_server.ModelServer(
        http_port=settings.serving.http_port,
        grpc_port=settings.serving.grpc_port,
        enable_latency_logging=False,
        predictor_config=PredictorConfig(
            predictor_host=args.predictor_host,
            predictor_protocol="v1",
            predictor_use_ssl=args.predictor_use_ssl,
            predictor_request_timeout_seconds=args.predictor_request_timeout_seconds,
            predictor_request_retries=args.predictor_request_retries,
            predictor_health_check=args.enable_predictor_health_check,
        ),
    )
    quiet_per_request_logs()  # after ModelServer(): it configures logging
    server.start([transformer])
