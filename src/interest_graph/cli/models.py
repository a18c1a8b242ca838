"""``interest-graph evaluate|recommend|train|tune|interests``: the model stages."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from interest_graph.cli.choices import (
    BASELINE_NAMES,
    GRAPH_MODEL_NAMES,
    PROTOCOL_NAMES,
    SCORING_MODEL_NAMES,
)
from interest_graph.cli.support import (
    clear_errors,
    console,
    print_metrics_table,
    root_settings,
)
from interest_graph.config import Settings
from interest_graph.errors import InterestGraphError

TRAINABLE = GRAPH_MODEL_NAMES + SCORING_MODEL_NAMES
ProtocolOption = Annotated[
    str, typer.Option(help=f"Evaluation protocol: {', '.join(PROTOCOL_NAMES)}.")
]
SourceOption = Annotated[
    Path,
    typer.Option(
        help="Raw Online Retail file, Gowalla folder, or canonical data folder."
    ),
]
MODEL_HELP = f"Model: {', '.join(BASELINE_NAMES + TRAINABLE)}, or an artifact folder."
ModelOption = Annotated[str, typer.Option(help=MODEL_HELP)]


@clear_errors
def evaluate(
    ctx: typer.Context,
    protocol: ProtocolOption,
    source: SourceOption,
    model: Annotated[
        str | None, typer.Option(help=f"{MODEL_HELP} (default popularity)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the metrics JSON here.")
    ] = None,
    recs: Annotated[
        Path | None,
        typer.Option(help="Score this recommendation file instead of running --model."),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            help="Name of the --recs file's scores in the table and the JSON "
            "(default: --model if given, else the file's name)."
        ),
    ] = None,
    k: Annotated[int | None, typer.Option(min=1, help="Cut-off (default 20).")] = None,
) -> None:
    """Score a model or a recommendation file on a protocol."""
    from interest_graph import stages

    if recs is None and label is not None:
        raise InterestGraphError("--label names a --recs file's scores; add --recs")
    # A recommendation file's scores are the file's, not a default model's.
    name = (label or model or recs.stem) if recs is not None else model
    settings = _with_k(root_settings(ctx), k)
    result = stages.evaluate(
        protocol, source, name or "popularity", settings, out, recs
    )
    print_metrics_table([result], settings.evaluation.k)
    if "feature_importance" in result:
        _print_importance(result["feature_importance"])
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
    from interest_graph import stages

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
        typer.Option(help=f"Override train.model: {', '.join(TRAINABLE)}."),
    ] = None,
    register: Annotated[
        bool,
        typer.Option(
            help="Register the model (MLflow) and promote it if it beats the champion."
        ),
    ] = False,
) -> None:
    """Train the graph model of the `train` settings; write the artifact + metrics."""
    from interest_graph import stages

    settings = root_settings(ctx)
    name = model or settings.train.model
    if name not in TRAINABLE:
        raise InterestGraphError(f"cannot train {name!r}; choose one of {TRAINABLE}")
    data = source or settings.paths.data_dir / "synth"
    target = out or settings.paths.runs_dir / name
    started = time.perf_counter()
    result = stages.train(protocol, data, target, settings, name, register=register)
    print_metrics_table([_timed(result.metrics, started)], settings.evaluation.k)
    if "feature_importance" in result.metrics:
        _print_importance(result.metrics["feature_importance"])
    console.print(f"artifact: {result.artifact}\nmetrics: {result.metrics_path}")
    if result.registered is not None:
        console.print(f"registered {result.registered.describe()}")


def _print_importance(rows: list[dict[str, Any]], top: int = 15) -> None:
    """The learned ranker's features by their share of the total gain."""
    table = Table(title="Hybrid ranker: what carries the ranking")
    for column in ("feature", "gain share", "splits"):
        table.add_column(column, justify="left" if column == "feature" else "right")
    for row in rows[:top]:
        table.add_row(row["feature"], f"{row['gain_share']:.3f}", str(row["splits"]))
    console.print(table)


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
    from interest_graph import stages

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
    from interest_graph import stages

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


def _timed(metrics: dict[str, Any], started: float) -> dict[str, Any]:
    """A metrics row with ``seconds``: the stage's own, else its time from ``started``.

    Training writes ``fit_seconds`` but no ``seconds``; the table's column would be
    empty without this.
    """
    return {"seconds": round(time.perf_counter() - started, 2), **metrics}


def _with_k(settings: Settings, k: int | None) -> Settings:
    if k is None:
        return settings
    evaluation = settings.evaluation.model_copy(update={"k": k})
    return settings.model_copy(update={"evaluation": evaluation})


def register(app: typer.Typer) -> None:
    """Add the model commands to ``app``."""
    for command in (evaluate, recommend, train, tune, interests):
        app.command()(command)
