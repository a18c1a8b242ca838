"""Errors that carry a message meant for the person running the command."""

from __future__ import annotations

from pathlib import Path


class InterestGraphError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class MalformedFileError(InterestGraphError):
    """An input file cannot be read as a table of the expected shape."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(InterestGraphError):
    """The configuration or a command-line choice is invalid."""
