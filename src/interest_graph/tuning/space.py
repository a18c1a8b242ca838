"""The search space: ``tune.space`` from the settings, checked before any work.

Each entry names a ``train`` field and one distribution::

    dim: {choice: [32, 64, 128]}
    lr: {loguniform: [0.001, 0.02]}
    temperature: {uniform: [0.05, 0.3]}
    layers: {randint: [1, 4]}        # 1, 2 or 3 (upper bound excluded)
    loss: {grid: [bpr, infonce]}     # every value, crossed with the samples

Both ends of a range and every listed value must be valid ``train`` settings, so
a contradictory space (``low >= high``, a negative learning rate, ``layers: 12``)
fails here with a message, not in trial 7 after ten minutes.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from interest_graph.config import TrainConfig
from interest_graph.errors import ConfigError

DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint")
# Fields a search must not touch: they pick the model or steer the search itself.
FIXED_FIELDS = frozenset(
    {"model", "epochs", "early_stopping", "refit", "patience", "eval_every",
     "checkpoint_dir", "seed", "event_weights"}
)  # fmt: skip


def check_space(space: dict[str, dict[str, Any]], base: TrainConfig) -> None:
    """Raise :class:`ConfigError` naming every problem of ``space``."""
    if not space:
        raise ConfigError("tune.space is empty: name at least one train field")
    problems: list[str] = []
    searchable = set(TrainConfig.model_fields) - FIXED_FIELDS
    for field, spec in space.items():
        if field not in searchable:
            problems.append(
                f"{field}: not a searchable train field "
                f"(choose from {', '.join(sorted(searchable))})"
            )
            continue
        problems.extend(f"{field}: {p}" for p in _check_spec(field, spec, base))
    if problems:
        raise ConfigError("invalid tune.space: " + "; ".join(problems))


def _check_spec(field: str, spec: Any, base: TrainConfig) -> list[str]:
    if not isinstance(spec, dict) or len(spec) != 1:
        return [f"give exactly one of {', '.join(DISTRIBUTIONS)}, got {spec!r}"]
    ((kind, values),) = spec.items()
    if kind not in DISTRIBUTIONS:
        return [f"unknown distribution {kind!r} (use {', '.join(DISTRIBUTIONS)})"]
    if not isinstance(values, list) or not values:
        return [f"{kind} needs a non-empty list"]
    problems = []
    if kind in ("uniform", "loguniform", "randint"):
        if len(values) != 2 or not all(_is_number(v) for v in values):
            return [f"{kind} needs [low, high] numbers, got {values}"]
        low, high = values
        if low >= high:
            problems.append(f"{kind} low {low} is not below high {high}")
        if kind == "loguniform" and low <= 0:
            problems.append(f"loguniform needs low > 0, got {low}")
        if kind == "randint":
            values = [low, high - 1]
    for value in values:
        try:
            TrainConfig.model_validate({**base.model_dump(), field: value})
        except ValidationError as exc:
            problems.append(f"{value!r} is not a valid value ({_first_error(exc)})")
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _first_error(exc: ValidationError) -> str:
    return str(exc.errors()[0]["msg"])


def ray_space(space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The checked space as Ray Tune search domains."""
    from ray import tune

    domains: dict[str, Any] = {}
    for field, spec in space.items():
        ((kind, values),) = spec.items()
        if kind == "choice":
            domains[field] = tune.choice(values)
        elif kind == "grid":
            domains[field] = tune.grid_search(values)
        elif kind == "uniform":
            domains[field] = tune.uniform(*values)
        elif kind == "loguniform":
            domains[field] = tune.loguniform(*values)
        else:
            domains[field] = tune.randint(*values)
    return domains


def default_point(
    space: dict[str, dict[str, Any]], base: TrainConfig
) -> dict[str, Any]:
    """The base settings' value of every searched field (the default trial)."""
    return {field: getattr(base, field) for field in space}
