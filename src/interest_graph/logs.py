"""The project's one logger and progress bar, so every stage reports the same way."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.logging import RichHandler
from tqdm.auto import tqdm

T = TypeVar("T")

_LOGGER_NAME = "interest_graph"

# Deprecation notices the libraries we call print about their own internals; a user
# of this command line can do nothing about them.
LIBRARY_NOISE: tuple[tuple[str, type[Warning]], ...] = (
    # torch-geometric at import
    (r"`torch\.jit\.script(_method)?` is deprecated", DeprecationWarning),
    # MLflow's SQLAlchemy store
    (r"The ``noload`` loader strategy is deprecated", DeprecationWarning),
    # KServe's REST routes answer with FastAPI's ORJSONResponse (a UserWarning
    # subclass, FastAPIDeprecationWarning), once per route in the server's log
    (r"ORJSONResponse is deprecated", UserWarning),
)


def quiet_library_warnings() -> None:
    """Hide :data:`LIBRARY_NOISE`, even where ``-W`` or ``PYTHONWARNINGS`` ask."""
    for message, category in LIBRARY_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)


def get_logger(name: str | None = None) -> logging.Logger:
    """Return the project logger (or a child of it), configured once.

    The level comes from ``INTEREST_GRAPH_LOG_LEVEL`` (default ``INFO``).
    """
    root = logging.getLogger(_LOGGER_NAME)
    if not root.handlers:
        # stderr, so commands that print JSON on stdout stay parseable.
        handler = RichHandler(
            console=Console(stderr=True),
            show_path=False,
            rich_tracebacks=False,
            markup=False,
        )
        handler.setFormatter(logging.Formatter("%(message)s", datefmt="[%X]"))
        root.addHandler(handler)
        root.setLevel(os.environ.get("INTEREST_GRAPH_LOG_LEVEL", "INFO").upper())
        root.propagate = False
    return root if name is None else root.getChild(name)


def progress(
    iterable: Iterable[T], *, desc: str, total: int | None = None
) -> Iterator[T]:
    """Wrap a long loop in a progress bar; silent when stderr is not a terminal."""
    yield from tqdm(
        iterable,
        desc=desc,
        total=total,
        disable=None,  # tqdm: disable on non-TTY, so CI logs stay readable
        leave=False,
    )
