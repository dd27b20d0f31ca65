"""The grid in kilometres: the internal rendering grid, and the way back to the output grid.

Everything is laid out in kilometres on the grid's plane, so the same seed gives the same storms
on a grid and on its :meth:`~wxembed.grid.Grid.coarsen` versions: the catalogue depends on the
grid only through its CRS and its extent rounded outwards to :data:`EXTENT_ROUND_KM`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyproj

from wxembed.grid import KM_PER_DEG, Grid

EXTENT_ROUND_KM = 200.0
"""The grid's extent is rounded outwards to a multiple of this, so coarsened grids share it."""


@dataclass(frozen=True, eq=False)
class Geometry:
    """The internal rendering grid, in km on the grid's plane, and how to upsample from it."""

    factor: int
    """Grid pixels per internal pixel along each axis."""
    ny_c: int
    """Rows of the internal grid."""
    nx_c: int
    """Columns of the internal grid."""
    xc: np.ndarray
    """(nx_c,) km east of each internal column centre."""
    yc: np.ndarray
    """(ny_c,) km north of each internal row centre."""
    extent: tuple[float, float, float, float]
    """(xmin, xmax, ymin, ymax) in km, rounded outwards to EXTENT_ROUND_KM."""
    rows: tuple[np.ndarray, np.ndarray, np.ndarray]
    """Per grid row: lower internal row, upper internal row, weight of the upper."""
    cols: tuple[np.ndarray, np.ndarray, np.ndarray]
    """Per grid column: the same along x."""


def km_scale(grid: Grid) -> tuple[float, float]:
    """km per CRS unit along x and y (for a lat/lon grid, at the grid's central latitude)."""
    if grid.is_geographic:
        lat_c = grid.y0 + grid.dy * (grid.ny - 1) / 2
        return KM_PER_DEG * math.cos(math.radians(lat_c)), KM_PER_DEG
    unit = grid.pyproj_crs.axis_info[0].unit_conversion_factor or 1.0  # metres per CRS unit
    return unit / 1000.0, unit / 1000.0


def _upsample_index(n_fine: int, n_coarse: int, factor: int) -> tuple[np.ndarray, ...]:
    pos = (np.arange(n_fine) - (factor - 1) / 2) / factor  # fine pixel in coarse pixel units
    pos = np.clip(pos, 0, n_coarse - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n_coarse - 1)
    return lo, hi, (pos - lo).astype(np.float32)


@lru_cache(maxsize=8)
def render_geometry(grid: Grid, render_km: float) -> Geometry:
    """The internal grid of about ``render_km`` pixels that ``grid`` is rendered on."""
    factor = max(1, round(render_km / grid.cell_size_km))
    ny_c, nx_c = -(-grid.ny // factor), -(-grid.nx // factor)
    kx, ky = km_scale(grid)
    centre = (factor - 1) / 2
    # float32 keeps the painting in float32 (km to within a metre or so: plenty).
    xc = ((grid.x0 + grid.dx * (np.arange(nx_c) * factor + centre)) * kx).astype(np.float32)
    yc = ((grid.y0 + grid.dy * (np.arange(ny_c) * factor + centre)) * ky).astype(np.float32)
    xs = np.array([grid.x0, grid.x0 + grid.dx * (grid.nx - 1)]) * kx
    ys = np.array([grid.y0, grid.y0 + grid.dy * (grid.ny - 1)]) * ky
    r = EXTENT_ROUND_KM
    extent = (
        math.floor(xs.min() / r) * r,
        math.ceil(xs.max() / r) * r,
        math.floor(ys.min() / r) * r,
        math.ceil(ys.max() / r) * r,
    )
    return Geometry(
        factor=factor,
        ny_c=ny_c,
        nx_c=nx_c,
        xc=xc,
        yc=yc,
        extent=extent,
        rows=_upsample_index(grid.ny, ny_c, factor),
        cols=_upsample_index(grid.nx, nx_c, factor),
    )


LonLat = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@lru_cache(maxsize=8)
def km_to_lonlat(crs: str, kx: float, ky: float, geographic: bool) -> LonLat:
    """A function (x_km, y_km) -> (lon, lat) in degrees for the grid's plane."""
    if geographic:
        to_geo = None
    else:
        crs_obj = pyproj.CRS.from_user_input(crs)
        to_geo = pyproj.Transformer.from_crs(crs_obj, crs_obj.geodetic_crs, always_xy=True)

    def convert(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cx, cy = np.asarray(x) / kx, np.asarray(y) / ky  # CRS units
        lon, lat = (cx, cy) if to_geo is None else to_geo.transform(cx, cy)
        return (np.asarray(lon) + 180.0) % 360.0 - 180.0, np.asarray(lat)

    return convert


def upsample(coarse: np.ndarray, geom: Geometry) -> np.ndarray:
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
