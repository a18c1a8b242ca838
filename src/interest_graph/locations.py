"""Default places of files that one part of the platform writes and another
reads: one answer for both, in a module light enough for either to import."""

from __future__ import annotations

from pathlib import Path

from interest_graph.config import Settings


def inference_log_path(settings: Settings) -> Path:
    """``serving.inference_log`` or ``<work_dir>/serving/inference-log.jsonl``:
    where the service writes its inference log and the monitor reads it."""
    return settings.serving.inference_log or (
        settings.paths.work_dir / "serving" / "inference-log.jsonl"
    )
