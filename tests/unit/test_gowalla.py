"""Tests of the Gowalla loader: one row per (user, item) pair, bad pairs quarantined."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from interest_graph.data.gowalla import load_gowalla
from interest_graph.errors import MalformedFileError

TRAIN = (
    "0 1 2 3\n"  # line 1: three pairs
    "1 2 x 4\n"  # line 2: "x" is no id
    "2 -5 6\n"  # line 3: a negative item
    "3\n"  # line 4: a user with no items, no pair
    "0 1\n"  # line 5: repeats (0, 1)
    "-1 7\n"  # line 6: a negative user
    "4 2.5\n"  # line 7: not an integer
)
TEST = "0 4\n1 5 5\n\n2\n"


def _folder(tmp_path: Path, train: str | None = TRAIN, test: str | None = TEST) -> Path:
    folder = tmp_path / "gowalla"
    folder.mkdir()
    if train is not None:
        (folder / "train.txt").write_text(train, encoding="utf-8")
    if test is not None:
        (folder / "test.txt").write_text(test, encoding="utf-8")
    return folder


def test_pairs_and_counts(tmp_path: Path) -> None:
    data = load_gowalla(_folder(tmp_path))
    assert data.train.dtypes.astype(str).to_dict() == {"user": "int64", "item": "int64"}
    assert data.train.values.tolist() == [
        [0, 1],
        [0, 2],
        [0, 3],
        [1, 2],
        [1, 4],
        [2, 6],
    ]
    assert data.test.values.tolist() == [[0, 4], [1, 5]]

    summary = data.report.as_dict()
    assert summary["loader"] == "gowalla"
    assert summary["files"]["train"] == {
        "source": "train.txt",
        "rows_in": 11,
        "accepted": 6,
        "quarantined": 5,
        "quarantined_by_reason": {
            "duplicate": 1,
            "id not an integer": 2,
            "negative id": 2,
        },
    }
    assert summary["files"]["test"] == {
        "source": "test.txt",
        "rows_in": 3,
        "accepted": 2,
        "quarantined": 1,
        "quarantined_by_reason": {"duplicate": 1},
    }
    assert summary["totals"] == {"rows_in": 14, "accepted": 8, "quarantined": 6}
    assert summary["balanced"] is True


def test_quarantined_pairs_keep_their_line(tmp_path: Path) -> None:
    data = load_gowalla(_folder(tmp_path))
    rows = data.report.quarantine["train"]
    assert rows[["line", "user", "item", "quarantine_reason"]].values.tolist() == [
        ["2", "1", "x", "id not an integer"],
        ["3", "2", "-5", "negative id"],
        ["5", "0", "1", "duplicate"],
        ["6", "-1", "7", "negative id"],
        ["7", "4", "2.5", "id not an integer"],
    ]
    assert (rows["source_file"] == "train.txt").all()


def test_report_write(tmp_path: Path) -> None:
    data = load_gowalla(_folder(tmp_path))
    data.report.write(tmp_path / "out")
    test_rows = pd.read_parquet(tmp_path / "out" / "quarantine" / "test.parquet")
    assert test_rows["quarantine_reason"].tolist() == ["duplicate"]
    assert test_rows["line"].tolist() == ["2"]
    assert (tmp_path / "out" / "quarantine" / "train.parquet").is_file()
    assert (tmp_path / "out" / "ingest_summary.json").is_file()


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(MalformedFileError) as caught:
        load_gowalla(tmp_path / "nowhere")
    assert caught.value.path == str(tmp_path / "nowhere")
    assert "Gowalla folder" in caught.value.problem


def test_missing_test_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path, test=None)
    with pytest.raises(MalformedFileError) as caught:
        load_gowalla(folder)
    assert caught.value.path == str(folder / "test.txt")
    assert caught.value.problem == "file does not exist"


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_train_file(tmp_path: Path, content: str) -> None:
    folder = _folder(tmp_path, train=content)
    with pytest.raises(MalformedFileError) as caught:
        load_gowalla(folder)
    assert caught.value.path == str(folder / "train.txt")
    assert caught.value.problem == "file is empty"


def test_non_utf8_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "test.txt").write_bytes("0 1\n1 é\n".encode("latin-1"))
    with pytest.raises(MalformedFileError) as caught:
        load_gowalla(folder)
    assert caught.value.path == str(folder / "test.txt")
    assert "not UTF-8" in caught.value.problem


def test_float_written_integer_does_not_crash(tmp_path: Path) -> None:
    data = load_gowalla(_folder(tmp_path, train="0 1.0 2\n", test="0 3\n"))
    counts = data.report.as_dict()["files"]["train"]
    assert counts["rows_in"] == counts["accepted"] + counts["quarantined"] == 2


def test_same_pair_written_differently_is_a_duplicate(tmp_path: Path) -> None:
    data = load_gowalla(_folder(tmp_path, train="0 5 05\n", test="0 3\n"))
    assert data.train.values.tolist() == [[0, 5]]
    assert data.report.files["train"].quarantined == {"duplicate": 1}
