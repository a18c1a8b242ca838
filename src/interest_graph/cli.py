"""The ``interest-graph`` command line: thin wrappers over the stage entry functions."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from interest_graph import stages
from interest_graph.cli_support import clear_errors, root_settings
from interest_graph.config import Settings, load_settings
from interest_graph.embeddings.cli import register as register_embed
from interest_graph.errors import InterestGraphError
from interest_graph.evaluation.baselines import BASELINES
from interest_graph.evaluation.protocols import PROTOCOLS
from interest_graph.features.cli import features_app
from interest_graph.models.recommender import GRAPH_MODELS, SCORING_MODELS
from interest_graph.registry.cli import registry_app
from interest_graph.serving.cli import register as register_serving

app = typer.Typer(
    help="User interest graph and recommendations for an online shop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Load, generate and validate shop data.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.add_typer(registry_app, name="registry")
register_embed(app)
register_serving(app)

# Wide enough for the metrics table when output goes to a file or a CI log.
console = Console(width=max(Console().width, 120))

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


def print_metrics_table(rows: Iterable[dict[str, Any]], k: int) -> None:
    """Print metrics rows as one table."""
    table = Table(title="Evaluation")
    columns = ["protocol", "model", "users", f"recall@{k}", f"ndcg@{k}", f"hit@{k}"]
    columns += [f"coverage@{k}", "seconds"]
    for column in columns:
        table.add_column(column, justify="left" if column in columns[:2] else "right")
    for row in rows:
        cells = [
            f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, ""))
            for c in columns
        ]
        table.add_row(*cells)
    console.print(table)


@app.command()
@clear_errors
def run(
    ctx: typer.Context,
    online_retail: Annotated[
        Path | None,
        typer.Option(
            help="Run on this Online Retail file instead of a synthetic shop."
        ),
    ] = None,
) -> None:
    """The main job end to end: data, validation, baselines, evaluation table."""
    from interest_graph.main_job import run_main_job

    settings = root_settings(ctx)
    report = run_main_job(settings, online_retail)
    totals = report["ingest"]["totals"]
    console.print(
        f"data: {report['data']}  rows in {totals['rows_in']}, accepted "
        f"{totals['accepted']}, quarantined {totals['quarantined']}"
    )
    print_metrics_table(report["evaluation"], settings.evaluation.k)
    registered = report["registry"]
    console.print(
        f"registry: version {registered['version']} "
        f"{'champion' if registered['promoted'] else 'challenger'} "
        f"({registered['reason']})"
    )
    sample = report["served_sample"]
    console.print(
        f"served by the champion for user {sample['user_id']} "
        f"(fallback {sample['fallback']}): "
        + "; ".join(
            f"{i['item_id']} {_short(i['title'], 40)} ({_short(i['reason'], 70)})"
            for i in sample["items"][:3]
        )
    )
    console.print(f"step seconds: {report['seconds']}")
    console.print(f"written: {report['run_dir']}/evaluation.json")


def _short(text: str | None, width: int) -> str:
    text = text or ""
    return text if len(text) <= width else text[: width - 1] + "…"


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
    if kind not in ("online-retail", "gowalla", "custom-shop"):
        raise InterestGraphError(
            f"unknown kind {kind!r}; choose online-retail, gowalla or custom-shop"
        )
    settings = root_settings(ctx)
    target = out or settings.paths.data_dir / kind
    result = stages.ingest(kind, source, target, settings)  # type: ignore[arg-type]
    console.print_json(json.dumps(result.summary))
    console.print(f"summary: {result.summary_path}")


@data_app.command("validate")
@clear_errors
def data_validate(
    data_dir: Annotated[Path, typer.Argument(help="Canonical data folder.")],
) -> None:
    """Check canonical tables: schema, event types, references; exit 1 on problems."""
    from interest_graph.data.validate import table_problems
    from interest_graph.schema import ShopTables

    try:
        tables = ShopTables.read(data_dir)
    except (OSError, KeyError, ValueError) as exc:
        raise InterestGraphError(
            f"{data_dir}: not a canonical data folder ({exc})"
        ) from exc
    problems = table_problems(tables)
    for problem in problems:
        typer.echo(f"problem: {problem}", err=True)
    sizes = {name: len(getattr(tables, name)) for name in ("events", "items", "users")}
    typer.echo(f"{data_dir}: {sizes}, {len(problems)} problems")
    if problems:
        raise typer.Exit(1)


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
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
    from interest_graph.tuning import tune_model

    settings = root_settings(ctx)
    data = source or _default_source(protocol, settings)
    result = tune_model(
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


@app.command()
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


if __name__ == "__main__":
    app()
