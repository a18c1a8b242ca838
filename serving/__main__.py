"""KServe entry point: ``python -m serving [--transformer] [KServe's arguments]``.

A thin wrapper in KServe's style: it extends ``kserve.model_server.parser`` and
calls the library (``interest_graph.serving``); run from the repository root or
the image's ``/app``.
"""

from __future__ import annotations

import argparse

from interest_graph import stages
from interest_graph.errors import ConfigError
from interest_graph.serving.entry import predictor_options, settings_from_arguments
from interest_graph.serving.kserve_compat import model_server

parser = argparse.ArgumentParser(parents=[model_server.parser])
parser.add_argument(
    "--model_uri",
    default=None,
    help="models:/NAME@ALIAS, models:/NAME/VERSION, s3://, file:// or a folder "
    "(default serving.model_uri; KServe's storage initializer mounts "
    "/mnt/models).",
)
parser.add_argument(
    "--transformer",
    action="store_true",
    help="Run the Feast transformer in front of --predictor_host instead.",
)
parser.add_argument("--no_feast", action="store_true", help="No Feast lookups.")

if __name__ == "__main__":
    args = parser.parse_args()
    if args.transformer and not args.predictor_host:
        raise ConfigError("--transformer needs --predictor_host")
    stages.serve(
        settings_from_arguments(args),
        predictor_host=args.predictor_host if args.transformer else None,
        predictor_options=predictor_options(args),
    )
