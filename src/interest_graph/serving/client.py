"""A small client of the recommendation service: REST v1, REST v2 and gRPC v2.

    client = RecommenderClient("http://localhost:8080")
    client.recommend("17850", k=10)                     # REST v1
    RecommenderClient("localhost:8081", protocol="grpc").recommend("17850")

Every protocol returns the same shape: one dict per user with ``user_id``,
``items`` (``item_id`` and ``score``, plus ``title``, ``category`` and
``reason``), ``fallback`` and ``model_version``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from interest_graph.errors import InterestGraphError
from interest_graph.serving import MODEL_NAME

PROTOCOLS = ("v1", "v2", "grpc")


class ServiceError(InterestGraphError):
    """The service refused the call or could not be reached."""


class RecommenderClient:
    """Calls ``recommender`` on one server.

    Args:
        url: ``http://host:8080`` for REST, ``host:8081`` for gRPC.
        protocol: ``v1``, ``v2`` or ``grpc``.
        timeout: seconds per call.
    """

    def __init__(
        self,
        url: str = "http://localhost:8080",
        protocol: str = "v1",
        timeout: float = 10.0,
        model: str = MODEL_NAME,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ServiceError(f"protocol must be one of {', '.join(PROTOCOLS)}")
        self.url = url.rstrip("/")
        self.protocol = protocol
        self.timeout = timeout
        self.model = model
        self._http: httpx.Client | None = None
        self._grpc: Any = None

    def recommend(self, user_id: str, k: int = 20, **fields: Any) -> dict[str, Any]:
        """One user's recommendations (``exclude``, ``filters``, ``recent_items``
        go as keyword arguments; v1 only)."""
        return self.recommend_many([{"user_id": user_id, "k": k, **fields}])[0]

    def recommend_many(
        self, instances: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Several users in one call."""
        if self.protocol == "v1":
            return self._v1(instances)
        extra = {key for i in instances for key in i} - {"user_id", "k"}
        if extra:
            raise ServiceError(f"{sorted(extra)} are v1 fields; use protocol v1")
        ks = {int(i.get("k", 20)) for i in instances}
        if len(ks) != 1:
            raise ServiceError("v2 and gRPC calls take one k for every user")
        users = [str(i["user_id"]) for i in instances]
        if self.protocol == "v2":
            return self._v2(users, ks.pop())
        return self._grpc_infer(users, ks.pop())

    def ready(self) -> bool:
        """True when the server answers readiness with 200 (REST) / ready (gRPC)."""
        if self.protocol == "grpc":
            from interest_graph.serving.kserve_compat import grpc_pb

            try:
                answer = self._grpc_stub().ServerReady(
                    grpc_pb.ServerReadyRequest(), timeout=self.timeout
                )
            except Exception:
                return False
            return bool(answer.ready)
        try:
            return self._client().get(f"{self.url}/v2/health/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        if self._grpc is not None:
            self._grpc[0].close()

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self.timeout)
        return self._http

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._client().post(f"{self.url}{path}", json=body)
        except httpx.HTTPError as exc:
            raise ServiceError(f"{self.url}: {exc}") from exc
        if response.status_code != 200:
            raise ServiceError(
                f"{self.url}{path}: HTTP {response.status_code}: {response.text[:500]}"
            )
        answer: dict[str, Any] = response.json()
        return answer

    def _v1(self, instances: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        answer = self._post(
            f"/v1/models/{self.model}:predict", {"instances": list(instances)}
        )
        predictions: list[dict[str, Any]] = answer["predictions"]
        return predictions

    def _v2(self, users: list[str], k: int) -> list[dict[str, Any]]:
        body = {
            "inputs": [
                {
                    "name": "user_id",
                    "datatype": "BYTES",
                    "shape": [len(users)],
                    "data": users,
                },
                {"name": "k", "datatype": "INT32", "shape": [1], "data": [k]},
            ]
        }
        answer = self._post(f"/v2/models/{self.model}/infer", body)
        outputs = {o["name"]: o for o in answer["outputs"]}
        return _rows(users, k, outputs, answer.get("model_version"))

    def _grpc_stub(self) -> Any:
        if self._grpc is None:
            import grpc

            from interest_graph.serving.kserve_compat import grpc_services

            target = self.url.split("://", 1)[-1]
            channel = grpc.insecure_channel(target)
            self._grpc = (channel, grpc_services.GRPCInferenceServiceStub(channel))
        return self._grpc[1]

    def _grpc_infer(self, users: list[str], k: int) -> list[dict[str, Any]]:
        import grpc

        from interest_graph.serving.kserve_compat import grpc_pb

        request = grpc_pb.ModelInferRequest(
            model_name=self.model,
            inputs=[
                grpc_pb.ModelInferRequest.InferInputTensor(
                    name="user_id",
                    datatype="BYTES",
                    shape=[len(users)],
                    contents=grpc_pb.InferTensorContents(
                        bytes_contents=[u.encode() for u in users]
                    ),
                ),
                grpc_pb.ModelInferRequest.InferInputTensor(
                    name="k",
                    datatype="INT32",
                    shape=[1],
                    contents=grpc_pb.InferTensorContents(int_contents=[k]),
                ),
            ],
        )
        try:
            answer = self._grpc_stub().ModelInfer(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise ServiceError(
                f"{self.url}: {exc.code().name}: {exc.details()}"
            ) from exc
        outputs = {}
        for tensor in answer.outputs:
            contents = tensor.contents
            data = (
                list(contents.fp32_contents)
                if tensor.datatype == "FP32"
                else [b.decode() for b in contents.bytes_contents]
            )
            outputs[tensor.name] = {"name": tensor.name, "data": data}
        return _rows(users, k, outputs, answer.model_version or None)


def _rows(
    users: list[str], k: int, outputs: dict[str, Any], version: str | None
) -> list[dict[str, Any]]:
    """Per-user dicts from [batch, k] v2 outputs (empty ranks dropped)."""
    rows = []
    columns = ("item_id", "score", "title", "category", "reason")
    for row, user in enumerate(users):
        items = []
        for rank in range(k):
            at = row * k + rank
            item = {c: outputs[c]["data"][at] for c in columns if c in outputs}
            if "category" in item:  # v2 has no null strings; v1 says null
                item["category"] = item["category"] or None
            if item.get("item_id"):
                items.append(item)
        fallback = outputs.get("fallback", {}).get("data", [""] * len(users))[row]
        rows.append(
            {
                "user_id": user,
                "items": items,
                "fallback": fallback or None,
                "model_version": version,
            }
        )
    return rows
