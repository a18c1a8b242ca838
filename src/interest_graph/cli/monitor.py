"""``interest-graph monitor``: a thin command over ``stages.monitoring.monitor``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from interest_graph.cli.support import clear_errors, root_settings


@clear_errors
def monitor_command(
    ctx: typer.Context,
    reference: Annotated[
        str,
        typer.Option(
            help="'training' (the champion's training window), 'previous N days' "
            "(before the current window) or START..END."
        ),
    ] = "training",
    current: Annotated[
        str | None,
        typer.Option(
            help="'last N days' (default monitoring.current_days) or START..END."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Canonical shop folder (default features.source_dir)."),
    ] = None,
    features_dir: Annotated[
        Path | None, typer.Option(help="Feature tables (default: settings).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model folder or registry URI (default serving.model_uri); "
            "'' checks no model vectors."
        ),
    ] = None,
    inference_log: Annotated[
        Path | None,
        typer.Option(help="Inference log file or folder of rotated files."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Reports and summary.json (default <runs>/monitoring/latest)."
        ),
    ] = None,
    retrain_on_drift: Annotated[
        bool,
        typer.Option(
            "--retrain-on-drift",
            help="On drift, train and register; the champion gate decides.",
        ),
    ] = False,
    protocol: Annotated[
        str, typer.Option(help="Protocol retraining uses.")
    ] = "shop-temporal",
    no_workspace: Annotated[
        bool,
        typer.Option("--no-workspace", help="Add nothing to the Evidently workspace."),
    ] = False,
) -> None:
    """Drift checks (Evidently) of features, vectors, predictions and outcomes.

    Exit code 0 without drift, 1 with drift; checks that could not run are
    listed with their reason and never count as "no drift".
    """
    from interest_graph import stages

    settings = root_settings(ctx)
    result = stages.monitor(
        settings,
        reference=reference,
        current=current,
        data_dir=data_dir,
        features_dir=features_dir,
        model=model,
        inference_log=inference_log,
        out_dir=out,
        workspace=not no_workspace,
        retrain_on_drift=retrain_on_drift,
        protocol=protocol,
    )
    summary = result.summary
    typer.echo(
        f"reference {summary['reference']['start']} .. {summary['reference']['end']}"
    )
    typer.echo(
        f"current   {summary['current']['start']} .. {summary['current']['end']}"
    )
    for note in summary["notes"]:
        typer.echo(f"note: {note}")
    for check in summary["checks"].values():
        value = "" if check["value"] is None else f"{check['value']:.4f}"
        why = check["reason"] or ", ".join(check["details"].get("drifted_columns", []))
        typer.echo(f"{check['name']:<22} {check['verdict']:<9} {value:>8}  {why}")
    typer.echo(
        f"drift detected: {str(result.drift_detected).lower()}\n"
        f"report: {result.result.report_html}\nsummary: {result.result.summary_path}"
    )
    if result.retrained is not None:
        decision = result.retrained.registered
        typer.echo(
            f"retrained: {result.retrained.artifact}"
            + ("" if decision is None else f" ({decision.describe()})")
        )
    raise typer.Exit(1 if result.drift_detected else 0)


def register(app: typer.Typer) -> None:
    """Add ``monitor`` to ``app``."""
    app.command("monitor")(monitor_command)
