"""What each user already has: items excluded from their recommendations.

Read once from the canonical events (``serving.history_path``): purchases when
the events have types, every interaction otherwise. Held as CSR arrays over item
codes, so a lookup is two slices; a model maps the codes to its own item rows
once per load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from interest_graph.errors import MalformedFileError

EXCLUDED_EVENTS = ("purchase",)


@dataclass(frozen=True, eq=False)
class UserHistory:
    """Per user, the item codes they have (CSR rows), and items' event counts.

    Attributes:
        user_ids: id of each row.
        item_ids: id of each item code.
        indptr: CSR row pointers into ``codes``.
        codes: item codes, row by row.
        counts: events per item code (popularity).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    indptr: np.ndarray
    codes: np.ndarray
    counts: np.ndarray
    _user_rows: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rows = {str(u): i for i, u in enumerate(self.user_ids)}
        object.__setattr__(self, "_user_rows", rows)

    def codes_of(self, user_id: str) -> np.ndarray:
        """Item codes of the user (empty for an unknown user)."""
        row = self._user_rows.get(user_id)
        if row is None:
            return np.empty(0, dtype=np.int64)
        return self.codes[self.indptr[row] : self.indptr[row + 1]]

    def item_ids_of(self, user_id: str) -> tuple[str, ...]:
        """Item ids of the user."""
        return tuple(str(i) for i in self.item_ids[self.codes_of(user_id)])

    @classmethod
    def from_matrix(
        cls, user_ids: Sequence[str], item_ids: Sequence[str], matrix: sp.spmatrix
    ) -> UserHistory:
        """From a users × items interaction matrix (a split's training matrix)."""
        csr = sp.csr_matrix(matrix)
        csr.sort_indices()
        return cls(
            user_ids=np.asarray(user_ids, dtype=object),
            item_ids=np.asarray(item_ids, dtype=object),
            indptr=csr.indptr.astype(np.int64),
            codes=csr.indices.astype(np.int64),
            counts=np.asarray(csr.sum(axis=0)).ravel().astype(np.float64),
        )

    @classmethod
    def from_events(cls, path: Path) -> UserHistory:
        """From canonical ``events.parquet`` (``user_id``, ``item_id``, ``event_type``).

        Raises:
            MalformedFileError: the file cannot be read or lacks the id columns.
        """
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise MalformedFileError(path, f"cannot be read: {exc}") from exc
        for column in ("user_id", "item_id"):
            if column not in frame:
                raise MalformedFileError(path, f"has no {column} column")
        counts_frame = frame
        if "event_type" in frame:
            frame = frame[frame["event_type"].isin(EXCLUDED_EVENTS)]
        users, user_ids = pd.factorize(frame["user_id"].astype(str), sort=True)
        items, item_ids = pd.factorize(
            pd.concat([frame["item_id"], counts_frame["item_id"]]).astype(str)
        )
        had = sp.csr_matrix(
            (np.ones(len(frame)), (users, items[: len(frame)])),
            shape=(len(user_ids), len(item_ids)),
        )
        had.sort_indices()
        counts = np.bincount(items[len(frame) :], minlength=len(item_ids))
        return cls(
            user_ids=np.asarray(user_ids, dtype=object),
            item_ids=np.asarray(item_ids, dtype=object),
            indptr=had.indptr.astype(np.int64),
            codes=had.indices.astype(np.int64),
            counts=counts.astype(np.float64),
        )
