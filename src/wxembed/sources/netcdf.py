"""CF NetCDF reflectivity (NetCDF-3 or NetCDF-4/HDF5), read with xarray.

A variable in dBZ (``units = "dBZ"``) whose last two dimensions are y and x, each with a
regularly spaced 1-D coordinate, and either a CF ``grid_mapping`` (projected coordinates in
metres or kilometres) or plain latitude/longitude coordinates (degrees, WGS84). It may have a
``time`` dimension (one field per time) or a scalar ``time`` coordinate. ``scale_factor``,
``add_offset`` and ``_FillValue`` are applied by xarray; the fill value (NaN) is "no data".

Which variable: the one given (``wxembed ingest --variable NAME``), else the file's only
variable in dBZ. A variable in other units is a :class:`~wxembed.errors.MissingHour` whose
message names the units: wxembed does not turn rain rate into reflectivity behind your back.

A file with several times is read one time at a time: :func:`netcdf_times` lists them and each
is read by a key ``PATH#time=2024-07-01T12:05:00`` (:func:`frame_key`).
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
from wxembed.sources.odim import HDF5_SIGNATURE

log = logging.getLogger(__name__)

NETCDF3_SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
"""The first four bytes of a classic, 64-bit-offset or 64-bit-data NetCDF-3 file."""
DBZ_UNITS = ("dbz",)
"""Units (lower case) read as dBZ."""
LONLAT_CRS = "+proj=longlat +datum=WGS84 +no_defs"
"""The CRS of a grid given by plain latitude/longitude coordinates."""
MAX_POINTS = 100_000_000
"""The most points one field may have (a 10,000 x 10,000 grid)."""
TIME_KEY = "#time="
"""Between a file's path and one of its times in a task key."""
_LON_NAMES = {"lon", "longitude", "x_lon"}
_LAT_NAMES = {"lat", "latitude", "y_lat"}


def frame_key(path: str | Path, time: np.datetime64) -> str:
    """The key that reads one time of a file with several."""
    return f"{path}{TIME_KEY}{np.datetime64(time, 's')}"


def split_key(key: str) -> tuple[Path, np.datetime64 | None]:
    """``(path, time or None)`` from a key made by :func:`frame_key` (or a plain path)."""
    path, sep, when = str(key).rpartition(TIME_KEY)
    if not sep:
        return Path(key), None
    try:
        return Path(path), np.datetime64(when, "s")
    except ValueError:
        return Path(key), None


def _open(path: Path):
    """The file as a lazy ``xarray.Dataset`` (h5netcdf for NetCDF-4, scipy for NetCDF-3)."""
    import xarray as xr  # slow to import: only when a NetCDF file is read

    if not path.is_file():
        raise SourceError(f"{path}: no such NetCDF file")
    with open(path, "rb") as fh:
        head = fh.read(8)
    engine = "h5netcdf" if head == HDF5_SIGNATURE else "scipy"
    if engine == "scipy" and head[:4] not in NETCDF3_SIGNATURES:
        raise SourceError(f"{path}: not a NetCDF file (it starts with {head[:4]!r})")
    try:
        return xr.open_dataset(path, engine=engine, cache=False, decode_timedelta=False)
    except Exception as exc:  # noqa: BLE001 - the engines raise many types for damaged files
        raise SourceError(f"{path}: cannot read as NetCDF ({type(exc).__name__}: {exc})") from None


def _is_dbz(var) -> bool:
    return str(var.attrs.get("units", "")).strip().lower() in DBZ_UNITS


def pick_variable(ds, path: Path, variable: str | None = None):
    """The reflectivity variable: ``variable``, else the only one in dBZ."""
    fields = [n for n, v in ds.data_vars.items() if v.ndim >= 2]
    if variable is not None:
        if variable not in ds.data_vars:
            raise SourceError(
                f"{path}: no variable {variable!r}; it holds {', '.join(fields) or 'no fields'}"
            )
        var = ds[variable]
        if not _is_dbz(var):
            units = var.attrs.get("units")
            held = f"units {units!r}" if units else "no units attribute"
            raise MissingHour(
                f"{path}: variable {variable} has {held}, not dBZ; wxembed stores reflectivity "
                "in dBZ (set its units to dBZ if it is)"
            )
        return var
    dbz = [n for n in fields if _is_dbz(ds[n])]
    if len(dbz) == 1:
        return ds[dbz[0]]
    held = ", ".join(f"{n} [{ds[n].attrs.get('units', 'no units')}]" for n in fields)
    if not dbz:
        raise MissingHour(f"{path}: no variable in dBZ (it holds {held or 'no fields'})")
    raise SourceError(
        f"{path}: several variables are in dBZ ({', '.join(dbz)}); choose one (--variable)"
    )


def _axis(ds, dim: str, path: Path) -> np.ndarray:
    if dim not in ds.coords:
        raise SourceError(f"{path}: dimension {dim} has no coordinate variable")
    coord = ds[dim]
    values = np.asarray(coord.values, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise SourceError(f"{path}: coordinate {dim} needs at least two values")
    step = np.diff(values)
    if not (np.all(np.isfinite(values)) and np.allclose(step, step[0], rtol=1e-4, atol=0)):
        raise SourceError(f"{path}: coordinate {dim} is not regularly spaced")
    return values


def _crs(ds, var, ydim: str, xdim: str, path: Path) -> tuple[str, float]:
    """The grid's CRS and the factor that turns its x/y coordinates into CRS units."""
    name = var.attrs.get("grid_mapping") or var.encoding.get("grid_mapping")
    if name:
        if name not in ds.variables:
            raise SourceError(f"{path}: grid_mapping variable {name!r} is missing")
        attrs = dict(ds[name].attrs)
        try:
            crs = attrs.get("proj4") or pyproj.CRS.from_cf(attrs).to_wkt()
            pyproj.CRS.from_user_input(crs)
        except (pyproj.exceptions.CRSError, KeyError, ValueError) as exc:
            raise SourceError(f"{path}: grid_mapping {name} is not a CRS ({exc})") from None
        units = str(ds[xdim].attrs.get("units", "m")).strip().lower()
        if pyproj.CRS.from_user_input(crs).is_geographic:
            return crs, 1.0
        scale = {"m": 1.0, "metre": 1.0, "meter": 1.0, "km": 1000.0}.get(units)
        if scale is None:
            raise SourceError(f"{path}: coordinate {xdim} is in {units!r}, expected m or km")
        return crs, scale
    names = {ydim.lower(), str(ds[ydim].attrs.get("standard_name", "")).lower()}
    xnames = {xdim.lower(), str(ds[xdim].attrs.get("standard_name", "")).lower()}
    if names & _LAT_NAMES and xnames & _LON_NAMES:
        return LONLAT_CRS, 1.0
    raise SourceError(
        f"{path}: variable {var.name} has no grid_mapping and its dimensions ({ydim}, {xdim}) "
        "are not latitude and longitude"
    )


def grid_of(ds, var, path: Path) -> Grid:
    """The :class:`Grid` of a variable whose last two dimensions are y and x."""
    ydim, xdim = var.dims[-2:]
    y, x = _axis(ds, ydim, path), _axis(ds, xdim, path)
    if len(x) * len(y) > MAX_POINTS:
        raise SourceError(f"{path}: a field of {len(y)} x {len(x)} points is over {MAX_POINTS:,}")
    crs, scale = _crs(ds, var, ydim, xdim, path)
    try:
        return Grid(
            name=f"netcdf-{var.name}",
            crs=crs,
            nx=len(x),
            ny=len(y),
            x0=float(x[0] * scale),
            y0=float(y[0] * scale),
            dx=float((x[1] - x[0]) * scale),
            dy=float((y[1] - y[0]) * scale),
        )
    except GridError as exc:
        raise SourceError(f"{path}: {exc}") from None


def _times(ds, var, path: Path) -> tuple[list[np.datetime64], str | None]:
    """The variable's times (one per step of its time dimension, its scalar time, or NaT) and
    its time dimension (None when it has none longer than one)."""
    extra = [d for d in var.dims[:-2] if var.sizes[d] > 1]
    tdim = [d for d in extra if d in ds.coords and np.issubdtype(ds[d].dtype, np.datetime64)]
    if len(extra) > 1 or (extra and not tdim):
        raise SourceError(
            f"{path}: variable {var.name} has dimensions {var.dims}; expected (time,) y, x"
        )
    if tdim:
        return list(np.asarray(ds[tdim[0]].values).astype("datetime64[s]")), tdim[0]
    for name in ("time", *var.dims[:-2]):
        if name in ds.coords and np.issubdtype(ds[name].dtype, np.datetime64):
            return [np.asarray(ds[name].values).reshape(-1)[0].astype("datetime64[s]")], None
    return [np.datetime64("NaT", "s")], None


def netcdf_times(path: str | os.PathLike, variable: str | None = None) -> list[np.datetime64]:
    """The valid times of a file's reflectivity variable (``[NaT]`` when it has none)."""
    path = Path(path)
    with _open(path) as ds:
        try:
            return _times(ds, pick_variable(ds, path, variable), path)[0]
        except (ValueError, TypeError, KeyError) as exc:
            raise SourceError(f"{path}: cannot read its times ({exc})") from None


def read_netcdf(key: str | os.PathLike, variable: str | None = None) -> DecodedField:
    """One field of a CF NetCDF file: the file's only time, or the time named in ``key``
    (:func:`frame_key`). Raises :class:`MissingHour` for a file without reflectivity in dBZ, and
    :class:`SourceError` for a damaged file, a grid that is not regular, or a file of several
    times read without saying which."""
    path, want = split_key(str(key))
    with _open(path) as ds:
        var = pick_variable(ds, path, variable)
        grid = grid_of(ds, var, path)
        times, tdim = _times(ds, var, path)
        if want is None and len(times) > 1:
            raise SourceError(
                f"{path}: holds {len(times)} times ({times[0]} to {times[-1]}); read one with "
                f"{path}{TIME_KEY}TIME, or ingest the file, which takes them all"
            )
        i = 0 if want is None else _index_of(times, want, path)
        try:
            field = var.isel({d: i if d == tdim else 0 for d in var.dims[:-2]})
            dbz = np.asarray(field.values, dtype=np.float32)  # (ny, nx)
        except (OSError, ValueError, RuntimeError) as exc:
            raise SourceError(f"{path}: cannot read {var.name} ({exc})") from None
    if dbz.shape != grid.shape:
        raise SourceError(f"{path}: {var.name} is {dbz.shape}, its coordinates say {grid.shape}")
    log.debug("read %s: %s at %s on %s", path, var.name, times[i], grid.describe())
    return DecodedField(time=times[i], grid=grid, dbz=dbz, source=str(key))


def _index_of(times: list[np.datetime64], want: np.datetime64, path: Path) -> int:
    for i, t in enumerate(times):
        if t == want:
            return i
    raise SourceError(f"{path}: holds no field at {want}")


__all__ = [
    "LONLAT_CRS",
    "NETCDF3_SIGNATURES",
    "frame_key",
    "grid_of",
    "netcdf_times",
    "pick_variable",
    "read_netcdf",
    "split_key",
]
