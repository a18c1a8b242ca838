"""Product text embeddings: item text → L2-normalised vectors, incremental, Parquet.

``embed_items`` does the work; ``interest_graph.stages.embed`` is the entry that
the command and the pipeline call; every ranking model reads the vectors through
``item_vectors``. The encoder itself is ``interest_graph.text_encoder``.
"""

from interest_graph.embeddings.stage import (
    OUTPUT_FILE,
    REPORT_FILE,
    SCHEMA,
    EmbedOptions,
    EmbedResult,
    content_hashes,
    embed_items,
    item_vectors,
    read_items,
)
from interest_graph.embeddings.text import DEFAULT_TEMPLATE, clean_text, render_texts

__all__ = [
    "DEFAULT_TEMPLATE",
    "OUTPUT_FILE",
    "REPORT_FILE",
    "SCHEMA",
    "EmbedOptions",
    "EmbedResult",
    "clean_text",
    "content_hashes",
    "embed_items",
    "item_vectors",
    "read_items",
    "render_texts",
]
