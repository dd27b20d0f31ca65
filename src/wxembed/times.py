"""When: valid times as int64 seconds since 1970 (UTC), their text form, and ranges of hours.

The archive's slot table, the index and the Parquet shards all key hours by whole seconds, so
frames below the hour (2 or 5 minutes apart) are as welcome as hourly ones.
"""

from __future__ import annotations

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


__all__ = ["as_time", "format_time", "from_seconds", "hour_range", "hours_between", "to_seconds"]
