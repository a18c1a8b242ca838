"""Build step of serving/Dockerfile: import what the service imports, so Python
writes bytecode for those modules only.

pip installs with --no-compile there: compiling the whole environment writes
~400 MB of .pyc, of which the service reads ~80 MB. A module missed here still
works; it compiles in memory when imported (the root is read-only at run time).
It is also the image's import check: a dependency the service imports but the
image lacks (one from the training extra, say) fails the build here.

    python scripts/image_bytecode.py      # from the folder holding serving/
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

# The entry point first (whatever it imports at start), then what the service
# imports later inside functions: model loading, ranking, reasons, the servers
# KServe starts, the registry (MLflow, S3) and the transformer's Feast lookups.
MODULES = (
    "serving.__main__",
    "interest_graph.serving.server",
    "interest_graph.serving.transformer",
    "interest_graph.serving.limits",
    "interest_graph.registry",
    "interest_graph.interests.graph",
    "interest_graph.features.repo",
    "torch",
    "threadpoolctl",
    "safetensors.numpy",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "pandas.core.arrays.arrow.extension_types",
    "sklearn.cluster",
    "sklearn.feature_extraction.text",
    "faiss",
    "kserve.protocol.rest.server",
    "kserve.protocol.grpc.server",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "fastapi.telemetry._runtime",
    "pydantic.v1",
    "mlflow.tracking",
    "mlflow.artifacts",
    "boto3",
    "feast",
    "feast.infra.online_stores.sqlite",
    "feast.infra.online_stores.redis",
)


def warm(name: str) -> bool:
    """Import ``name``; False when the module itself no longer exists."""
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            return False  # renamed or moved: a slower start, not a broken image
        raise  # a dependency of the module is missing: the image is incomplete
    return True


def main() -> None:
    sys.path.insert(0, str(Path.cwd()))
    missing = [name for name in MODULES if not warm(name)]
    for name in missing:
        print(f"image_bytecode: no module {name}; it compiles at start instead")
    print(f"image_bytecode: {len(sys.modules)} modules compiled")


if __name__ == "__main__":
    main()
