"""The ``interest-graph`` command line: thin commands over ``interest_graph.stages``.

Command modules import ``stages`` (and with it torch, Feast, MLflow) inside the
command bodies, so ``--help`` at every level answers in well under a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from interest_graph.cli import embed, models, monitor, pipeline, serving
from interest_graph.cli.data import data_app
from interest_graph.cli.features import features_app
from interest_graph.cli.registry import registry_app
from interest_graph.cli.support import clear_errors
from interest_graph.config import load_settings
from interest_graph.logs import quiet_library_warnings

# Before any command imports the libraries, so their notices never reach stderr.
quiet_library_warnings()

app = typer.Typer(
    help="User interest graph and recommendations for an online shop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.add_typer(registry_app, name="registry")
app.add_typer(pipeline.pipeline_app, name="pipeline")
for module in (pipeline, models, embed, serving, monitor):
    module.register(app)


@app.callback()
@clear_errors
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="YAML settings file (or $INTEREST_GRAPH_CONFIG); "
            "INTEREST_GRAPH__SECTION__KEY variables override it.",
        ),
    ] = None,
) -> None:
    """User interest graph and recommendations for an online shop."""
    ctx.obj = load_settings(config)


__all__ = ["app"]
