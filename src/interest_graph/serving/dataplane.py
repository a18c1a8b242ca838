"""KServe's data plane and model repository with the guards a public server needs.

:class:`ServiceDataPlane` answers readiness honestly (503 with no model loaded
or while draining after SIGTERM; KServe's says ready whatever the models) and
turns decode failures on bad input into 400s, and encodes v1 and plain v2 REST
answers to JSON itself (KServe's way cost more than the ranking, see
:meth:`encode`).
:class:`LockedRepository` refuses
load and unload (gRPC ``PERMISSION_DENIED``) unless an operator enables the
control plane; the REST routes are refused in front of KServe
(:class:`~interest_graph.serving.limits.RequestGuard`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from grpc_interceptor.exceptions import PermissionDenied

from interest_graph.serving.kserve_compat import (
    DataPlane,
    InferResponse,
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

    def encode(
        self,
        model_name: str,
        response: Any,
        headers: Mapping[str, str] | None,
        req_attributes: dict[str, Any],
    ) -> tuple[Any, dict[str, str]]:
        """A v1 answer and a plain v2 answer as JSON bytes; anything else the
        KServe way.

        KServe's v2 REST endpoint turns an ``InferResponse`` into a dict
        (``to_rest``: every output through numpy and back), validates it into a
        pydantic ``InferenceResponse`` and lets FastAPI's ``jsonable_encoder``
        walk it value by value: 2-3× the cost of the ranking itself at k=20
        (py-spy, 400 requests/s), and the v2 tail. Its v1 endpoint wraps the dict
        in FastAPI's ``ORJSONResponse``, whose deprecation warning (filtered, but
        raised and matched on every call) cost ~20 µs a call. Bytes from
        ``encode`` it sends as they are. CloudEvents, binary outputs and
        parameters keep KServe's path.
        """
        if isinstance(response, dict) and not _cloudevent(headers):
            return _json_body(response)
        if not _plain_json_answer(response, headers):
            return super().encode(model_name, response, headers, req_attributes)
        return _json_body(
            {
                "id": response.id,
                "model_name": response.model_name,
                "model_version": response.model_version,
                "outputs": [
                    {
                        "name": output.name,
                        "shape": output.shape,
                        "datatype": output.datatype,
                        "data": output.data,
                    }
                    for output in response.outputs
                ],
            }
        )


def _json_body(content: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """An answer as JSON bytes (numpy values too) and the headers to send it with."""
    body = orjson.dumps(
        content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    )
    # The endpoints (KServe 0.21) pop "content-type" and "content-length" from
    # these headers with case-sensitive dict pops before copying them into the
    # response's case-insensitive ones, so a bytes answer would go out without a
    # content type (and chunked); capitalised keys pass the pops.
    return body, {"Content-Type": "application/json", "Content-Length": str(len(body))}


def _cloudevent(headers: Mapping[str, str] | None) -> bool:
    """The request came as a CloudEvent (binary ``ce-`` headers or structured)."""
    for name, value in (headers or {}).items():
        lowered = name.lower()
        if lowered.startswith("ce-") or (
            lowered == "content-type" and "cloudevents" in value
        ):
            return True
    return False


def _plain_json_answer(response: Any, headers: Mapping[str, str] | None) -> bool:
    """A v2 ``InferResponse`` of list data that asks for no binary output,
    parameters or CloudEvent."""
    if not isinstance(response, InferResponse):
        return False
    if response.parameters or getattr(response, "_use_binary_outputs", True):
        return False
    if getattr(response, "_requested_outputs", None) or _cloudevent(headers):
        return False
    return all(
        isinstance(o.data, list) and not o.parameters and o._raw_data is None
        for o in response.outputs
    )


class LockedRepository(ModelRepositoryExtension):
    """The model repository extension with load and unload refused."""

    async def load(self, model_name: str) -> None:
        raise PermissionDenied(REPOSITORY_OFF)

    async def unload(self, model_name: str) -> None:
        raise PermissionDenied(REPOSITORY_OFF)
