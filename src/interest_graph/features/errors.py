"""Feature store failures worded for the person running the command."""

from __future__ import annotations

from pathlib import Path

from interest_graph.errors import InterestGraphError


class FeatureStoreError(InterestGraphError):
    """The feature store is not set up for what was asked (not applied, not built)."""


class OnlineStoreUnavailableError(FeatureStoreError):
    """The online store (Redis) cannot be reached; serving falls back on this."""


class FeatureTableError(FeatureStoreError):
    """A feature view's table is missing or has the wrong schema."""

    def __init__(
        self, view: str, path: str | Path, problem: str, column: str | None = None
    ) -> None:
        self.view = view
        self.path = str(path)
        self.column = column
        self.problem = problem
        where = f"column {column!r} " if column else ""
        super().__init__(f"feature view {view!r}: {where}{problem} ({self.path})")
