"""Grids: where each pixel of a radar image lies on the Earth.

A :class:`Grid` is a regular grid in some coordinate reference system (CRS): ``nx`` by ``ny``
points, the first at ``(x0, y0)`` in CRS units, then ``dx`` apart along a row and ``dy`` apart
between rows. Arrays on a grid have shape ``(ny, nx)`` in the source's own scan order, so ``dy``
is positive when row 0 is the southernmost row (HRRR) and negative when it is the northernmost
(MRMS, FMI). Nothing downstream assumes the HRRR shape: everything takes its grid from here.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property

import numpy as np
import pyproj  # before eccodes, wherever that is imported: the reverse order crashes pyproj

from wxembed.errors import GridError

# PROJ string of the HRRR CONUS Lambert conformal projection (spherical earth, GRIB2 shape 6).
HRRR_PROJ = (
    "+proj=lcc +lat_1=38.5 +lat_2=38.5 +lat_0=38.5 +lon_0=262.5 +R=6371229 +units=m +no_defs"
)
KM_PER_DEG = 111.195
"""Kilometres per degree of latitude (and of longitude at the equator), on a 6371 km sphere."""


@dataclass(frozen=True)
class Grid:
    """A regular grid in a projected or geographic CRS."""

    name: str
    """Short human name, e.g. ``"hrrr-conus"``; not used when comparing grids."""
    crs: str
    """The CRS as a PROJ string or WKT, anything ``pyproj.CRS`` accepts."""
    nx: int
    """Number of points along a row (the x axis)."""
    ny: int
    """Number of rows (the y axis)."""
    x0: float
    """x of the first point, in CRS units (metres, or degrees east for a lat/lon grid)."""
    y0: float
    """y of the first point, in CRS units (metres, or degrees north for a lat/lon grid)."""
    dx: float
    """Step between points along a row, in CRS units; positive eastwards."""
    dy: float
    """Step between rows, in CRS units; positive when row 0 is the southernmost."""
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.nx < 1 or self.ny < 1:
            raise GridError(
                f"grid {self.name!r}: shape must be positive, got ny={self.ny} nx={self.nx}"
            )
        if self.dx == 0 or self.dy == 0:
            raise GridError(
                f"grid {self.name!r}: dx and dy must be non-zero, got {self.dx}, {self.dy}"
            )
        try:
            finite = all(math.isfinite(float(v)) for v in (self.x0, self.y0, self.dx, self.dy))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise GridError(
                f"grid {self.name!r}: x0, y0, dx and dy must be finite numbers, got "
                f"{self.x0}, {self.y0}, {self.dx}, {self.dy}"
            )

    # ---- shape and coordinates -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``, the shape of an image on this grid."""
        return (self.ny, self.nx)

    @property
    def size(self) -> int:
        return self.nx * self.ny

    @cached_property
    def pyproj_crs(self) -> pyproj.CRS:
        """The CRS as a ``pyproj.CRS``."""
        return pyproj.CRS.from_user_input(self.crs)

    @property
    def is_geographic(self) -> bool:
        return bool(self.pyproj_crs.is_geographic)

    @property
    def cell_size(self) -> tuple[float, float]:
        """``(|dy|, |dx|)`` in CRS units (metres, or degrees for a geographic grid)."""
        return (abs(self.dy), abs(self.dx))

    @property
    def cell_size_km(self) -> float:
        """The mean cell edge in kilometres (for a geographic grid, at the grid's centre)."""
        if not self.is_geographic:
            return math.sqrt(abs(self.dx * self.dy)) / 1000.0
        lat = math.radians(self.y0 + self.dy * (self.ny - 1) / 2)
        return math.sqrt(abs(self.dx) * KM_PER_DEG * math.cos(lat) * abs(self.dy) * KM_PER_DEG)

    @property
    def x(self) -> np.ndarray:
        """1-D x coordinates of the columns, in CRS units."""
        return self.x0 + self.dx * np.arange(self.nx)

    @property
    def y(self) -> np.ndarray:
        """1-D y coordinates of the rows, in CRS units."""
        return self.y0 + self.dy * np.arange(self.ny)

    def latlon(self) -> tuple[np.ndarray, np.ndarray]:
        """2-D latitude and longitude (degrees; longitude in -180..180) of every point."""
        if "latlon" not in self._cache:
            xx, yy = np.meshgrid(self.x, self.y)  # (ny, nx) each
            if self.is_geographic:
                lat, lon = yy, xx
            else:
                to_geo = pyproj.Transformer.from_crs(
                    self.pyproj_crs, self.pyproj_crs.geodetic_crs, always_xy=True
                )
                lon, lat = to_geo.transform(xx, yy)
            lon = (np.asarray(lon) + 180.0) % 360.0 - 180.0
            self._cache["latlon"] = (np.asarray(lat, dtype=np.float64), lon.astype(np.float64))
        return self._cache["latlon"]

    def project(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Longitude/latitude (degrees) to this grid's x/y coordinates."""
        if self.is_geographic:
            return np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        to_xy = pyproj.Transformer.from_crs(
            self.pyproj_crs.geodetic_crs, self.pyproj_crs, always_xy=True
        )
        x, y = to_xy.transform(lon, lat)
        return np.asarray(x), np.asarray(y)

    # ---- derived grids ---------------------------------------------------------------------
    def coarsen(self, factor: int) -> Grid:
        """A grid ``factor`` times coarser: each cell is the mean of ``factor x factor`` cells.

        Trailing rows/columns that do not fill a whole block are dropped, as
        :func:`coarsen_field` does with the data.
        """
        if factor < 1 or factor > min(self.nx, self.ny):
            raise GridError(f"grid {self.name!r}: cannot coarsen {self.shape} by {factor}")
        if factor == 1:
            return self
        shift = (factor - 1) / 2
        return replace(
            self,
            name=f"{self.name}/{factor}",
            nx=self.nx // factor,
            ny=self.ny // factor,
            x0=self.x0 + shift * self.dx,
            y0=self.y0 + shift * self.dy,
            dx=self.dx * factor,
            dy=self.dy * factor,
        )

    def subset(self, rows: slice, cols: slice) -> Grid:
        """The grid of ``field[rows, cols]`` (unit-step slices within the grid)."""
        r0, r1, rs = rows.indices(self.ny)
        c0, c1, cs = cols.indices(self.nx)
        if rs != 1 or cs != 1 or r1 <= r0 or c1 <= c0:
            raise GridError(f"grid {self.name!r}: no cells in rows {rows} and columns {cols}")
        if (r0, r1, c0, c1) == (0, self.ny, 0, self.nx):
            return self
        return replace(
            self,
            name=f"{self.name}[{r0}:{r1},{c0}:{c1}]",
            nx=c1 - c0,
            ny=r1 - r0,
            x0=self.x0 + c0 * self.dx,
            y0=self.y0 + r0 * self.dy,
        )

    def window_of(self, bbox: tuple[float, float, float, float]) -> tuple[slice, slice]:
        """Rows and columns of the smallest block of cells covering a lon/lat box.

        ``bbox`` is ``(lon_min, lat_min, lon_max, lat_max)`` in degrees; its edges are projected
        into the grid's coordinates (200 points each, so a curved edge is followed) and every
        cell whose centre lies within their x/y extent is kept. :class:`GridError` when the box
        and the grid do not overlap.
        """
        w, s, e, n = check_bbox(bbox)
        t = np.linspace(0.0, 1.0, 200)
        lon = np.concatenate([w + (e - w) * t, w + (e - w) * t, np.full(200, w), np.full(200, e)])
        lat = np.concatenate([np.full(200, s), np.full(200, n), s + (n - s) * t, s + (n - s) * t])
        if self.is_geographic and 0.5 * (self.x[0] + self.x[-1]) > 180.0:
            lon = np.where(lon < 0, lon + 360.0, lon)  # a 0..360 grid
        with np.errstate(all="ignore"):
            x, y = self.project(lon, lat)
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            raise GridError(f"the box {bbox} cannot be placed on grid {self.describe()}")
        cols = _index_range(self.x0, self.dx, self.nx, x[ok].min(), x[ok].max())
        rows = _index_range(self.y0, self.dy, self.ny, y[ok].min(), y[ok].max())
        if cols is None or rows is None:
            raise GridError(
                f"the box lon {w:g}..{e:g}, lat {s:g}..{n:g} does not overlap grid "
                f"{self.describe()}"
            )
        return rows, cols

    def derivation_of(self, target: Grid) -> tuple[slice, slice, int] | None:
        """How ``target`` is cut from this grid and coarsened: ``(rows, cols, factor)`` such that
        ``self.subset(rows, cols).coarsen(factor)`` is ``target``; None when it is not."""
        if self.pyproj_crs != target.pyproj_crs and not self.pyproj_crs.equals(
            target.pyproj_crs, ignore_axis_order=True
        ):
            return None
        factor = round(target.dx / self.dx)
        if factor < 1 or round(target.dy / self.dy) != factor:
            return None
        shift = (factor - 1) / 2
        c0 = round((target.x0 - self.x0) / self.dx - shift)
        r0 = round((target.y0 - self.y0) / self.dy - shift)
        r1, c1 = r0 + target.ny * factor, c0 + target.nx * factor
        if r0 < 0 or c0 < 0 or r1 > self.ny or c1 > self.nx:
            return None
        rows, cols = slice(r0, r1), slice(c0, c1)
        made = self.subset(rows, cols).coarsen(factor)
        return (rows, cols, factor) if made.same_as(target) else None

    # ---- comparison and serialisation ------------------------------------------------------
    def same_as(self, other: Grid, rtol: float = 1e-6) -> bool:
        """True when both grids put the same points at the same places (names are ignored)."""
        if self.shape != other.shape:
            return False
        if not self.same_crs_as(other):
            return False
        scale = max(abs(self.dx), abs(self.dy))
        return all(
            math.isclose(a, b, rel_tol=rtol, abs_tol=rtol * scale)
            for a, b in [
                (self.x0, other.x0),
                (self.y0, other.y0),
                (self.dx, other.dx),
                (self.dy, other.dy),
            ]
        )

    def same_crs_as(self, other: Grid) -> bool:
        """True when both CRSs are the same, written alike or not (a PROJ string and the WKT of
        a CF grid_mapping, say): equal as pyproj sees them, or taking this grid's corners to the
        same places within a millimetre (a thousandth of a degree's millionth)."""
        if self.crs == other.crs or self.pyproj_crs == other.pyproj_crs:
            return True
        if self.pyproj_crs.equals(other.pyproj_crs, ignore_axis_order=True):
            return True
        if self.is_geographic != other.is_geographic:
            return False
        xs, ys = np.meshgrid([self.x[0], self.x[-1]], [self.y[0], self.y[-1]])
        with np.errstate(all="ignore"):
            to_geo = pyproj.Transformer.from_crs(
                self.pyproj_crs, self.pyproj_crs.geodetic_crs, always_xy=True
            )
            lon, lat = to_geo.transform(xs.ravel(), ys.ravel())
            x, y = other.project(np.asarray(lon), np.asarray(lat))
        tol = 1e-9 if self.is_geographic else 1e-3
        return bool(np.all(np.abs(x - xs.ravel()) <= tol) and np.all(np.abs(y - ys.ravel()) <= tol))

    def check_same(self, other: Grid, what: str = "field") -> None:
        """Raise :class:`GridError` naming both grids unless ``other`` is the same grid."""
        if not self.same_as(other):
            raise GridError(f"{what} is on grid {other.describe()}, expected {self.describe()}")

    def describe(self) -> str:
        unit = "deg" if self.is_geographic else "m"
        return (
            f"{self.name!r} ({self.ny} x {self.nx}, first point x={self.x0:.6g} y={self.y0:.6g}, "
            f"dx={self.dx:.6g} dy={self.dy:.6g} {unit})"
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_cache", None)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> Grid:
        try:
            return cls(**{k: d[k] for k in ("name", "crs", "nx", "ny", "x0", "y0", "dx", "dy")})
        except (KeyError, TypeError) as exc:
            raise GridError(f"not a grid description: {d!r} ({exc})") from None

    @classmethod
    def from_json(cls, text: str) -> Grid:
        return cls.from_dict(json.loads(text))

    def cf_grid_mapping(self) -> dict:
        """CF ``grid_mapping`` attributes for this grid's CRS."""
        attrs = {k: v for k, v in self.pyproj_crs.to_cf().items() if v is not None}
        attrs["proj4"] = self.crs
        return attrs


def lambert_grid(
    name: str, proj: str, nx: int, ny: int, lat0: float, lon0: float, dx: float, dy: float
) -> Grid:
    """A projected grid from the lat/lon of its first point, as GRIB2 describes one."""
    crs = pyproj.CRS.from_user_input(proj)
    to_xy = pyproj.Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
    x0, y0 = to_xy.transform(lon0, lat0)
    return Grid(name=name, crs=proj, nx=nx, ny=ny, x0=float(x0), y0=float(y0), dx=dx, dy=dy)


def _index_range(first: float, step: float, n: int, lo: float, hi: float) -> slice | None:
    """The indices ``i`` in ``0..n-1`` whose coordinate ``first + i * step`` lies in
    ``[lo, hi]`` give or take half a cell (cells that overlap it), as a slice; None when there
    are none."""
    a, b = sorted(((lo - first) / step, (hi - first) / step))
    i0 = max(0, math.ceil(a - 0.5 + 1e-6))  # a cell that only touches the edge is left out
    i1 = min(n - 1, math.floor(b + 0.5 - 1e-6))
    return slice(i0, i1 + 1) if i1 >= i0 else None


def check_bbox(bbox) -> tuple[float, float, float, float]:
    """``(lon_min, lat_min, lon_max, lat_max)`` as four floats, or :class:`GridError` saying
    what is wrong with it."""
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise GridError(
            f"a box is four numbers lon_min,lat_min,lon_max,lat_max, got {bbox!r}"
        ) from None
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise GridError(f"a box must be finite, got {bbox!r}")
    if not (-90.0 <= s < n <= 90.0):
        raise GridError(f"a box needs -90 <= lat_min < lat_max <= 90, got {bbox!r}")
    if not (-180.0 <= w < e <= 360.0):
        raise GridError(f"a box needs lon_min < lon_max (degrees east), got {bbox!r}")
    return (w, s, e, n)


def coarsen_dbz(dbz: np.ndarray, factor: int, min_coverage: float = 0.5) -> np.ndarray:
    """Block-average a ``(ny, nx)`` dBZ field (NaN = no data) ``factor`` times, in linear Z.

    Each coarse cell is ``10 log10`` of the mean of ``Z = 10^(dBZ/10)`` over its covered fine
    cells: the mean reflectivity a radar would measure over the block, so a 50 dBZ core keeps its
    weight (averaging dBZ, a logarithm, would understate it; the block maximum would spread it
    over the whole block and inflate the echo area). No echo (-32 dBZ) contributes almost
    nothing. A block with fewer than ``min_coverage`` of its cells covered is no data. Trailing
    rows/columns that do not fill a block are dropped, as :meth:`Grid.coarsen` does.
    """
    if factor == 1:
        return np.asarray(dbz, dtype=np.float32)
    ny, nx = dbz.shape[0] // factor, dbz.shape[1] // factor
    # (ny*f, nx*f) -> (ny, f, nx, f): the block axes are 1 and 3
    blocks = np.asarray(dbz[: ny * factor, : nx * factor], dtype=np.float32)
    blocks = blocks.reshape(ny, factor, nx, factor)
    covered = ~np.isnan(blocks)
    count = covered.sum(axis=(1, 3))
    z = np.where(covered, np.power(np.float32(10.0), blocks / np.float32(10.0)), 0.0)
    total = z.sum(axis=(1, 3), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (10.0 * np.log10(total / count)).astype(np.float32)
    out[count < min_coverage * factor * factor] = np.nan
    return out


def coarsen_field(field: np.ndarray, factor: int) -> np.ndarray:
    """Block-mean a ``(..., ny, nx)`` field by ``factor``, matching :meth:`Grid.coarsen`."""
    if factor == 1:
        return field
    ny, nx = field.shape[-2] // factor, field.shape[-1] // factor
    cut = field[..., : ny * factor, : nx * factor]
    # (..., ny*f, nx*f) -> (..., ny, f, nx, f) -> mean over the two block axes
    blocks = cut.reshape(*field.shape[:-2], ny, factor, nx, factor)
    return blocks.mean(axis=(-3, -1))


HRRR_CONUS = lambert_grid(
    "hrrr-conus", HRRR_PROJ, nx=1799, ny=1059, lat0=21.138123, lon0=237.280472, dx=3000.0, dy=3000.0
)
"""The HRRR CONUS grid: 1799 x 1059 points, 3 km, Lambert conformal, row 0 in the south."""
