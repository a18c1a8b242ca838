"""Row triage: every input row is accepted or quarantined with a reason, never dropped.

A :class:`RowTriage` walks the rules of one input file in order; each row keeps the
first reason it fails. The summary proves rows in = accepted + quarantined.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


class RowTriage:
    """Assign each row of one input file the first quarantine reason it meets."""

    def __init__(self, source: str | Path, frame: pd.DataFrame) -> None:
        self.source = str(source)
        self.frame = frame.reset_index(drop=True)
        self._reason = np.full(len(self.frame), None, dtype=object)

    def reject(self, mask: pd.Series | np.ndarray, reason: str) -> None:
        """Quarantine rows where ``mask`` holds, unless an earlier rule already did."""
        hit = np.asarray(mask, dtype=bool) & self.accepted_mask
        self._reason[hit] = reason

    @property
    def accepted_mask(self) -> np.ndarray:
        """Rows that no rule has rejected so far."""
        return np.asarray(pd.isna(self._reason))

    def accepted(self) -> pd.DataFrame:
        """The rows that passed every rule, with their source row numbers as index."""
        return self.frame[self.accepted_mask]

    def quarantined(self) -> pd.DataFrame:
        """Rejected rows as text, with ``source_file``, ``source_row`` and reason."""
        mask = ~self.accepted_mask
        rows = self.frame[mask].astype("string")
        rows.insert(0, "quarantine_reason", self._reason[mask].astype(str))
        rows.insert(0, "source_row", np.flatnonzero(mask))
        rows.insert(0, "source_file", self.source)
        return rows.reset_index(drop=True)

    def summary(self) -> FileSummary:
        """Counts for this file: in, accepted, quarantined per reason."""
        reasons = pd.Series(self._reason[~self.accepted_mask], dtype=object)
        return FileSummary(
            source=self.source,
            rows_in=len(self.frame),
            accepted=int(self.accepted_mask.sum()),
            quarantined={str(k): int(v) for k, v in reasons.value_counts().items()},
        )


@dataclass(frozen=True)
class FileSummary:
    """Row accounting for one input file."""

    source: str
    rows_in: int
    accepted: int
    quarantined: dict[str, int]

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows_in": self.rows_in,
            "accepted": self.accepted,
            "quarantined": self.quarantined_total,
            "quarantined_by_reason": dict(sorted(self.quarantined.items())),
        }


@dataclass
class IngestReport:
    """Row accounting for a whole load, written as ``ingest_summary.json``."""

    loader: str
    files: dict[str, FileSummary] = field(default_factory=dict)
    quarantine: dict[str, pd.DataFrame] = field(default_factory=dict)

    def add(self, table: str, triage: RowTriage) -> None:
        """Record one input table's triage (its counts and its quarantined rows)."""
        self.files[table] = triage.summary()
        self.quarantine[table] = triage.quarantined()

    def as_dict(self) -> dict[str, Any]:
        totals = {
            "rows_in": sum(f.rows_in for f in self.files.values()),
            "accepted": sum(f.accepted for f in self.files.values()),
            "quarantined": sum(f.quarantined_total for f in self.files.values()),
        }
        return {
            "loader": self.loader,
            "balanced": totals["rows_in"] == totals["accepted"] + totals["quarantined"],
            "totals": totals,
            "files": {name: f.as_dict() for name, f in self.files.items()},
        }

    def write(self, data_dir: Path) -> Path:
        """Write the summary JSON and one quarantine Parquet per input table."""
        quarantine_dir = data_dir / "quarantine"
        quarantine_dir.mkdir(parents=True, exist_ok=True)
        for table, rows in self.quarantine.items():
            rows.to_parquet(quarantine_dir / f"{table}.parquet", index=False)
        path = data_dir / "ingest_summary.json"
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")
        return path
