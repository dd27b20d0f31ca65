"""The catalogue of storm events born on one UTC day, and the climatology that shapes it.

For every UTC day, random generators seeded by ``(seed, day)`` and ``(seed, day, kind)`` draw the
day's weather (activity, quiet or not, steering flow, where convection is favoured) and then the
storms *born* that day. How many are born, where and when follows a seasonal cycle (convection in
summer, stratiform shields in winter, more quiet days in autumn), a diurnal cycle (cells are born
in the afternoon, local solar time) and a day-to-day "weather" that persists over a few days.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from wxembed.sources.synthetic.config import CELL, KINDS, MCS, SQUALL, STRATIFORM, SynthConfig
from wxembed.sources.synthetic.events import Event, draw_event
from wxembed.sources.synthetic.geometry import LonLat, km_scale, km_to_lonlat, render_geometry

log = logging.getLogger(__name__)

DAY_OFFSET = 1_000_000
"""Added to day numbers in seeds, to keep seed entropy non-negative for days before 1970."""

# Seasonal cycle of each kind's birth rate: (day of year of the maximum, floor, sharpness);
# the factor is floor + (1 - floor) * ((1 + cos(2 pi (doy - peak) / 365.25)) / 2) ** sharpness.
_SEASON = {
    CELL: (200.0, 0.03, 2.0),
    SQUALL: (150.0, 0.15, 1.0),
    MCS: (190.0, 0.02, 2.0),
    STRATIFORM: (15.0, 0.25, 2.0),
}
# Extra margin (km) around the grid in which events may be born, to drift in from outside.
_MARGIN_KM = {CELL: 150.0, SQUALL: 700.0, MCS: 700.0, STRATIFORM: 1200.0}


# ---- climatology ---------------------------------------------------------------------------


def _season(kind: int, doy: float) -> float:
    peak, floor, sharp = _SEASON[kind]
    bump = ((1 + math.cos(2 * math.pi * (doy - peak) / 365.25)) / 2) ** sharp
    return floor + (1 - floor) * bump


def _summerness(doy: float) -> float:
    """1 in mid-July, 0 in mid-January."""
    return (1 + math.cos(2 * math.pi * (doy - 196) / 365.25)) / 2


def _day_of_year(day: int) -> float:
    d = np.datetime64(day, "D")
    return float((d - d.astype("datetime64[Y]")).astype(np.int64)) + 1.0


def _value_noise(seed: int, channel: int, day: int, period: float = 3.0) -> float:
    """A standard-normal value per day that varies smoothly over ``period`` days."""
    k = math.floor(day / period)
    w = day / period - k
    w = w * w * (3 - 2 * w)
    v0, v1 = (
        np.random.default_rng([seed, 7, channel, kk + DAY_OFFSET]).standard_normal()
        for kk in (k, k + 1)
    )
    return float((v0 * (1 - w) + v1 * w) / math.sqrt((1 - w) ** 2 + w**2))


def _suitability(kind: int, lat: np.ndarray, lon: np.ndarray, summer: float) -> np.ndarray:
    """Where each kind is favoured, 0..1: convection needs warm latitudes (further north in
    summer) and moisture (less over the dry West); stratiform shields favour higher latitudes."""
    if kind == STRATIFORM:
        edge = 30.0 + 14.0 * summer
        return 0.35 + 0.65 / (1 + np.exp(-(lat - edge) / 4.0))
    edge = 34.0 + 16.0 * summer  # northern limit of convection
    warm = 1 / (1 + np.exp(-(edge - lat) / 3.0))
    moist = 0.3 + 0.7 / (1 + np.exp(-(lon + 108.0) / 3.0))
    return warm * moist


def _diurnal(kind: int, local_hour: np.ndarray, config: SynthConfig) -> np.ndarray:
    """Relative birth rate by local solar hour, 0..1 (1 at the peak)."""
    peak, kappa = {
        CELL: (config.diurnal_peak_hour, config.diurnal_strength),
        SQUALL: (config.diurnal_peak_hour + 1.0, 0.6 * config.diurnal_strength),
        MCS: (config.diurnal_peak_hour + 2.0, 0.8 * config.diurnal_strength),
        STRATIFORM: (0.0, 0.0),
    }[kind]
    return np.exp(kappa * (np.cos(2 * np.pi * (local_hour - peak) / 24.0) - 1.0))


# ---- the day's weather and its events ------------------------------------------------------


@dataclass(frozen=True)
class _DayWeather:
    """What every event born on one day shares."""

    doy: float
    """Day of the year, 1-based."""
    summer: float
    """1 in mid-July, 0 in mid-January."""
    quiet: bool
    """A quiet day: births cut to ``quiet_factor``."""
    activity: float
    """Birth-rate multiplier of the day (log-normal, persisting over a few days)."""
    flow: tuple[float, float]
    """Steering flow (km/h east, north)."""
    blob_xy: np.ndarray
    """(n_blobs, 2) km: centres of the areas where convection is favoured today."""
    blob_r: np.ndarray
    """(n_blobs,) km: their radii."""


def _day_weather(config: SynthConfig, day: int, extent: tuple[float, ...]) -> _DayWeather:
    """The day's activity, quiet or not, steering flow and where convection is favoured."""
    seed = config.seed
    doy = _day_of_year(day)
    summer = _summerness(doy)
    day_rng = np.random.default_rng([seed, 1, day + DAY_OFFSET])
    p_quiet = config.clear_day_prob * (1 + 0.8 * math.cos(2 * math.pi * (doy - 290) / 365.25))
    quiet = day_rng.random() < p_quiet
    s = config.activity_spread
    activity = math.exp(s * _value_noise(seed, 0, day) - s * s / 2)
    if quiet:
        activity *= config.quiet_factor
    flow_u = config.mean_flow_kmh * (1.4 - 0.4 * summer) + 12.0 * _value_noise(seed, 1, day)
    flow_v = 12.0 * _value_noise(seed, 2, day)
    xmin, xmax, ymin, ymax = extent
    n_blobs = 3
    blob_xy = day_rng.uniform((xmin, ymin), (xmax, ymax), size=(n_blobs, 2))  # (n_blobs, 2)
    blob_r = day_rng.uniform(350.0, 900.0, size=n_blobs)
    return _DayWeather(doy, summer, quiet, activity, (flow_u, flow_v), blob_xy, blob_r)


def _births(
    config: SynthConfig,
    day: int,
    kind: int,
    weather: _DayWeather,
    extent: tuple[float, ...],
    to_lonlat: LonLat,
) -> list[Event]:
    """The events of ``kind`` born on ``day``: candidates drawn uniformly in time and over the
    grid and its margin, thinned by where and when the kind is favoured."""
    rng = np.random.default_rng([config.seed, 2, day + DAY_OFFSET, kind])
    xmin, xmax, ymin, ymax = extent
    m = _MARGIN_KM[kind]
    lo = np.array([xmin - m, ymin - m])
    hi = np.array([xmax + m, ymax + m])
    area_mkm2 = float(np.prod(hi - lo)) / 1e6
    mean = config.rate(kind) * _season(kind, weather.doy) * weather.activity * area_mkm2
    n = rng.poisson(mean)
    xy = rng.uniform(lo, hi, size=(n, 2))  # (n, 2) candidate birth positions, km
    hour = rng.uniform(0.0, 24.0, size=n)  # UTC hour of birth within the day
    lon, lat = to_lonlat(xy[:, 0], xy[:, 1])
    keep = _suitability(kind, lat, lon, weather.summer)
    keep = keep * _diurnal(kind, (hour + lon / 15.0) % 24.0, config)
    if kind != STRATIFORM:  # convection clusters where the day's instability is
        d2 = ((xy[:, None, :] - weather.blob_xy[None, :, :]) ** 2).sum(-1)  # (n, n_blobs)
        keep = keep * (0.15 + 0.85 * np.exp(-d2 / (2 * weather.blob_r**2)).max(axis=1))
    accepted = np.flatnonzero(rng.random(n) < keep)
    return [
        draw_event(kind, rng, day * 24.0 + hour[i], xy[i], weather.flow, weather.summer)
        for i in accepted
    ]


@dataclass(frozen=True, eq=False)
class Catalogue:
    """The events born on one day, sorted by birth."""

    birth: np.ndarray
    """(n,) birth hours of ``events``."""
    end: np.ndarray
    """(n,) birth + life."""
    events: list[Event]


@lru_cache(maxsize=32)
def day_catalogue(config: SynthConfig, day: int) -> Catalogue:
    """The events born on UTC day ``day`` (days since 1970-01-01)."""
    grid = config.grid
    extent = render_geometry(grid, config.render_km).extent
    kx, ky = km_scale(grid)
    to_lonlat = km_to_lonlat(grid.crs, kx, ky, grid.is_geographic)
    weather = _day_weather(config, day, extent)
    events: list[Event] = []
    for kind in KINDS:
        events += _births(config, day, kind, weather, extent, to_lonlat)
    events.sort(key=lambda e: e.birth)
    birth = np.array([e.birth for e in events], dtype=np.float64)
    end = np.array([e.birth + e.life for e in events], dtype=np.float64)
    log.debug(
        "synthetic day %d: %d events (quiet=%s, activity %.2f)",
        day,
        len(events),
        weather.quiet,
        weather.activity,
    )
    return Catalogue(birth=birth, end=end, events=events)
