"""``interest-graph serve`` and ``interest-graph query``: the service and a call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from interest_graph.cli.support import clear_errors, root_settings


@clear_errors
def serve_command(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option(
            help="models:/NAME@ALIAS (followed by hot reload), models:/NAME/VERSION, "
            "runs:/, s3://, file:// or an artifact folder "
            "(default serving.model_uri: models:/recommender@champion)."
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on (127.0.0.1: this machine only; 0.0.0.0: "
            "every interface)."
        ),
    ] = None,
    http_port: Annotated[int | None, typer.Option(help="REST port (8080).")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="gRPC port (8081).")] = None,
    feast: Annotated[
        bool | None,
        typer.Option(
            "--feast/--no-feast", help="Look user features up in Feast (default on)."
        ),
    ] = None,
    inference_log: Annotated[
        Path | None,
        typer.Option(help="JSONL or .parquet sink (default .work/serving/...)."),
    ] = None,
    no_inference_log: Annotated[
        bool, typer.Option("--no-inference-log", help="Write no inference log.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Serving processes on the same ports, ~one per core (1)."
        ),
    ] = None,
    index: Annotated[
        str | None, typer.Option(help="auto | exact | faiss-ivf | faiss-hnsw (auto).")
    ] = None,
    items: Annotated[
        Path | None,
        typer.Option(help="Canonical items.parquet: category and price per item."),
    ] = None,
    history: Annotated[
        Path | None,
        typer.Option(help="Canonical events.parquet: items users have (excluded)."),
    ] = None,
    reload_seconds: Annotated[
        float | None,
        typer.Option(min=0, help="Registry alias poll interval; 0 = off (30)."),
    ] = None,
) -> None:
    """Serve recommendations over REST v1/v2 and gRPC v2 (KServe) in the foreground."""
    from interest_graph import stages

    settings = root_settings(ctx)
    overrides = {
        "model_uri": model,
        "host": host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "feast": feast,
        "inference_log": inference_log,
        "workers": workers,
        "index": index,
        "items_path": items,
        "history_path": history,
        "reload_seconds": reload_seconds,
    }
    update = {k: v for k, v in overrides.items() if v is not None}
    if no_inference_log:
        update["inference_log_enabled"] = False
    serving = settings.serving.model_validate(
        {**settings.serving.model_dump(), **update}
    )
    stages.serve(settings.model_copy(update={"serving": serving}))


@clear_errors
def query_command(
    ctx: typer.Context,
    user: Annotated[
        list[str], typer.Option("--user", help="User id (repeat for several users).")
    ],
    k: Annotated[int, typer.Option(min=1, help="Items per user.")] = 20,
    protocol: Annotated[str, typer.Option(help="v1 | v2 | grpc.")] = "v1",
    url: Annotated[
        str | None,
        typer.Option(
            help="http://localhost:8080 (REST) or localhost:8081 (gRPC) by default."
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per call.")] = 10.0,
) -> None:
    """Ask a running server for recommendations and print them as JSON."""
    from interest_graph import stages

    settings = root_settings(ctx).serving
    default = (
        f"localhost:{settings.grpc_port}"
        if protocol == "grpc"
        else f"http://localhost:{settings.http_port}"
    )
    answers = stages.query(
        user, k=k, url=url or default, protocol=protocol, timeout=timeout
    )
    typer.echo(json.dumps(answers if len(answers) > 1 else answers[0], indent=2))


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``query`` to ``app``."""
    app.command("serve")(serve_command)
    app.command("query")(query_command)
