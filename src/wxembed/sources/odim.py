"""ODIM HDF5 radar products on a Cartesian grid (OPERA composites, national composites, single
sites' images), read with h5py.

An ODIM_H5 file (EUMETNET OPERA's format; ``Conventions = ODIM_H5/V2_x``) holds groups::

    what      object (COMP or IMAGE here), date, time, source, version
    where     projdef (PROJ string), xsize, ysize, xscale, yscale (metres),
              LL_lon/LL_lat, UL_, UR_, LR_ (the image's outer corners, degrees)
    datasetN/dataM/data        the raster, row 0 the northernmost
    datasetN[/dataM]/what      quantity (DBZH, TH, RATE...), gain, offset, nodata, undetect

A ``what`` attribute is looked up from the most specific group up (``dataM/what``, then
``datasetN/what``, then the root's), as the format's versions place them differently: H5rad 2.0
OPERA composites keep ``quantity`` in ``dataset1/what``, H5rad 2.4 ones in ``dataset1/data1/what``.

Values: ``dBZ = raw * gain + offset``; ``raw == nodata`` (outside coverage) becomes NaN and
``raw == undetect`` (no echo) becomes -32 dBZ, wxembed's "no echo". Only reflectivity is read
(:data:`REFLECTIVITY_QUANTITIES`): a file of rain rate, accumulations or anything else is a
:class:`~wxembed.errors.MissingHour` whose message names the quantity it holds.

Georeferencing: the grid's first point is the centre of the top-left cell; it is placed from the
lower-left corner ``LL_lon/LL_lat``, and the three other corners of the file must lie within half
a cell of where ``xsize * xscale`` and ``ysize * yscale`` put them: a file whose size, scale or
corners disagree is refused rather than stored on a grid that is off by kilometres.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyproj

from wxembed.errors import GridError, MissingHour, SourceError
from wxembed.grid import Grid
from wxembed.sources import DecodedField

log = logging.getLogger(__name__)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
"""The first eight bytes of an HDF5 file (ODIM and NetCDF-4 alike)."""
REFLECTIVITY_QUANTITIES = ("DBZH", "DBZV", "TH", "TV", "DBZ", "DBZHC", "DBZVC")
"""ODIM quantities read as reflectivity (dBZ), the first present in a file taken."""
CARTESIAN_OBJECTS = ("COMP", "IMAGE")
"""ODIM objects on a Cartesian grid: composites and single-site images."""
NO_ECHO_DBZ = -32.0
"""dBZ stored for ``undetect`` (no echo)."""
MAX_POINTS = 100_000_000
"""The most grid points a file may declare (a 10,000 x 10,000 grid); more is refused unread."""
QUANTITY_NAMES = {
    "RATE": "rain rate, mm/h",
    "ACRR": "accumulated precipitation, mm",
    "QIND": "quality index",
    "HGHT": "height, km",
    "VRAD": "radial velocity, m/s",
    "VRADH": "radial velocity, m/s",
    "WRAD": "spectral width, m/s",
    "ZDR": "differential reflectivity, dB",
    "RHOHV": "correlation coefficient",
    "KDP": "specific differential phase, deg/km",
    "POR": "probability of rain",
    "HI": "hail intensity",
    "HP": "hail probability",
    "CLASS": "classification",
}
"""What some other ODIM quantities are, for the reason given when a file is refused."""


def load_h5py():
    """The h5py module, or :class:`SourceError` saying how to install it."""
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise SourceError(f"h5py is needed to read HDF5 files: {exc}; pip install h5py") from None
    return h5py


def attr_text(value) -> str:
    """An HDF5 attribute (bytes, numpy string, one-element array) as a plain string."""
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", "replace").strip("\x00 ")
    if isinstance(value, np.ndarray) and value.size == 1:
        return attr_text(value.item())
    return str(value).strip()


def _number(value, what: str, path: Path) -> float:
    try:
        out = float(np.asarray(value).reshape(-1)[0] if np.ndim(value) else value)
    except (TypeError, ValueError, IndexError):
        raise SourceError(f"{path}: ODIM attribute {what} is not a number ({value!r})") from None
    if not np.isfinite(out):
        raise SourceError(f"{path}: ODIM attribute {what} is {out}")
    return out


def _attr(groups: list, name: str, path: Path, default=None):
    """Attribute ``name`` of the first of ``groups`` (most specific first) that has it."""
    for group, _ in groups:
        if group is not None and name in group.attrs:
            return group.attrs[name]
    if default is not None:
        return default
    where = " or ".join(label for _, label in groups)
    raise SourceError(f"{path}: ODIM file lacks the attribute {name} (looked in {where})")


def _what_chain(f, dataset: str, data: str) -> list:
    """(group, label) of the ``what`` groups a data item inherits from, most specific first."""
    chain = []
    for label in (f"{dataset}/{data}/what", f"{dataset}/what", "what"):
        chain.append((f[label] if label in f else None, label))
    return chain


def _data_items(f) -> list[tuple[str, str]]:
    """(datasetN, dataM) of every raster in the file, in order."""
    items = []
    for ds in sorted((k for k in f if k.startswith("dataset")), key=_suffix_number):
        for d in sorted((k for k in f[ds] if k.startswith("data")), key=_suffix_number):
            if "data" in f[ds][d]:
                items.append((ds, d))
    return items


def _suffix_number(name: str) -> int:
    digits = name.lstrip("abcdefghijklmnopqrstuvwxyz")
    return int(digits) if digits.isdigit() else 0


def _pick_reflectivity(f, path: Path) -> tuple[str, str, str]:
    """(dataset, data, quantity) of the reflectivity raster, or :class:`MissingHour` naming
    what the file holds instead."""
    found = []
    for ds, d in _data_items(f):
        quantity = attr_text(_attr(_what_chain(f, ds, d), "quantity", path)).upper()
        found.append((ds, d, quantity))
    if not found:
        raise SourceError(f"{path}: ODIM file holds no datasetN/dataM/data raster")
    for wanted in REFLECTIVITY_QUANTITIES:
        for ds, d, quantity in found:
            if quantity == wanted:
                return ds, d, quantity
    held = ", ".join(
        q + (f" ({QUANTITY_NAMES[q]})" if q in QUANTITY_NAMES else "")
        for q in dict.fromkeys(q for *_, q in found)
    )
    raise MissingHour(
        f"{path}: ODIM file holds {held}, not reflectivity (quantity "
        f"{', '.join(REFLECTIVITY_QUANTITIES)}); nothing to store"
    )


def _time(f, path: Path) -> np.datetime64:
    what = [(f["what"] if "what" in f else None, "what")]
    date, time = attr_text(_attr(what, "date", path)), attr_text(_attr(what, "time", path))
    if not (len(date) == 8 and date.isdigit() and len(time) in (4, 6) and time.isdigit()):
        raise SourceError(f"{path}: ODIM what/date {date!r} and time {time!r} are not a time")
    time = time.ljust(6, "0")
    try:
        return np.datetime64(
            f"{date[:4]}-{date[4:6]}-{date[6:]}T{time[:2]}:{time[2:4]}:{time[4:]}", "s"
        )
    except ValueError:
        raise SourceError(
            f"{path}: ODIM what/date {date} time {time} is not a valid time"
        ) from None


def grid_from_where(where, path: Path, name: str = "odim") -> Grid:
    """The :class:`Grid` an ODIM ``where`` group describes, its corners checked."""
    chain = [(where, "where")]
    projdef = attr_text(_attr(chain, "projdef", path))
    nx = int(_number(_attr(chain, "xsize", path), "where/xsize", path))
    ny = int(_number(_attr(chain, "ysize", path), "where/ysize", path))
    dx = _number(_attr(chain, "xscale", path), "where/xscale", path)
    dy = _number(_attr(chain, "yscale", path), "where/yscale", path)
    if nx < 1 or ny < 1 or dx <= 0 or dy <= 0:
        raise SourceError(
            f"{path}: ODIM where says {ny} x {nx} cells of {dx} x {dy} m; all must be positive"
        )
    if nx * ny > MAX_POINTS:
        raise SourceError(f"{path}: ODIM grid of {ny} x {nx} points is over {MAX_POINTS:,}")
    try:
        crs = pyproj.CRS.from_user_input(projdef)
        to_xy = pyproj.Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
    except pyproj.exceptions.CRSError as exc:
        raise SourceError(
            f"{path}: ODIM where/projdef {projdef!r} is not a projection ({exc})"
        ) from None
    corners = {}
    for c in ("LL", "UL", "UR", "LR"):
        if f"{c}_lon" in where.attrs or c in ("LL", "UR"):
            lon = _number(_attr(chain, f"{c}_lon", path), f"where/{c}_lon", path)
            lat = _number(_attr(chain, f"{c}_lat", path), f"where/{c}_lat", path)
            corners[c] = to_xy.transform(lon, lat)
    x_ll, y_ll = corners["LL"]
    expected = {
        "LL": (x_ll, y_ll),
        "UL": (x_ll, y_ll + ny * dy),
        "UR": (x_ll + nx * dx, y_ll + ny * dy),
        "LR": (x_ll + nx * dx, y_ll),
    }
    for c, (x, y) in corners.items():
        off = float(np.hypot(x - expected[c][0], y - expected[c][1]))
        if not off <= 0.5 * min(dx, dy):
            raise SourceError(
                f"{path}: ODIM corner {c} (where/{c}_lon, {c}_lat) lies {off:.0f} m from where "
                f"xsize x xscale = {nx} x {dx:g} m and ysize x yscale = {ny} x {dy:g} m put it: "
                "the grid's size, scale or corners are wrong"
            )
    try:
        x0, y0 = float(x_ll + dx / 2), float(y_ll + ny * dy - dy / 2)  # top-left cell's centre
        return Grid(name=name, crs=projdef, nx=nx, ny=ny, x0=x0, y0=y0, dx=dx, dy=-dy)
    except GridError as exc:
        raise SourceError(f"{path}: {exc}") from None


def _values(f, ds: str, d: str, grid: Grid, path: Path) -> np.ndarray:
    """The raster in dBZ: ``raw * gain + offset``, nodata -> NaN, undetect -> -32."""
    data = f[ds][d]["data"]
    if data.shape != grid.shape:
        raise SourceError(
            f"{path}: {ds}/{d}/data is {' x '.join(map(str, data.shape))}, but where says "
            f"ysize x xsize = {grid.ny} x {grid.nx}"
        )
    chain = _what_chain(f, ds, d)
    gain = _number(_attr(chain, "gain", path, 1.0), "gain", path)
    offset = _number(_attr(chain, "offset", path, 0.0), "offset", path)
    raw = np.asarray(data[...])  # (ny, nx), row 0 the northernmost
    dbz = (raw.astype(np.float64) * gain + offset).astype(np.float32)
    dbz[~np.isfinite(raw)] = np.nan
    for name, value in (("undetect", NO_ECHO_DBZ), ("nodata", np.nan)):
        flag = _attr(chain, name, path, "absent")
        if not isinstance(flag, str):
            dbz[raw == _number(flag, name, path)] = value
    return dbz


def read_odim(path: str | os.PathLike) -> DecodedField:
    """Decode an ODIM HDF5 Cartesian product (``object`` COMP or IMAGE) into a
    :class:`DecodedField` of reflectivity.

    Raises :class:`MissingHour` when the file holds no reflectivity (the message names what it
    holds), :class:`SourceError` for a missing, truncated or non-HDF5 file, a polar product, a
    missing attribute, or a grid whose size, scale, corners and raster disagree.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such ODIM HDF5 file")
    h5py = load_h5py()
    try:
        with h5py.File(path, "r") as f:
            return _read(f, path)
    except SourceError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise SourceError(
            f"{path}: cannot read as an ODIM HDF5 file ({type(exc).__name__}: {exc})"
        ) from None


def _read(f, path: Path) -> DecodedField:
    what = [(f["what"] if "what" in f else None, "what")]
    obj = attr_text(_attr(what, "object", path)).upper()
    if obj not in CARTESIAN_OBJECTS:
        raise SourceError(
            f"{path}: ODIM object {obj} is not on a Cartesian grid; wxembed reads "
            f"{' and '.join(CARTESIAN_OBJECTS)} products (composites and images)"
        )
    time = _time(f, path)
    ds, d, quantity = _pick_reflectivity(f, path)
    where = f["where"] if "where" in f else f[ds].get("where")
    if where is None:
        raise SourceError(f"{path}: ODIM file has no where group (projdef, sizes, corners)")
    grid = grid_from_where(where, path, name=f"odim-{obj.lower()}")
    dbz = _values(f, ds, d, grid, path)
    log.debug("read %s: %s %s at %s on %s", path, obj, quantity, time, grid.describe())
    return DecodedField(time=time, grid=grid, dbz=dbz, source=str(path))


__all__ = [
    "CARTESIAN_OBJECTS",
    "HDF5_SIGNATURE",
    "REFLECTIVITY_QUANTITIES",
    "attr_text",
    "grid_from_where",
    "load_h5py",
    "read_odim",
]
