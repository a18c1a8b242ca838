"""Item rows to clean product text: a template over the item columns, then cleaning.

Cleaning, each step explicit: bytes are decoded as UTF-8 (bad bytes dropped), lone
surrogates dropped, HTML markup stripped (tags, comments, script and style) and
entities unescaped, control characters removed, Unicode NFC, whitespace collapsed.
Emoji and every script are kept; the tokenizer decides what they become.
"""

from __future__ import annotations

import html
import re
import string
import unicodedata
from collections.abc import Sequence
from html.parser import HTMLParser

import pandas as pd

from interest_graph.errors import ConfigError

DEFAULT_TEMPLATE = "{title}. {description}. {category}"
# Bump when cleaning or templating changes the text of an unchanged item, so that
# content hashes (and the cache) follow.
TEXT_VERSION = "1"

_TAG_HINT = re.compile(r"<[A-Za-z!/?]|&(?:#\d+|#x[0-9A-Fa-f]+|[A-Za-z]+);")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd\ufeff\u200b]")
_SPACE = re.compile(r"\s+")
_BLOCK_TAGS = frozenset(
    re.findall(
        r"\w+",
        "address article aside blockquote br dd div dl dt figcaption figure footer "
        "form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section table tbody "
        "td tfoot th thead tr ul",
    )
)


class _TextOnly(HTMLParser):
    """Collects the text of an HTML fragment; drops script, style and comments."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def strip_html(text: str) -> str:
    """``text`` without tags, comments, script and style; entities unescaped."""
    if not _TAG_HINT.search(text):
        return text
    if "<" not in text:
        return html.unescape(text)
    parser = _TextOnly()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def decode_text(value: object) -> str:
    """Any cell as ``str``: bytes as UTF-8 with bad bytes dropped, lone surrogates
    (e.g. from ``surrogateescape``) dropped, missing values as ``""``."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="ignore")
    if isinstance(value, float) and value != value:
        return ""
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", errors="ignore").decode("utf-8")
    return text


def clean_text(value: object) -> str:
    """One cell of product text, clean (see the module docstring); may be ``""``."""
    text = decode_text(value)
    if not text:
        return ""
    text = strip_html(text)
    text = _CONTROL.sub(" ", text)
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return _SPACE.sub(" ", text).strip()


def template_fields(template: str) -> list[tuple[str, str]]:
    """``(literal in front, field)`` pairs of ``template``; text after the last field
    is returned with field ``""``.

    Raises:
        ConfigError: the template has no field, or uses format specs or positions.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"text template {template!r}: {exc}") from exc
    pairs: list[tuple[str, str]] = []
    for literal, name, spec, conversion in parsed:
        if name is None:
            pairs.append((literal, ""))
            continue
        if not name or name.isdigit() or spec or conversion:
            raise ConfigError(
                f"text template {template!r}: use plain named fields like {{title}}"
            )
        pairs.append((literal, name))
    if not any(name for _, name in pairs):
        raise ConfigError(f"text template {template!r} names no item column")
    return pairs


def render_texts(items: pd.DataFrame, template: str = DEFAULT_TEMPLATE) -> list[str]:
    """The clean text of every item row, from ``template`` over its columns.

    A field whose value is empty is left out together with the literal text in
    front of it (the separator), so ``"{title}. {description}. {category}"`` gives
    ``"Mug. kitchen"`` for an item without a description and ``"Mug"`` for one with
    only a title. Text before the first field always leads; text after the last
    field follows only when that field is present. An item whose fields are all
    empty gets ``""`` (the stage skips and reports it).

    Raises:
        ConfigError: the template names a column the items do not have.
    """
    pairs = template_fields(template)
    names = [name for _, name in pairs if name]
    missing = sorted({n for n in names if n not in items.columns})
    if missing:
        raise ConfigError(
            f"text template {template!r} names columns the items lack: {missing}; "
            f"item columns are {list(items.columns)}"
        )
    columns: dict[str, Sequence[str]] = {}
    for name in dict.fromkeys(names):
        columns[name] = _clean_column(items[name].astype(object).tolist())
    fields = [(literal, name) for literal, name in pairs if name]
    tail = pairs[-1][0] if not pairs[-1][1] else ""
    lead, last = fields[0][0], len(fields) - 1
    texts = []
    for row in range(len(items)):
        parts: list[str] = []
        for k, (literal, name) in enumerate(fields):
            value = columns[name][row]
            if value:
                # The separator in front of a field only goes in after another
                # field; the text in front of the first field always leads.
                parts.append(literal + value if parts or k == 0 else value)
        if not parts:
            texts.append("")
            continue
        if fields[0][0] and not columns[fields[0][1]][row]:
            parts.insert(0, lead)
        if tail and columns[fields[last][1]][row]:
            parts.append(tail)
        texts.append("".join(parts).strip())
    return texts


def _clean_column(values: list[object]) -> list[str]:
    """``clean_text`` of each value, cleaning each distinct value once."""
    cleaned: dict[object, str] = {}
    out = []
    for value in values:
        try:
            text = cleaned.get(value)
            if text is None:
                text = cleaned[value] = clean_text(value)
        except TypeError:  # unhashable cell (a list, say)
            text = clean_text(value)
        out.append(text)
    return out
