"""Run a pipeline on this machine with ``kfp.local``: every task in a subprocess
of this environment, or in the component image with Docker.

``kfp.local`` prints each task's start and end; :class:`TaskClock` reads them
from the output stream (kept in full in a log file) to give every task its
status and seconds, and tasks that never started (a false ``dsl.If``) are
``SKIPPED``.
"""

from __future__ import annotations

import io
import os
import re
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from interest_graph.errors import InterestGraphError

RunnerKind = Literal["subprocess", "docker"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")


@dataclass
class TaskRun:
    """One task of a local run: ``SUCCESS``, ``FAILURE`` or ``SKIPPED``."""

    name: str
    status: str
    seconds: float | None = None


@dataclass
class LocalRun:
    """A finished local run: its status, tasks and where everything went."""

    pipeline: str
    runner: RunnerKind
    status: str
    seconds: float
    tasks: list[TaskRun]
    run_root: Path | None
    log_path: Path

    def task(self, name: str) -> TaskRun:
        return next(t for t in self.tasks if t.name == name)

    def output(self, task: str, name: str) -> Path:
        """Where ``task`` wrote its output artifact ``name``."""
        if self.run_root is None:
            raise InterestGraphError(f"{self.pipeline}: the run wrote no outputs")
        return self.run_root / task / name


class TaskClock(io.TextIOBase):
    """A stream that copies what it gets to ``sink``, times each task and says
    on ``progress`` (if given) when each starts and ends."""

    def __init__(self, sink: TextIO, progress: TextIO | None = None) -> None:
        super().__init__()
        self.sink = sink
        self.progress = progress
        self.started: dict[str, float] = {}
        self.finished: dict[str, tuple[str, float]] = {}
        self._line = ""

    def write(self, text: str) -> int:
        self.sink.write(text)
        self._line += text
        *lines, self._line = self._line.split("\n")
        for line in lines:
            self._read(_ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self.sink.flush()

    def _read(self, line: str) -> None:
        now = time.perf_counter()
        if found := _STARTED.search(line):
            self.started[found.group(1)] = now
            self._say(f"{found.group(1)}: running")
        elif found := _FINISHED.search(line):
            name = found.group(1)
            self.finished[name] = (found.group(2), now - self.started.get(name, now))
            self._say(f"{name}: {found.group(2)} ({self.finished[name][1]:.1f} s)")

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.write(f"[pipeline] {text}\n")
            self.progress.flush()


def task_names(pipeline: Any) -> list[str]:
    """Every executable task of a compiled pipeline, nested DAGs included, in
    the order the pipeline declares them."""
    spec = pipeline.pipeline_spec
    names: list[str] = []

    def visit(dag: Any) -> None:
        for task_name, task in dag.tasks.items():
            component = spec.components[task.component_ref.name]
            if component.WhichOneof("implementation") == "dag":
                visit(component.dag)
            else:
                names.append(task_name)

    visit(spec.root.dag)
    return names


def images_of(pipeline: Any) -> set[str]:
    """The container images a compiled pipeline's tasks run in."""
    from google.protobuf.json_format import MessageToDict

    executors = MessageToDict(pipeline.pipeline_spec.deployment_spec)["executors"]
    return {e["container"]["image"] for e in executors.values() if "container" in e}


def check_images(images: set[str]) -> None:
    """Fail early, with what to do, when Docker or an image is missing here
    (the Docker runner would otherwise try to pull it from a registry).

    Raises:
        InterestGraphError: no Docker daemon answers, or an image is not built.
    """
    import docker

    try:
        client = docker.from_env()
        missing = sorted(i for i in images if not client.images.list(name=i))
    except docker.errors.DockerException as exc:
        raise InterestGraphError(
            f"no Docker daemon answers ({exc}); start one (here: "
            "../shared/tools/docker-up.sh) or use --runner subprocess"
        ) from exc
    if missing:
        raise InterestGraphError(
            f"image {', '.join(missing)} is not built here; run `make images` "
            "(BASE_IMAGE=local/debian:bookworm where no registry is reachable)"
        )


def run_local(
    pipeline: Any,
    arguments: dict[str, Any],
    *,
    pipeline_root: Path,
    log_path: Path,
    runner: RunnerKind = "subprocess",
    progress: TextIO | None = None,
) -> LocalRun:
    """Run ``pipeline`` with ``arguments`` under ``kfp.local``.

    Args:
        pipeline: a ``@dsl.pipeline`` function.
        arguments: its parameters.
        pipeline_root: where task outputs go (must be writable by the image's
            user for ``docker``).
        log_path: the full output of every task.
        runner: ``subprocess`` (this Python environment) or ``docker`` (the
            component image, host network).
        progress: where to say when each task starts and ends (the tasks' own
            output goes to ``log_path`` only).
    """
    from kfp import local

    pipeline_root = pipeline_root.resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    workspace = pipeline_root / "workspace"
    workspace.mkdir(exist_ok=True)
    if runner == "docker":
        check_images(images_of(pipeline))
        # The image runs as uid 1000: it writes its outputs under this root.
        for folder in (pipeline_root, workspace):
            folder.chmod(0o777)
        kind: Any = local.DockerRunner(network_mode="host")
    else:
        kind = local.SubprocessRunner(use_venv=False)
    local.init(
        runner=kind,
        pipeline_root=str(pipeline_root),
        workspace_root=str(workspace),
        raise_on_error=False,
    )
    before = set(pipeline_root.iterdir())
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with (
        log_path.open("w", encoding="utf-8") as sink,
        _clocked(sink, progress) as clock,
        warnings.catch_warnings(),
    ):
        # Every task names the component image; the subprocess runner runs them
        # in this environment instead, which has the same packages.
        warnings.filterwarnings("ignore", "You may be attemping", RuntimeWarning)
        # GPU requests, node selectors and secrets are for the cluster.
        warnings.filterwarnings("ignore", ".*have no effect in the current local")
        pipeline(**arguments)
    seconds = time.perf_counter() - started
    # In the order they ran; tasks that never started last.
    names = sorted(
        task_names(pipeline), key=lambda n: clock.started.get(n, float("inf"))
    )
    tasks = [
        TaskRun(name, *clock.finished[name])
        if name in clock.finished
        else TaskRun(name, "SKIPPED")
        for name in names
    ]
    failed = any(t.status not in ("SUCCESS", "SKIPPED") for t in tasks)
    created = sorted(set(pipeline_root.iterdir()) - before - {workspace})
    return LocalRun(
        pipeline=pipeline.name,
        runner=runner,
        status="FAILURE" if failed else "SUCCESS",
        seconds=seconds,
        tasks=tasks,
        run_root=next((p for p in created if p.is_dir()), None),
        log_path=log_path,
    )


def run_summary(
    run: LocalRun, arguments: dict[str, Any], runner: RunnerKind | None = None
) -> dict[str, Any]:
    """What a run's ``summary.json`` starts with: the pipeline, the ``runner``
    (when given), status, seconds, tasks, the arguments (less ``settings_json``),
    the outputs folder and the log."""
    summary: dict[str, Any] = {"pipeline": run.pipeline}
    if runner is not None:
        summary["runner"] = runner
    summary.update(
        {
            "status": run.status,
            "seconds": round(run.seconds, 2),
            "tasks": [vars(t) for t in run.tasks],
            "arguments": {k: v for k, v in arguments.items() if k != "settings_json"},
            "outputs": str(run.run_root),
            "log": str(run.log_path),
        }
    )
    return summary


def raise_if_failed(run: LocalRun) -> None:
    """Raise unless every task of ``run`` succeeded or was skipped.

    Raises:
        InterestGraphError: a task failed (names the failed tasks and the log).
    """
    if run.status != "SUCCESS":
        failed = [t.name for t in run.tasks if t.status == "FAILURE"]
        raise InterestGraphError(
            f"pipeline {run.pipeline} failed in {', '.join(failed) or 'a task'}; "
            f"log: {run.log_path}"
        )


@contextmanager
def _clocked(sink: TextIO, progress: TextIO | None) -> Iterator[TaskClock]:
    clock = TaskClock(sink, progress)
    # Task subprocesses inherit this; a task's own progress bars stay out.
    previous = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        with redirect_stdout(clock):
            yield clock
    finally:
        if previous is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = previous
