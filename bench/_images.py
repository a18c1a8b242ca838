"""The container images for the benches: built the way `make images` builds them,
and the serving image timed from `docker run` to answering ready.

Builds go through `make images` so there is one definition of the build command;
their logs go to the temp folder, never into the repository.

A helper module (underscore, like `_serve/`), not a bench: `bench/pipeline.py`
runs it and prints the JSON line (its `--quick` skips the images).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KINDS = ("components", "serving")
# Debian's client: the docker on PATH may be a newer CLI without BuildKit's
# classic builder (see ../shared/tools/docker-up.sh).
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").is_file() else "docker"
READY_TIMEOUT_S = 300.0
BUILD_TIMEOUT_S = 3 * 3600.0


class ImageError(RuntimeError):
    """A build failed or a container never became ready; the message says where
    its log is or ends with it."""


def project_version() -> str:
    """``version`` of pyproject.toml: the images' tag."""
    with (REPO / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


def image_tag(kind: str) -> str:
    """The tag `make images` gives the CPU image of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return f"interest-graph-{kind}:{project_version()}"


def docker_available() -> bool:
    """True when a Docker daemon answers on this machine."""
    if shutil.which(DOCKER) is None:
        return False
    try:
        done = subprocess.run(
            [DOCKER, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def image_bytes(tag: str) -> int | None:
    """The image's size in bytes, or None when no image has that tag."""
    done = subprocess.run(
        [DOCKER, "image", "inspect", "--format", "{{.Size}}", tag],
        capture_output=True,
        text=True,
    )
    return int(done.stdout.strip()) if done.returncode == 0 else None


def build_image(kind: str, base_image: str | None) -> dict[str, Any]:
    """Build one image with `make images IMAGES=kind` and measure it.

    Args:
        kind: ``components`` or ``serving``.
        base_image: the Dockerfile's BASE_IMAGE (``local/debian:bookworm`` where
            no registry is reachable); None keeps the pinned default.

    Returns:
        ``tag``, ``bytes`` (image size) and ``build_s`` (wall seconds; layers
        already in Docker's cache make a rebuild fast, so say which it was).

    Raises:
        ImageError: the build failed; the message names its log file.
    """
    tag = image_tag(kind)
    command = ["make", "--no-print-directory", "images", f"IMAGES={kind}"]
    if base_image:
        command.append(f"BASE_IMAGE={base_image}")
    log_path = Path(tempfile.gettempdir()) / f"interest-graph-build-{kind}.log"
    started = time.perf_counter()
    with log_path.open("w") as log:
        done = subprocess.run(
            command,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT_S,
        )
    build_s = time.perf_counter() - started
    size = image_bytes(tag)
    if done.returncode != 0 or size is None:
        raise ImageError(f"building {tag} failed (exit {done.returncode}): {log_path}")
    return {"tag": tag, "bytes": size, "build_s": round(build_s, 1)}


def _ready(http_port: int) -> bool:
    url = f"http://127.0.0.1:{http_port}/v2/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextmanager
def serving_container(
    image: str, model_dir: Path, http_port: int, grpc_port: int
) -> Iterator[float]:
    """Run the serving image as KServe would, hardened, and yield the seconds from
    `docker run` to REST readiness; the container is removed on exit.

    Read-only root, a tmpfs on /tmp (inference log, work files), uid 1000, host
    network (containers get no bridge here) and ``model_dir`` mounted read-only
    at /mnt/models, where the entry point looks for an artifact. ``model_dir``
    must be readable by uid 1000. No Feast: the container has no store to reach.
    """
    name = f"interest-graph-serving-{uuid.uuid4().hex[:10]}"
    command = [
        DOCKER, "run", "--rm", "--name", name,
        "--network", "host", "--read-only", "--tmpfs", "/tmp", "--user", "1000",
        "-v", f"{model_dir.resolve()}:/mnt/models:ro",
        image,
        "--model_name", "recommender",
        "--http_port", str(http_port),
        "--grpc_port", str(grpc_port),
        "--no_feast",
    ]  # fmt: skip
    with tempfile.TemporaryFile("w+") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
        )
        try:
            while not _ready(http_port):
                if process.poll() is not None or (
                    time.perf_counter() - started > READY_TIMEOUT_S
                ):
                    log.seek(0)
                    tail = log.read()[-4000:]
                    raise ImageError(f"{image} did not become ready:\n{tail}")
                time.sleep(0.1)
            yield time.perf_counter() - started
        finally:
            subprocess.run([DOCKER, "rm", "-f", name], capture_output=True)
            process.wait(timeout=60)


def serving_ready_seconds(image: str, model_dir: Path, http_port: int) -> float:
    """Seconds from `docker run` of the serving image until ``GET
    /v2/health/ready`` answers 200 (gRPC on ``http_port + 1``)."""
    with serving_container(image, model_dir, http_port, http_port + 1) as seconds:
        return seconds
