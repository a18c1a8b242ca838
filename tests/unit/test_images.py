"""The container images: their rules read from the Dockerfiles (always), and the
built serving image run as KServe runs it (marked docker).

The docker tests skip where no daemon answers or the image is not built: building
takes minutes, so it is `make images` (BASE_IMAGE=local/debian:bookworm where no
registry is reachable), never the test.
"""

# No `from __future__ import annotations`: kfp reads a component's annotations as
# objects, and this module defines one.
import asyncio
import json
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import _images  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "components": REPO / "components" / "Dockerfile",
    "serving": REPO / "serving" / "Dockerfile",
}
OCI_LABELS = {"title", "description", "source", "version", "licenses"}
COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang)\b")
# Packages of the training and pipelines extras: none belongs in the serving image.
TRAINING_PACKAGES = (
    "ray",
    "torch_geometric",
    "transformers",
    "sentence_transformers",
    "kfp",
    "evidently",
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def final_image(self) -> list[tuple[str, str]]:
        """Instructions whose results are in the final image: the last stage and
        the stages it is built FROM, oldest first."""
        by_name = {s.name: s for s in self.stages if s.name}
        chain = [self.stages[-1]]
        while chain[0].base in by_name:
            chain.insert(0, by_name[chain[0].base])
        return [i for stage in chain for i in stage.instructions]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def parse_dockerfile(path: Path) -> Dockerfile:
    """Instructions per stage, continuation lines joined, comment lines dropped."""
    logical: list[str] = []
    current = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # also inside a continuation
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages and keyword == "ARG":
            key, _, default = args.partition("=")
            global_args[key.strip()] = default.strip()
        else:
            stages[-1].instructions.append((keyword, args))
    return Dockerfile(global_args, stages)


def _runs(instructions: list[tuple[str, str]]) -> list[str]:
    return [args for keyword, args in instructions if keyword == "RUN"]


def _project_install(builder: Stage) -> tuple[int, list[str]]:
    """Position and words of the RUN that installs the project itself."""
    for position, (keyword, args) in enumerate(builder.instructions):
        words = shlex.split(args) if keyword == "RUN" else []
        if any(re.fullmatch(r"\.(\[[\w,-]+\])?", word) for word in words):
            return position, words
    raise AssertionError("no RUN installs the project (`.` or `.[extras]`)")


@pytest.fixture(params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> Dockerfile:
    return parse_dockerfile(DOCKERFILES[request.param])


def test_base_image_is_an_argument_with_a_pinned_default(
    dockerfile: Dockerfile,
) -> None:
    default = dockerfile.global_args["BASE_IMAGE"]
    name, _, tag = default.rpartition(":")
    assert "@sha256:" in default or (name and re.match(r"\d+\.\d+\.\d+", tag)), (
        f"BASE_IMAGE={default!r} is not pinned to an exact version"
    )
    assert tag != "latest"
    stage_names = {s.name for s in dockerfile.stages}
    for stage in dockerfile.stages:  # no image is named anywhere but in ARGs
        assert stage.base in stage_names | {"${BASE_IMAGE}", "${WHEELS_IMAGE}"}


def test_final_image_runs_as_uid_1000(dockerfile: Dockerfile) -> None:
    users = [args for keyword, args in dockerfile.final_image() if keyword == "USER"]
    assert users, "the final stage sets no USER"
    assert re.fullmatch(r"1000(:1000)?", users[-1].strip())


def test_final_image_has_no_compilers(dockerfile: Dockerfile) -> None:
    final = dockerfile.final_image()
    for run in _runs(final):
        assert not COMPILERS.search(run), run
    for keyword, args in final:  # from the builder, only the environment comes over
        if keyword == "COPY" and "--from=builder" in args:
            assert args.split()[1:-1] == ["/opt/venv"], args
    assert any(
        COMPILERS.search(run) for run in _runs(dockerfile.stage("builder").instructions)
    )


def test_final_image_carries_the_oci_labels(dockerfile: Dockerfile) -> None:
    labels = " ".join(args for kw, args in dockerfile.final_image() if kw == "LABEL")
    found = set(re.findall(r"org\.opencontainers\.image\.(\w+)=", labels))
    assert found >= OCI_LABELS


def test_torch_goes_in_first_and_everything_under_the_constraints(
    dockerfile: Dockerfile,
) -> None:
    builder = dockerfile.stage("builder")
    position, words = _project_install(builder)
    assert words[words.index("-c") + 1] == "constraints.txt"
    torch_runs = [
        i
        for i, (kw, args) in enumerate(builder.instructions)
        if "image_torch.sh" in args
    ]
    assert torch_runs and torch_runs[0] < position


def test_the_proxy_ca_is_a_secret_never_a_file_in_the_image(
    dockerfile: Dockerfile,
) -> None:
    for stage in dockerfile.stages:
        for keyword, args in stage.instructions:
            if keyword in {"COPY", "ADD", "ENV"}:
                assert not re.search(r"ca-certificates\.crt|pipca|PIP_CERT", args)
            if keyword == "RUN" and re.search(r"image_(pip|torch)\.sh", args):
                assert "--mount=type=secret,id=pipca" in args


def test_serving_installs_the_base_dependencies_only() -> None:
    serving = parse_dockerfile(DOCKERFILES["serving"])
    _, words = _project_install(serving.stage("builder"))
    assert "." in words
    assert not any(word.startswith(".[") for word in words)


def test_components_install_everything_and_run_offline() -> None:
    components = parse_dockerfile(DOCKERFILES["components"])
    _, words = _project_install(components.stage("builder"))
    assert ".[all]" in words
    env: dict[str, str] = {}
    for keyword, args in components.final_image():
        if keyword == "ENV":
            env.update(word.partition("=")[::2] for word in shlex.split(args))
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["DO_NOT_TRACK"] == "1"
    assert env["RAY_USAGE_STATS_ENABLED"] == "0"
    assert env["INTEREST_GRAPH_FEATURE_REPO"] == "/app/feature_repo"
    assert env["INTEREST_GRAPH__PATHS__WORK_DIR"].startswith("/tmp/")


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", ".work", "tests"} <= patterns


# --- the built serving image ---------------------------------------------------

K = 10


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def serving_image() -> str:
    if not _images.docker_available():
        pytest.skip("no Docker daemon answers")
    tag = _images.image_tag("serving")
    if _images.image_bytes(tag) is None:
        pytest.skip(f"{tag} is not built (make images)")
    return tag


@pytest.fixture(scope="module")
def components_image() -> str:
    if not _images.docker_available():
        pytest.skip("no Docker daemon answers")
    tag = _images.image_tag("components")
    if _images.image_bytes(tag) is None:
        pytest.skip(f"{tag} is not built (make images)")
    return tag


@pytest.fixture(scope="module")
def model_folder(uid1000_model: tuple[Path, list[str]]) -> tuple[Path, list[str]]:
    """The shared vector artifact, and users to ask about: known test users and
    one the model has never seen."""
    folder, users = uid1000_model
    return folder, [*users[:6], "stranger-never-seen"]


@dataclass
class Container:
    http: str
    grpc: str


@pytest.fixture(scope="module")
def container(
    serving_image: str, model_folder: tuple[Path, list[str]]
) -> Iterator[Container]:
    from interest_graph.serving.client import RecommenderClient

    http_port, grpc_port = _free_port(), _free_port()
    with _images.serving_container(
        serving_image, model_folder[0], http_port, grpc_port
    ):
        grpc = RecommenderClient(f"127.0.0.1:{grpc_port}", protocol="grpc")
        deadline = time.monotonic() + 30
        while not grpc.ready():
            assert time.monotonic() < deadline, "gRPC never became ready"
            time.sleep(0.1)
        yield Container(f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}")


def _library_answer(folder: Path, users: list[str]) -> list[dict[str, Any]]:
    """What the library's own predictor answers for the same model and users."""
    from interest_graph.config import ServingConfig
    from interest_graph.serving.model import load_serving_model
    from interest_graph.serving.predictor import RecommenderModel

    serving = load_serving_model(folder, version="local", uri="/mnt/models")
    predictor = RecommenderModel(lambda: serving, ServingConfig(feast=False))
    predictor.load()

    async def call() -> Any:
        body = {"instances": [{"user_id": u, "k": K} for u in users]}
        result = predictor.predict(predictor.preprocess(body, {}), {})
        if asyncio.iscoroutine(result):
            result = await result
        return predictor.postprocess(result, {})

    predictions: list[dict[str, Any]] = asyncio.run(call())["predictions"]
    return predictions


@pytest.mark.docker
def test_serving_image_is_what_the_dockerfile_says(serving_image: str) -> None:
    inspected = json.loads(
        subprocess.run(
            [_images.DOCKER, "image", "inspect", serving_image],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )[0]["Config"]
    assert re.fullmatch(r"1000(:1000)?", inspected["User"])
    labels = inspected["Labels"]
    assert labels["org.opencontainers.image.version"] == _images.project_version()
    probe = (
        "import importlib.util, shutil; "
        f"print([m for m in {TRAINING_PACKAGES!r} if importlib.util.find_spec(m)]"
        " + [c for c in ('gcc', 'cc', 'g++') if shutil.which(c)])"
    )
    found = subprocess.run(
        [_images.DOCKER, "run", "--rm", "--network", "none", "--entrypoint",
         "python", serving_image, "-c", probe],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    assert found == "[]", f"the serving image carries {found}"


@pytest.mark.docker
def test_v1_v2_and_grpc_in_the_image_answer_like_the_library(
    container: Container, model_folder: tuple[Path, list[str]]
) -> None:
    from interest_graph.serving.client import RecommenderClient

    folder, users = model_folder
    expected = _library_answer(folder, users)
    assert any(e["fallback"] is None for e in expected)
    assert expected[-1]["fallback"] == "unknown_user:popular_items"
    instances = [{"user_id": u, "k": K} for u in users]
    for protocol in ("v1", "v2", "grpc"):
        url = container.grpc if protocol == "grpc" else container.http
        answer = RecommenderClient(url, protocol=protocol).recommend_many(instances)
        assert [a["user_id"] for a in answer] == users, protocol
        for got, want in zip(answer, expected, strict=True):
            assert [i["item_id"] for i in got["items"]] == [
                i["item_id"] for i in want["items"]
            ], (protocol, got["user_id"])
            assert [i["score"] for i in got["items"]] == pytest.approx(
                [i["score"] for i in want["items"]], rel=1e-5
            ), protocol
            assert got["fallback"] == want["fallback"], protocol
            assert got["model_version"] == want["model_version"], protocol


@pytest.mark.docker
def test_component_image_runs_a_kfp_component_as_uid_1000(
    components_image: str, tmp_path: Path
) -> None:
    """A lightweight component with install_kfp_package=False, as the pipelines
    declare theirs: kfp and the library must already be in the image."""
    from kfp import dsl, local

    @dsl.component(base_image=components_image, install_kfp_package=False)
    def library_version(metrics: dsl.Output[dsl.Metrics]) -> str:
        from importlib.metadata import version

        import torch

        metrics.log_metric("torch_threads", torch.get_num_threads())
        return version("interest-graph")

    root = tmp_path / "pipeline-root"
    root.mkdir()
    root.chmod(0o777)  # the component runs as uid 1000
    local.init(runner=local.DockerRunner(network_mode="host"), pipeline_root=str(root))
    task = library_version()
    assert task.outputs["Output"] == _images.project_version()
    assert task.outputs["metrics"].metadata["torch_threads"] >= 1
