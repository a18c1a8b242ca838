"""``interest-graph evaluate|recommend|train|tune|interests``: the model stages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from interest_graph import stages
from interest_graph.cli.support import (
    clear_errors,
    console,
    print_metrics_table,
    root_settings,
)
from interest_graph.config import Settings
from interest_graph.errors import InterestGraphError
from interest_graph.evaluation.baselines import BASELINES
from interest_graph.evaluation.protocols import PROTOCOLS
from interest_graph.models.recommender import GRAPH_MODELS, SCORING_MODELS

ProtocolOption = Annotated[
    str, typer.Option(help=f"Evaluation protocol: {', '.join(PROTOCOLS)}.")
]
SourceOption = Annotated[
    Path,
    typer.Option(
        help="Raw Online Retail file, Gowalla folder, or canonical data folder."
    ),
]
ModelOption = Annotated[
    str,
    typer.Option(
        help=f"Model: {', '.join(BASELINES + GRAPH_MODELS + SCORING_MODELS)}, "
        "or an artifact folder."
    ),
]


@clear_errors
def evaluate(
    ctx: typer.Context,
    protocol: ProtocolOption,
    source: SourceOption,
    model: ModelOption = "popularity",
    out: Annotated[
        Path | None, typer.Option(help="Write the metrics JSON here.")
    ] = None,
    recs: Annotated[
        Path | None,
        typer.Option(help="Score this recommendation file instead of running --model."),
    ] = None,
    k: Annotated[int | None, typer.Option(min=1, help="Cut-off (default 20).")] = None,
) -> None:
    """Score a model or a recommendation file on a protocol."""
    settings = _with_k(root_settings(ctx), k)
    result = stages.evaluate(protocol, source, model, settings, out, recs)
    print_metrics_table([result], settings.evaluation.k)
    console.print_json(json.dumps(result))


@clear_errors
def recommend(
    ctx: typer.Context,
    protocol: ProtocolOption,
    source: SourceOption,
    out: Annotated[Path, typer.Option(help="Parquet, or CSV if the name ends .csv.")],
    model: ModelOption = "popularity",
    k: Annotated[int, typer.Option(min=1, max=10_000, help="Items per user.")] = 20,
) -> None:
    """Write top-k recommendations (user_id, item_id, rank, score) for test users."""
    settings = root_settings(ctx)
    path = stages.recommend(protocol, source, model, out, settings, k)
    console.print(f"written: {path}")


@clear_errors
def train(
    ctx: typer.Context,
    protocol: ProtocolOption = "shop-temporal",
    source: Annotated[
        Path | None,
        typer.Option(help="Data the protocol reads (default: the synthetic shop)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default: <work>/runs/<model>).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help=f"Override train.model: {', '.join(GRAPH_MODELS + SCORING_MODELS)}."
        ),
    ] = None,
    register: Annotated[
        bool,
        typer.Option(
            help="Register the model (MLflow) and promote it if it beats the champion."
        ),
    ] = False,
) -> None:
    """Train the graph model of the `train` settings; write the artifact + metrics."""
    settings = root_settings(ctx)
    name = model or settings.train.model
    trainable = GRAPH_MODELS + SCORING_MODELS
    if name not in trainable:
        raise InterestGraphError(f"cannot train {name!r}; choose one of {trainable}")
    data = source or settings.paths.data_dir / "synth"
    target = out or settings.paths.runs_dir / name
    result = stages.train(protocol, data, target, settings, name, register=register)
    print_metrics_table([result.metrics], settings.evaluation.k)
    console.print(f"artifact: {result.artifact}\nmetrics: {result.metrics_path}")
    if result.registered is not None:
        console.print(f"registered {result.registered.describe()}")


@clear_errors
def tune(
    ctx: typer.Context,
    protocol: ProtocolOption = "online-retail-temporal",
    source: Annotated[
        Path | None,
        typer.Option(help="Data the protocol reads (default: shared Online Retail)."),
    ] = None,
    trials: Annotated[
        int | None, typer.Option(help="Trials to run (default tune.trials).")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster: ray://HOST:10001 (KubeRay) or HOST:PORT."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default <work>/runs/tune-*).")
    ] = None,
    register: Annotated[
        bool,
        typer.Option(help="Register the tuned model; the gate decides promotion."),
    ] = True,
) -> None:
    """Ray Tune search (ASHA) over the graph model; retrain and test the best."""
    settings = root_settings(ctx)
    data = source or _default_source(protocol, settings)
    result = stages.tune(
        protocol,
        data,
        settings,
        trials=trials,
        address=address,
        out_dir=out,
        register=register,
    )
    print_metrics_table([result.final.metrics], settings.evaluation.k)
    console.print(json.dumps(result.summary(), indent=2, default=str))
    console.print(
        f"trials: {result.trials_path}\nplot: {result.plot_path}\n"
        f"model: {result.final.artifact}"
    )


def _default_source(protocol: str, settings: Settings) -> Path:
    shared = settings.paths.shared_data_dir
    if protocol.startswith("online-retail"):
        return shared / "online_retail" / "Online_Retail.parquet"
    if protocol.startswith("gowalla"):
        return shared / "gowalla"
    return settings.paths.data_dir / "synth"


@clear_errors
def interests(
    ctx: typer.Context,
    model: Annotated[Path, typer.Option(help="Model artifact folder (from train).")],
    user: Annotated[str | None, typer.Option(help="Explain this user.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Export nodes/edges (Parquet, GraphML) and drawings here."),
    ] = None,
    push: Annotated[
        bool, typer.Option(help="Push user interest vectors to Feast.")
    ] = False,
    n_interests: Annotated[
        int | None, typer.Option(min=2, help="Interest nodes (default: from items).")
    ] = None,
) -> None:
    """The interest graph of a model: a user's interests, exports, Feast push."""
    settings = root_settings(ctx)
    result = stages.interests(
        model, settings, user=user, out_dir=out, push=push, n_interests=n_interests
    )
    if user is not None:
        table = Table(title=f"interests of user {user}")
        for column in ("rank", "interest", "weight", "example items"):
            table.add_column(column)
        for row in result.explanation:
            examples = "; ".join(
                f"{item['title'] or item['item_id']} ({item['score']:.3f})"
                for item in row["items"]
            )
            table.add_row(
                str(row["rank"]), row["label"], f"{row['weight']:.3f}", examples
            )
        console.print(table)
        if not result.explanation:
            console.print("the model has no vector for this user: no interests")
    for name, path in result.files.items():
        console.print(f"{name}: {path}")
    if push:
        console.print(f"pushed {result.pushed} users' interests to Feast")


def _with_k(settings: Settings, k: int | None) -> Settings:
    if k is None:
        return settings
    evaluation = settings.evaluation.model_copy(update={"k": k})
    return settings.model_copy(update={"evaluation": evaluation})


def register(app: typer.Typer) -> None:
    """Add the model commands to ``app``."""
    for command in (evaluate, recommend, train, tune, interests):
        app.command()(command)
