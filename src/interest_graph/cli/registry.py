"""``interest-graph registry list|register|promote|rollback``: the model registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from interest_graph.cli.support import clear_errors, root_settings

if TYPE_CHECKING:
    from interest_graph.registry import PromotionDecision

registry_app = typer.Typer(
    help="Model registry (MLflow): versions with lineage, champion/challenger.",
    no_args_is_help=True,
)
console = Console(width=max(Console().width, 140))


def _print_decision(decision: PromotionDecision) -> None:
    console.print(decision.describe())


@registry_app.command("list")
@clear_errors
def list_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
) -> None:
    """Every version: aliases, primary metric, decision, data and code lineage."""
    from interest_graph import stages
    from interest_graph.registry import tracking_uri

    settings = root_settings(ctx)
    metric = settings.registry.primary_metric
    rows = [v.row(metric) for v in stages.list_models(settings)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{settings.registry.model_name} @ {tracking_uri(settings)}")
    columns = list(rows[0]) if rows else ["version"]
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    console.print(table)


@registry_app.command("register")
@clear_errors
def register_command(
    ctx: typer.Context,
    run: Annotated[
        Path, typer.Argument(help="A run folder of `train` (model/ + metrics.json).")
    ],
    source: Annotated[
        Path, typer.Option(help="The data the model was trained on (fingerprinted).")
    ],
) -> None:
    """Register a trained run and let the promotion gate decide on it."""
    from interest_graph import stages

    console.print(stages.register_run(run, source, root_settings(ctx)).describe())


@registry_app.command("promote")
@clear_errors
def promote_command(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="The version to promote.")],
    force: Annotated[
        bool, typer.Option(help="Skip the gate (the reason records it).")
    ] = False,
) -> None:
    """Run the promotion gate on a version: champion if it beats the current one."""
    from interest_graph import stages

    _print_decision(stages.promote_model(root_settings(ctx), version, force=force))


@registry_app.command("rollback")
@clear_errors
def rollback_command(
    ctx: typer.Context,
    version: Annotated[
        str | None,
        typer.Argument(help="Version to restore (default: the previous champion)."),
    ] = None,
) -> None:
    """Point the champion alias back at an earlier version."""
    from interest_graph import stages

    _print_decision(stages.rollback_model(root_settings(ctx), version))
