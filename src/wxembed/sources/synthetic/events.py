"""Storm events: what one event is, and how an event of each kind is drawn.

Each kind (:data:`~wxembed.sources.synthetic.config.KINDS`) has one entry in
:data:`EVENT_KINDS`, an :class:`EventKind` that holds the distributions of its lifetime, size,
motion, orientation and intensity and the layout of its embedded cores; :func:`draw_event` draws
one event of any kind from its entry. All the draws of a day's events of one kind come from one
random generator, in an order fixed per kind, so the same seed always gives the same storms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from wxembed.sources.synthetic.config import CELL, MCS, SQUALL, STRATIFORM
from wxembed.sources.synthetic.texture import TEX_KM, TEX_N


@dataclass(frozen=True, eq=False)
class Event:
    """One storm: where it is at birth, how it moves and what it looks like."""

    kind: int
    """CELL, SQUALL, MCS or STRATIFORM."""
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
    :mod:`~wxembed.sources.synthetic.paint`), core sigma (km), dB offset from ``peak``, phase of
    their pulsing (radians)."""
    tex: tuple[float, float, float, float]
    """Offset (km) of the textures from the event, and their drift (km/h) inside it."""


# ---- distributions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Beta:
    """``base + span * Beta(p, q)``: a bounded, skewed draw."""

    base: float
    span: float
    p: float
    q: float

    def draw(self, rng: np.random.Generator) -> float:
        return self.base + self.span * rng.beta(self.p, self.q)


@dataclass(frozen=True)
class Uniform:
    """Uniform between ``lo`` and ``hi``."""

    lo: float
    hi: float

    def draw(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.lo, self.hi))


# ---- embedded cores: (n, 5) rows of along, across, sigma (km), dB offset, phase ----------------


def _cell_cores(rng: np.random.Generator, size: float) -> np.ndarray:
    """A cell's few satellite cores, scattered around it (offsets in core sigmas)."""
    n_sub = rng.poisson(0.5)
    return np.column_stack(
        [
            rng.normal(0, 3.0, n_sub),
            rng.normal(0, 3.0, n_sub),
            rng.uniform(2.0, 4.5, n_sub),
            -rng.uniform(0.0, 8.0, n_sub),
            rng.uniform(0, 2 * np.pi, n_sub),
        ]
    ).reshape(n_sub, 5)


def _line_cores(rng: np.random.Generator, half: float) -> np.ndarray:
    """A squall line's cores, one every 18 km or so along it (offsets in half-lengths along,
    in band half-widths across)."""
    n_core = max(3, int(2 * half / 18.0))
    along = np.sort(rng.uniform(-0.95, 0.95, n_core))
    return np.column_stack(
        [
            along,
            rng.normal(0, 0.3, n_core),
            rng.uniform(3.5, 5.5, n_core),
            rng.normal(0, 3.0, n_core),
            rng.uniform(0, 2 * np.pi, n_core),
        ]
    )


def _arc_cores(rng: np.random.Generator, radius: float) -> np.ndarray:
    """An MCS's cores, along its leading edge (offsets in semi-axes)."""
    n_core = int(radius / 12.0)
    bearing = rng.normal(0, 0.8, n_core)  # around the leading edge, radians from heading
    dist = rng.uniform(0.4, 0.9, n_core)
    return np.column_stack(
        [
            dist * np.cos(bearing),
            dist * np.sin(bearing),
            rng.uniform(3.0, 5.5, n_core),
            rng.normal(0, 3.5, n_core),
            rng.uniform(0, 2 * np.pi, n_core),
        ]
    )


def _shield_cores(rng: np.random.Generator, size: float) -> np.ndarray:
    """A stratiform shield's few weak, broad cores (offsets in semi-axes)."""
    n_core = rng.poisson(3.0)
    return np.column_stack(
        [
            rng.uniform(-0.6, 0.6, n_core),
            rng.uniform(-0.6, 0.6, n_core),
            rng.uniform(5.0, 10.0, n_core),
            rng.uniform(2.0, 8.0, n_core),
            rng.uniform(0, 2 * np.pi, n_core),
        ]
    ).reshape(n_core, 5)


# ---- the kinds -----------------------------------------------------------------------------

Draw = Literal["motion", "size", "cores", "life"]
Axes = Callable[[float, float], tuple[float, float]]


@dataclass(frozen=True)
class EventKind:
    """How the events of one kind are drawn; :func:`draw_event` reads it."""

    order: tuple[Draw, Draw, Draw, Draw]
    """The order of the first draws (the orientation and the peak come last for every kind).
    Changing it changes which storms a seed gives."""
    size: Beta
    """The main size (km): a cell's core sigma across, a line's half-length, the semi-major
    axis of an MCS or a shield."""
    second_axis: Uniform
    """Drawn after the size, and combined with it by ``axes``."""
    axes: Axes
    """(size, second_axis) -> the along and across sizes (km) of the event."""
    cores: Callable[[np.random.Generator, float], np.ndarray]
    """(rng, size) -> the (n, 5) embedded cores."""
    life: Beta | Uniform
    """Lifetime, hours."""
    peak: Beta | Uniform
    """Peak dBZ (see :attr:`Event.peak`)."""
    steering: float = 1.0
    """Fraction of the day's steering flow the event moves with."""
    speed_sd: float = 8.0
    """Spread (km/h) of the event's velocity around that."""
    equatorward_kmh: float = 0.0
    """Southward speed added to the flow (MCSs propagate equatorward)."""
    eastward_gain: float = 1.0
    """Multiplier of the eastward speed, after the heading is taken."""
    turn: float | None = 0.0
    """Angle of the along axis from the heading (radians); None for any orientation."""
    turn_sd: float = 0.0
    """Spread of that angle (radians); 0 for none."""
    winter_drop_db: float = 0.0
    """dB off the peak in mid-January (none in mid-July)."""


def _core_axes(sigma: float, elongation: float) -> tuple[float, float]:
    return sigma * elongation, sigma  # a cell: stretched along its axis


def _band_axes(half: float, width: float) -> tuple[float, float]:
    return half, width  # a line: half-length, half-width in km


def _ellipse_axes(a: float, aspect: float) -> tuple[float, float]:
    return a, a * aspect  # an MCS or a shield: across as a fraction of along


EVENT_KINDS: dict[int, EventKind] = {
    # Isolated cells: small, short-lived, any orientation, weaker in winter.
    CELL: EventKind(
        order=("cores", "size", "life", "motion"),
        size=Beta(2.5, 3.0, 2.0, 2.0),
        second_axis=Uniform(1.0, 1.5),
        axes=_core_axes,
        cores=_cell_cores,
        life=Beta(1.0, 3.0, 1.5, 2.5),
        peak=Beta(40.0, 20.0, 2.0, 2.8),
        steering=0.7,
        speed_sd=6.0,
        turn=None,
        winter_drop_db=5.0,
    ),
    # Squall lines: a narrow band across the motion, cores along it, a trailing shield.
    SQUALL: EventKind(
        order=("motion", "size", "cores", "life"),
        size=Beta(75.0, 175.0, 2.0, 3.0),
        second_axis=Uniform(8.0, 12.0),
        axes=_band_axes,
        cores=_line_cores,
        life=Uniform(5.0, 14.0),
        peak=Uniform(45.0, 53.0),
        turn=math.pi / 2,
        turn_sd=0.4,
    ),
    # MCS: a large shield along the motion, cores on its leading edge.
    MCS: EventKind(
        order=("motion", "size", "cores", "life"),
        size=Beta(90.0, 150.0, 2.0, 2.5),
        second_axis=Uniform(0.6, 0.9),
        axes=_ellipse_axes,
        cores=_arc_cores,
        life=Uniform(6.0, 14.0),
        peak=Uniform(44.0, 52.0),
        equatorward_kmh=8.0,
    ),
    # Stratiform: a broad shield, elongated along the flow, with a few weak embedded cores.
    STRATIFORM: EventKind(
        order=("motion", "size", "cores", "life"),
        size=Beta(150.0, 450.0, 1.5, 2.5),
        second_axis=Uniform(0.3, 0.7),
        axes=_ellipse_axes,
        cores=_shield_cores,
        life=Uniform(12.0, 40.0),
        peak=Uniform(24.0, 31.0),
        eastward_gain=1.1,
        turn_sd=0.5,
    ),
}
"""How each kind of event is drawn, by kind."""


def draw_event(
    kind: int,
    rng: np.random.Generator,
    birth: float,
    xy: np.ndarray,
    flow: tuple[float, float],
    summer: float,
) -> Event:
    """One event of ``kind``, born at ``birth`` (hours since 1970) at ``xy`` (km), in the day's
    steering ``flow`` (km/h); ``summer`` is 1 in mid-July and 0 in mid-January."""
    spec = EVENT_KINDS[kind]
    tex = (
        float(rng.uniform(0, TEX_N * TEX_KM)),
        float(rng.uniform(0, TEX_N * TEX_KM)),
        float(rng.normal(0, 4.0)),
        float(rng.normal(0, 4.0)),
    )
    drawn: dict = {}  # the first four draws, in the kind's order (see EventKind.order)
    for step in spec.order:
        if step == "motion":
            u = spec.steering * flow[0] + rng.normal(0, spec.speed_sd)
            v = spec.steering * flow[1] + rng.normal(0, spec.speed_sd) - spec.equatorward_kmh
            drawn[step] = (u, v)
        elif step == "size":
            drawn[step] = spec.size.draw(rng)
        elif step == "cores":
            drawn[step] = spec.cores(rng, drawn.get("size", math.nan))
        else:  # "life"
            drawn[step] = spec.life.draw(rng)
    (u, v), size = drawn["motion"], drawn["size"]
    a, b = spec.axes(size, spec.second_axis.draw(rng))
    if spec.turn is None:  # any orientation
        angle = float(rng.uniform(0, np.pi))
    else:
        angle = math.atan2(v, u) + spec.turn
        if spec.turn_sd:
            angle += rng.normal(0, spec.turn_sd)
    peak = spec.peak.draw(rng) - spec.winter_drop_db * (1 - summer)
    return Event(
        kind=kind,
        birth=birth,
        life=drawn["life"],
        x=float(xy[0]),
        y=float(xy[1]),
        u=spec.eastward_gain * u,
        v=v,
        a=a,
        b=b,
        angle=angle,
        peak=peak,
        parts=drawn["cores"],
        tex=tex,
    )
