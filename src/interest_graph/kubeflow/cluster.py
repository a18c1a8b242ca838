"""A Kubeflow Pipelines cluster: compile a pipeline to IR YAML, submit a run,
and create a recurring run, through the KFP SDK client (REST API v2beta1)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interest_graph.errors import ConfigError
from interest_graph.kubeflow.definitions import load_pipeline

# A bearer token for the KFP API (e.g. a ServiceAccount token), if not in-cluster.
TOKEN_ENV = "KFP_TOKEN"
_CASTS: dict[str, Any] = {
    "STRING": str,
    "NUMBER_INTEGER": int,
    "NUMBER_DOUBLE": float,
    "BOOLEAN": lambda text: text.lower() in ("1", "true", "yes"),
}


def compile_pipeline(name: str, out: Path) -> Path:
    """Compile the pipeline called ``name`` to KFP IR YAML at ``out``."""
    from kfp import compiler

    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(load_pipeline(name), str(out))
    return out


def typed_arguments(name: str, raw: dict[str, str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as the pipeline's parameters, typed by its spec.

    Raises:
        ConfigError: a name the pipeline does not take, or a value of the wrong
            type.
    """
    spec = load_pipeline(name).pipeline_spec.root.input_definitions.parameters
    types = {key: _parameter_type(spec[key].parameter_type) for key in spec}
    typed: dict[str, Any] = {}
    for key, text in raw.items():
        if key not in types:
            raise ConfigError(
                f"pipeline {name!r} has no parameter {key!r}; it takes "
                f"{', '.join(sorted(types))}"
            )
        try:
            typed[key] = _CASTS[types[key]](text)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"{key}={text!r} is not a {types[key]}") from exc
    return typed


def _parameter_type(number: int) -> str:
    from kfp.pipeline_spec import pipeline_spec_pb2

    kinds = pipeline_spec_pb2.ParameterType.ParameterTypeEnum
    return str(kinds.Name(number))


def cron_schedule(expression: str) -> str:
    """KFP's six-field cron (seconds first) from a five- or six-field one.

    Raises:
        ConfigError: neither five nor six fields.
    """
    fields = expression.split()
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) == 6:
        return " ".join(fields)
    raise ConfigError(
        f"cron {expression!r}: expected 5 fields (minute hour day month weekday) "
        "or KFP's 6 (with seconds first)"
    )


def client(host: str, namespace: str | None = None) -> Any:
    """The KFP SDK client for ``host`` (token from ``$KFP_TOKEN`` if set)."""
    import kfp

    if not host.startswith(("http://", "https://")):
        raise ConfigError(f"KFP host {host!r}: expected http(s)://HOST[:PORT]")
    return kfp.Client(
        host=host,
        namespace=namespace or "kubeflow",
        existing_token=os.environ.get(TOKEN_ENV),
    )


@dataclass(frozen=True)
class Submitted:
    """What the cluster answered: the run (or recurring run) and experiment."""

    id: str
    experiment_id: str
    name: str


def submit(
    name: str,
    host: str,
    *,
    experiment: str,
    arguments: dict[str, Any],
    package: Path,
    run_name: str | None = None,
    namespace: str | None = None,
) -> Submitted:
    """Compile the pipeline to ``package`` and start a run of it on ``host``."""
    compile_pipeline(name, package)
    kfp_client = client(host, namespace)
    run_name = run_name or f"{name}-{package.stem}"
    result = kfp_client.create_run_from_pipeline_package(
        str(package),
        arguments=arguments,
        run_name=run_name,
        experiment_name=experiment,
        namespace=namespace,
    )
    run = kfp_client.get_run(result.run_id)
    return Submitted(result.run_id, str(run.experiment_id), run_name)


def schedule(
    name: str,
    host: str,
    *,
    experiment: str,
    cron: str,
    arguments: dict[str, Any],
    package: Path,
    job_name: str | None = None,
    namespace: str | None = None,
) -> Submitted:
    """Compile the pipeline to ``package`` and create a recurring run (cron)."""
    expression = cron_schedule(cron)
    compile_pipeline(name, package)
    kfp_client = client(host, namespace)
    found = kfp_client.create_experiment(experiment, namespace=namespace)
    job_name = job_name or f"{name}-recurring"
    job = kfp_client.create_recurring_run(
        experiment_id=found.experiment_id,
        job_name=job_name,
        cron_expression=expression,
        params=arguments,
        pipeline_package_path=str(package),
        max_concurrency=1,
        no_catchup=True,
    )
    return Submitted(str(job.recurring_run_id), str(found.experiment_id), job_name)
