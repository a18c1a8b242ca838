"""Time windows the checks compare: date ranges, "last N days", the N days
before another window, and the champion's training window."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from interest_graph.errors import ConfigError

_RANGE = re.compile(r"^\s*(\S+)\s*(?:\.\.|/)\s*(\S+)\s*$")
_LAST = re.compile(r"^\s*last\s+(\d+)\s+days?\s*$", re.IGNORECASE)
_PREVIOUS = re.compile(r"^\s*previous\s+(\d+)\s+days?\s*$", re.IGNORECASE)
TRAINING = ("training", "training window", "training-window")


@dataclass(frozen=True)
class Window:
    """A half-open time range ``[start, end)`` in naive UTC, and how it was chosen."""

    start: pd.Timestamp
    end: pd.Timestamp
    label: str

    @property
    def days(self) -> float:
        return float((self.end - self.start) / pd.Timedelta(days=1))

    def as_dict(self) -> dict[str, str | float]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "days": round(self.days, 3),
            "label": self.label,
        }

    def __str__(self) -> str:
        return f"{self.start.date()}..{self.end.date()} ({self.label})"


def _timestamp(text: str) -> pd.Timestamp:
    try:
        moment = pd.Timestamp(text)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"window: {text!r} is not a date") from exc
    if moment.tzinfo is not None:
        moment = moment.tz_convert("UTC").tz_localize(None)
    return moment


def current_window(spec: str, data_end: pd.Timestamp) -> Window:
    """The window to check: ``START..END`` or ``last N days`` (ending at the
    midnight after the newest event, ``data_end``).

    Raises:
        ConfigError: a spec that is neither, or an empty range.
    """
    last = _LAST.match(spec)
    if last:
        days = int(last.group(1))
        if days < 1:
            raise ConfigError(f"window {spec!r}: needs at least one day")
        return Window(data_end - pd.Timedelta(days=days), data_end, spec.strip())
    return _range(spec)


def reference_window(
    spec: str,
    current: Window,
    *,
    training: Window | None,
    fallback_days: int,
    why_no_training: str = "the model records no training window",
) -> tuple[Window, str | None]:
    """The window to compare against, and a note when it is not what was asked.

    ``training`` is the champion's training window when the model records one;
    without it the ``fallback_days`` before the current window stand in, and the
    note says so and why (``why_no_training``; it goes into the summary).

    Raises:
        ConfigError: an unknown spec or an empty range.
    """
    text = spec.strip().lower()
    if text in TRAINING:
        if training is not None:
            return training, None
        window = _before(current, fallback_days, f"previous {fallback_days} days")
        return window, (
            f"{why_no_training}; the reference is the {fallback_days} days before "
            "the current window (monitoring.reference_days)"
        )
    previous = _PREVIOUS.match(spec)
    if previous:
        days = int(previous.group(1))
        return _before(current, days, spec.strip()), None
    last = _LAST.match(spec)
    if last:
        raise ConfigError(
            f"reference {spec!r}: 'last N days' is the current window; use "
            "'previous N days', 'training' or START..END"
        )
    return _range(spec), None


def _before(current: Window, days: int, label: str) -> Window:
    if days < 1:
        raise ConfigError(f"window {label!r}: needs at least one day")
    return Window(current.start - pd.Timedelta(days=days), current.start, label)


def _range(spec: str) -> Window:
    match = _RANGE.match(spec)
    if not match:
        raise ConfigError(
            f"window {spec!r}: expected START..END (dates), 'last N days', "
            "'previous N days' or 'training'"
        )
    start, end = _timestamp(match.group(1)), _timestamp(match.group(2))
    if end <= start:
        raise ConfigError(f"window {spec!r}: ends before it starts")
    return Window(start, end, spec.strip())


def training_window(model_config: dict[str, object]) -> Window | None:
    """The training window a model artifact's ``config.json`` records
    (``training_window: {"start", "end"}``, ISO dates of the training events,
    end exclusive); None for artifacts written before it was recorded.

    Raises:
        ConfigError: a ``training_window`` that is not two dates in order.
    """
    value = model_config.get("training_window")
    if value is None:
        return None
    if not isinstance(value, dict) or "start" not in value or "end" not in value:
        raise ConfigError(
            f"the model's config.json has training_window {value!r}; expected "
            '{"start": DATE, "end": DATE}'
        )
    window = Window(
        _timestamp(str(value["start"])), _timestamp(str(value["end"])), "training"
    )
    if window.end <= window.start:
        raise ConfigError(
            f"the model's training_window {value!r} ends before it starts"
        )
    return window
