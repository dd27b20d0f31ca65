"""Synthetic composite reflectivity: seeded, deterministic hourly fields that look like weather.

The generator stands in for HRRR REFC / MRMS when testing the archive and the models. It works in
two steps:

1. **A catalogue of storm events** (:mod:`.catalogue`, :mod:`.events`). For every UTC day, a
   random generator seeded by ``(seed, day, kind)`` draws the storms *born* that day: isolated
   cells, squall lines, mesoscale convective systems (MCS) and stratiform shields, each with a
   birth time, a lifetime, a start position and a velocity (in kilometres on the grid's plane),
   a size, an orientation and an intensity. How many are born, where and when follows a
   seasonal cycle, a diurnal cycle and a day-to-day "weather" that persists over a few days.
2. **Rendering one hour** (:mod:`.render`, :mod:`.paint`, :mod:`.texture`) is a pure function
   of the config and the time: the events alive at that time are moved along their velocity and
   painted, in linear reflectivity Z (mm^6 m^-3), on an internal grid of about ``render_km``
   (:mod:`.geometry`); the sum is converted to dBZ, upsampled bilinearly to the grid, given a
   fine-scale texture and cut to "no echo" (``background_dbz``) below ``min_echo_dbz``. An hour
   is therefore identical whatever range it is generated in, and hours can be rendered in
   parallel (each worker caches the catalogue days it needs).

Everything is laid out in kilometres, so the statistics barely depend on the grid's resolution,
and the same seed gives the same storms on a grid and on its :meth:`~wxembed.grid.Grid.coarsen`
versions. Each hour is labelled with the regime whose events paint the most pixels at >= 20 dBZ,
or ``"clear"`` when all events together paint less than ``clear_fraction`` of the grid.

The public names are the ones below; the sub-modules are the generator's inner parts.
"""

from __future__ import annotations

from wxembed.sources.synthetic.config import REGIMES, SynthConfig
from wxembed.sources.synthetic.render import (
    clear_caches,
    generate,
    render_hour,
    write_grib_layout,
)
from wxembed.times import hour_range as synthetic_times  # the name tests/test_synthetic.py uses

__all__ = [
    "REGIMES",
    "SynthConfig",
    "clear_caches",
    "generate",
    "render_hour",
    "synthetic_times",
    "write_grib_layout",
]
