"""Synthetic shop generator at scale: time and peak memory.

    python bench/synth.py [--quick]

Full: 1M users / 100k items / 20M events (the size the issue asks for).
--quick: 100k users / 10k items / 2M events. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from interest_graph.config import SynthConfig
from interest_graph.data.synth import generate_shop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    config = SynthConfig(
        users=1_000_000 // scale,
        items=100_000 // scale,
        events=20_000_000 // scale,
        categories=50,
    )
    started = time.perf_counter()
    tables = generate_shop(config)
    generate_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory(
        dir=Path(".work").resolve() if Path(".work").is_dir() else None
    ) as folder:
        started = time.perf_counter()
        tables.write(Path(folder))
        write_seconds = time.perf_counter() - started
        parquet_mb = sum(p.stat().st_size for p in Path(folder).iterdir()) / 2**20
    counts = tables.events["event_type"].value_counts().to_dict()
    result = {
        "users": len(tables.users),
        "items": len(tables.items),
        "events": len(tables.events),
        "events_by_type": {k: int(v) for k, v in counts.items()},
        "generate_seconds": round(generate_seconds, 2),
        "write_seconds": round(write_seconds, 2),
        "parquet_mb": round(parquet_mb, 1),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_gb": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2
        ),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
