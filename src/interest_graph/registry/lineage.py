"""Where a model came from: data fingerprint, feature versions, text model, code.

Every registered version carries these as tags, so anyone can tell which data,
features and language model a served model was trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from interest_graph.config import Settings

GIT_SHA_ENV = "INTEREST_GRAPH_GIT_SHA"
TRAINING_SERVICE = "training"
_CHUNK = 1 << 20


def data_fingerprint(source: str | Path) -> str:
    """SHA-256 over a data file, or over every file of a folder (path + bytes).

    The same data gives the same fingerprint on any machine: paths are taken
    relative to ``source`` and files in sorted order.
    """
    root = Path(source)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such data file or folder")
    files = (
        sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(
            str(path.relative_to(root) if root.is_dir() else path.name).encode()
        )
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def feature_versions(
    settings: Settings, service: str = TRAINING_SERVICE
) -> dict[str, str]:
    """A version per feature view of ``service``: a hash of its schema and TTL.

    The hash covers what a model depends on (view name, entities, field names and
    types, TTL), not the machine-specific source paths, so it changes exactly when
    a view's definition does.
    """
    from feast import FeatureService, FeatureView

    from interest_graph.features.repo import load_definitions

    objects = load_definitions(settings.features_dir)
    services = [o for o in objects if isinstance(o, FeatureService)]
    wanted = next((s for s in services if s.name == service), None)
    if wanted is None:
        raise LookupError(f"feature service {service!r} is not defined")
    views = {o.name: o for o in objects if isinstance(o, FeatureView)}
    versions = {}
    for projection in wanted.feature_view_projections:
        view = views[projection.name]
        spec = {
            "name": view.name,
            "entities": sorted(view.entities),
            "fields": [[f.name, str(f.dtype)] for f in view.schema],
            "ttl": view.ttl.total_seconds() if view.ttl else None,
        }
        blob = json.dumps(spec, sort_keys=True).encode()
        versions[view.name] = hashlib.sha256(blob).hexdigest()[:12]
    return versions


def code_version() -> str:
    """The git commit of this code (``-dirty`` with uncommitted changes).

    ``$INTEREST_GRAPH_GIT_SHA`` wins (container images have no ``.git``);
    ``unknown`` outside a checkout.
    """
    if sha := os.environ.get(GIT_SHA_ENV):
        return sha
    here = Path(__file__).resolve().parent
    try:
        sha = _git(here, "rev-parse", "HEAD")
        dirty = _git(here, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
    )
    return done.stdout.strip()


def lineage(
    source: str | Path, settings: Settings, text_model: str | None
) -> dict[str, Any]:
    """All lineage facts of a model trained on ``source`` with ``settings``."""
    try:
        features: dict[str, str] | str = feature_versions(settings)
    except Exception as exc:  # noqa: BLE001 - lineage records why it is missing
        features = f"unavailable: {exc}"
    return {
        "data_source": str(source),
        "data_fingerprint": data_fingerprint(source),
        "feature_service": TRAINING_SERVICE,
        "feature_views": features,
        "text_model": text_model,
        "code_version": code_version(),
    }
