"""Loader for the LightGCN/NGCF Gowalla split: lines of ``user item item ...``.

Each (user, item) pair is a row; a pair that is not two non-negative integers, or
repeats an earlier pair, is quarantined with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from interest_graph.data.quarantine import IngestReport, RowTriage
from interest_graph.errors import MalformedFileError

SPLIT_FILES = ("train.txt", "test.txt")


@dataclass(frozen=True)
class GowallaData:
    """Integer (user, item) pairs of the fixed train and test files."""

    train: pd.DataFrame
    test: pd.DataFrame
    report: IngestReport


def _read_pairs(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise MalformedFileError(path, "file does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise MalformedFileError(path, f"not UTF-8 text ({exc.reason})") from exc
    if not any(line.strip() for line in lines):
        raise MalformedFileError(path, "file is empty")
    users: list[str] = []
    items: list[str] = []
    line_numbers: list[int] = []
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if len(tokens) < 2:
            continue  # a user with no items in this file: no pair, nothing to lose
        users.extend([tokens[0]] * (len(tokens) - 1))
        items.extend(tokens[1:])
        line_numbers.extend([number] * (len(tokens) - 1))
    return pd.DataFrame({"line": line_numbers, "user": users, "item": items})


def load_gowalla(folder: str | Path) -> GowallaData:
    """Load ``train.txt`` and ``test.txt`` from ``folder``.

    Raises:
        MalformedFileError: a file is missing, empty or not text.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MalformedFileError(folder, "expected the Gowalla folder with train.txt")
    report = IngestReport(loader="gowalla")
    splits = {}
    for file_name in SPLIT_FILES:
        raw = _read_pairs(folder / file_name)
        triage = RowTriage(file_name, raw)
        user = pd.to_numeric(raw["user"], errors="coerce")
        item = pd.to_numeric(raw["item"], errors="coerce")
        whole = user.notna() & item.notna()
        whole &= (user == np.floor(user)) & (item == np.floor(item))
        triage.reject(~whole, "id not an integer")
        triage.reject((user < 0) | (item < 0), "negative id")
        # Compare parsed ids, so "5" and "05" are the same pair.
        pairs = pd.DataFrame({"user": user, "item": item})
        triage.reject(pairs.duplicated(), "duplicate")
        splits[file_name.removesuffix(".txt")] = (
            pairs[triage.accepted_mask].astype("int64").reset_index(drop=True)
        )
        report.add(file_name.removesuffix(".txt"), triage)
    return GowallaData(train=splits["train"], test=splits["test"], report=report)
