"""Painting events onto the internal grid, in linear reflectivity Z (mm^6 m^-3).

Two brushes: :func:`paint_cell`, a Gaussian convective core with a wide, weak halo, and
:func:`paint_shield`, a stratiform shield whose outline is warped by a texture. Each kind of
event is painted by one function of :data:`_PAINTERS`, from the event as it is at the hour
(:class:`_Pose`). Every brush returns the pixels it alone paints at >= 20 dBZ, from which the
hour's regime is decided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wxembed.sources.synthetic.config import CELL, MCS, SQUALL, STRATIFORM
from wxembed.sources.synthetic.events import Event
from wxembed.sources.synthetic.geometry import Geometry
from wxembed.sources.synthetic.texture import texture_window

LN10_OVER_10 = math.log(10.0) / 10.0  # Z = exp(dBZ * LN10_OVER_10)
_DB_PER_NEPER = 10.0 / math.log(10.0)  # dB drop of exp(-1)
ECHO_DBZ = 20.0
"""Threshold of the area that decides an hour's regime."""
_SHIELD_DROP_DB = 15.0  # a shield's reflectivity at its semi-axes, below its peak


# ---- the two brushes -----------------------------------------------------------------------


def _span(coords: np.ndarray, lo: float, hi: float) -> slice | None:
    """The slice of the uniformly spaced ``coords`` that lie in [lo, hi], or None."""
    step = coords[1] - coords[0] if coords.size > 1 else 1.0
    ia, ib = (lo - coords[0]) / step, (hi - coords[0]) / step
    start = max(0, math.ceil(min(ia, ib)))
    stop = min(coords.size, math.floor(max(ia, ib)) + 1)
    return slice(start, stop) if start < stop else None


@dataclass(frozen=True)
class _Window:
    """The part of the internal grid a brush paints, and the brush's elliptical radius there."""

    rows: slice
    cols: slice
    q: np.ndarray
    """(h, w) elliptical radius squared: 1 at ``a`` km along the brush's axis, ``b`` across."""

    def texture(self, geom: Geometry, texture: np.ndarray, origin: tuple[float, float]):
        """(h, w) values of a periodic texture over the window, its origin at ``origin`` km."""
        return texture_window(geom.xc[self.cols], geom.yc[self.rows], texture, *origin)


def _ellipse(
    geom: Geometry, x: float, y: float, a: float, b: float, angle: float, reach: float
) -> _Window | None:
    """The window of the internal grid within ``reach`` km of (x, y), and the elliptical radius
    squared there (1 at ``a`` km along ``angle``, at ``b`` km across); None when off the grid."""
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
    return _Window(rows, cols, along)


@dataclass(frozen=True)
class Canvas:
    """What the brushes paint on: linear Z on the internal grid, and the echo textures."""

    acc: np.ndarray
    """(ny_c, nx_c) float32 linear Z, added to in place."""
    geom: Geometry
    textures: tuple[np.ndarray, np.ndarray]
    """(detail, outline), see :func:`~wxembed.sources.synthetic.texture.echo_textures`."""


def paint_cell(
    canvas: Canvas,
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
    win = _ellipse(canvas.geom, x, y, a, b, angle, reach)
    if win is None:
        return 0
    z = np.exp(-0.5 * win.q)
    z += 10 ** (-halo_db / 10) * np.exp((-0.5 / halo_ratio**2) * win.q)
    tex = win.texture(canvas.geom, canvas.textures[0], tex_origin)
    z *= np.exp(tex * np.float32(3.0 * LN10_OVER_10))
    z *= 10 ** (peak / 10)
    canvas.acc[win.rows, win.cols] += z
    return int(np.count_nonzero(z >= 100.0))


def paint_shield(
    canvas: Canvas,
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
    win = _ellipse(canvas.geom, x, y, a, b, angle, max(a, b) * math.sqrt(q_max))
    if win is None:
        return 0
    detail, outline = canvas.textures
    q = win.q
    # The outline texture warps the ellipse: q is scaled by exp(+-0.4) or so.
    q *= np.exp(np.float32(0.4) * win.texture(canvas.geom, outline, tex_origin))
    dbz = win.texture(canvas.geom, detail, tex_origin) * np.float32(tex_db)  # (h, w)
    q *= np.float32(_SHIELD_DROP_DB)
    dbz -= q
    dbz += peak
    canvas.acc[win.rows, win.cols] += np.exp(dbz * np.float32(LN10_OVER_10))
    return int(np.count_nonzero(dbz >= ECHO_DBZ))


# ---- events, kind by kind ------------------------------------------------------------------


def _envelope(frac: float) -> float:
    """dB offset over an event's life: 0 at mid-life, about -12 dB at birth and death."""
    return 8.0 * math.log10(max(math.sin(math.pi * frac), 0.03))


@dataclass(frozen=True)
class _Pose:
    """An event as it is at one hour."""

    age: float
    """Hours since birth."""
    frac: float
    """Fraction of the life gone, 0..1."""
    x: float
    """km east of the centre now."""
    y: float
    """km north of the centre now."""
    env: float
    """dB offset of the life cycle (:func:`_envelope`)."""
    tex: tuple[float, float]
    """Origin (km) of the textures now: they move with the event, drifting slowly inside it."""

    @classmethod
    def at(cls, ev: Event, t_h: float) -> _Pose:
        age = t_h - ev.birth
        frac = age / ev.life
        x, y = ev.x + ev.u * age, ev.y + ev.v * age
        tex = (x - ev.tex[0] - ev.tex[2] * age, y - ev.tex[1] - ev.tex[3] * age)
        return cls(age, frac, x, y, _envelope(frac), tex)

    def offset(self, ev: Event, along_km: float, across_km: float) -> tuple[float, float]:
        """The point ``along_km`` along the event's axis and ``across_km`` across it."""
        c, s = math.cos(ev.angle), math.sin(ev.angle)
        return self.x + along_km * c - across_km * s, self.y + along_km * s + across_km * c


def _core(
    canvas: Canvas,
    ev: Event,
    pose: _Pose,
    along_km: float,
    across_km: float,
    sigma: float,
    peak: float,
    **halo: float,
) -> int:
    """A round embedded core at an offset from the event's centre."""
    px, py = pose.offset(ev, along_km, across_km)
    return paint_cell(canvas, px, py, sigma, sigma, 0.0, peak, pose.tex, **halo)


def _paint_cell_event(canvas: Canvas, ev: Event, pose: _Pose) -> int:
    """A cell that swells to mid-life, with its satellite cores pulsing."""
    grow = 0.7 + 0.3 * math.sin(math.pi * pose.frac)
    a, b, peak = ev.a * grow, ev.b * grow, ev.peak + pose.env
    painted = paint_cell(canvas, pose.x, pose.y, a, b, ev.angle, peak, pose.tex)
    for along, across, sigma, offset, phase in ev.parts:
        pk = ev.peak + pose.env + offset + 3.0 * math.sin(phase + 2.0 * pose.age)
        painted += _core(canvas, ev, pose, along * ev.b, across * ev.b, sigma, pk)
    return painted


def _paint_squall(canvas: Canvas, ev: Event, pose: _Pose) -> int:
    """A line that lengthens early in life, its trailing shield, and the cores along it."""
    half = ev.a * (0.45 + 0.55 * math.sin(math.pi * min(1.0, 1.3 * pose.frac)))
    band = ev.b
    line_peak = 38.0 + 0.5 * pose.env
    painted = paint_shield(canvas, pose.x, pose.y, half, band, ev.angle, line_peak, 4.0, pose.tex)
    tx, ty = pose.offset(ev, 0.0, 5.5 * band)  # the trailing region lies behind the line
    trail_peak = 30.0 + 0.5 * pose.env
    painted += paint_shield(
        canvas, tx, ty, 0.9 * half, 5.0 * band, ev.angle, trail_peak, 6.0, pose.tex
    )
    for along, across, sigma, offset, phase in ev.parts:
        if abs(along) * ev.a <= half:
            pk = ev.peak + pose.env + offset + 4.0 * math.sin(phase + 1.5 * pose.age)
            along_km, across_km = along * ev.a, across * band
            painted += _core(
                canvas, ev, pose, along_km, across_km, sigma, pk, halo_ratio=2.0, halo_db=15.0
            )
    return painted


def _paint_mcs(canvas: Canvas, ev: Event, pose: _Pose) -> int:
    """A shield that grows through life, with cores on its leading edge that die first."""
    grow = 0.5 + 0.5 * math.sqrt(pose.frac)
    a, b = ev.a * grow, ev.b * grow
    shield_peak = 34.0 + 0.6 * pose.env
    painted = paint_shield(canvas, pose.x, pose.y, a, b, ev.angle, shield_peak, 5.0, pose.tex)
    cores_env = _envelope(min(pose.frac * 1.6, 0.99))  # cores die before the shield does
    for along, across, sigma, offset, phase in ev.parts:
        pk = ev.peak + cores_env + offset + 4.0 * math.sin(phase + 1.5 * pose.age)
        painted += _core(
            canvas, ev, pose, along * a, across * b, sigma, pk, halo_ratio=2.0, halo_db=15.0
        )
    return painted


def _paint_stratiform(canvas: Canvas, ev: Event, pose: _Pose) -> int:
    """A shield that fades in and out over the first and last 15 % of its life."""
    grow = 0.6 + 0.4 * math.sqrt(pose.frac)
    a, b = ev.a * grow, ev.b * grow
    ramp = 10.0 * math.log10(max(min(pose.frac / 0.15, (1 - pose.frac) / 0.15, 1.0), 0.05))
    peak = ev.peak + ramp
    painted = paint_shield(canvas, pose.x, pose.y, a, b, ev.angle, peak, 6.0, pose.tex)
    for along, across, sigma, offset, phase in ev.parts:
        pk = ev.peak + ramp + offset + 3.0 * math.sin(phase + 0.5 * pose.age)
        painted += _core(
            canvas, ev, pose, along * a, across * b, sigma, pk, halo_ratio=2.0, halo_db=12.0
        )
    return painted


_PAINTERS = {
    CELL: _paint_cell_event,
    SQUALL: _paint_squall,
    MCS: _paint_mcs,
    STRATIFORM: _paint_stratiform,
}
"""Kind -> the function that paints an event of that kind."""


def paint_event(canvas: Canvas, ev: Event, t_h: float) -> int:
    """Paint ``ev`` as it is at ``t_h`` (hours since 1970); returns its >= 20 dBZ pixels."""
    return _PAINTERS[ev.kind](canvas, ev, _Pose.at(ev, t_h))
