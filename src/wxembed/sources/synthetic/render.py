"""Rendering one hour: the events alive at that time, painted and finished into a field.

An hour is a pure function of the config and the time: the events alive at that time (born on
its UTC day or the two before) are moved along their velocity and painted, in linear
reflectivity Z, on the internal grid; the sum is converted to dBZ, upsampled bilinearly to the
grid, given a fine-scale texture and cut to "no echo" (``background_dbz``) below
``min_echo_dbz``. An hour is therefore identical whatever range it is generated in, and hours
can be rendered in parallel (each worker caches the catalogue days it needs).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from wxembed.errors import SourceError
from wxembed.sources import DecodedField
from wxembed.sources.grib import GribParam, write_refc_file
from wxembed.sources.hrrr import IDX_SUFFIX, path_for_valid_time, write_idx
from wxembed.sources.synthetic.catalogue import day_catalogue
from wxembed.sources.synthetic.config import KINDS, REGIMES, SynthConfig
from wxembed.sources.synthetic.geometry import (
    Geometry,
    km_to_lonlat,
    render_geometry,
    upsample,
)
from wxembed.sources.synthetic.paint import Canvas, paint_event
from wxembed.sources.synthetic.texture import FINE_PAD, echo_textures, fine_texture
from wxembed.times import hour_range

log = logging.getLogger(__name__)

_LOOKBACK_DAYS = 2  # events live < 48 h, so an hour needs its day's and the two previous catalogues


def render_hour(config: SynthConfig, time: str | np.datetime64) -> DecodedField:
    """The synthetic field valid at ``time``: dBZ float32 on ``config.grid``, labelled by regime."""
    t = np.datetime64(time, "s")
    t_h = float(t.astype(np.int64)) / 3600.0  # hours since 1970-01-01
    geom = render_geometry(config.grid, config.render_km)
    acc = np.zeros((geom.ny_c, geom.nx_c), dtype=np.float32)  # linear Z on the internal grid
    canvas = Canvas(acc, geom, echo_textures(config.seed))
    area = dict.fromkeys(KINDS, 0)  # internal pixels >= 20 dBZ painted by each kind
    day = math.floor(t_h / 24.0)
    n_alive = 0
    for d in range(day - _LOOKBACK_DAYS, day + 1):
        cat = day_catalogue(config, d)
        alive = np.flatnonzero((cat.birth <= t_h) & (t_h < cat.end))
        n_alive += alive.size
        for i in alive:
            ev = cat.events[i]
            area[ev.kind] += paint_event(canvas, ev, t_h)
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
    times = hour_range(start, hours)
    log.info(
        "synthetic: %d hours from %s on %s, seed %d", hours, start, config.grid.name, config.seed
    )
    for t in times:
        yield render_hour(config, t)


def clear_caches() -> None:
    """Forget the cached catalogues, geometries and textures (they are rebuilt identically)."""
    for cached in (render_geometry, km_to_lonlat, day_catalogue, echo_textures, fine_texture):
        cached.cache_clear()


def _finish(acc: np.ndarray, geom: Geometry, config: SynthConfig, t: np.datetime64) -> np.ndarray:
    """Linear Z on the internal grid -> dBZ on the grid, with texture and the no-echo floor."""
    coarse = np.log10(np.maximum(acc, np.float32(1e-3)))  # (ny_c, nx_c)
    coarse *= np.float32(10.0)
    dbz = upsample(coarse, geom)  # (ny, nx)
    if dbz is coarse:
        dbz = dbz.copy()
    ny, nx = config.grid.shape
    if config.texture_db > 0:  # the same texture every hour, shifted by a seeded offset
        tex = fine_texture(config.seed, (ny, nx))
        hour_key = int(t.astype(np.int64)) % (1 << 62)  # non-negative, also before 1970
        oy, ox = np.random.default_rng([config.seed, 5, hour_key]).integers(0, FINE_PAD, size=2)
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
    config: SynthConfig,
    start: str | np.datetime64,
    hours: int,
    root: str | Path,
    *,
    overwrite: bool = False,
) -> list[Path]:
    """Write synthetic hours as HRRR-style GRIB2 analyses (f00) in the NOAA layout below ``root``,
    each with its ``.idx`` inventory beside it, as NCEP publishes them.

    Each file holds REFC and, after it, a 2 m temperature message, like a real ``wrfsfcf00``
    file holds more than REFC. A file already there (a real one, perhaps) is not replaced
    unless ``overwrite``: :class:`SourceError` names them before anything is written. Returns
    the paths written.
    """
    root = Path(root)
    targets = [root / path_for_valid_time(t) for t in hour_range(start, hours)]
    there = [p for p in targets if p.exists() or p.with_name(p.name + IDX_SUFFIX).exists()]
    if there and not overwrite:
        shown = ", ".join(str(p) for p in there[:3]) + (" ..." if len(there) > 3 else "")
        raise SourceError(
            f"{len(there)} of the {len(targets)} GRIB2 files to write are already there ({shown}); "
            "nothing written: choose another folder, or overwrite them (--overwrite)"
        )
    temperature = GribParam(0, 0, 0, type_of_level=103, level=2)
    paths = []
    for field, path in zip(generate(config, start, hours), targets, strict=True):
        t2m = 295.0 + 0.1 * np.asarray(field.dbz)  # any smooth field: it only has to be there
        idx = path.with_name(path.name + IDX_SUFFIX)
        idx.unlink(missing_ok=True)  # never an inventory of another file beside this one
        paths.append(write_refc_file(path, field, extra=[(temperature, t2m)]))
        write_idx(path)
    return paths
