"""The machine's own stalls, measured beside a load run by a process doing nothing.

    python -m _serve.stalls [--duration 60] [--threshold-ms 10] [--out FILE]

A process that only sleeps 1 ms at a time, at the highest user priority it may
take, should wake within ~0.1 ms of its deadline. When it wakes tens of
milliseconds late, nothing in the recommender caused it: the whole machine (the
hypervisor taking the vCPU away, which ``/proc/stat`` counts as *steal*, or the
kernel) stopped everyone. Run beside a load point, it tells a server's tail from
the machine's. The last line printed is one JSON object: ``stalls`` (wake-ups
later than the threshold), ``stalled_ms`` (their total lateness), ``max_ms``,
``steal_ms`` (the steal time ``/proc/stat`` counted over the run, all CPUs),
``duration_s``; ``--out`` also writes each stall's start (seconds after the
probe started) and length. Without ``--duration`` it runs until SIGTERM or
SIGINT, then prints.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

TICK_S = 0.001


def steal_ms() -> float:
    """Milliseconds of steal time of all CPUs so far (0 where it is not counted)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0
    ticks = int(fields[8]) if len(fields) > 8 else 0
    return 1000.0 * ticks / os.sysconf("SC_CLK_TCK")


class _Stop:
    requested = False

    @classmethod
    def on_signal(cls, *_: object) -> None:
        cls.requested = True


def probe(
    duration: float, threshold_s: float
) -> tuple[list[tuple[float, float]], float, float]:
    """Sleep ``TICK_S`` at a time for ``duration`` (or until a stop signal): each
    wake-up later than ``threshold_s`` as (start, lateness) in seconds, the steal
    over the run and the run's seconds."""
    stalls: list[tuple[float, float]] = []
    steal_before = steal_ms()
    start = time.perf_counter()
    last = start
    while last - start < duration and not _Stop.requested:
        time.sleep(TICK_S)
        now = time.perf_counter()
        late = now - last - TICK_S
        if late > threshold_s:
            stalls.append((last - start, late))
        last = now
    return stalls, steal_ms() - steal_before, last - start


def summary(
    stalls: list[tuple[float, float]], steal: float, duration: float
) -> dict[str, Any]:
    """The JSON figures of a probe run."""
    lateness = [late for _, late in stalls]
    return {
        "stalls": len(stalls),
        "stalled_ms": round(1000 * sum(lateness), 1),
        "max_ms": round(1000 * max(lateness), 1) if lateness else 0.0,
        "steal_ms": round(steal, 1),
        "duration_s": round(duration, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=float("inf"))
    parser.add_argument("--threshold-ms", type=float, default=10.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with contextlib.suppress(OSError):  # allowed only to root
        os.nice(-5)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _Stop.on_signal)
    stalls, steal, ran = probe(args.duration, args.threshold_ms / 1000)
    if args.out is not None:
        args.out.write_text(
            json.dumps([[round(at, 4), round(late * 1000, 2)] for at, late in stalls])
        )
    print(json.dumps(summary(stalls, steal, ran)), flush=True)


if __name__ == "__main__":
    main()
