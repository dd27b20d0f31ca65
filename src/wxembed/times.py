"""When: valid times as int64 seconds since 1970 (UTC), their text form, ranges of hours, and
durations.

The archive's slot table, the index and the Parquet shards all key hours by whole seconds, so
frames below the hour (2 or 5 minutes apart) are as welcome as hourly ones. Durations (a search's
exclusion window, an interpolation's gap) are whole seconds too, written ``30min``, ``2h``,
``1h30min`` or ``1d`` (:func:`parse_duration`, :func:`format_duration`).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from wxembed.errors import WxembedError

EPOCH = np.datetime64("1970-01-01T00:00:00", "s")


def to_seconds(times) -> np.ndarray:
    """Anything numpy/pandas reads as times -> int64 seconds since 1970 (UTC)."""
    t = pd.to_datetime(np.atleast_1d(np.asarray(times)), utc=True).tz_localize(None)
    return ((t.values.astype("datetime64[s]") - EPOCH) // np.timedelta64(1, "s")).astype(np.int64)


def from_seconds(seconds) -> np.ndarray:
    """int64 seconds since 1970 -> ``datetime64[s]`` (same shape)."""
    return EPOCH + np.asarray(seconds, dtype=np.int64).astype("timedelta64[s]")


def as_time(t) -> np.datetime64:
    """One time (string, datetime, numpy or pandas) as ``datetime64[s]``, UTC."""
    return from_seconds(to_seconds(t))[0]


def format_time(t) -> str:
    """``2024-07-01 18:00:00Z``."""
    return str(as_time(t)).replace("T", " ") + "Z"


def hour_range(start, hours: int) -> np.ndarray:
    """``hours`` hourly times from ``start`` (inclusive), as ``datetime64[s]``."""
    if hours < 0:
        raise ValueError(f"hours must be >= 0, got {hours}")
    t0 = np.datetime64(start, "s")
    return t0 + np.arange(hours, dtype=np.int64) * np.timedelta64(3600, "s")


def hours_between(start, end) -> np.ndarray:
    """Whole hours from ``start`` up to ``end`` (exclusive), UTC, as ``datetime64[s]``."""
    first, stop = (int(to_seconds(t)[0]) for t in (start, end))
    for t, name in ((first, "start"), (stop, "end")):
        if t % 3600:
            raise WxembedError(f"{name} must be a whole hour, not {format_time(from_seconds(t))}")
    if stop <= first:
        raise WxembedError(
            f"end ({format_time(from_seconds(stop))}) must be after start "
            f"({format_time(from_seconds(first))})"
        )
    return np.arange(first, stop, 3600).astype("datetime64[s]")


UNIT_SECONDS = {"s": 1, "min": 60, "h": 3600, "d": 86400}
"""Seconds in each unit a duration may be written in."""
_UNIT_NAMES = {
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "m": "min",
    "min": "min",
    "mins": "min",
    "minute": "min",
    "minutes": "min",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)", re.IGNORECASE)
MAX_DURATION_S = 1000 * 366 * 86400
"""The longest duration taken (a thousand years): anything longer is a typing mistake."""


def parse_duration(value, *, default_unit: str = "h", what: str = "duration") -> int:
    """A duration as whole seconds: ``"30min"``, ``"10 min"``, ``"2h"``, ``"1.5h"``,
    ``"1h30min"``, ``"90s"``, ``"1d"``; a bare number (or a number given as int/float) is in
    ``default_unit``. Negative, infinite, NaN, over a thousand years or not a whole second:
    :class:`WxembedError` naming ``what``."""
    if isinstance(value, np.timedelta64):
        value = int(value / np.timedelta64(1, "s"))
        default_unit = "s"
    if isinstance(value, bool):
        raise WxembedError(f"{what}: expected a duration such as 30min or 2h, got {value!r}")
    if isinstance(value, int | float | np.integer | np.floating):
        seconds = float(value) * UNIT_SECONDS[default_unit]
    else:
        seconds = _parse_duration_text(str(value), default_unit, what)
    if not math.isfinite(seconds) or seconds < 0:
        raise WxembedError(f"{what} must be a finite duration of 0 or more, got {value!r}")
    if seconds > MAX_DURATION_S:
        raise WxembedError(f"{what} {value!r} is longer than a thousand years")
    if abs(seconds - round(seconds)) > 1e-6:
        raise WxembedError(f"{what} {value!r} is not a whole number of seconds")
    return int(round(seconds))


def _parse_duration_text(text: str, default_unit: str, what: str) -> float:
    raw = text.strip()
    if raw.lower() in ("inf", "infinity", "nan", "+inf"):
        raise WxembedError(f"{what} must be a finite duration of 0 or more, got {text!r}")
    pos, total, parts = 0, 0.0, 0
    while pos < len(raw):
        m = _DURATION_PART.match(raw, pos)
        unit = _UNIT_NAMES.get(m.group(2).lower()) if m else None
        if m is None or m.end() == pos or (unit is None and (m.group(2) or parts)):
            raise WxembedError(
                f"{what}: {text!r} is not a duration; write it like 30min, 2h, 1h30min or 1d"
            )
        total += float(m.group(1)) * UNIT_SECONDS[unit or default_unit]
        pos, parts = m.end(), parts + 1
    if not parts:
        raise WxembedError(f"{what}: expected a duration such as 30min or 2h, got {text!r}")
    return total


def format_duration(seconds) -> str:
    """Whole seconds as text :func:`parse_duration` reads back: ``2h``, ``30min``, ``1h30min``,
    ``1d``, ``90s``, ``0s``."""
    left = int(seconds)
    if left == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "min", "s"):
        n, left = divmod(left, UNIT_SECONDS[unit])
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


__all__ = [
    "MAX_DURATION_S",
    "UNIT_SECONDS",
    "as_time",
    "format_duration",
    "format_time",
    "from_seconds",
    "hour_range",
    "hours_between",
    "parse_duration",
    "to_seconds",
]
