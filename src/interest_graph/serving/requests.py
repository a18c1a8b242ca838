"""Recommendation requests: parsed and checked before any work is done.

Every malformed field raises :class:`InvalidInput` (HTTP 400, gRPC
INVALID_ARGUMENT) with a message naming the field; nothing here can raise
anything else on bad input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from interest_graph.serving.kserve_compat import InferInput, InferRequest, InvalidInput

MAX_ID_LENGTH = 256
MAX_LISTED_ITEMS = 1000
INSTANCE_FIELDS = ("user_id", "k", "exclude", "filters", "recent_items")
FILTER_FIELDS = ("category", "min_price", "max_price")
V2_INPUTS = ("user_id", "k")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
INTEGER_TYPES = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32")


@dataclass(frozen=True)
class ItemFilters:
    """Which items a request allows: categories and a price range (inclusive)."""

    categories: frozenset[str] | None = None
    min_price: float | None = None
    max_price: float | None = None


@dataclass(frozen=True)
class UserFeatures:
    """What the feature store knows about a user (the transformer sends it along).

    Attributes:
        interest_vector: the user's vector pushed by ``interests --push``.
        top_interests: the user's interest labels, strongest first.
        history: item ids the user already has (excluded from the ranking).
        status: ``ok`` (looked up), ``unavailable`` (the store was down) or
            ``off`` (no feature store configured).
    """

    interest_vector: np.ndarray | None = None
    top_interests: tuple[str, ...] = ()
    history: tuple[str, ...] = ()
    status: str = "off"


@dataclass(frozen=True)
class RecommendationRequest:
    """One user's request: who, how many, what to leave out and what to allow."""

    user_id: str
    k: int
    exclude: tuple[str, ...] = ()
    filters: ItemFilters | None = None
    recent_items: tuple[str, ...] = ()
    features: UserFeatures | None = field(default=None, compare=False)


def parse_v1(
    body: Any, default_k: int, max_k: int, max_users: int, *, with_features: bool
) -> list[RecommendationRequest]:
    """Requests of a v1 body ``{"instances": [{"user_id": ..., "k": ...}, ...]}``.

    Args:
        body: the decoded JSON body.
        default_k: ``k`` of instances that give none.
        max_k: the largest ``k`` allowed.
        max_users: the most instances in one body.
        with_features: accept a ``features`` object per instance (what the
            transformer adds); public bodies may not carry one.

    Raises:
        InvalidInput: the body or an instance is malformed.
    """
    if not isinstance(body, Mapping):
        raise InvalidInput(
            f'expected a JSON object {{"instances": [...]}}, got {_json_type(body)}'
        )
    unknown = sorted(str(key) for key in body if key not in ("instances", "id"))
    if unknown:
        raise InvalidInput(f"unknown field(s) {unknown}; expected 'instances'")
    instances = body.get("instances")
    if not isinstance(instances, list):
        raise InvalidInput('"instances" must be a list of objects')
    _check_batch(len(instances), max_users)
    return [
        parse_instance(
            instance, default_k, max_k, where=f"instances[{i}]", features=with_features
        )
        for i, instance in enumerate(instances)
    ]


def parse_instance(
    instance: Any, default_k: int, max_k: int, *, where: str, features: bool = False
) -> RecommendationRequest:
    """One v1 instance.

    Raises:
        InvalidInput: a field is missing, unknown or of the wrong type or range.
    """
    if not isinstance(instance, Mapping):
        raise InvalidInput(f"{where} must be an object, got {_json_type(instance)}")
    allowed = (*INSTANCE_FIELDS, "features") if features else INSTANCE_FIELDS
    unknown = sorted(str(key) for key in instance if key not in allowed)
    if unknown:
        raise InvalidInput(
            f"{where}: unknown field(s) {unknown}; allowed: {', '.join(allowed)}"
        )
    if "user_id" not in instance:
        raise InvalidInput(f"{where}: user_id is required")
    return RecommendationRequest(
        user_id=_identifier(instance["user_id"], f"{where}.user_id"),
        k=_k(instance.get("k", default_k), max_k, f"{where}.k"),
        exclude=_id_list(instance.get("exclude", []), f"{where}.exclude"),
        filters=_filters(instance.get("filters"), f"{where}.filters"),
        recent_items=_id_list(
            instance.get("recent_items", []), f"{where}.recent_items"
        ),
        features=(
            _features(instance["features"], f"{where}.features")
            if "features" in instance
            else None
        ),
    )


def parse_v2(
    request: InferRequest, default_k: int, max_k: int, max_users: int
) -> list[RecommendationRequest]:
    """Requests of a v2 (Open Inference Protocol) call, REST or gRPC.

    Inputs: ``user_id`` BYTES of shape [batch] (or [batch, 1]) and an optional
    ``k`` of an integer type, shape [1] (all users) or [batch].

    Raises:
        InvalidInput: an input is missing, unknown, or of the wrong type or shape.
    """
    inputs: dict[str, InferInput] = {}
    for tensor in request.inputs:
        if tensor.name not in V2_INPUTS:
            raise InvalidInput(
                f"unknown input {tensor.name!r}; expected {', '.join(V2_INPUTS)}"
            )
        if tensor.name in inputs:
            raise InvalidInput(f"input {tensor.name!r} is given twice")
        inputs[tensor.name] = tensor
    if "user_id" not in inputs:
        raise InvalidInput("input 'user_id' (BYTES, shape [batch]) is required")
    users = _v2_user_ids(inputs["user_id"])
    _check_batch(len(users), max_users)
    ks = [default_k] * len(users)
    if "k" in inputs:
        values = _v2_values(inputs["k"], INTEGER_TYPES, "an integer type")
        if len(values) not in (1, len(users)):
            raise InvalidInput(
                f"input 'k' has {len(values)} values; give 1 or one per user "
                f"({len(users)})"
            )
        ks = [_k(v, max_k, "input 'k'") for v in values] * (
            len(users) if len(values) == 1 else 1
        )
    if len(set(ks)) > 1:
        raise InvalidInput("input 'k' must be the same for every user of a v2 call")
    return [
        RecommendationRequest(user_id=u, k=k) for u, k in zip(users, ks, strict=True)
    ]


def _v2_user_ids(tensor: InferInput) -> list[str]:
    values = _v2_values(tensor, ("BYTES",), "BYTES")
    shape = list(tensor.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise InvalidInput(
            f"input 'user_id' must have shape [batch] or [batch, 1], not {shape}"
        )
    return [
        _identifier(_text(value, "input 'user_id'"), "input 'user_id'")
        for value in values
    ]


def _v2_values(tensor: InferInput, datatypes: Sequence[str], wanted: str) -> list[Any]:
    """The flat values of a v2 input, checked against its datatype and shape."""
    name = tensor.name
    if tensor.datatype not in datatypes:
        raise InvalidInput(
            f"input {name!r} has datatype {tensor.datatype}; expected {wanted}"
        )
    shape = tensor.shape
    if (
        not isinstance(shape, Sequence)
        or not shape
        or not all(isinstance(s, int) and s >= 0 for s in shape)
    ):
        raise InvalidInput(f"input {name!r} has an invalid shape {shape}")
    expected = math.prod(shape)
    try:
        if tensor._raw_data is not None:  # gRPC raw_input_contents
            values = list(tensor.as_numpy().ravel())
        else:
            values = _flatten(tensor.data)
    except Exception as exc:  # raw contents are the caller's bytes: any failure
        # to decode them (truncated length prefixes: struct.error) is bad input
        raise InvalidInput(f"input {name!r} cannot be read: {exc}") from exc
    if len(values) != expected:
        raise InvalidInput(
            f"input {name!r} has {len(values)} values but shape {list(shape)} "
            f"needs {expected}"
        )
    return values


def _flatten(data: Any) -> list[Any]:
    if data is None:
        return []
    if isinstance(data, str | bytes):
        return [data]
    if isinstance(data, np.ndarray):
        return list(data.ravel())
    if not isinstance(data, Sequence):
        raise TypeError(f"data must be a list, not {type(data).__name__}")
    out: list[Any] = []
    for value in data:
        if isinstance(value, list | tuple):
            out.extend(_flatten(value))
        else:
            out.append(value)
    return out


def _text(value: Any, where: str) -> str:
    if isinstance(value, bytes | np.bytes_):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{where}: not UTF-8 ({exc})") from exc
    if isinstance(value, str):
        return value
    raise InvalidInput(f"{where}: expected a string, got {_json_type(value)}")


def _check_batch(size: int, max_users: int) -> None:
    if size == 0:
        raise InvalidInput("no users in the request; send at least one")
    if size > max_users:
        raise InvalidInput(f"{size} users in one call; at most {max_users}")


def _identifier(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{where} must be a string, got {_json_type(value)}")
    if not value.strip():
        raise InvalidInput(f"{where} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInput(f"{where} is longer than {MAX_ID_LENGTH} characters")
    try:
        # JSON may carry lone surrogates ("\ud800"): no store can take them.
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{where} is not valid UTF-8 text ({exc.reason})") from exc
    if _CONTROL.search(value):
        raise InvalidInput(f"{where} holds control characters")
    return value


def _k(value: Any, max_k: int, where: str) -> int:
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{where} must be an integer, got {_json_type(value)}")
    if not 1 <= value <= max_k:
        raise InvalidInput(f"{where} must be between 1 and {max_k}, not {value}")
    return value


def _id_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidInput(f"{where} must be a list of item ids")
    if len(value) > MAX_LISTED_ITEMS:
        raise InvalidInput(f"{where} lists more than {MAX_LISTED_ITEMS} items")
    return tuple(_identifier(v, f"{where}[{i}]") for i, v in enumerate(value))


def _filters(value: Any, where: str) -> ItemFilters | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{where} must be an object")
    unknown = sorted(str(key) for key in value if key not in FILTER_FIELDS)
    if unknown:
        raise InvalidInput(
            f"{where}: unknown filter(s) {unknown}; allowed: {', '.join(FILTER_FIELDS)}"
        )
    categories = None
    if "category" in value:
        given = value["category"]
        names = [given] if isinstance(given, str) else given
        if not isinstance(names, list) or not names:
            raise InvalidInput(
                f"{where}.category must be a category name or a non-empty list"
            )
        categories = frozenset(_identifier(n, f"{where}.category") for n in names)
    low = _price(value.get("min_price"), f"{where}.min_price")
    high = _price(value.get("max_price"), f"{where}.max_price")
    if low is not None and high is not None and low > high:
        raise InvalidInput(f"{where}: min_price {low} is above max_price {high}")
    if categories is None and low is None and high is None:
        return None
    return ItemFilters(categories, low, high)


def _price(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where} must be a number, got {_json_type(value)}")
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(f"{where} must be a finite number >= 0, not {value}")
    return float(value)


def _features(value: Any, where: str) -> UserFeatures:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{where} must be an object")
    vector = value.get("interest_vector")
    array = None
    if vector is not None:
        if not isinstance(vector, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in vector
        ):
            raise InvalidInput(f"{where}.interest_vector must be a list of numbers")
        array = np.asarray(vector, dtype=np.float32)
        if not np.isfinite(array).all():
            raise InvalidInput(f"{where}.interest_vector holds NaN or infinity")
    status = value.get("status", "ok")
    if status not in ("ok", "unavailable", "off"):
        raise InvalidInput(f"{where}.status must be ok, unavailable or off")
    return UserFeatures(
        interest_vector=array,
        top_interests=_id_list(
            value.get("top_interests", []), f"{where}.top_interests"
        ),
        history=_id_list(value.get("history", []), f"{where}.history"),
        status=status,
    )


def features_json(features: UserFeatures) -> dict[str, Any]:
    """The ``features`` object the transformer adds to an instance."""
    return {
        "interest_vector": (
            None
            if features.interest_vector is None
            else features.interest_vector.tolist()
        ),
        "top_interests": list(features.top_interests),
        "history": list(features.history),
        "status": features.status,
    }


def request_json(request: RecommendationRequest) -> dict[str, Any]:
    """A request as a v1 instance (for the inference log and the transformer)."""
    out: dict[str, Any] = {"user_id": request.user_id, "k": request.k}
    if request.exclude:
        out["exclude"] = list(request.exclude)
    if request.recent_items:
        out["recent_items"] = list(request.recent_items)
    if request.filters is not None:
        filters: dict[str, Any] = {}
        if request.filters.categories is not None:
            filters["category"] = sorted(request.filters.categories)
        if request.filters.min_price is not None:
            filters["min_price"] = request.filters.min_price
        if request.filters.max_price is not None:
            filters["max_price"] = request.filters.max_price
        out["filters"] = filters
    return out


def _json_type(value: Any) -> str:
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
