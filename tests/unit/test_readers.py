"""Tests of ``read_table``: every broken input becomes one clear MalformedFileError."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from interest_graph.data.readers import read_table
from interest_graph.errors import InterestGraphError, MalformedFileError

GOOD = pd.DataFrame(
    {
        "user": ["17850", "13047", "12583"],
        "item": ["85123A", "71053", "84406B"],
        "quantity": [6, 8, 2],
    }
)


def _raises(path: Path, *fragments: str, required: tuple[str, ...] = ()) -> str:
    """Read ``path``, expect a MalformedFileError naming it, return its message."""
    with pytest.raises(MalformedFileError) as caught:
        read_table(path, required)
    error = caught.value
    message = str(error)
    assert error.path == str(path)
    assert message.startswith(f"{path}: ")
    assert message == f"{error.path}: {error.problem}"
    for fragment in fragments:
        assert fragment in error.problem
    return message


def test_error_is_an_interest_graph_error() -> None:
    error = MalformedFileError(Path("a/b.csv"), "file is empty")
    assert isinstance(error, InterestGraphError)
    assert error.path == str(Path("a/b.csv"))
    assert error.problem == "file is empty"
    assert str(error) == f"{Path('a/b.csv')}: file is empty"


def test_missing_file(tmp_path: Path) -> None:
    _raises(tmp_path / "nope.csv", "does not exist")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    folder = tmp_path / "table.csv"
    folder.mkdir()
    _raises(folder, "is a folder")


@pytest.mark.parametrize("name", ["empty.csv", "empty.parquet", "empty.xlsx"])
def test_zero_byte_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    _raises(path, "file is empty")


@pytest.mark.parametrize("name", ["table.json", "table.xls", "table"])
def test_unsupported_suffix(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    _raises(path, "unsupported file type", ".parquet", ".csv", ".xlsx")


def test_latin1_csv_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    text = "StockCode,Description\n85123A,CAFÉ CRÈME HEART\n71053,NAÏVE LANTERN\n"
    path.write_bytes(text.encode("latin-1"))
    message = _raises(path, "not UTF-8", "re-save as UTF-8")
    assert "latin1.csv" in message


def test_utf8_csv_with_non_ascii_reads(tmp_path: Path) -> None:
    path = tmp_path / "utf8.csv"
    text = "StockCode,Description\n85123A,CAFÉ CRÈME HEART\n"
    path.write_bytes(text.encode("utf-8"))
    frame = read_table(path, ["Description"])
    assert frame["Description"].tolist() == ["CAFÉ CRÈME HEART"]


def test_truncated_parquet(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    GOOD.to_parquet(path, index=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _raises(path, "not a readable Parquet file")


def test_text_named_parquet(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    path.write_text("user,item\n1,2\n", encoding="utf-8")
    _raises(path, "not a readable Parquet file")


def test_random_bytes_named_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "Online Retail.xlsx"
    path.write_bytes(os.urandom(2048))
    _raises(path, "not a readable .xlsx workbook")


def test_zip_without_workbook_named_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a workbook")
    _raises(path, "not a readable .xlsx workbook")


def test_header_only_csv(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("user,item,quantity\n", encoding="utf-8")
    _raises(path, "has a header but no rows", required=("user", "item"))


def test_blank_csv_has_no_header(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("\n\n", encoding="utf-8")
    _raises(path, "no header and no rows")


def test_unbalanced_quote_is_not_csv(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_text('user,item\n1,"2\n', encoding="utf-8")
    _raises(path, "not parseable as CSV")


def test_missing_required_columns(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    GOOD.to_csv(path, index=False)
    _raises(
        path,
        "missing columns ['price', 'country']",
        "found ['user', 'item', 'quantity']",
        required=("user", "price", "country"),
    )


def test_csv_reads_every_column_as_text(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user,item,quantity\n17850,00123,6\n,NA,8\n", encoding="utf-8")
    frame = read_table(path, ["user", "item"])
    assert frame.columns.tolist() == ["user", "item", "quantity"]
    # Leading zeros survive and nothing turns into NaN: the loaders decide.
    assert frame.to_dict("list") == {
        "user": ["17850", ""],
        "item": ["00123", "NA"],
        "quantity": ["6", "8"],
    }


def test_tsv_is_tab_separated(tmp_path: Path) -> None:
    path = tmp_path / "events.tsv"
    path.write_text("user\titem\n1\ta,b\n", encoding="utf-8")
    frame = read_table(path, ["user", "item"])
    assert frame.to_dict("list") == {"user": ["1"], "item": ["a,b"]}


def test_valid_parquet_reads(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    GOOD.to_parquet(path, index=False)
    pd.testing.assert_frame_equal(read_table(path, ["user", "quantity"]), GOOD)


def test_valid_xlsx_reads(tmp_path: Path) -> None:
    path = tmp_path / "events.xlsx"
    GOOD.to_excel(path, index=False, engine="openpyxl")
    frame = read_table(path, ["user", "item", "quantity"])
    assert frame.columns.tolist() == ["user", "item", "quantity"]
    # Excel cells are typed: digit-only text comes back as numbers, like in pandas.
    assert frame["user"].tolist() == [17850, 13047, 12583]
    assert frame["item"].astype(str).tolist() == ["85123A", "71053", "84406B"]
    assert frame["quantity"].tolist() == [6, 8, 2]


def test_xlsx_built_with_openpyxl_reads(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["InvoiceNo", "Quantity", "UnitPrice"])
    sheet.append(["536365", 6, 2.55])
    sheet.append(["C536379", -1, 27.5])
    path = tmp_path / "retail.xlsx"
    book.save(path)
    frame = read_table(path, ["InvoiceNo", "Quantity"])
    assert frame["InvoiceNo"].tolist() == ["536365", "C536379"]
    assert frame["Quantity"].tolist() == [6, -1]
    assert frame["UnitPrice"].tolist() == pytest.approx([2.55, 27.5])


def test_header_only_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "header.xlsx"
    GOOD.iloc[:0].to_excel(path, index=False, engine="openpyxl")
    _raises(path, "has a header but no rows")
