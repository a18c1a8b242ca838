"""``interest-graph features ...``: thin commands over the feature store functions.

Registered in ``interest_graph.cli``; settings come from the root context.
"""

from __future__ import annotations

import json
import shlex
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from interest_graph.cli_support import clear_errors, root_settings

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


def _features_dir(ctx: typer.Context, override: Path | None) -> Path:
    return override or root_settings(ctx).features_dir


def _profile(ctx: typer.Context, online_store: str | None) -> Any:
    from interest_graph.errors import ConfigError
    from interest_graph.features.repo import StoreProfile

    if online_store not in (None, "sqlite", "redis"):
        raise ConfigError(f"online store {online_store!r}: choose sqlite or redis")
    return StoreProfile.from_settings(root_settings(ctx).features, online_store)  # type: ignore[arg-type]


def _store(
    ctx: typer.Context, features_dir: Path | None, online_store: str | None
) -> Any:
    """The applied store of the chosen features folder and profile."""
    from interest_graph.features.repo import open_store

    return open_store(_features_dir(ctx, features_dir), _profile(ctx, online_store))


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
    from interest_graph.features.tables import build_features

    settings = root_settings(ctx)
    source = data or settings.features.source_dir or settings.paths.data_dir / "synth"
    paths = build_features(
        Path(source),
        _features_dir(ctx, features_dir),
        as_of=as_of,
        memory_limit=settings.features.memory_limit,
    )
    _echo_json({name: str(path) for name, path in paths.items()})


@features_app.command("apply")
@clear_errors
def apply(
    ctx: typer.Context,
    features_dir: FeaturesDirOption = None,
    online_store: OnlineOption = None,
) -> None:
    """Register entities, views and services (feature_repo/) in the registry."""
    from interest_graph.features.repo import apply_repo

    folder = _features_dir(ctx, features_dir)
    _echo_json(apply_repo(folder, _profile(ctx, online_store)))


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
    from interest_graph.features.materialization import materialize as run

    store = _store(ctx, features_dir, online_store)
    _echo_json([r.as_dict() for r in run(store, views=view or None, full=full)])


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
    from interest_graph.errors import ConfigError
    from interest_graph.features.online import get_online

    if not user and not item:
        raise ConfigError("give at least one --user or --item")
    store = _store(ctx, features_dir, online_store)
    _echo_json(get_online(store, user or [], item or []))


@features_app.command("status")
@clear_errors
def status(
    ctx: typer.Context,
    features_dir: FeaturesDirOption = None,
    online_store: OnlineOption = None,
) -> None:
    """What each view is materialised up to, and whether the online store is stale."""
    from interest_graph.features.materialization import status as view_status

    store = _store(ctx, features_dir, online_store)
    rows = [s.as_dict() for s in view_status(store)]
    _echo_json(
        {
            "project": store.project,
            "online_store": store.config.online_store.type,
            "stale": any(r["stale"] for r in rows),
            "views": rows,
        }
    )


@features_app.command("env")
@clear_errors
def env(
    ctx: typer.Context,
    features_dir: FeaturesDirOption = None,
    online_store: OnlineOption = None,
) -> None:
    """Print `export` lines so `feast -c feature_repo ...` sees the same profile."""
    profile = _profile(ctx, online_store)
    values = profile.environment(_features_dir(ctx, features_dir))
    values["FEATURE_REPO_DIR_ENV_VAR"] = str(profile.repo.resolve())
    for key, value in sorted(values.items()):
        typer.echo(f"export {key}={shlex.quote(value)}")
