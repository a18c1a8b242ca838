"""``interest-graph run`` (the main job: the training pipeline on this machine)
and ``interest-graph pipeline run|compile|submit|schedule``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from interest_graph.cli.support import (
    clear_errors,
    console,
    print_metrics_table,
    root_settings,
    short,
)

pipeline_app = typer.Typer(
    help="Kubeflow pipelines: run locally, compile, submit, schedule.",
    no_args_is_help=True,
)


def _run(
    ctx: typer.Context,
    *,
    online_retail: Path | None,
    tune_trials: int,
    runner: str,
    model: str | None,
) -> None:
    from interest_graph import stages

    settings = root_settings(ctx)
    report = stages.run_pipeline(
        settings,
        source_kind="online-retail" if online_retail else "synth",
        source_uri=online_retail,
        tune_trials=tune_trials,
        runner=runner,
        model=model,
    )
    _print_summary(report.summary, settings.evaluation.k)
    console.print(f"written: {report.summary_path}")


def _print_summary(summary: dict[str, Any], k: int) -> None:
    totals = summary["ingest"]["totals"]
    console.print(
        f"data: {summary['data']}  rows in {totals['rows_in']}, accepted "
        f"{totals['accepted']}, quarantined {totals['quarantined']}"
    )
    print_metrics_table(summary["evaluation"], k)
    registered = summary["registry"]
    console.print(
        f"registry: version {registered['version']} "
        f"{'champion' if registered['promoted'] else 'challenger'} "
        f"({registered['reason']})"
    )
    sample = summary["served_sample"]
    console.print(
        f"served by the champion for user {sample['user_id']} "
        f"(version {sample['model_version']}, fallback {sample['fallback']}): "
        + "; ".join(
            f"{i['item_id']} {short(i['title'], 40)} ({short(i['reason'], 70)})"
            for i in sample["items"][:3]
        )
    )
    table = Table(title=f"pipeline {summary['pipeline']} ({summary['runner']})")
    for column in ("task", "status", "seconds"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for task in summary["tasks"]:
        seconds = task["seconds"]
        table.add_row(
            task["name"], task["status"], "" if seconds is None else f"{seconds:.1f}"
        )
    console.print(table)
    console.print(f"pipeline seconds: {summary['seconds']}  log: {summary['log']}")


OnlineRetailOption = Annotated[
    Path | None,
    typer.Option(help="Run on this Online Retail file instead of a synthetic shop."),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        help="What the train step trains: lightgcn, text-lightgcn, hetero-sage or "
        "hybrid (default: train.model where your settings set it, else hybrid)."
    ),
]
TrialsOption = Annotated[
    int, typer.Option(min=0, help="Ray Tune trials before training (0: none).")
]


@clear_errors
def run(
    ctx: typer.Context,
    online_retail: OnlineRetailOption = None,
    tune_trials: TrialsOption = 0,
    model: ModelOption = None,
) -> None:
    """The main job: the training pipeline on this machine (kfp.local), then one
    recommendation from the served champion."""
    _run(
        ctx,
        online_retail=online_retail,
        tune_trials=tune_trials,
        runner="subprocess",
        model=model,
    )


@pipeline_app.command("run")
@clear_errors
def pipeline_run(
    ctx: typer.Context,
    runner: Annotated[
        str,
        typer.Option(
            help="subprocess (this environment) or docker (the component image, "
            "registry on PostgreSQL, Feast online store on Redis)."
        ),
    ] = "subprocess",
    online_retail: OnlineRetailOption = None,
    tune_trials: TrialsOption = 0,
    model: ModelOption = None,
) -> None:
    """Run the training pipeline locally with kfp.local."""
    _run(
        ctx,
        online_retail=online_retail,
        tune_trials=tune_trials,
        runner=runner,
        model=model,
    )


def register(app: typer.Typer) -> None:
    """Add ``run`` to ``app``."""
    app.command("run")(run)


NameArgument = Annotated[
    str, typer.Argument(help="The pipeline: training or monitoring.")
]
HostOption = Annotated[
    str, typer.Option(help="KFP API, e.g. http://ml-pipeline-ui.kubeflow:80.")
]
ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", help="Pipeline parameter KEY=VALUE (repeatable)."),
]
ExperimentOption = Annotated[str, typer.Option(help="Experiment (created if missing).")]
NamespaceOption = Annotated[
    str | None, typer.Option(help="Kubeflow profile namespace (multi-user).")
]


def _parameters(pairs: list[str] | None) -> dict[str, str]:
    from interest_graph.errors import ConfigError

    parameters = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {pair!r}: expected KEY=VALUE")
        parameters[key] = value
    return parameters


def _package(ctx: typer.Context, name: str, out: Path | None) -> Path:
    return out or root_settings(ctx).paths.work_dir / "kfp" / f"{name}_pipeline.yaml"


@pipeline_app.command("compile")
@clear_errors
def pipeline_compile(
    ctx: typer.Context,
    name: NameArgument = "training",
    out: Annotated[
        Path | None, typer.Option(help="YAML file (default .work/kfp/NAME.yaml).")
    ] = None,
) -> None:
    """Compile a pipeline to KFP IR YAML (upload it in the KFP UI)."""
    from interest_graph import stages

    console.print(f"written: {stages.compile_pipeline(name, _package(ctx, name, out))}")


@pipeline_app.command("submit")
@clear_errors
def pipeline_submit(
    ctx: typer.Context,
    host: HostOption,
    name: NameArgument = "training",
    param: ParamOption = None,
    experiment: ExperimentOption = "interest-graph",
    run_name: Annotated[str | None, typer.Option(help="Name of the run.")] = None,
    namespace: NamespaceOption = None,
) -> None:
    """Compile a pipeline and start a run of it on a Kubeflow cluster."""
    from interest_graph import stages

    run = stages.submit_pipeline(
        name,
        host,
        experiment=experiment,
        parameters=_parameters(param),
        package=_package(ctx, name, None),
        run_name=run_name,
        namespace=namespace,
    )
    console.print(f"run {run.id} ({run.name}) in experiment {run.experiment_id}")


@pipeline_app.command("schedule")
@clear_errors
def pipeline_schedule(
    ctx: typer.Context,
    host: HostOption,
    cron: Annotated[
        str, typer.Option(help="Cron, 5 fields or KFP's 6 (seconds first).")
    ],
    name: NameArgument = "monitoring",
    param: ParamOption = None,
    experiment: ExperimentOption = "interest-graph",
    job_name: Annotated[
        str | None, typer.Option(help="Name of the recurring run.")
    ] = None,
    namespace: NamespaceOption = None,
) -> None:
    """Create a recurring run of a pipeline (by default the monitoring one)."""
    from interest_graph import stages

    job = stages.schedule_pipeline(
        name,
        host,
        experiment=experiment,
        cron=cron,
        parameters=_parameters(param),
        package=_package(ctx, name, None),
        job_name=job_name,
        namespace=namespace,
    )
    console.print(
        f"recurring run {job.id} ({job.name}) in experiment {job.experiment_id}"
    )
