"""The training pipeline: ingest → features → embed → tune → train → evaluate,
interests → register → deploy (only when the model was promoted).

Compile: ``interest-graph pipeline compile training`` (or run this file);
run locally: ``interest-graph run`` / ``interest-graph pipeline run``; submit to
a cluster: ``interest-graph pipeline submit training --host URL``.
"""

from kfp import dsl, kubernetes

from components import (
    deploy,
    embed,
    evaluate,
    features,
    ingest,
    interests,
    register,
    train,
    tune,
)

# Kubernetes Secrets the service-facing steps read as environment variables
# (never literal credentials): secret name -> {key in the secret: variable}.
SECRETS = {
    "interest-graph-redis": {
        "connection-string": "INTEREST_GRAPH__FEATURES__REDIS_CONNECTION_STRING",
    },
    "interest-graph-registry": {
        "tracking-uri": "INTEREST_GRAPH__REGISTRY__TRACKING_URI",
    },
    "interest-graph-s3": {
        "access-key-id": "AWS_ACCESS_KEY_ID",
        "secret-access-key": "AWS_SECRET_ACCESS_KEY",
        "endpoint-url": "MLFLOW_S3_ENDPOINT_URL",
    },
}
# The GPU node pool: what embed, tune and train ask for.
GPU_TYPE = "nvidia.com/gpu"
GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")


def _on_gpu(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """One GPU, on the GPU node pool, tolerating its taint."""
    task.set_accelerator_type(GPU_TYPE).set_accelerator_limit(1)
    kubernetes.add_node_selector(
        task, label_key=GPU_NODE_LABEL[0], label_value=GPU_NODE_LABEL[1]
    )
    kubernetes.add_toleration(
        task, key=GPU_TYPE, operator="Exists", effect="NoSchedule"
    )
    return task


def with_secrets(task: dsl.PipelineTask, *names: str) -> dsl.PipelineTask:
    for name in names:
        kubernetes.use_secret_as_env(
            task, secret_name=name, secret_key_to_env=SECRETS[name], optional=True
        )
    return task


def _talks_to_services(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Feast, Redis or the registry may blip: retry, never serve from cache."""
    return task.set_caching_options(False).set_retry(
        num_retries=2, backoff_duration="30s", backoff_factor=2
    )


@dsl.pipeline(
    name="interest-graph-training",
    description="Shop data to a served recommender: features in Feast, item text "
    "embeddings, the GNN interest model, the registry's champion gate, KServe.",
)
def training_pipeline(
    source_kind: str = "synth",
    source_uri: str = "",
    protocol: str = "shop-temporal",
    tune_trials: int = 0,
    settings_json: str = "{}",
) -> None:
    """Train, evaluate and register the recommender; deploy it when promoted.

    Args:
        source_kind: ``synth`` (a generated shop, sized by the ``synth``
            settings), ``online-retail`` (the UCI file) or ``custom-shop``
            (files and column mapping of the ``shop`` settings).
        source_uri: the Online Retail file (empty for the others).
        protocol: the evaluation protocol the model trains and is gated on.
        tune_trials: Ray Tune trials before training; 0 trains with the
            settings as they are.
        settings_json: platform settings as JSON (any sections of
            ``configs/*.yaml``); the environment of each step overrides them.
    """
    loaded = ingest(
        source_kind=source_kind, source_uri=source_uri, settings_json=settings_json
    ).set_caching_options(False)  # the source may change under the same URI
    tables = _talks_to_services(
        features(settings_json=settings_json, data=loaded.outputs["data"])
    )
    with_secrets(tables, "interest-graph-redis")
    vectors = _talks_to_services(
        embed(
            settings_json=settings_json,
            data=loaded.outputs["data"],
            feature_tables=tables.outputs["feature_tables"],
        )
    )
    with_secrets(_on_gpu(vectors), "interest-graph-redis")
    search = tune(
        settings_json=settings_json,
        protocol=protocol,
        trials=tune_trials,
        data=loaded.outputs["data"],
    ).set_caching_options(True)
    search.after(vectors)  # text-aware models read the embeddings
    _on_gpu(search)
    trained = train(
        settings_json=settings_json,
        protocol=protocol,
        best_train=search.outputs["best_train"],
        data=loaded.outputs["data"],
        feature_tables=tables.outputs["feature_tables"],
        embeddings=vectors.outputs["embeddings"],
    ).set_caching_options(True)
    _on_gpu(trained)
    scored = evaluate(
        settings_json=settings_json,
        protocol=protocol,
        data=loaded.outputs["data"],
        model=trained.outputs["model"],
    ).set_caching_options(True)
    graph = _talks_to_services(
        interests(
            settings_json=settings_json,
            data=loaded.outputs["data"],
            model=trained.outputs["model"],
        )
    )
    with_secrets(graph, "interest-graph-redis")
    gate = _talks_to_services(
        register(
            settings_json=settings_json,
            data=loaded.outputs["data"],
            model=trained.outputs["model"],
        )
    )
    gate.after(scored)  # only a model that was evaluated beside the baselines
    with_secrets(gate, "interest-graph-registry", "interest-graph-s3")
    with dsl.If(gate.outputs["Output"] == True):  # noqa: E712 (a KFP condition)
        served = _talks_to_services(
            deploy(
                settings_json=settings_json,
                data=loaded.outputs["data"],
                registered=gate.outputs["registered"],
            )
        )
        served.after(graph)  # the champion answers with its interests in Feast
        with_secrets(
            served,
            "interest-graph-redis",
            "interest-graph-registry",
            "interest-graph-s3",
        )


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(training_pipeline, "training_pipeline.yaml")
