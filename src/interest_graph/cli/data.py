"""``interest-graph data synth|load|validate``: shop data into canonical tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from interest_graph.cli.support import clear_errors, console, root_settings
from interest_graph.errors import InterestGraphError

data_app = typer.Typer(
    help="Load, generate and validate shop data.", no_args_is_help=True
)


@data_app.command("synth")
@clear_errors
def data_synth(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="Data folder to write.")] = None,
    users: Annotated[int | None, typer.Option(help="Number of users.")] = None,
    items: Annotated[int | None, typer.Option(help="Number of items.")] = None,
    events: Annotated[int | None, typer.Option(help="Number of events.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    interest_drift: Annotated[
        float | None, typer.Option(help="Share of interest moved by the last day.")
    ] = None,
    price_drift: Annotated[
        float | None, typer.Option(help="Relative price change over the period.")
    ] = None,
) -> None:
    """Generate a synthetic shop (deterministic by seed) as canonical tables."""
    from interest_graph import stages

    settings = root_settings(ctx)
    overrides = {
        key: value
        for key, value in {
            "users": users,
            "items": items,
            "events": events,
            "seed": seed,
            "interest_drift": interest_drift,
            "price_drift": price_drift,
        }.items()
        if value is not None
    }
    synth = settings.synth.model_validate({**settings.synth.model_dump(), **overrides})
    settings = settings.model_copy(update={"synth": synth})
    target = out or settings.paths.data_dir / "synth"
    result = stages.ingest("synth", None, target, settings)
    console.print_json(json.dumps({k: str(v) for k, v in result.tables.items()}))


@data_app.command("load")
@clear_errors
def data_load(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="online-retail | gowalla | custom-shop")],
    source: Annotated[
        Path | None,
        typer.Argument(
            help="File (online-retail) or folder (gowalla); custom-shop "
            "takes its files from the `shop` section of the config."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Data folder to write.")] = None,
) -> None:
    """Load a shop, writing canonical Parquet, quarantine files and a summary JSON."""
    from interest_graph import stages

    if kind not in ("online-retail", "gowalla", "custom-shop"):
        raise InterestGraphError(
            f"unknown kind {kind!r}; choose online-retail, gowalla or custom-shop"
        )
    settings = root_settings(ctx)
    target = out or settings.paths.data_dir / kind
    result = stages.ingest(kind, source, target, settings)
    console.print_json(json.dumps(result.summary))
    console.print(f"summary: {result.summary_path}")


@data_app.command("validate")
@clear_errors
def data_validate(
    data_dir: Annotated[Path, typer.Argument(help="Canonical data folder.")],
) -> None:
    """Check canonical tables: schema, event types, references; exit 1 on problems."""
    from interest_graph import stages

    result = stages.validate(data_dir)
    for problem in result.problems:
        typer.echo(f"problem: {problem}", err=True)
    typer.echo(f"{data_dir}: {result.rows}, {len(result.problems)} problems")
    if result.problems:
        raise typer.Exit(1)
