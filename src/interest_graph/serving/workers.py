"""More than one serving process on one pod's ports (``serving.workers``).

One KServe model server answers on one event loop, which one core runs: on the
2-core development VM it tops out at ~1,150 v1 calls/s (``bench/serve.py``).
With ``workers: N`` the ``serve`` command becomes a small supervisor of N
worker processes, each a whole model server (the same KServe app, hardening,
gRPC, drain and hot reload as one process), all listening on the same REST and
gRPC ports with ``SO_REUSEPORT``: the kernel spreads connections over them.

Why not KServe's own ``--workers``: it spawns REST-only children (gRPC stays in
the parent) and pickles the loaded model into each; ours holds threads and
store connections, and a child that loads its own copy misses KServe's 5 s
liveness ping while it loads and is killed (KServe 0.21,
``kserve/protocol/rest/multiprocess/server.py``).

What an operator should know:

- Balancing is per connection: a client's keep-alive connection (and a gRPC
  channel, one HTTP/2 connection) stays with one worker.
- Every worker loads its own copy of the model, follows the registry alias on
  its own (workers converge within ``reload_seconds``) and writes its own
  inference log, ``<log stem>.w<N><suffix>`` beside the configured path (point
  the monitor at the folder).
- ``/metrics`` from any worker adds up all workers (prometheus_client's
  multiprocess mode over a folder the supervisor owns);
  ``recommender_workers_ready`` counts the workers serving.
- SIGTERM to the supervisor drains every worker. A worker that exits on its
  own stops the others and the supervisor exits 1: the pod restarts whole
  rather than serving with fewer processes than it was sized for.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from interest_graph.config import ENV_PREFIX, Settings
from interest_graph.locations import inference_log_path
from interest_graph.logs import get_logger

log = get_logger("serving.workers")

# prometheus_client's multiprocess folder; Feast's metrics module reads the
# second name, and makes a temporary folder of its own without it.
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
FEAST_METRICS_ENV = "PROMETHEUS_MULTIPROCESS_DIR"
# Linux prctl(2): deliver this signal when the parent dies.
_PR_SET_PDEATHSIG = 1


def worker_log_path(path: Path, worker: int) -> Path:
    """Worker ``worker``'s inference log beside ``path``: its own file, its own
    rotations (``inference-log.w1.jsonl`` rotates to ``inference-log.w1-*``)."""
    return path.with_name(f"{path.stem}.w{worker}{path.suffix}")


def worker_settings(settings: Settings, worker: int) -> Settings:
    """What worker ``worker`` runs with: one process, its own inference log."""
    serving = settings.serving.model_copy(
        update={
            "workers": 1,
            "inference_log": worker_log_path(inference_log_path(settings), worker),
        }
    )
    return settings.model_copy(update={"serving": serving})


def worker_environment() -> dict[str, str]:
    """This environment less the settings variables: a worker's settings file
    holds them resolved already, and the environment would win over it (a
    ``INTEREST_GRAPH__SERVING__WORKERS`` left in would make every worker a
    supervisor again)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}


def serve_workers(settings: Settings) -> int:
    """Start ``serving.workers`` worker processes and supervise them until they
    exit; SIGTERM and SIGINT are passed on. Returns the exit code: 0 when every
    worker stopped cleanly after a signal, else 1."""
    from interest_graph.serving.observe import configure_logging

    configure_logging(settings.serving.log_format)
    count = settings.serving.workers
    folder = settings.paths.work_dir / "serving" / f"workers-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    metrics = folder / "metrics"
    metrics.mkdir(parents=True)
    folder.chmod(0o700)  # the settings files may hold the registry's credentials
    children: list[subprocess.Popen[bytes]] = []
    try:
        for worker in range(count):
            config = folder / f"settings.w{worker}.json"
            config.write_text(worker_settings(settings, worker).model_dump_json())
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", __name__, str(config), str(os.getpid())],
                    env={
                        **worker_environment(),
                        METRICS_ENV: str(metrics),
                        FEAST_METRICS_ENV: str(metrics),
                    },
                )
            )
        log.info(
            "serving with %d workers (pids %s) on ports %d and %d",
            count,
            ", ".join(str(c.pid) for c in children),
            settings.serving.http_port,
            settings.serving.grpc_port,
        )
        return _supervise(children, metrics)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _supervise(children: list[subprocess.Popen[bytes]], metrics: Path) -> int:
    from prometheus_client import multiprocess

    stopping: list[int] = []

    def pass_on(sig: int, _: Any) -> None:
        stopping.append(sig)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, pass_on)
    failed = False
    running = list(children)
    while running:
        time.sleep(0.1)
        for child in [c for c in running if c.poll() is not None]:
            running.remove(child)
            multiprocess.mark_process_dead(child.pid, str(metrics))
            # A worker still loading when the signal came dies of it (KServe's
            # handlers are not installed yet): a clean stop too.
            if stopping and child.returncode in (0, -signal.SIGTERM):
                continue
            failed = True
            log.error(
                "worker %d exited with %s%s",
                child.pid,
                child.returncode,
                "" if stopping else "; stopping the others",
            )
            if not stopping:
                pass_on(signal.SIGTERM, None)
    return 1 if failed else 0


def _die_with(parent: int) -> None:
    """This process gets SIGTERM when the supervisor dies (Linux), and exits
    now if it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: only the check below
        pass
    if os.getppid() != parent:
        sys.exit(1)


def main(argv: list[str]) -> None:
    """A worker: ``python -m interest_graph.serving.workers SETTINGS PARENT_PID``."""
    from interest_graph.logs import quiet_library_warnings
    from interest_graph.serving.server import serve

    config, parent = argv
    _die_with(int(parent))
    quiet_library_warnings()  # as the command line does
    serve(Settings.model_validate_json(Path(config).read_text()), shared_ports=True)


if __name__ == "__main__":
    main(sys.argv[1:])
