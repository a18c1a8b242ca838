"""Child processes of the bench: servers waited on until ready, and load runs.

Every server and every load generator is a process of its own, optionally pinned
to its own CPUs, so that the generator's event loop never steals time from the
server's inside one interpreter.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0


class ServerFailedError(RuntimeError):
    """A server exited or never became ready; the message ends with its log."""


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment, offline, with ``bench/`` importable and ``extra`` on top."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(BENCH), env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.update(extra or {})
    return env


def _pinned(cpus: set[int] | None) -> Any:
    if not cpus:
        return None

    def pin() -> None:  # runs in the child before exec: every thread inherits it
        os.sched_setaffinity(0, cpus)

    return pin


def is_ready(url: str) -> bool:
    """True when ``GET url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a child's log, for an error message."""
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running_server(
    command: Sequence[str],
    ready_url: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    cpus: set[int] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command``, wait until ``ready_url`` answers 200, stop it after.

    Raises:
        ServerFailedError: the process exited or was not ready in time.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(env),
            preexec_fn=_pinned(cpus),  # safe: the bench process starts no threads
            start_new_session=True,
        )
    try:
        _wait_ready(process, " ".join(command), ready_url, log_path)
        yield process
    finally:
        _stop(process)


def _wait_ready(
    process: subprocess.Popen[bytes], name: str, url: str, log_path: Path
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailedError(
                f"{name} exited with {process.returncode}:\n" + log_tail(log_path)
            )
        if is_ready(url):
            return
        time.sleep(0.25)
    raise ServerFailedError(
        f"{name} not ready after {READY_TIMEOUT_S:.0f} s:\n" + log_tail(log_path)
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def load_command(
    protocol: str,
    url: str,
    users_file: Path,
    *,
    rate: float,
    duration: float,
    closed: int = 0,
    k: int = 20,
    cpus: set[int] | None = None,
) -> list[str]:
    """The command line of a ``_serve.load`` run."""
    return [
        sys.executable,
        "-m",
        "_serve.load",
        f"--protocol={protocol}",
        f"--url={url}",
        f"--users={users_file}",
        f"--rate={rate}",
        f"--duration={duration}",
        f"--closed={closed}",
        f"--k={k}",
        *(f"--cpu={cpu}" for cpu in sorted(cpus or ())),
    ]


def load_summary(returncode: int, stdout: str, stderr: str) -> dict[str, Any]:
    """The JSON summary a finished generator printed last.

    Raises:
        RuntimeError: the generator failed.
    """
    if returncode != 0:
        raise RuntimeError(f"load generator failed:\n{stderr[-3000:]}")
    return dict(json.loads(stdout.strip().splitlines()[-1]))


def run_load(
    protocol: str,
    url: str,
    users_file: Path,
    *,
    rate: float,
    duration: float,
    closed: int = 0,
    k: int = 20,
    cpus: set[int] | None = None,
) -> dict[str, Any]:
    """Run ``_serve.load`` in a child process; its JSON summary.

    Raises:
        RuntimeError: the generator failed.
    """
    command = load_command(
        protocol,
        url,
        users_file,
        rate=rate,
        duration=duration,
        closed=closed,
        k=k,
        cpus=cpus,
    )
    done = subprocess.run(
        command,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=duration + 120,
    )
    return load_summary(done.returncode, done.stdout, done.stderr)


def start_load(command: Sequence[str]) -> subprocess.Popen[str]:
    """Start a generator in the background (read it with :func:`finish_load`)."""
    return subprocess.Popen(
        list(command),
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_load(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """Wait for a background generator; its JSON summary.

    Raises:
        RuntimeError: the generator failed.
    """
    stdout, stderr = process.communicate(timeout=timeout)
    return load_summary(process.returncode, stdout, stderr)


@contextmanager
def stall_probe(cpus: set[int] | None = None) -> Iterator[dict[str, Any]]:
    """``_serve.stalls`` running beside the block; the dict it yields is filled
    with the probe's JSON summary when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "_serve.stalls"],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_pinned(cpus),
    )
    summary: dict[str, Any] = {}
    try:
        yield summary
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=STOP_TIMEOUT_S)
        if process.returncode == 0:
            summary.update(json.loads(stdout.strip().splitlines()[-1]))
        else:
            summary["error"] = stderr[-500:]
