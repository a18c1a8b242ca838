"""Online lookups of user and item features, and the push of user interest vectors.

Unknown ids are not errors: their features come back as ``None`` and are listed
under ``missing``. An unreachable Redis is an :class:`OnlineStoreUnavailableError`,
which serving turns into a fallback.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
from feast import FeatureStore
from feast.data_source import PushMode
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

from interest_graph.features.errors import (
    FeatureStoreError,
    OnlineStoreUnavailableError,
)
from interest_graph.features.repo import check_schema, feature_service, registered_views

USER_KEY = "user_id"
ITEM_KEY = "item_id"
USER_INTERESTS_PUSH = "user_interests_push"
USER_INTERESTS_VIEW = "user_interest_vectors"


@contextmanager
def online_store_errors(store: FeatureStore) -> Iterator[None]:
    """Turn online store connection failures into the project's errors."""
    import redis.exceptions

    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        where = getattr(store.config.online_store, "connection_string", "?")
        raise OnlineStoreUnavailableError(
            f"Redis online store at {where} is unreachable ({exc}); start it or "
            "set REDIS_CONNECTION_STRING"
        ) from exc
    except sqlite3.OperationalError as exc:
        where = getattr(store.config.online_store, "path", "?")
        raise FeatureStoreError(
            f"sqlite online store {where}: {exc}; run `interest-graph features "
            "apply` and `materialize`"
        ) from exc


class OnlineLookup:
    """Online feature lookups by user or item id; keep one per serving process.

    The feature references of the service are resolved once, here; each lookup is
    then one ``FeatureStore.get_online_features`` call.
    """

    def __init__(self, store: FeatureStore, service: str = "serving") -> None:
        self.store = store
        self.service = service
        self.refs: dict[str, list[str]] = {USER_KEY: [], ITEM_KEY: []}
        projections = feature_service(store, service).feature_view_projections
        views = {
            v.name: v for v in registered_views(store, [p.name for p in projections])
        }
        for projection in projections:
            (key,) = views[projection.name].join_keys
            self.refs.setdefault(key, []).extend(
                f"{projection.name_to_use()}:{f.name}" for f in projection.features
            )

    def lookup(self, key: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Features of each id (full names ``view__feature``), in input order.

        Returns:
            One dict per id: the id under ``key``, ``found`` (any feature has a
            value), ``missing`` (features without a value: unknown id, nothing
            materialised or pushed, or a null) and ``features``.
        """
        refs = self.refs.get(key)
        if not refs or not ids:
            return []
        with online_store_errors(self.store):
            response = self.store.get_online_features(
                features=refs,
                entity_rows={key: [str(i) for i in ids]},
                full_feature_names=True,
            )
        values = response.to_dict()
        names = [ref.replace(":", "__") for ref in refs]  # full names, schema order
        statuses = {
            name: list(result.statuses)
            for name, result in zip(
                response.proto.metadata.feature_names.val,
                response.proto.results,
                strict=True,
            )
        }
        out = []
        for row, entity in enumerate(ids):
            # Redis marks an unknown entity's empty values PRESENT: check both.
            missing = [
                n
                for n in names
                if statuses[n][row] != FieldStatus.PRESENT or values[n][row] is None
            ]
            out.append(
                {
                    key: entity,
                    "found": len(missing) < len(names),
                    "missing": missing,
                    "features": {n: values[n][row] for n in names},
                }
            )
        return out

    def users(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """User features (activity and interest vector) per user id."""
        return self.lookup(USER_KEY, ids)

    def items(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Item features (statistics and text embedding) per item id."""
        return self.lookup(ITEM_KEY, ids)


def get_online(
    store: FeatureStore,
    user_ids: Sequence[str] = (),
    item_ids: Sequence[str] = (),
    *,
    service: str = "serving",
) -> dict[str, list[dict[str, Any]]]:
    """Online features of users and items (what ``features get`` prints).

    Raises:
        FeatureStoreError: the repo was not applied.
        OnlineStoreUnavailableError: the online store cannot be reached.
    """
    lookup = OnlineLookup(store, service)
    return {"users": lookup.users(user_ids), "items": lookup.items(item_ids)}


def push_user_interests(
    store: FeatureStore,
    frame: pd.DataFrame,
    *,
    to: Literal["online", "offline", "online_and_offline"] = "online_and_offline",
) -> int:
    """Push GNN user vectors to the online store and the offline table.

    Args:
        store: the feature store.
        frame: ``user_id``, ``interest_vector`` (float32 arrays), ``top_interests``
            (a JSON list of category names, e.g. ``'["garden", "toys"]'``) and
            ``event_timestamp`` (UTC).
        to: where to write.

    Returns:
        The number of rows pushed.

    Raises:
        FeatureTableError: a column is missing or of the wrong type.
        OnlineStoreUnavailableError: the online store cannot be reached.
    """
    (view,) = registered_views(store, [USER_INTERESTS_VIEW])
    schema = pa.Table.from_pandas(frame, preserve_index=False).schema
    check_schema(view, schema, "pushed frame")
    mode = {
        "online": PushMode.ONLINE,
        "offline": PushMode.OFFLINE,
        "online_and_offline": PushMode.ONLINE_AND_OFFLINE,
    }[to]
    with online_store_errors(store):
        store.push(USER_INTERESTS_PUSH, frame, to=mode)
    return len(frame)
