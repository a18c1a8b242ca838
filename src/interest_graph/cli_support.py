"""What every ``interest-graph`` command shares: one-line errors and the settings."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import typer

from interest_graph.config import Settings
from interest_graph.errors import InterestGraphError

P = ParamSpec("P")
R = TypeVar("R")


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
