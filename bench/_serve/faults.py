"""Faults the bench puts the server through: a hung Redis, probes, a SIGTERM.

* :class:`HungRedis`: a loopback listener that accepts connections and never
  answers, the way a Redis stuck in a long command or behind a dead proxy looks;
* :class:`Prober`: asks the health and status endpoints every interval from a
  thread and keeps each answer's status and seconds;
* :func:`term_when`: a timer that sends SIGTERM to the server at a set time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

PROBE_PATHS = (
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/recommender/status",
)
PROBE_TIMEOUT_S = 5.0


class HungRedis:
    """A loopback listener that accepts connections and never answers."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port = int(self.listener.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.listener.accept()[0])

    def close(self) -> None:
        """Stop listening; closing the accepted sockets ends the hung reads."""
        self.listener.close()
        for connection in self.accepted:
            connection.close()

    def __enter__(self) -> HungRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get(url: str) -> tuple[int | None, float]:
    """``GET url``: its status (None when it failed to answer) and seconds."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
            status: int | None = int(response.status)
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
    except (urllib.error.URLError, OSError):
        status = None
    return status, time.perf_counter() - started


@dataclass
class Prober:
    """Probes ``base`` + each of ``paths`` every ``interval`` seconds."""

    base: str
    interval: float = 0.5
    paths: tuple[str, ...] = PROBE_PATHS
    answers: list[tuple[float, str, int | None, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Prober:
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(PROBE_TIMEOUT_S * len(self.paths) + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            for path in self.paths:
                status, seconds = get(self.base + path)
                at = time.perf_counter() - self._started
                self.answers.append((at, path, status, seconds))
            self._stop.wait(self.interval)

    def summary(self) -> dict[str, Any]:
        """Probes asked, slowest answer, and the answers that were not 200."""
        seconds = [s for _, _, _, s in self.answers]
        failed: dict[str, int] = {}
        for _, path, status, _ in self.answers:
            if status != 200:
                key = f"{path} {status}"
                failed[key] = failed.get(key, 0) + 1
        return {
            "probes": len(self.answers),
            "probe_max_s": round(max(seconds), 3) if seconds else None,
            "probes_not_200": failed,
        }


def term_when(pid: int, delay: float) -> threading.Timer:
    """A started timer sending SIGTERM to ``pid`` after ``delay`` seconds."""
    timer = threading.Timer(delay, os.kill, (pid, signal.SIGTERM))
    timer.daemon = True
    timer.start()
    return timer
