"""Point-in-time correct training frames through Feast's get_historical_features.

Feast joins each entity row at time ``t`` to the newest feature row stamped at or
before ``t`` (within the view's TTL); the tables stamp a row at midnight ``S`` from
events strictly before ``S``, so nothing at or after ``t`` leaks in.
"""

from __future__ import annotations

import pandas as pd
from feast import FeatureStore, FeatureView

from interest_graph.errors import ConfigError
from interest_graph.features.repo import check_tables, feature_service, registered_views

TIMESTAMP = "event_timestamp"
_ROW = "__entity_row"


def training_frame(
    entity_df: pd.DataFrame,
    store: FeatureStore,
    *,
    service: str = "training",
) -> pd.DataFrame:
    """The service's features for each entity row, as of the row's timestamp.

    Args:
        entity_df: one row per example with ``event_timestamp`` and the join keys
            the service needs (``user_id`` and/or ``item_id``); other columns
            (labels) are kept.
        store: the feature store (see :func:`open_store`); the offline store of its
            profile runs the join.
        service: the feature service (``training`` by default).

    Returns:
        ``entity_df``'s rows in their order, every one of them (rows without
        features in the TTL get nulls), plus one column per feature named
        ``view__feature``. ``event_timestamp`` comes back in UTC.

    Raises:
        ConfigError: ``entity_df`` lacks a needed column.
        FeatureTableError: a table is missing or has the wrong schema.
    """
    features = feature_service(store, service)
    views: list[FeatureView] = registered_views(
        store, [p.name for p in features.feature_view_projections]
    )
    needed = {TIMESTAMP} | {key for view in views for key in view.join_keys}
    absent = sorted(needed - set(entity_df.columns))
    if absent:
        raise ConfigError(f"entity rows lack columns {absent} needed by {service!r}")
    if _ROW in entity_df.columns:
        raise ConfigError(f"entity rows may not have a column named {_ROW!r}")
    check_tables(views)
    rows = entity_df.copy()
    rows[TIMESTAMP] = pd.to_datetime(rows[TIMESTAMP], utc=True)
    rows[_ROW] = range(len(rows))
    job = store.get_historical_features(
        entity_df=rows, features=features, full_feature_names=True
    )
    frame = job.to_df()
    # Feast returns rows in its own order; give them back in the caller's.
    frame = frame.sort_values(_ROW, kind="stable").drop(columns=_ROW)
    return frame.reset_index(drop=True)
