"""Parsing helpers shared by the loaders: text ids, numbers, timestamps, modes."""

from __future__ import annotations

import numpy as np
import pandas as pd

MISSING_TEXT = {"", "nan", "NaN", "None", "null", "NULL", "<NA>"}


def as_text(values: pd.Series) -> pd.Series:
    """Strip values to strings, with missing markers ("", "nan", None) as ``<NA>``."""
    text = values.astype("string").str.strip()
    return text.mask(text.isin(MISSING_TEXT))


def as_number(values: pd.Series) -> pd.Series:
    """Parse numbers; anything unparseable becomes NaN (callers quarantine it)."""
    return pd.to_numeric(values, errors="coerce").astype("float64")


def as_integer_id(values: pd.Series) -> pd.Series:
    """Render integer-valued ids (``17850.0``, ``"17850"``) as ``"17850"``; else NA."""
    numbers = as_number(values)
    whole = numbers.notna() & np.isfinite(numbers) & (numbers == np.floor(numbers))
    out = pd.Series(pd.NA, index=values.index, dtype="string")
    out[whole] = numbers[whole].astype("int64").astype(str)
    return out


def as_timestamp(values: pd.Series, fmt: str | None = None) -> pd.Series:
    """Parse timestamps to naive ``datetime64[ns]``; unparseable values become NaT."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values)
    else:
        parsed = pd.to_datetime(
            values.astype("string"), errors="coerce", format=fmt or "mixed"
        )
    if parsed.dt.tz is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def most_frequent(keys: pd.Series, values: pd.Series) -> pd.Series:
    """The most frequent non-missing value per key; ties go to the earliest seen."""
    frame = pd.DataFrame({"key": keys.to_numpy(), "value": values.to_numpy()})
    frame = frame.dropna(subset=["value"])
    counts = (
        frame.groupby(["key", "value"], sort=False).size().rename("n").reset_index()
    )
    # A stable sort keeps first-seen order among equal counts.
    counts = counts.sort_values("n", ascending=False, kind="stable")
    return counts.drop_duplicates("key").set_index("key")["value"]
