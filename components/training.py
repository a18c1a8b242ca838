"""The training pipeline's components: one per stage, each a typed signature,
imports inside the body and one call into ``interest_graph.stages``.

Every component takes ``settings_json``: the platform settings as JSON (any
subset of the sections of ``configs/*.yaml``); the environment overrides it, so
a cluster injects credentials from Kubernetes Secrets. ``stages.record`` writes a
result's manifest and metadata into an output artifact.
"""

import os
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

# The one image all components run in (components/Dockerfile; `make images`).
COMPONENT_IMAGE = os.environ.get(
    "INTEREST_GRAPH_COMPONENT_IMAGE", "interest-graph-components:0.1.0"
)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest(
    source_kind: str, source_uri: str, settings_json: str, data: Output[Dataset]
) -> None:
    """Load the shop into canonical tables (bad rows quarantined) and check them."""
    from interest_graph import stages

    settings = stages.settings_from_json(settings_json)
    result = stages.ingest(
        source_kind, source_uri or None, data.path, settings, check=True
    )
    stages.record(data, result)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def features(
    settings_json: str, data: Input[Dataset], feature_tables: Output[Dataset]
) -> None:
    """Feature tables into Feast: build, apply the repo, materialise online."""
    from interest_graph import stages

    settings = stages.settings_from_json(settings_json)
    stages.record(feature_tables, stages.features(data.path, settings))


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def embed(
    settings_json: str,
    data: Input[Dataset],
    feature_tables: Input[Dataset],
    embeddings: Output[Dataset],
) -> None:
    """Item text into vectors (incremental), loaded into Feast's online store."""
    from interest_graph import stages

    settings = stages.settings_from_json(settings_json)
    stages.record(embeddings, stages.embed(data.path, settings, materialize=True))


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def tune(
    settings_json: str,
    protocol: str,
    trials: int,
    data: Input[Dataset],
    curves: Output[HTML],
) -> NamedTuple("TuneOutputs", [("best_train", str)]):  # type: ignore[valid-type]  # noqa: F821, UP014
    """Ray Tune search; the best train settings as JSON (``{}`` with 0 trials)."""
    from collections import namedtuple

    from interest_graph import stages

    settings = stages.settings_from_json(settings_json)
    best = stages.best_train_settings(
        protocol, data.path, settings, trials=trials, report_html=curves.path
    )
    return namedtuple("TuneOutputs", ["best_train"])(best)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train(
    settings_json: str,
    protocol: str,
    best_train: str,
    data: Input[Dataset],
    feature_tables: Input[Dataset],
    embeddings: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
) -> None:
    """Train ``train.model`` (with the tuned settings) into a model artifact."""
    from interest_graph import stages

    settings = stages.settings_from_json(settings_json, train=best_train)
    result = stages.train(protocol, data.path, model.path, settings)
    stages.record(model, result)
    stages.record_metrics(metrics, [result.metrics])


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluate(
    settings_json: str,
    protocol: str,
    data: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    table: Output[HTML],
    table_markdown: Output[Markdown],
) -> None:
    """The model beside the baselines on every protocol: one table."""
    from interest_graph import stages

    settings = stages.settings_from_json(settings_json)
    rows = stages.evaluation_table(data.path, settings, model=model.path)
    stages.record_metrics(metrics, rows)
    stages.write_evaluation_table(rows, table.path, table_markdown.path)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def interests(
    settings_json: str,
    data: Input[Dataset],
    model: Input[Model],
    graph: Output[Dataset],
    picture: Output[HTML],
) -> None:
    """The interest graph: exported, drawn for a buyer, pushed to Feast."""
    from interest_graph import stages

    settings = stages.settings_from_json(settings_json)
    result = stages.interests(
        model.path,
        settings,
        user=stages.first_buyer(data.path),
        out_dir=graph.path,
        push=True,
        picture_html=picture.path,
    )
    stages.record(graph, result)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def register(
    settings_json: str,
    data: Input[Dataset],
    model: Input[Model],
    registered: Output[Model],
    decision: Output[Markdown],
) -> bool:
    """Register the model with lineage; the champion/challenger gate decides.

    Returns whether it was promoted; ``registered`` carries the version, its
    ``models:/`` URI and the reason in its metadata.
    """
    from interest_graph import stages

    settings = stages.settings_from_json(settings_json)
    result = stages.register_run(model.path, data.path, settings)
    stages.record(registered, result, markdown_path=decision.path)
    return result.promoted


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def deploy(
    settings_json: str,
    data: Input[Dataset],
    registered: Input[Model],
    answer: Output[Markdown],
) -> None:
    """Check the promoted champion serves through the KServe predictor."""
    from interest_graph import stages

    settings = stages.settings_from_json(settings_json)
    version = registered.metadata["version"]
    result = stages.deploy(settings, version, stages.first_buyer(data.path))
    stages.record(None, result, markdown_path=answer.path)
