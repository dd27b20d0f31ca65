"""Synthetic composite reflectivity: seeded, deterministic hourly fields that look like weather.

The generator stands in for HRRR REFC / MRMS when testing the archive and the models. It works in
two steps:

1. **A catalogue of storm events.** For every UTC day, a random generator seeded by
   ``(seed, day, kind)`` draws the storms *born* that day: isolated cells, squall lines,
   mesoscale convective systems (MCS) and stratiform shields, each with a birth time, a lifetime,
   a start position and a velocity (in kilometres on the grid's plane), a size, an orientation and
   an intensity. How many are born, where and when follows a seasonal cycle (convection in summer,
   stratiform shields in winter, more quiet days in autumn), a diurnal cycle (cells are born in
   the afternoon, local solar time) and a day-to-day "weather" that persists over a few days.
2. **Rendering one hour** is a pure function of the config and the time: the events alive at that
   time are moved along their velocity and painted, in linear reflectivity Z (mm^6 m^-3), on an
   internal grid of about ``render_km``; the sum is converted to dBZ, upsampled bilinearly to the
   grid, given a fine-scale texture and cut to "no echo" (``background_dbz``) below
   ``min_echo_dbz``. An hour is therefore identical whatever range it is generated in, and hours
   can be rendered in parallel (each worker caches the catalogue days it needs).

Everything is laid out in kilometres, so the statistics barely depend on the grid's resolution,
and the same seed gives the same storms on a grid and on its :meth:`~wxembed.grid.Grid.coarsen`
versions (the catalogue depends on the grid only through its CRS and its extent rounded outwards
to :data:`_EXTENT_ROUND_KM`). Each hour is labelled with the regime whose events paint the most
pixels at >= 20 dBZ, or ``"clear"`` when all events together paint less than ``clear_fraction``
of the grid.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from wxembed.grid import HRRR_CONUS, Grid
from wxembed.sources import DecodedField

log = logging.getLogger(__name__)

REGIMES: tuple[str, ...] = ("clear", "isolated_cells", "squall_line", "mcs", "stratiform")
"""Regime labels, in this order; event kinds are indices 1..4 into it."""

CELL, SQUALL, MCS, STRATIFORM = 1, 2, 3, 4
_KINDS = (CELL, SQUALL, MCS, STRATIFORM)

_KM_PER_DEG = 111.195
_LN10_OVER_10 = math.log(10.0) / 10.0  # Z = exp(dBZ * _LN10_OVER_10)
_DB_PER_NEPER = 10.0 / math.log(10.0)  # dB drop of exp(-1)
_DAY_OFFSET = 1_000_000  # keeps seed entropy non-negative for days before 1970
_LOOKBACK_DAYS = 2  # events live < 48 h, so an hour needs its day's and the two previous catalogues
_EXTENT_ROUND_KM = 200.0
_ECHO_DBZ = 20.0  # threshold of the area that decides an hour's regime
_TEX_KM = 4.0  # pixel of the echo textures
_TEX_N = 1024  # the echo textures are periodic, _TEX_N * _TEX_KM km
_SHIELD_DROP_DB = 15.0  # a shield's reflectivity at its semi-axes, below its peak
_FINE_PAD = 128  # the fine texture is this many pixels larger than the grid, to shift it per hour

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


@dataclass(frozen=True)
class SynthConfig:
    """What to generate: the grid, the seed and the climatology knobs."""

    seed: int = 0
    """Seed of everything random; the same seed always gives the same fields."""
    grid: Grid = HRRR_CONUS
    """Grid of the output fields (any CRS; projected CRS units are read from the CRS)."""
    render_km: float = 6.0
    """Pixel of the internal rendering grid (km); a grid finer than this gets an integer
    upsampling factor, a coarser one is rendered directly."""
    cell_rate: float = 750.0
    """Isolated-cell births per day per 10^6 km^2 where and when they are most favoured
    (late afternoon local time, mid-July, a warm latitude)."""
    squall_rate: float = 5.0
    """Squall-line births per day per 10^6 km^2 at their seasonal peak (June)."""
    mcs_rate: float = 9.0
    """MCS births per day per 10^6 km^2 at their seasonal peak (July), in the evening."""
    stratiform_rate: float = 1.2
    """Stratiform-shield births per day per 10^6 km^2 at their seasonal peak (January)."""
    activity_spread: float = 0.6
    """Log-normal spread of the day-to-day activity (persists over about three days)."""
    clear_day_prob: float = 0.12
    """Mean probability that a day is quiet (births cut to ``quiet_factor``); it peaks in
    October at about 1.8 times this value and bottoms out in April."""
    quiet_factor: float = 0.1
    """Birth-rate multiplier of a quiet day."""
    diurnal_peak_hour: float = 17.0
    """Local solar hour at which isolated cells are most often born."""
    diurnal_strength: float = 1.6
    """Concentration of cell births around ``diurnal_peak_hour`` (von Mises kappa; 0 = flat)."""
    mean_flow_kmh: float = 35.0
    """Mean eastward steering flow (km/h) in summer; winter flow is 40 % faster."""
    background_dbz: float = -10.0
    """Value of "no echo" (HRRR's clear-air REFC); NaN is never produced."""
    min_echo_dbz: float = 5.0
    """Reflectivity below this is replaced by ``background_dbz``."""
    texture_db: float = 1.5
    """Standard deviation (dB) of the fine-scale texture added to echoes."""
    clear_fraction: float = 0.01
    """An hour with less than this fraction of the grid at >= 20 dBZ is labelled ``"clear"``."""

    def __post_init__(self) -> None:
        rates = (self.cell_rate, self.squall_rate, self.mcs_rate, self.stratiform_rate)
        if min(rates) < 0:
            raise ValueError(f"SynthConfig: birth rates must be >= 0, got {rates}")
        if self.render_km <= 0:
            raise ValueError(f"SynthConfig: render_km must be > 0, got {self.render_km}")
        if not 0 <= self.clear_day_prob <= 0.55:
            raise ValueError(
                f"SynthConfig: clear_day_prob must be in [0, 0.55], got {self.clear_day_prob}"
            )
        if self.min_echo_dbz <= self.background_dbz:
            raise ValueError("SynthConfig: min_echo_dbz must be above background_dbz")

    def rate(self, kind: int) -> float:
        return {
            CELL: self.cell_rate,
            SQUALL: self.squall_rate,
            MCS: self.mcs_rate,
            STRATIFORM: self.stratiform_rate,
        }[kind]


# ---- public API ----------------------------------------------------------------------------


def synthetic_times(start: str | np.datetime64, hours: int) -> np.ndarray:
    """``hours`` hourly times from ``start`` (inclusive), as ``datetime64[s]``."""
    if hours < 0:
        raise ValueError(f"hours must be >= 0, got {hours}")
    t0 = np.datetime64(start, "s")
    return t0 + np.arange(hours, dtype=np.int64) * np.timedelta64(3600, "s")


def render_hour(config: SynthConfig, time: str | np.datetime64) -> DecodedField:
    """The synthetic field valid at ``time``: dBZ float32 on ``config.grid``, labelled by regime."""
    t = np.datetime64(time, "s")
    t_h = float(t.astype(np.int64)) / 3600.0  # hours since 1970-01-01
    geom = _geometry(config.grid, config.render_km)
    acc = np.zeros((geom.ny_c, geom.nx_c), dtype=np.float32)  # linear Z on the internal grid
    area = dict.fromkeys(_KINDS, 0)  # internal pixels >= 20 dBZ painted by each kind
    day = math.floor(t_h / 24.0)
    n_alive = 0
    for d in range(day - _LOOKBACK_DAYS, day + 1):
        cat = _day_catalogue(config, d)
        alive = np.flatnonzero((cat.birth <= t_h) & (t_h < cat.end))
        n_alive += alive.size
        for i in alive:
            ev = cat.events[i]
            area[ev.kind] += _paint_event(acc, geom, config.seed, ev, t_h)
    dbz = _finish(acc, geom, config, t)
    regime = _regime(area, geom.ny_c * geom.nx_c, config.clear_fraction)
    log.debug("synthetic %s: %d events alive, regime %s", t, n_alive, regime)
    return DecodedField(
        time=t,
        grid=config.grid,
        dbz=dbz,
        source=f"synthetic:seed={config.seed}",
        labels={"regime": regime},
    )


def generate(config: SynthConfig, start: str | np.datetime64, hours: int) -> Iterator[DecodedField]:
    """Render ``hours`` consecutive hours from ``start``; each equals :func:`render_hour`'s."""
    times = synthetic_times(start, hours)
    log.info(
        "synthetic: %d hours from %s on %s, seed %d", hours, start, config.grid.name, config.seed
    )
    for t in times:
        yield render_hour(config, t)


def clear_caches() -> None:
    """Forget the cached catalogues, geometries and textures (they are rebuilt identically)."""
    for cached in (_geometry, _km_to_lonlat, _day_catalogue, _textures, _fine_texture):
        cached.cache_clear()


# ---- geometry: the grid in kilometres ------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Geometry:
    """The internal rendering grid, in km on the grid's plane, and how to upsample from it."""

    factor: int
    """Grid pixels per internal pixel along each axis."""
    ny_c: int
    nx_c: int
    xc: np.ndarray
    """(nx_c,) km east of each internal column centre."""
    yc: np.ndarray
    """(ny_c,) km north of each internal row centre."""
    extent: tuple[float, float, float, float]
    """(xmin, xmax, ymin, ymax) in km, rounded outwards to _EXTENT_ROUND_KM."""
    rows: tuple[np.ndarray, np.ndarray, np.ndarray]
    """Per grid row: lower internal row, upper internal row, weight of the upper."""
    cols: tuple[np.ndarray, np.ndarray, np.ndarray]
    """Per grid column: the same along x."""


def _km_scale(grid: Grid) -> tuple[float, float]:
    """km per CRS unit along x and y (for a lat/lon grid, at the grid's central latitude)."""
    if grid.is_geographic:
        lat_c = grid.y0 + grid.dy * (grid.ny - 1) / 2
        return _KM_PER_DEG * math.cos(math.radians(lat_c)), _KM_PER_DEG
    unit = grid.pyproj_crs.axis_info[0].unit_conversion_factor or 1.0  # metres per CRS unit
    return unit / 1000.0, unit / 1000.0


def _upsample_index(n_fine: int, n_coarse: int, factor: int) -> tuple[np.ndarray, ...]:
    pos = (np.arange(n_fine) - (factor - 1) / 2) / factor  # fine pixel in coarse pixel units
    pos = np.clip(pos, 0, n_coarse - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n_coarse - 1)
    return lo, hi, (pos - lo).astype(np.float32)


@lru_cache(maxsize=8)
def _geometry(grid: Grid, render_km: float) -> _Geometry:
    factor = max(1, round(render_km / grid.cell_size_km))
    ny_c, nx_c = -(-grid.ny // factor), -(-grid.nx // factor)
    kx, ky = _km_scale(grid)
    centre = (factor - 1) / 2
    # float32 keeps the painting in float32 (km to within a metre or so: plenty).
    xc = ((grid.x0 + grid.dx * (np.arange(nx_c) * factor + centre)) * kx).astype(np.float32)
    yc = ((grid.y0 + grid.dy * (np.arange(ny_c) * factor + centre)) * ky).astype(np.float32)
    xs = np.array([grid.x0, grid.x0 + grid.dx * (grid.nx - 1)]) * kx
    ys = np.array([grid.y0, grid.y0 + grid.dy * (grid.ny - 1)]) * ky
    r = _EXTENT_ROUND_KM
    extent = (
        math.floor(xs.min() / r) * r,
        math.ceil(xs.max() / r) * r,
        math.floor(ys.min() / r) * r,
        math.ceil(ys.max() / r) * r,
    )
    return _Geometry(
        factor=factor,
        ny_c=ny_c,
        nx_c=nx_c,
        xc=xc,
        yc=yc,
        extent=extent,
        rows=_upsample_index(grid.ny, ny_c, factor),
        cols=_upsample_index(grid.nx, nx_c, factor),
    )


@lru_cache(maxsize=8)
def _km_to_lonlat(crs: str, kx: float, ky: float, geographic: bool):
    """A function (x_km, y_km) -> (lon, lat) in degrees for the grid's plane."""
    if geographic:
        to_geo = None
    else:
        import pyproj

        crs_obj = pyproj.CRS.from_user_input(crs)
        to_geo = pyproj.Transformer.from_crs(crs_obj, crs_obj.geodetic_crs, always_xy=True)

    def convert(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cx, cy = np.asarray(x) / kx, np.asarray(y) / ky  # CRS units
        lon, lat = (cx, cy) if to_geo is None else to_geo.transform(cx, cy)
        return (np.asarray(lon) + 180.0) % 360.0 - 180.0, np.asarray(lat)

    return convert


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
        np.random.default_rng([seed, 7, channel, kk + _DAY_OFFSET]).standard_normal()
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


# ---- the catalogue of events ---------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Event:
    """One storm: where it is at birth, how it moves and what it looks like."""

    kind: int
    birth: float
    """Hours since 1970-01-01."""
    life: float
    """Hours."""
    x: float
    """km east at birth, on the grid's plane."""
    y: float
    """km north at birth."""
    u: float
    """Eastward speed, km/h."""
    v: float
    """Northward speed, km/h."""
    a: float
    """Along-axis size, km (cell: core sigma; line: half-length; MCS/shield: semi-axis)."""
    b: float
    """Across-axis size, km."""
    angle: float
    """Direction of the along axis, radians anticlockwise from east."""
    peak: float
    """Peak dBZ (of the cores for cells, lines and MCS; of the shield for stratiform)."""
    parts: np.ndarray
    """(n, 5) embedded cores: along and across offsets (in units of the event's size, see
    :func:`_paint_event`), core sigma (km), dB offset from ``peak``, phase of their pulsing
    (radians)."""
    tex: tuple[float, float, float, float]
    """Offset (km) of the textures from the event, and their drift (km/h) inside it."""


@dataclass(frozen=True, eq=False)
class _Catalogue:
    birth: np.ndarray
    """(n,) birth hours of ``events``."""
    end: np.ndarray
    """(n,) birth + life."""
    events: list[_Event]


@lru_cache(maxsize=32)
def _day_catalogue(config: SynthConfig, day: int) -> _Catalogue:
    """The events born on UTC day ``day`` (days since 1970-01-01)."""
    grid = config.grid
    geom = _geometry(grid, config.render_km)
    kx, ky = _km_scale(grid)
    to_lonlat = _km_to_lonlat(grid.crs, kx, ky, grid.is_geographic)
    doy = _day_of_year(day)
    summer = _summerness(doy)
    seed = config.seed

    # The day's weather: activity, quiet or not, steering flow and where convection is favoured.
    day_rng = np.random.default_rng([seed, 1, day + _DAY_OFFSET])
    p_quiet = config.clear_day_prob * (1 + 0.8 * math.cos(2 * math.pi * (doy - 290) / 365.25))
    quiet = day_rng.random() < p_quiet
    s = config.activity_spread
    activity = math.exp(s * _value_noise(seed, 0, day) - s * s / 2)
    if quiet:
        activity *= config.quiet_factor
    flow_u = config.mean_flow_kmh * (1.4 - 0.4 * summer) + 12.0 * _value_noise(seed, 1, day)
    flow_v = 12.0 * _value_noise(seed, 2, day)
    xmin, xmax, ymin, ymax = geom.extent
    n_blobs = 3
    blob_xy = day_rng.uniform((xmin, ymin), (xmax, ymax), size=(n_blobs, 2))  # (n_blobs, 2)
    blob_r = day_rng.uniform(350.0, 900.0, size=n_blobs)

    events: list[_Event] = []
    for kind in _KINDS:
        rng = np.random.default_rng([seed, 2, day + _DAY_OFFSET, kind])
        m = _MARGIN_KM[kind]
        lo = np.array([xmin - m, ymin - m])
        hi = np.array([xmax + m, ymax + m])
        area_mkm2 = float(np.prod(hi - lo)) / 1e6
        mean = config.rate(kind) * _season(kind, doy) * activity * area_mkm2
        n = rng.poisson(mean)
        xy = rng.uniform(lo, hi, size=(n, 2))  # (n, 2) candidate birth positions, km
        hour = rng.uniform(0.0, 24.0, size=n)  # UTC hour of birth within the day
        lon, lat = to_lonlat(xy[:, 0], xy[:, 1])
        keep = _suitability(kind, lat, lon, summer)
        keep = keep * _diurnal(kind, (hour + lon / 15.0) % 24.0, config)
        if kind != STRATIFORM:  # convection clusters where the day's instability is
            d2 = ((xy[:, None, :] - blob_xy[None, :, :]) ** 2).sum(-1)  # (n, n_blobs)
            keep = keep * (0.15 + 0.85 * np.exp(-d2 / (2 * blob_r**2)).max(axis=1))
        accepted = np.flatnonzero(rng.random(n) < keep)
        for i in accepted:
            birth = day * 24.0 + hour[i]
            events.append(_draw_event(kind, rng, birth, xy[i], (flow_u, flow_v), summer))
    events.sort(key=lambda e: e.birth)
    birth = np.array([e.birth for e in events], dtype=np.float64)
    end = np.array([e.birth + e.life for e in events], dtype=np.float64)
    log.debug(
        "synthetic day %d: %d events (quiet=%s, activity %.2f)", day, len(events), quiet, activity
    )
    return _Catalogue(birth=birth, end=end, events=events)


def _draw_event(
    kind: int,
    rng: np.random.Generator,
    birth: float,
    xy: np.ndarray,
    flow: tuple[float, float],
    summer: float,
) -> _Event:
    """Draw the shape, motion and intensity of one event of ``kind``."""
    fu, fv = flow
    tex = (
        float(rng.uniform(0, _TEX_N * _TEX_KM)),
        float(rng.uniform(0, _TEX_N * _TEX_KM)),
        float(rng.normal(0, 4.0)),
        float(rng.normal(0, 4.0)),
    )
    if kind == CELL:
        n_sub = rng.poisson(0.5)
        parts = np.column_stack(
            [
                rng.normal(0, 3.0, n_sub),  # along, in core sigmas
                rng.normal(0, 3.0, n_sub),
                rng.uniform(2.0, 4.5, n_sub),
                -rng.uniform(0.0, 8.0, n_sub),
                rng.uniform(0, 2 * np.pi, n_sub),
            ]
        ).reshape(n_sub, 5)
        sigma = 2.5 + 3.0 * rng.beta(2.0, 2.0)
        return _Event(
            kind=kind,
            birth=birth,
            life=1.0 + 3.0 * rng.beta(1.5, 2.5),
            x=float(xy[0]),
            y=float(xy[1]),
            u=0.7 * fu + rng.normal(0, 6.0),
            v=0.7 * fv + rng.normal(0, 6.0),
            a=sigma * rng.uniform(1.0, 1.5),
            b=sigma,
            angle=float(rng.uniform(0, np.pi)),
            peak=40.0 + 20.0 * rng.beta(2.0, 2.8) - 5.0 * (1 - summer),
            parts=parts,
            tex=tex,
        )
    u = fu + rng.normal(0, 8.0)
    v = fv + rng.normal(0, 8.0)
    if kind == MCS:
        v -= 8.0  # MCSs tend to propagate equatorward
    heading = math.atan2(v, u)
    if kind == SQUALL:
        half = 0.5 * (150.0 + 350.0 * rng.beta(2.0, 3.0))
        n_core = max(3, int(2 * half / 18.0))
        s = np.sort(rng.uniform(-0.95, 0.95, n_core))  # along the line, in half-lengths
        parts = np.column_stack(
            [
                s,
                rng.normal(0, 0.3, n_core),  # across, in band half-widths
                rng.uniform(3.5, 5.5, n_core),
                rng.normal(0, 3.0, n_core),
                rng.uniform(0, 2 * np.pi, n_core),
            ]
        )  # (n_core, 5)
        return _Event(
            kind=kind,
            birth=birth,
            life=float(rng.uniform(5.0, 14.0)),
            x=float(xy[0]),
            y=float(xy[1]),
            u=u,
            v=v,
            a=half,
            b=float(rng.uniform(8.0, 12.0)),
            angle=heading + math.pi / 2 + rng.normal(0, 0.4),
            peak=float(rng.uniform(45.0, 53.0)),
            parts=parts,
            tex=tex,
        )
    if kind == MCS:
        radius = 90.0 + 150.0 * rng.beta(2.0, 2.5)
        n_core = int(radius / 12.0)
        bearing = rng.normal(0, 0.8, n_core)  # around the leading edge, radians from heading
        dist = rng.uniform(0.4, 0.9, n_core)
        parts = np.column_stack(
            [
                dist * np.cos(bearing),
                dist * np.sin(bearing),
                rng.uniform(3.0, 5.5, n_core),
                rng.normal(0, 3.5, n_core),
                rng.uniform(0, 2 * np.pi, n_core),
            ]
        )  # (n_core, 5)
        return _Event(
            kind=kind,
            birth=birth,
            life=float(rng.uniform(6.0, 14.0)),
            x=float(xy[0]),
            y=float(xy[1]),
            u=u,
            v=v,
            a=radius,
            b=radius * rng.uniform(0.6, 0.9),
            angle=heading,
            peak=float(rng.uniform(44.0, 52.0)),
            parts=parts,
            tex=tex,
        )
    # STRATIFORM: a broad shield, elongated along the flow, with a few weak embedded cores.
    a = 150.0 + 450.0 * rng.beta(1.5, 2.5)
    n_core = rng.poisson(3.0)
    parts = np.column_stack(
        [
            rng.uniform(-0.6, 0.6, n_core),
            rng.uniform(-0.6, 0.6, n_core),
            rng.uniform(5.0, 10.0, n_core),
            rng.uniform(2.0, 8.0, n_core),
            rng.uniform(0, 2 * np.pi, n_core),
        ]
    ).reshape(n_core, 5)
    return _Event(
        kind=kind,
        birth=birth,
        life=float(rng.uniform(12.0, 40.0)),
        x=float(xy[0]),
        y=float(xy[1]),
        u=1.1 * u,
        v=v,
        a=a,
        b=a * rng.uniform(0.3, 0.7),
        angle=heading + rng.normal(0, 0.5),
        peak=float(rng.uniform(24.0, 31.0)),
        parts=parts,
        tex=tex,
    )


# ---- painting ------------------------------------------------------------------------------


def _span(coords: np.ndarray, lo: float, hi: float) -> slice | None:
    """The slice of the uniformly spaced ``coords`` that lie in [lo, hi], or None."""
    step = coords[1] - coords[0] if coords.size > 1 else 1.0
    ia, ib = (lo - coords[0]) / step, (hi - coords[0]) / step
    start = max(0, math.ceil(min(ia, ib)))
    stop = min(coords.size, math.floor(max(ia, ib)) + 1)
    return slice(start, stop) if start < stop else None


def _ellipse(
    geom: _Geometry, x: float, y: float, a: float, b: float, angle: float, reach: float
) -> tuple[slice, slice, np.ndarray] | None:
    """Window (rows, cols) of the internal grid within ``reach`` km of (x, y), and the
    elliptical radius squared ``q`` (1 at ``a`` km along ``angle``, at ``b`` km across) there."""
    cols = _span(geom.xc, x - reach, x + reach)
    rows = _span(geom.yc, y - reach, y + reach)
    if cols is None or rows is None:
        return None
    c, s = math.cos(angle), math.sin(angle)
    dx = geom.xc[cols] - x  # (w,)
    dy = geom.yc[rows] - y  # (h,)
    along = (dy * (s / a))[:, None] + (dx * (c / a))[None, :]  # (h, w) in units of a
    across = (dy * (c / b))[:, None] - (dx * (s / b))[None, :]  # (h, w) in units of b
    along *= along
    across *= across
    along += across
    return rows, cols, along


def _texture_window(
    geom: _Geometry, texture: np.ndarray, rows: slice, cols: slice, tex_x: float, tex_y: float
) -> np.ndarray:
    """(h, w) values of a periodic texture over a window, the texture's origin at
    (tex_x, tex_y) km on the grid's plane."""
    ix = np.floor((geom.xc[cols] - tex_x) / _TEX_KM).astype(np.intp) % _TEX_N  # (w,)
    iy = np.floor((geom.yc[rows] - tex_y) / _TEX_KM).astype(np.intp) % _TEX_N  # (h,)
    return texture[np.ix_(iy, ix)]


def _paint_cell(
    acc: np.ndarray,
    geom: _Geometry,
    texture: np.ndarray,
    x: float,
    y: float,
    a: float,
    b: float,
    angle: float,
    peak: float,
    tex_origin: tuple[float, float],
    halo_ratio: float = 3.0,
    halo_db: float = 13.0,
) -> int:
    """Add a convective cell at (x, y) km: a Gaussian core in Z (sigma ``a`` by ``b`` km) plus a
    ``halo_ratio`` times wider halo ``halo_db`` below the core, roughened by a 3 dB texture.
    Returns the pixels where the cell alone is >= 20 dBZ."""
    # Paint down to about -5 dBZ, so that even a dozen overlapping halos leave no visible edge.
    reach = max(a, b) * max(
        halo_ratio * math.sqrt(2 * max(peak - halo_db + 5.0, 1.0) / _DB_PER_NEPER),
        math.sqrt(2 * max(peak + 5.0, 1.0) / _DB_PER_NEPER),
    )
    win = _ellipse(geom, x, y, a, b, angle, reach)
    if win is None:
        return 0
    rows, cols, q = win
    z = np.exp(-0.5 * q)
    z += 10 ** (-halo_db / 10) * np.exp((-0.5 / halo_ratio**2) * q)
    tex = _texture_window(geom, texture, rows, cols, *tex_origin)
    z *= np.exp(tex * np.float32(3.0 * _LN10_OVER_10))
    z *= 10 ** (peak / 10)
    acc[rows, cols] += z
    return int(np.count_nonzero(z >= 100.0))


def _paint_shield(
    acc: np.ndarray,
    geom: _Geometry,
    textures: tuple[np.ndarray, np.ndarray],
    x: float,
    y: float,
    a: float,
    b: float,
    angle: float,
    peak: float,
    tex_db: float,
    tex_origin: tuple[float, float],
) -> int:
    """Add a stratiform shield at (x, y) km: Gaussian in Z, ``peak - _SHIELD_DROP_DB * q`` dBZ
    (q = 1 at the semi-axes ``a``, ``b`` km), its outline warped by one texture and its inside
    roughened by another of ``tex_db`` dB. Returns the pixels where it alone is >= 20 dBZ."""
    # Paint down to about 0 dBZ even where the warp shrinks q by exp(-0.8).
    q_max = max(peak + 2.5 * tex_db, 1.0) / (0.45 * _SHIELD_DROP_DB)
    win = _ellipse(geom, x, y, a, b, angle, max(a, b) * math.sqrt(q_max))
    if win is None:
        return 0
    rows, cols, q = win
    detail, outline = textures
    # The outline texture warps the ellipse: q is scaled by exp(+-0.4) or so.
    q *= np.exp(np.float32(0.4) * _texture_window(geom, outline, rows, cols, *tex_origin))
    dbz = _texture_window(geom, detail, rows, cols, *tex_origin) * np.float32(tex_db)  # (h, w)
    q *= np.float32(_SHIELD_DROP_DB)
    dbz -= q
    dbz += peak
    acc[rows, cols] += np.exp(dbz * np.float32(_LN10_OVER_10))
    return int(np.count_nonzero(dbz >= _ECHO_DBZ))


def _envelope(frac: float) -> float:
    """dB offset over an event's life: 0 at mid-life, about -12 dB at birth and death."""
    return 8.0 * math.log10(max(math.sin(math.pi * frac), 0.03))


def _paint_event(acc: np.ndarray, geom: _Geometry, seed: int, ev: _Event, t_h: float) -> int:
    """Paint ``ev`` as it is at ``t_h`` (hours since 1970); returns its >= 20 dBZ pixels."""
    age = t_h - ev.birth
    frac = age / ev.life
    x, y = ev.x + ev.u * age, ev.y + ev.v * age
    env = _envelope(frac)
    c, s = math.cos(ev.angle), math.sin(ev.angle)
    textures = _textures(seed)
    texture = textures[0]
    # The texture moves with the event, drifting slowly inside it.
    tex = (x - ev.tex[0] - ev.tex[2] * age, y - ev.tex[1] - ev.tex[3] * age)

    def core(along_km: float, across_km: float, sigma: float, peak: float, **kw) -> int:
        px = x + along_km * c - across_km * s
        py = y + along_km * s + across_km * c
        return _paint_cell(acc, geom, texture, px, py, sigma, sigma, 0.0, peak, tex, **kw)

    if ev.kind == CELL:
        grow = 0.7 + 0.3 * math.sin(math.pi * frac)
        painted = _paint_cell(
            acc, geom, texture, x, y, ev.a * grow, ev.b * grow, ev.angle, ev.peak + env, tex
        )
        for along, across, sigma, offset, phase in ev.parts:
            pk = ev.peak + env + offset + 3.0 * math.sin(phase + 2.0 * age)
            painted += core(along * ev.b, across * ev.b, sigma, pk)
        return painted

    if ev.kind == SQUALL:
        half = ev.a * (0.45 + 0.55 * math.sin(math.pi * min(1.0, 1.3 * frac)))
        band = ev.b
        painted = _paint_shield(
            acc, geom, textures, x, y, half, band, ev.angle, 38.0 + 0.5 * env, 4.0, tex
        )
        back = 5.5 * band  # the trailing stratiform region lies behind the line
        tx, ty = x - back * s, y + back * c
        trail_peak = 30.0 + 0.5 * env
        painted += _paint_shield(
            acc, geom, textures, tx, ty, 0.9 * half, 5.0 * band, ev.angle, trail_peak, 6.0, tex
        )
        for along, across, sigma, offset, phase in ev.parts:
            if abs(along) * ev.a <= half:
                pk = ev.peak + env + offset + 4.0 * math.sin(phase + 1.5 * age)
                painted += core(
                    along * ev.a, across * band, sigma, pk, halo_ratio=2.0, halo_db=15.0
                )
        return painted

    if ev.kind == MCS:
        grow = 0.5 + 0.5 * math.sqrt(frac)
        a, b = ev.a * grow, ev.b * grow
        painted = _paint_shield(
            acc, geom, textures, x, y, a, b, ev.angle, 34.0 + 0.6 * env, 5.0, tex
        )
        cores_env = _envelope(min(frac * 1.6, 0.99))  # cores die before the shield does
        for along, across, sigma, offset, phase in ev.parts:
            pk = ev.peak + cores_env + offset + 4.0 * math.sin(phase + 1.5 * age)
            painted += core(along * a, across * b, sigma, pk, halo_ratio=2.0, halo_db=15.0)
        return painted

    # STRATIFORM: fades in and out over the first and last 15 % of its life.
    grow = 0.6 + 0.4 * math.sqrt(frac)
    a, b = ev.a * grow, ev.b * grow
    ramp = 10.0 * math.log10(max(min(frac / 0.15, (1 - frac) / 0.15, 1.0), 0.05))
    painted = _paint_shield(acc, geom, textures, x, y, a, b, ev.angle, ev.peak + ramp, 6.0, tex)
    for along, across, sigma, offset, phase in ev.parts:
        pk = ev.peak + ramp + offset + 3.0 * math.sin(phase + 0.5 * age)
        painted += core(along * a, across * b, sigma, pk, halo_ratio=2.0, halo_db=12.0)
    return painted


# ---- textures and the final field ----------------------------------------------------------


def _red_noise(rng: np.random.Generator, largest_km: float, smallest_km: float) -> np.ndarray:
    """(_TEX_N, _TEX_N) periodic unit-variance noise, _TEX_KM per pixel, with power ~ k^-3.6
    between scales ``smallest_km`` and ``largest_km``."""
    k = np.fft.fftfreq(_TEX_N, d=_TEX_KM)  # cycles per km
    kk = np.hypot(k[:, None], k[None, :])  # (N, N)
    amp = (kk**2 + largest_km**-2) ** -0.9 * np.exp(-((kk * smallest_km) ** 2))  # (N, N)
    spectrum = amp * (rng.standard_normal(kk.shape) + 1j * rng.standard_normal(kk.shape))
    field = np.fft.ifft2(spectrum).real  # (N, N)
    return ((field - field.mean()) / field.std()).astype(np.float32)


@lru_cache(maxsize=4)
def _textures(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The two periodic textures of the echoes: detail (6 to 250 km, inside echoes) and
    outline (40 to 400 km, warps the shields' shape)."""
    rng = np.random.default_rng([seed, 3])
    return _red_noise(rng, 250.0, 6.0), _red_noise(rng, 400.0, 40.0)


@lru_cache(maxsize=4)
def _fine_texture(seed: int, shape: tuple[int, int]) -> np.ndarray:
    """(ny + pad, nx + pad) unit-variance texture at the grid's pixel scale."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng([seed, 4])
    noise = rng.standard_normal((shape[0] + _FINE_PAD, shape[1] + _FINE_PAD), dtype=np.float32)
    smooth = gaussian_filter(noise, sigma=0.8, mode="wrap")
    return smooth / smooth.std()


def _upsample(coarse: np.ndarray, geom: _Geometry) -> np.ndarray:
    """Bilinear upsampling of the internal grid (ny_c, nx_c) to the grid (ny, nx)."""
    if geom.factor == 1:
        return coarse
    r0, r1, rw = geom.rows
    c0, c1, cw = geom.cols
    lo, hi = coarse[r0], coarse[r1]  # (ny, nx_c) each
    rows = lo + (hi - lo) * rw[:, None]  # (ny, nx_c)
    lo, hi = rows[:, c0], rows[:, c1]  # (ny, nx) each
    hi -= lo
    hi *= cw[None, :]
    hi += lo
    return hi


def _finish(acc: np.ndarray, geom: _Geometry, config: SynthConfig, t: np.datetime64) -> np.ndarray:
    """Linear Z on the internal grid -> dBZ on the grid, with texture and the no-echo floor."""
    coarse = np.log10(np.maximum(acc, np.float32(1e-3)))  # (ny_c, nx_c)
    coarse *= np.float32(10.0)
    dbz = _upsample(coarse, geom)  # (ny, nx)
    if dbz is coarse:
        dbz = dbz.copy()
    ny, nx = config.grid.shape
    if config.texture_db > 0:  # the same texture every hour, shifted by a seeded offset
        tex = _fine_texture(config.seed, (ny, nx))
        hour_key = int(t.astype(np.int64)) % (1 << 62)  # non-negative, also before 1970
        oy, ox = np.random.default_rng([config.seed, 5, hour_key]).integers(0, _FINE_PAD, size=2)
        dbz += np.float32(config.texture_db) * tex[oy : oy + ny, ox : ox + nx]
    np.minimum(dbz, np.float32(75.0), out=dbz)
    dbz[dbz < config.min_echo_dbz] = config.background_dbz
    return np.ascontiguousarray(dbz, dtype=np.float32)


def _regime(area: dict[int, int], n_pixels: int, clear_fraction: float) -> str:
    """The kind painting most >= 20 dBZ pixels, or "clear" when they are too few."""
    total = sum(area.values())
    if total < clear_fraction * n_pixels:
        return REGIMES[0]
    return REGIMES[max(area, key=lambda k: area[k])]


def write_grib_layout(
    config: SynthConfig, start: str | np.datetime64, hours: int, root: str | Path
) -> list[Path]:
    """Write synthetic hours as HRRR-style GRIB2 analyses (f00) in the NOAA layout below ``root``.

    Each file holds REFC and, after it, a 2 m temperature message, like a real ``wrfsfcf00``
    file holds more than REFC. Returns the paths written.
    """
    from wxembed.sources.grib import GribParam, write_refc_file
    from wxembed.sources.hrrr import path_for_valid_time

    temperature = GribParam(0, 0, 0, type_of_level=103, level=2)
    paths = []
    for field in generate(config, start, hours):
        t2m = 295.0 + 0.1 * np.asarray(field.dbz)  # any smooth field: it only has to be there
        path = Path(root) / path_for_valid_time(field.time)
        paths.append(write_refc_file(path, field, extra=[(temperature, t2m)]))
    return paths
