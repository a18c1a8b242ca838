"""The Kubeflow pipelines: compiled IR (tasks, GPU, node selection, secrets,
caching, retries, the deploy condition), typed parameters, and what submit and
schedule send, checked against the KFP v2beta1 REST contract on a loopback
stand-in for the API server (no KFP server exists here)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from interest_graph import stages
from interest_graph.errors import ConfigError, InterestGraphError
from interest_graph.kubeflow.cluster import cron_schedule, typed_arguments
from interest_graph.kubeflow.definitions import load_pipeline
from interest_graph.kubeflow.local import TaskClock, check_images, images_of

TASKS = {
    "ingest",
    "features",
    "embed",
    "tune",
    "train",
    "evaluate",
    "interests",
    "register",
    "deploy",
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("kfp") / "training.yaml"
    stages.compile_pipeline("training", out)
    documents = list(yaml.safe_load_all(out.read_text()))
    return {"spec": documents[0], "platform": documents[1]["platforms"]}


def _tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every task of the pipeline, nested condition DAGs included."""
    found: dict[str, dict[str, Any]] = {}

    def visit(dag: dict[str, Any]) -> None:
        for name, task in dag["tasks"].items():
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                visit(component["dag"])
            else:
                found[name] = task

    visit(spec["root"]["dag"])
    return found


def _container(spec: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    component = spec["components"][task["componentRef"]["name"]]
    return spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]


def test_training_pipeline_has_every_stage_in_the_component_image(
    compiled: dict[str, Any],
) -> None:
    spec = compiled["spec"]
    tasks = _tasks(spec)
    assert set(tasks) == TASKS
    for task in tasks.values():
        container = _container(spec, task)
        assert container["image"] == "interest-graph-components:0.1.0"
        # kfp is baked into the image: nothing is pip-installed at run time.
        assert "pip install" not in " ".join(container["command"])
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["tune_trials"]["defaultValue"] == 0
    assert parameters["source_kind"]["defaultValue"] == "synth"


def test_gpu_steps_ask_for_a_gpu_on_the_gpu_pool(compiled: dict[str, Any]) -> None:
    spec, platform = compiled["spec"], compiled["platform"]["kubernetes"]
    executors = platform["deploymentSpec"]["executors"]
    tasks = _tasks(spec)
    for name in ("embed", "tune", "train"):
        resources = _container(spec, tasks[name])["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert resources["accelerator"]["resourceCount"] == "1"
        executor = executors[f"exec-{name}"]
        assert executor["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        assert executor["tolerations"] == [
            {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
        ]
    for name in ("ingest", "evaluate", "register"):
        assert "accelerator" not in _container(spec, tasks[name]).get("resources", {})


def test_credentials_come_from_secrets_never_literals(
    compiled: dict[str, Any],
) -> None:
    executors = compiled["platform"]["kubernetes"]["deploymentSpec"]["executors"]
    register = executors["exec-register"]["secretAsEnv"]
    secrets = {entry["secretName"] for entry in register}
    assert secrets == {"interest-graph-registry", "interest-graph-s3"}
    variables = {m["envVar"] for entry in register for m in entry["keyToEnv"]}
    assert "AWS_SECRET_ACCESS_KEY" in variables
    assert "INTEREST_GRAPH__REGISTRY__TRACKING_URI" in variables
    redis = {e["secretName"] for e in executors["exec-features"]["secretAsEnv"]}
    assert redis == {"interest-graph-redis"}
    text = json.dumps(compiled)
    assert "postgresql://" not in text and "password" not in text.lower()


def test_caching_and_retries_where_they_belong(compiled: dict[str, Any]) -> None:
    tasks = _tasks(compiled["spec"])
    cached = {n for n, t in tasks.items() if t["cachingOptions"].get("enableCache")}
    assert cached == {"tune", "train", "evaluate"}  # pure steps only
    retried = {n for n, t in tasks.items() if "retryPolicy" in t}
    assert retried == {"features", "embed", "interests", "register", "deploy"}
    assert tasks["register"]["retryPolicy"]["maxRetryCount"] == 2


def test_deploy_runs_only_when_the_register_step_promoted(
    compiled: dict[str, Any],
) -> None:
    spec = compiled["spec"]
    root = spec["root"]["dag"]["tasks"]
    (condition,) = [t for n, t in root.items() if n.startswith("condition")]
    assert "register" in condition["dependentTasks"]
    trigger = condition["triggerPolicy"]["condition"]
    assert "register-Output" in trigger and "== true" in trigger
    inner = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inner) == {"deploy"}


def test_parameters_are_typed_by_the_pipeline_and_checked() -> None:
    typed = typed_arguments(
        "training", {"tune_trials": "4", "source_kind": "online-retail"}
    )
    assert typed == {"tune_trials": 4, "source_kind": "online-retail"}
    with pytest.raises(ConfigError, match="no parameter 'trials'"):
        typed_arguments("training", {"trials": "4"})
    with pytest.raises(ConfigError, match="is not a NUMBER_INTEGER"):
        typed_arguments("training", {"tune_trials": "many"})
    with pytest.raises(ConfigError, match="unknown pipeline"):
        typed_arguments("nightly", {})
    assert cron_schedule("0 3 * * *") == "0 0 3 * * *"
    with pytest.raises(ConfigError, match="expected 5 fields"):
        cron_schedule("daily")


class FakeKfpApi(BaseHTTPRequestHandler):
    """Answers the KFP v2beta1 paths the SDK client calls, recording each."""

    requests: list[tuple[str, str, Any]] = []
    experiments: dict[str, str] = {}

    def _answer(self, body: dict[str, Any], status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.requests.append((self.command, self.path, body))
        return body

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._record()
        path = self.path.split("?")[0]
        if path == "/apis/v2beta1/experiments":
            known = [
                {"experiment_id": eid, "display_name": name}
                for name, eid in self.experiments.items()
                if name in self.path
            ]
            self._answer({"experiments": known, "total_size": len(known)})
        elif path.startswith("/apis/v2beta1/runs/"):
            run_id = path.rsplit("/", 1)[1]
            self._answer(
                {"run_id": run_id, "experiment_id": "exp-1", "state": "PENDING"}
            )
        elif path == "/apis/v2beta1/healthz":
            self._answer({"multi_user": False})
        else:
            self._answer({"error": f"no route {path}"}, 404)

    def do_POST(self) -> None:  # noqa: N802
        body = self._record()
        path = self.path.split("?")[0]
        if path == "/apis/v2beta1/experiments":
            self.experiments[body["display_name"]] = "exp-1"
            self._answer({"experiment_id": "exp-1", **body})
        elif path == "/apis/v2beta1/runs":
            self._answer({"run_id": "run-1", "state": "PENDING", **body})
        elif path == "/apis/v2beta1/recurringruns":
            self._answer({"recurring_run_id": "rr-1", "status": "ENABLED", **body})
        else:
            self._answer({"error": f"no route {path}"}, 404)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def kfp_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    monkeypatch.setenv("HOME", str(tmp_path))  # the SDK keeps a context file
    FakeKfpApi.requests = []
    FakeKfpApi.experiments = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKfpApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_submit_sends_a_v2beta1_run_with_typed_parameters(
    kfp_api: str, tmp_path: Path
) -> None:
    run = stages.submit_pipeline(
        "training",
        kfp_api,
        experiment="shop-weekly",
        parameters={"tune_trials": "3", "source_kind": "synth"},
        package=tmp_path / "training.yaml",
        run_name="weekly-1",
    )
    assert (run.id, run.experiment_id, run.name) == ("run-1", "exp-1", "weekly-1")
    posts = {
        path: body for method, path, body in FakeKfpApi.requests if method == "POST"
    }
    assert posts["/apis/v2beta1/experiments"]["display_name"] == "shop-weekly"
    body = posts["/apis/v2beta1/runs"]
    assert body["display_name"] == "weekly-1"
    assert body["experiment_id"] == "exp-1"
    # With a Kubernetes platform spec the SDK sends both, side by side.
    sent = body["pipeline_spec"]
    assert sent["pipeline_spec"]["pipelineInfo"]["name"] == "interest-graph-training"
    assert "exec-train" in json.dumps(sent["platform_spec"]["platforms"]["kubernetes"])
    assert body["runtime_config"]["parameters"] == {
        "tune_trials": 3,
        "source_kind": "synth",
    }
    assert (tmp_path / "training.yaml").is_file()


def test_schedule_sends_a_v2beta1_recurring_run_with_kfp_cron(
    kfp_api: str, tmp_path: Path
) -> None:
    job = stages.schedule_pipeline(
        "training",
        kfp_api,
        experiment="nightly",
        cron="30 2 * * *",
        parameters={"tune_trials": "0"},
        package=tmp_path / "training.yaml",
        job_name="nightly-retrain",
    )
    assert (job.id, job.name) == ("rr-1", "nightly-retrain")
    posts = {
        path: body for method, path, body in FakeKfpApi.requests if method == "POST"
    }
    body = posts["/apis/v2beta1/recurringruns"]
    assert body["display_name"] == "nightly-retrain"
    assert body["experiment_id"] == "exp-1"
    assert body["trigger"]["cron_schedule"]["cron"] == "0 30 2 * * *"
    assert body["mode"] == "ENABLE"
    assert int(body["max_concurrency"]) == 1 and body["no_catchup"] is True
    sent = body["pipeline_spec"]
    assert sent["pipeline_spec"]["pipelineInfo"]["name"] == "interest-graph-training"
    assert "platform_spec" in sent
    assert body["runtime_config"]["parameters"] == {"tune_trials": 0}


def test_a_bad_host_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected http"):
        stages.submit_pipeline(
            "training",
            "ml-pipeline:8888",
            experiment="x",
            parameters={},
            package=tmp_path / "p.yaml",
        )


def test_the_task_clock_reads_kfp_local_lines_and_says_progress() -> None:
    sink, progress = io.StringIO(), io.StringIO()
    clock = TaskClock(sink, progress)
    cyan, green, reset = "\x1b[96m", "\x1b[92m", "\x1b[0m"
    clock.write(f"12:00:00.000 - INFO - Executing task {cyan}'train'{reset}\n    ep")
    clock.write("och 1\n")
    clock.write(
        f"12:00:05.000 - INFO - Task {cyan}'train'{reset} finished with status "
        f"{green}SUCCESS{reset}\n"
    )
    assert sink.getvalue().count("\n") == 3  # everything reaches the log
    status, seconds = clock.finished["train"]
    assert status == "SUCCESS" and seconds >= 0
    assert progress.getvalue().splitlines() == [
        "[pipeline] train: running",
        f"[pipeline] train: SUCCESS ({seconds:.1f} s)",
    ]
    assert "ingest" not in clock.finished


def test_the_docker_runner_names_a_missing_image_before_anything_runs() -> None:
    images = images_of(load_pipeline("training"))
    assert images == {"interest-graph-components:0.1.0"}
    # Without a daemon the message says so; with one, the unbuilt tag is named.
    with pytest.raises(InterestGraphError, match="not built here|no Docker daemon"):
        check_images({"interest-graph-components:0.0.0-never-built"})
