"""Serving stages: run the KServe service, check that the registry's champion
serves (the pipeline's deploy step), and ask a running service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from interest_graph.config import Settings
from interest_graph.logs import get_logger

log = get_logger("stages")


def serve(
    settings: Settings,
    *,
    predictor_host: str | None = None,
    predictor_options: dict[str, Any] | None = None,
) -> None:
    """Run the service in the foreground: REST v1/v2 and gRPC v2 on KServe.

    Args:
        settings: ``serving`` (model URI, ports, Feast, log), and the stores.
        predictor_host: run the Feast transformer in front of this predictor
            instead of the predictor itself (KServe's transformer layout).
        predictor_options: KServe's ``PredictorConfig`` fields for the transformer
            (protocol, SSL, timeouts, retries, health check).
    """
    from interest_graph.serving.server import serve as serve_predictor
    from interest_graph.serving.server import serve_transformer

    if predictor_host is None:
        serve_predictor(settings)
    else:
        serve_transformer(settings, predictor_host, predictor_options or {})


def sample_call(settings: Settings, user_id: str, k: int = 5) -> dict[str, Any]:
    """Load ``serving.model_uri`` into the KServe predictor the service runs and
    answer one v1 call, with Feast lookups, as ``interest-graph serve`` would."""
    from interest_graph.serving.server import build_service

    serving = settings.serving.model_copy(
        update={"reload_seconds": 0, "inference_log_enabled": False}
    )
    model = build_service(settings.model_copy(update={"serving": serving})).predictor
    model.load()
    call = model.preprocess({"instances": [{"user_id": user_id, "k": k}]})
    answer = model.postprocess(model.predict(call))
    if not isinstance(answer, dict):
        raise TypeError(f"the predictor answered {type(answer).__name__}, not JSON")
    return dict(answer["predictions"][0])


@dataclass(frozen=True)
class DeployResult:
    """The version now served and the answer it gave to the check call."""

    model_uri: str
    version: str
    sample: dict[str, Any]


def deploy(settings: Settings, version: str, user_id: str) -> DeployResult:
    """Check that a promoted version serves, through the same predictor the
    KServe service runs, before anyone relies on it.

    The InferenceService follows ``models:/<name>@champion`` by hot reload, so
    promotion is the rollout; this step loads the champion with Feast lookups and
    answers one call for ``user_id``, and fails if the alias is not on
    ``version`` or the model cannot answer.

    Raises:
        InterestGraphError: the champion is another version, or the answer came
            from a fallback instead of the model.
    """
    from interest_graph.errors import InterestGraphError
    from interest_graph.registry import CHAMPION

    uri = f"models:/{settings.registry.model_name}@{CHAMPION}"
    serving = settings.serving.model_copy(update={"model_uri": uri})
    sample = sample_call(settings.model_copy(update={"serving": serving}), user_id)
    if sample.get("model_version") != version:
        raise InterestGraphError(
            f"{uri} serves version {sample.get('model_version')}, not {version}"
        )
    if sample.get("fallback") is not None:
        raise InterestGraphError(
            f"version {version} answered user {user_id} with the fallback "
            f"{sample['fallback']!r}, not the model"
        )
    log.info(
        "version %s serves: %d items for %s", version, len(sample["items"]), user_id
    )
    return DeployResult(uri, version, sample)


def query(
    users: list[str],
    *,
    k: int,
    url: str,
    protocol: str = "v1",
    timeout: float = 10.0,
) -> list[dict[str, Any]]:
    """Ask a running service for each user's top ``k`` (REST v1/v2 or gRPC)."""
    from interest_graph.serving.client import RecommenderClient

    client = RecommenderClient(url, protocol=protocol, timeout=timeout)
    try:
        return client.recommend_many([{"user_id": u, "k": k} for u in users])
    finally:
        client.close()
