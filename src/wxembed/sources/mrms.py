"""MRMS MergedReflectivityQCComposite GRIB2 files (NOAA/NSSL), read with eccodes.

An MRMS composite is one GRIB2 message on a regular latitude/longitude grid (template 3.0), e.g.
7000 x 3500 points at 0.01 degrees over CONUS, scanned west->east and north->south (scanning
mode 0), so the :class:`~wxembed.grid.Grid` has ``dx > 0`` and ``dy < 0``. Its parameter is
local to NSSL (discipline 209, category 10, number 0): eccodes knows no shortName for it, so the
message is picked by those numbers. The same layout carries every MRMS product (rain rate,
precipitation type, echo heights...): only the reflectivity products of
:data:`MRMS_REFLECTIVITY` are read, and a file of anything else is a
:class:`~wxembed.errors.MissingHour` whose message names what it holds; nothing else is ever
stored as dBZ.

Values: -999 = outside radar coverage (decoded to NaN), -99 = inside coverage but no echo
(decoded to -32 dBZ, wxembed's "no echo", :data:`~wxembed.sources.grib.NO_ECHO_DBZ`), anything
else within :data:`~wxembed.sources.grib.PLAUSIBLE_DBZ` is dBZ as is; any other value (an
infinity, 1e30, a fill value) is a missing point, stored as no echo and counted in
``missing_values``, as the HRRR reader counts them.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from wxembed.errors import MissingHour, SourceError
from wxembed.grid import Grid
from wxembed.sources import DecodedField
from wxembed.sources.grib import NO_ECHO_DBZ, check_points, implausible, load_eccodes

log = logging.getLogger(__name__)

MRMS_PARAMETER = (209, 10, 0)
"""(discipline, parameterCategory, parameterNumber) of MergedReflectivityQCComposite."""
MRMS_REFLECTIVITY: dict[tuple[int, int, int], str] = {
    MRMS_PARAMETER: "MergedReflectivityQCComposite",
    (209, 10, 2): "LowLevelCompositeReflectivity",
    (209, 10, 4): "LayerCompositeReflectivity_Low",
    (209, 10, 5): "LayerCompositeReflectivity_High",
    (209, 10, 6): "LayerCompositeReflectivity_Super",
    (209, 11, 0): "MergedBaseReflectivityQC",
    (209, 11, 1): "MergedReflectivityComposite",
    (209, 11, 2): "MergedReflectivityQComposite",
    (209, 11, 3): "MergedBaseReflectivity",
    (209, 3, 57): "ReflectivityAtLowestAltitude",
    (209, 3, 58): "MergedReflectivityAtLowestAltitude",
}
"""The MRMS products read as reflectivity (instantaneous dBZ mosaics: composite, low-level and
layer composites, base, lowest altitude), by (discipline, category, number) of NSSL's MRMS
GRIB2 table. Hourly maxima are left out: they are not one moment's image."""
MRMS_OTHER: dict[tuple[int, int, int], str] = {
    (209, 10, 1): "HeightCompositeReflectivity, m",
    (209, 10, 3): "HeightLowLevelCompositeReflectivity, m",
    (209, 10, 7): "CREF_1HR_MAX, dBZ hourly maximum",
    (209, 10, 10): "BREF_1HR_MAX, dBZ hourly maximum",
    (209, 6, 0): "PrecipFlag, precipitation type",
    (209, 6, 1): "PrecipRate, mm/h",
    (209, 6, 2): "RadarOnly_QPE_01H, mm",
    (209, 3, 26): "SHI, severe hail index",
    (209, 3, 27): "POSH, %",
    (209, 3, 28): "MESH, mm",
}
"""Other MRMS products, named (with their units) in the reason a file of one is refused."""
MRMS_OUTSIDE = -999.0
"""MRMS value for 'outside radar coverage'; decoded to NaN."""
MRMS_NO_ECHO = -99.0
"""MRMS value for 'no echo inside coverage'; decoded to :data:`NO_ECHO_DBZ` (-32 dBZ)."""
DEFAULT_THRESHOLDS = (20.0, 35.0, 45.0)
"""dBZ thresholds of :func:`mrms_coverage_stats`."""
_PARAMETER_KEYS = ("discipline", "parameterCategory", "parameterNumber")

# GRIB2 code table 3.2 (shape of the earth) -> PROJ parameters. 1 and 7 carry their own sizes.
_EARTH_SHAPES = {
    0: "+R=6367470",
    2: "+a=6378160 +b=6356775",  # IAU 1965 oblate spheroid, the shape MRMS headers state
    4: "+ellps=GRS80",
    5: "+ellps=WGS84",
    6: "+R=6371229",
    8: "+R=6371200",
}


def _earth_proj(h, path: Path) -> str:
    ec = load_eccodes()
    shape = ec.codes_get(h, "shapeOfTheEarth")
    if shape in _EARTH_SHAPES:
        return _EARTH_SHAPES[shape]
    if shape == 1:
        value = ec.codes_get(h, "scaledValueOfRadiusOfSphericalEarth")
        scale = ec.codes_get(h, "scaleFactorOfRadiusOfSphericalEarth")
        return f"+R={value / 10**scale:.6f}"
    if shape in (3, 7):
        a = ec.codes_get(h, "scaledValueOfEarthMajorAxis") / 10 ** ec.codes_get(
            h, "scaleFactorOfEarthMajorAxis"
        )
        b = ec.codes_get(h, "scaledValueOfEarthMinorAxis") / 10 ** ec.codes_get(
            h, "scaleFactorOfEarthMinorAxis"
        )
        unit = 1000.0 if shape == 3 else 1.0
        return f"+a={a * unit:.6f} +b={b * unit:.6f}"
    raise SourceError(f"{path}: unsupported GRIB2 shape of the earth {shape} (code table 3.2)")


def _grid_from_header(h, path: Path) -> Grid:
    """The regular lat/lon Grid that a GRIB2 template-3.0 header describes."""
    ec = load_eccodes()
    template = ec.codes_get(h, "gridDefinitionTemplateNumber")
    if template != 0:
        raise SourceError(
            f"{path}: expected a regular latitude/longitude grid (GRIB2 template 3.0), "
            f"got template 3.{template}"
        )
    nx, ny = ec.codes_get(h, "Ni"), ec.codes_get(h, "Nj")
    lat0 = ec.codes_get(h, "latitudeOfFirstGridPointInDegrees")
    lon0 = ec.codes_get(h, "longitudeOfFirstGridPointInDegrees")
    di = ec.codes_get(h, "iDirectionIncrementInDegrees")
    dj = ec.codes_get(h, "jDirectionIncrementInDegrees")
    if ec.codes_get(h, "jPointsAreConsecutive"):
        raise SourceError(f"{path}: column-major scanning (jPointsAreConsecutive) is not supported")
    dx = -di if ec.codes_get(h, "iScansNegatively") else di
    dy = dj if ec.codes_get(h, "jScansPositively") else -dj
    x0 = (lon0 + 180.0) % 360.0 - 180.0
    crs = f"+proj=longlat {_earth_proj(h, path)} +no_defs"
    return Grid(name="mrms-conus", crs=crs, nx=nx, ny=ny, x0=x0, y0=lat0, dx=dx, dy=dy)


def _valid_time(h) -> np.datetime64:
    """Reference time to the second (``dataTime`` drops seconds) plus the forecast step."""
    ec = load_eccodes()
    ref = datetime(
        *(int(ec.codes_get(h, k)) for k in ("year", "month", "day", "hour", "minute", "second"))
    )
    step_s = 0
    if ec.codes_get(h, "forecastTime") != 0:
        ec.codes_set(h, "stepUnits", "s")
        step_s = int(ec.codes_get(h, "endStep"))
    return np.datetime64(ref + timedelta(seconds=step_s), "s")


def _parameter(h) -> tuple[int, int, int]:
    ec = load_eccodes()
    return tuple(int(ec.codes_get(h, k)) for k in _PARAMETER_KEYS)  # type: ignore[return-value]


def _describe(h) -> str:
    ec = load_eccodes()
    key = _parameter(h)
    nums = "/".join(map(str, key))
    name = MRMS_REFLECTIVITY.get(key) or MRMS_OTHER.get(key)
    if name is None:
        name = ec.codes_get(h, "shortName")
        if ec.codes_get(h, "discipline") != 209:  # a WMO parameter: eccodes knows its name
            name = f"{name}, {ec.codes_get(h, 'name')}, {ec.codes_get(h, 'units')}"
    return f"{name} ({nums})"


def read_mrms(path: str | os.PathLike) -> DecodedField:
    """Decode an MRMS reflectivity GRIB2 file into a :class:`DecodedField`.

    Takes the file's message of an MRMS reflectivity product (:data:`MRMS_REFLECTIVITY`,
    MergedReflectivityQCComposite first). dBZ is float32: -999 (outside coverage) becomes NaN,
    -99 (no echo) -32, and values that are no reflectivity (infinities, 1e30) -32, counted in
    ``missing_values``. Raises :class:`MissingHour` for a file without such a message (another
    MRMS product, another parameter; the message names what it holds) and
    :class:`SourceError` for a missing, truncated or non-GRIB file.
    """
    path = Path(path)
    if not path.is_file():
        kind = "a folder, not an MRMS GRIB2 file" if path.is_dir() else "no such MRMS GRIB2 file"
        raise SourceError(f"{path}: {kind}")
    ec = load_eccodes()
    handles: list = []
    try:
        with open(path, "rb") as f:
            while (h := ec.codes_grib_new_from_file(f)) is not None:
                handles.append(h)
        h = _pick_message(handles, path)
        grid = _grid_from_header(h, path)
        time = _valid_time(h)
        check_points(h, path)
        values = ec.codes_get_values(h)
    except SourceError:
        raise
    except (ec.CodesInternalError, OSError, ValueError) as exc:
        raise SourceError(
            f"{path}: cannot decode as an MRMS GRIB2 file ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        for h in handles:
            ec.codes_release(h)
    if values.size != grid.size:
        raise SourceError(
            f"{path}: message holds {values.size} values, its grid {grid.shape} needs {grid.size}"
        )
    values = values.reshape(grid.shape)  # (ny*nx,) -> (ny, nx), i fastest
    outside, no_echo = values == MRMS_OUTSIDE, values == MRMS_NO_ECHO
    bad = implausible(values) & ~outside & ~no_echo
    dbz = values.astype(np.float32)
    dbz[outside] = np.nan
    dbz[no_echo | bad] = NO_ECHO_DBZ
    n_bad = int(bad.sum())
    if n_bad:
        log.info("%s: %d points that are no reflectivity stored as no echo", path, n_bad)
    log.debug("read %s: %s at %s", path, grid.describe(), time)
    return DecodedField(time=time, grid=grid, dbz=dbz, source=str(path), missing_values=n_bad)


def _pick_message(handles: list, path: Path):
    """The file's message of an MRMS reflectivity product (the first, in the order of
    :data:`MRMS_REFLECTIVITY`); :class:`MissingHour` naming what the file holds when none is."""
    if not handles:
        raise SourceError(f"{path}: not a GRIB2 file (no GRIB message found), expected MRMS")
    found = {}
    for h in handles:
        found.setdefault(_parameter(h), h)
    for key in MRMS_REFLECTIVITY:
        if key in found:
            if len(handles) > 1:
                n = len(handles)
                log.debug("%s: reading %s of %d messages", path, MRMS_REFLECTIVITY[key], n)
            return found[key]
    held = "; ".join(_describe(h) for h in handles)
    raise MissingHour(
        f"{path}: no MRMS reflectivity product; found 0 among {len(handles)} "
        f"message{'s' if len(handles) > 1 else ''}: {held}"
    )


def mrms_coverage_stats(
    dbz: np.ndarray, thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
) -> dict[str, float]:
    """Fractions of the pixels inside coverage (not NaN) whose dBZ exceeds each threshold.

    Returns ``{"coverage": fraction of all pixels inside coverage, "n_coverage": their count,
    "gt_20": ..., "gt_35": ..., "gt_45": ...}`` (keys ``gt_<threshold>``, strictly greater).
    """
    dbz = np.asarray(dbz)
    covered = ~np.isnan(dbz)
    n = int(covered.sum())
    stats: dict[str, float] = {"coverage": n / dbz.size if dbz.size else math.nan, "n_coverage": n}
    inside = dbz[covered]
    for t in thresholds:
        stats[f"gt_{t:g}"] = float((inside > t).sum() / n) if n else math.nan
    return stats


def coarsen_mrms(field: DecodedField, factor: int, min_coverage: float = 0.5) -> DecodedField:
    """Block-average a field ``factor`` times coarser, onto ``field.grid.coarsen(factor)``.

    Each coarse cell is the mean dBZ of its covered fine cells (no echo counting as -32), or NaN
    when fewer than ``min_coverage`` of them are covered. Trailing rows/columns that do not fill
    a block are dropped, as :meth:`Grid.coarsen` does.
    """
    grid = field.grid.coarsen(factor)
    if factor == 1:
        return field
    ny, nx = grid.shape
    blocks = field.dbz[: ny * factor, : nx * factor].reshape(ny, factor, nx, factor)
    covered = ~np.isnan(blocks)
    count = covered.sum(axis=(1, 3))
    total = np.where(covered, blocks, 0.0).sum(axis=(1, 3), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (total / count).astype(np.float32)
    mean[count < min_coverage * factor * factor] = np.nan
    return replace(field, grid=grid, dbz=mean)
