"""What every ``interest-graph`` command shares: one-line errors, the settings,
the console and the metrics table."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from interest_graph.config import Settings
from interest_graph.errors import InterestGraphError

P = ParamSpec("P")
R = TypeVar("R")

# Wide enough for the metrics table when output goes to a file or a CI log.
console = Console(width=max(Console().width, 120))


def clear_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print the project's own errors as one line and exit 2, without a traceback."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except InterestGraphError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc

    return wrapper


def root_settings(ctx: typer.Context) -> Settings:
    """The settings the root command loaded (``--config`` and the environment)."""
    settings = ctx.find_root().obj
    return settings if isinstance(settings, Settings) else Settings()


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


def short(text: str | None, width: int) -> str:
    """``text`` cut to ``width`` characters with an ellipsis."""
    text = text or ""
    return text if len(text) <= width else text[: width - 1] + "…"
