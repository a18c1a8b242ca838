"""The monitoring pipeline: drift checks → on drift, the training pipeline
(ingest → features → embed → tune → train → evaluate, interests → register →
deploy when promoted; the champion gate still decides).

Schedule it: ``interest-graph pipeline schedule monitoring --host URL --cron
"0 3 * * *"``; compile: ``interest-graph pipeline compile monitoring``.
"""

from kfp import dsl

from components.monitoring import drift_checks
from pipelines.training_pipeline import training_pipeline, with_secrets


@dsl.pipeline(
    name="interest-graph-monitoring",
    description="Evidently drift checks of features, user interests, item text "
    "and model vectors, predictions and outcomes; retrains when they drift.",
)
def monitoring_pipeline(
    reference: str = "training",
    current: str = "last 7 days",
    data_uri: str = "",
    model_uri: str = "",
    inference_log: str = "",
    source_kind: str = "synth",
    source_uri: str = "",
    protocol: str = "shop-temporal",
    tune_trials: int = 0,
    settings_json: str = "{}",
) -> None:
    """Check for drift; retrain, register and (when promoted) deploy on drift.

    Args:
        reference: ``training`` (the champion's training window), ``previous
            N days`` or ``START..END``.
        current: ``last N days`` or ``START..END``.
        data_uri: the canonical shop folder the checks read (empty: settings).
        model_uri: the model whose vectors are checked (empty:
            ``serving.model_uri``, the champion).
        inference_log: the service's log, a file or a folder (empty: settings).
        source_kind: what retraining ingests (as in the training pipeline).
        source_uri: the Online Retail file when ``source_kind`` is that.
        protocol: the protocol retraining trains and is gated on.
        tune_trials: Ray Tune trials before retraining.
        settings_json: platform settings as JSON; each step's environment
            overrides them.
    """
    checks = drift_checks(
        settings_json=settings_json,
        reference=reference,
        current=current,
        data_uri=data_uri,
        model_uri=model_uri,
        inference_log=inference_log,
    ).set_caching_options(False)  # the windows move with the data
    with_secrets(checks, "interest-graph-registry", "interest-graph-s3")
    with dsl.If(checks.outputs["Output"] == True):  # noqa: E712 (a KFP condition)
        training_pipeline(
            source_kind=source_kind,
            source_uri=source_uri,
            protocol=protocol,
            tune_trials=tune_trials,
            settings_json=settings_json,
        )


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(monitoring_pipeline, "monitoring_pipeline.yaml")
