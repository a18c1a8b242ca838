"""KServe's data plane and model repository with the guards a public server needs.

:class:`ServiceDataPlane` answers readiness honestly (503 with no model loaded
or while draining after SIGTERM; KServe's says ready whatever the models) and
turns decode failures on bad input into 400s. :class:`LockedRepository` refuses
load and unload (gRPC ``PERMISSION_DENIED``) unless an operator enables the
control plane; the REST routes are refused in front of KServe
(:class:`~interest_graph.serving.limits.RequestGuard`).
"""

from __future__ import annotations

from typing import Any

from grpc_interceptor.exceptions import PermissionDenied

from interest_graph.serving.kserve_compat import (
    DataPlane,
    InvalidInput,
    ModelRepository,
    ModelRepositoryExtension,
)

REPOSITORY_OFF = (
    "the model repository API (load/unload) is off on this server; operators "
    "enable it with serving.model_repository_enabled"
)


class ServiceDataPlane(DataPlane):
    """KServe's ``DataPlane`` with honest readiness and 400s for bad encodings.

    Attributes:
        draining: set on SIGTERM; readiness then answers 503 while requests are
            still served.
    """

    def __init__(self, model_registry: ModelRepository) -> None:
        super().__init__(model_registry=model_registry)
        self.draining = False

    async def ready(self) -> bool:
        """Ready when not draining and every registered model is loaded (at
        least one); KServe's answers True even with the model unloaded."""
        if self.draining:
            return False
        models = self._model_registry.get_models()
        if not models:
            return False
        for name in models:
            if not await self._model_registry.is_model_ready(name):
                return False
        return bool(await super().ready())

    def decode(self, body: Any, headers: Any, *args: Any, **kwargs: Any) -> Any:
        """KServe's decode; a failure on the caller's bytes is a 400.

        Upstream (KServe 0.21) lets these escape as 500: ``InferRequest.from_bytes``
        (binary tensor extension) raises ``ValueError`` for a bad
        ``inference-header-content-length``, ``KeyError``/``TypeError`` for a JSON
        part without ``inputs`` or ``name`` (``{}``, ``[]``) and numpy errors for
        short binary data; a CloudEvent with ``ce-contenttype`` is unmarshalled
        to a dict that ``decode_cloudevent`` then calls ``.decode`` on.
        """
        try:
            return super().decode(body, headers, *args, **kwargs)
        except InvalidInput:
            raise
        except Exception as exc:  # every decode failure here is the input's
            raise InvalidInput(
                f"the request cannot be decoded: {type(exc).__name__}: {exc}"
            ) from exc


class LockedRepository(ModelRepositoryExtension):
    """The model repository extension with load and unload refused."""

    async def load(self, model_name: str) -> None:
        raise PermissionDenied(REPOSITORY_OFF)

    async def unload(self, model_name: str) -> None:
        raise PermissionDenied(REPOSITORY_OFF)
