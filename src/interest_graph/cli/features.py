"""``interest-graph features ...``: thin commands over the feature stages."""

from __future__ import annotations

import json
import shlex
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from interest_graph.cli.support import clear_errors, root_settings
from interest_graph.config import Settings
from interest_graph.errors import ConfigError

features_app = typer.Typer(
    help="Feature store: build tables, apply the Feast repo, materialise, look up.",
    no_args_is_help=True,
)

FeaturesDirOption = Annotated[
    Path | None,
    typer.Option(
        "--features-dir", help="Feature tables folder (default <data_dir>/features)."
    ),
]
OnlineOption = Annotated[
    str | None,
    typer.Option(
        "--online-store",
        help="sqlite or redis (default: $FEAST_ONLINE_STORE, else sqlite).",
    ),
]


def _settings(ctx: typer.Context, features_dir: Path | None) -> Settings:
    """The root settings, with ``--features-dir`` as the features folder."""
    settings = root_settings(ctx)
    if features_dir is None:
        return settings
    section = settings.features.model_copy(update={"features_dir": features_dir})
    return settings.model_copy(update={"features": section})


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@features_app.command("build")
@clear_errors
def build(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option(help="Canonical data folder (default <data_dir>/synth)."),
    ] = None,
    features_dir: FeaturesDirOption = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(help="Cut-off (UTC midnight); default: after the last event."),
    ] = None,
) -> None:
    """Compute the feature tables from canonical data, point in time correct."""
    from interest_graph import stages

    settings = _settings(ctx, features_dir)
    source = data or settings.features.source_dir or settings.paths.data_dir / "synth"
    result = stages.features(Path(source), settings, as_of=as_of, apply=False)
    _echo_json({name: str(path) for name, path in result.tables.items()})


@features_app.command("apply")
@clear_errors
def apply(
    ctx: typer.Context,
    features_dir: FeaturesDirOption = None,
    online_store: OnlineOption = None,
) -> None:
    """Register entities, views and services (feature_repo/) in the registry."""
    from interest_graph import stages

    settings = _settings(ctx, features_dir)
    _echo_json(stages.apply_features(settings, online_store))


@features_app.command("materialize")
@clear_errors
def materialize(
    ctx: typer.Context,
    features_dir: FeaturesDirOption = None,
    online_store: OnlineOption = None,
    view: Annotated[
        list[str] | None, typer.Option(help="Only this view (repeatable).")
    ] = None,
    full: Annotated[
        bool, typer.Option(help="Reload everything, not just what is new.")
    ] = False,
) -> None:
    """Load new feature rows into the online store (a second run changes nothing)."""
    from interest_graph import stages

    settings = _settings(ctx, features_dir)
    _echo_json(
        stages.materialize_features(
            settings, views=view or None, full=full, online_store=online_store
        )
    )


@features_app.command("get")
@clear_errors
def get(
    ctx: typer.Context,
    user: Annotated[
        list[str] | None, typer.Option(help="User id (repeatable).")
    ] = None,
    item: Annotated[
        list[str] | None, typer.Option(help="Item id (repeatable).")
    ] = None,
    features_dir: FeaturesDirOption = None,
    online_store: OnlineOption = None,
) -> None:
    """Online lookup; prints JSON. Unknown ids come back with found=false."""
    from interest_graph import stages

    if not user and not item:
        raise ConfigError("give at least one --user or --item")
    settings = _settings(ctx, features_dir)
    _echo_json(stages.lookup_features(settings, user or [], item or [], online_store))


@features_app.command("status")
@clear_errors
def status(
    ctx: typer.Context,
    features_dir: FeaturesDirOption = None,
    online_store: OnlineOption = None,
) -> None:
    """What each view is materialised up to, and whether the online store is stale."""
    from interest_graph import stages

    _echo_json(stages.feature_status(_settings(ctx, features_dir), online_store))


@features_app.command("env")
@clear_errors
def env(
    ctx: typer.Context,
    features_dir: FeaturesDirOption = None,
    online_store: OnlineOption = None,
) -> None:
    """Print `export` lines so `feast -c feature_repo ...` sees the same profile."""
    from interest_graph import stages

    values = stages.feature_environment(_settings(ctx, features_dir), online_store)
    for key, value in sorted(values.items()):
        typer.echo(f"export {key}={shlex.quote(value)}")
