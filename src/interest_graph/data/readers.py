"""Read an input table (Parquet, CSV or Excel); every failure is one clear error."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa

from interest_graph.errors import MalformedFileError

TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv", ".txt", ".xlsx")


def read_table(
    path: str | Path,
    required_columns: Iterable[str] = (),
    *,
    all_sheets: bool = False,
) -> pd.DataFrame:
    """Read a whole input file as strings-or-native columns, checking its columns.

    Args:
        path: a ``.parquet``, ``.csv``/``.tsv`` or ``.xlsx`` file.
        required_columns: columns the caller needs; any missing one is an error.
        all_sheets: read every sheet of a workbook, one after the other (a UCI
            release splits its years into sheets); by default only the first.

    Raises:
        MalformedFileError: missing, empty, unreadable (truncated Parquet, wrong
            encoding, broken workbook) or lacking required columns.
    """
    path = Path(path)
    if not path.exists():
        raise MalformedFileError(path, "file does not exist")
    if path.is_dir():
        raise MalformedFileError(path, "is a folder, expected a file")
    if path.stat().st_size == 0:
        raise MalformedFileError(path, "file is empty")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv", ".txt"):
            frame = pd.read_csv(
                path,
                sep="\t" if suffix == ".tsv" else ",",
                dtype=str,
                keep_default_na=False,
                encoding="utf-8",
            )
        elif suffix == ".xlsx" and all_sheets:
            frame = _concat_sheets(
                path, pd.read_excel(path, engine="openpyxl", sheet_name=None)
            )
        elif suffix == ".xlsx":
            frame = pd.read_excel(path, engine="openpyxl")
        else:
            raise MalformedFileError(
                path, f"unsupported file type {suffix!r}; use one of {TABLE_SUFFIXES}"
            )
    except MalformedFileError:
        raise
    except UnicodeDecodeError as exc:
        raise MalformedFileError(
            path, f"not UTF-8 text (byte {exc.start}: {exc.reason}); re-save as UTF-8"
        ) from exc
    except (pa.ArrowException, OSError) as exc:
        raise MalformedFileError(path, f"not a readable Parquet file ({exc})") from exc
    except (zipfile.BadZipFile, KeyError) as exc:
        raise MalformedFileError(
            path, f"not a readable .xlsx workbook ({exc})"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise MalformedFileError(path, "file has no header and no rows") from exc
    except pd.errors.ParserError as exc:
        raise MalformedFileError(path, f"not parseable as CSV ({exc})") from exc
    except ValueError as exc:
        raise MalformedFileError(path, f"cannot be read as a table ({exc})") from exc
    _check_columns(path, frame, required_columns)
    if frame.empty:
        raise MalformedFileError(path, "has a header but no rows")
    return frame


def _concat_sheets(path: Path, sheets: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every sheet's rows in workbook order; the sheets must share their columns."""
    frames = list(sheets.values())
    first = list(map(str, frames[0].columns))
    for name, sheet in sheets.items():
        if list(map(str, sheet.columns)) != first:
            raise MalformedFileError(
                path,
                f"sheet {name!r} has columns {list(map(str, sheet.columns))}, "
                f"the first sheet {first}",
            )
    return pd.concat(frames, ignore_index=True)


def _check_columns(
    path: Path, frame: pd.DataFrame, required_columns: Iterable[str]
) -> None:
    missing = [c for c in required_columns if c not in frame.columns]
    if missing:
        raise MalformedFileError(
            path,
            f"missing columns {missing}; found {list(map(str, frame.columns))}",
        )
