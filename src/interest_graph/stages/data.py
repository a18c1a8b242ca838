"""Data stages: load a shop into canonical tables, and check tables already written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from interest_graph.config import Settings
from interest_graph.data.custom_shop import load_custom_shop
from interest_graph.data.gowalla import load_gowalla
from interest_graph.data.online_retail import load_online_retail
from interest_graph.data.quarantine import IngestReport, RowTriage
from interest_graph.data.synth import generate_shop
from interest_graph.data.validate import table_problems
from interest_graph.errors import ConfigError, InterestGraphError
from interest_graph.logs import get_logger
from interest_graph.schema import ShopTables

log = get_logger("stages")

SourceKind = Literal["online-retail", "gowalla", "custom-shop", "synth"]
SOURCE_KINDS: tuple[SourceKind, ...] = (
    "online-retail",
    "gowalla",
    "custom-shop",
    "synth",
)


@dataclass(frozen=True)
class IngestResult:
    """What ``ingest`` wrote: table paths, the summary JSON and its content."""

    tables: dict[str, Path]
    summary_path: Path
    summary: dict[str, Any]


def ingest(
    kind: SourceKind | str,
    source: str | Path | None,
    out_dir: str | Path,
    settings: Settings,
    *,
    check: bool = False,
) -> IngestResult:
    """Load a shop into canonical Parquet under ``out_dir``, quarantining bad rows.

    Args:
        kind: ``online-retail`` (file), ``gowalla`` (folder), ``custom-shop`` (files
            and column mapping from ``settings.shop``) or ``synth`` (generated from
            ``settings.synth``; ``source`` is ignored).
        source: the input file or folder.
        out_dir: the data directory to write.
        settings: the platform settings.
        check: validate the written tables (:func:`validate`) and fail on any
            problem, as the pipelines do before later stages read them.

    Raises:
        InterestGraphError: with ``check``, the tables written are not sound.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: IngestReport
    if kind == "gowalla":
        if source is None:
            raise ConfigError("gowalla needs the folder with train.txt and test.txt")
        data = load_gowalla(source)
        # No timestamps in this split: it stays two interaction tables, not events.
        paths = {}
        for split_name, pairs in (("train", data.train), ("test", data.test)):
            path = out / f"interactions_{split_name}.parquet"
            pairs.astype(str).rename(
                columns={"user": "user_id", "item": "item_id"}
            ).to_parquet(path, index=False)
            paths[f"interactions_{split_name}"] = path
        report = data.report
    else:
        tables: ShopTables
        if kind == "online-retail":
            if source is None:
                raise ConfigError("online-retail needs the path of the UCI file")
            tables, report = load_online_retail(source)
        elif kind == "custom-shop":
            tables, report = load_custom_shop(settings.shop)
        elif kind == "synth":
            tables = generate_shop(settings.synth)
            report = IngestReport(loader="synth")
            for name in ("events", "items", "users"):
                # Generated rows are canonical by construction: all accepted, counted.
                report.add(name, RowTriage(f"generated {name}", getattr(tables, name)))
        else:
            raise ConfigError(f"unknown source kind {kind!r}")
        paths = tables.write(out)
    summary_path = report.write(out)
    summary = report.as_dict()
    log.info(
        "ingested %s: %d rows in, %d accepted, %d quarantined -> %s",
        kind,
        summary["totals"]["rows_in"],
        summary["totals"]["accepted"],
        summary["totals"]["quarantined"],
        out,
    )
    if check and kind != "gowalla":
        problems = validate(out).problems
        if problems:
            raise InterestGraphError(
                "canonical data failed validation: " + "; ".join(problems)
            )
    return IngestResult(tables=paths, summary_path=summary_path, summary=summary)


@dataclass(frozen=True)
class ValidationResult:
    """Rows per canonical table and everything wrong with them (empty: sound)."""

    data_dir: Path
    rows: dict[str, int]
    problems: list[str]

    @property
    def sound(self) -> bool:
        return not self.problems


def validate(data_dir: str | Path) -> ValidationResult:
    """Check canonical tables: schema, event types, references.

    Raises:
        InterestGraphError: the folder holds no readable canonical tables.
    """
    folder = Path(data_dir)
    try:
        tables = ShopTables.read(folder)
    except (OSError, KeyError, ValueError) as exc:
        raise InterestGraphError(
            f"{folder}: not a canonical data folder ({exc})"
        ) from exc
    rows = {name: len(getattr(tables, name)) for name in ("events", "items", "users")}
    return ValidationResult(folder, rows, table_problems(tables))


def first_buyer(data_dir: str | Path) -> str:
    """A user with purchases: the sample a served model answers for."""
    events = ShopTables.read(Path(data_dir)).events
    return str(events.loc[events.event_type == "purchase", "user_id"].min())
