"""The monitoring pipeline's component: the drift checks, one call into
``interest_graph.stages``; it returns whether drift was detected, so the
pipeline can branch on it (``dsl.If``)."""

from kfp import dsl
from kfp.dsl import HTML, Metrics, Output

from components.training import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def drift_checks(
    settings_json: str,
    reference: str,
    current: str,
    data_uri: str,
    model_uri: str,
    inference_log: str,
    summary: Output[Metrics],
    report: Output[HTML],
    features_report: Output[HTML],
    item_features_report: Output[HTML],
    interests_report: Output[HTML],
    embeddings_report: Output[HTML],
    user_vectors_report: Output[HTML],
    item_vectors_report: Output[HTML],
    predictions_report: Output[HTML],
    outcomes_report: Output[HTML],
) -> bool:
    """Features, user interests, embeddings, predictions and outcomes against
    the reference window; the reports as HTML (one per check; a check that did
    not run gets a page saying why), the summary as metrics.

    Returns whether any check that ran found drift (checks that could not run
    are listed in the summary with their reason, never as "no drift").
    """
    from interest_graph import stages

    settings = stages.settings_from_json(settings_json)
    result = stages.monitor(
        settings,
        reference=reference,
        current=current or None,
        data_dir=data_uri or None,
        model=model_uri or None,
        inference_log=inference_log or None,
    )
    return stages.record_drift(
        result,
        summary,
        {
            "report": report.path,
            "user_features": features_report.path,
            "item_features": item_features_report.path,
            "user_interests": interests_report.path,
            "item_text_embeddings": embeddings_report.path,
            "user_vectors": user_vectors_report.path,
            "item_vectors": item_vectors_report.path,
            "predictions": predictions_report.path,
            "outcomes": outcomes_report.path,
        },
    )
