"""MRMS MergedReflectivityQCComposite GRIB2 files (NOAA/NSSL), read with eccodes.

An MRMS composite is one GRIB2 message on a regular latitude/longitude grid (template 3.0), e.g.
7000 x 3500 points at 0.01 degrees over CONUS, scanned west->east and north->south (scanning
mode 0), so the :class:`~wxembed.grid.Grid` has ``dx > 0`` and ``dy < 0``. Its parameter is
local to NSSL (discipline 209, category 10, number 0): eccodes knows no shortName for it, so the
message is picked by those numbers.

Values: -999 = outside radar coverage (decoded to NaN), -99 = inside coverage but no echo
(decoded to -32 dBZ, wxembed's "no echo", :data:`~wxembed.sources.grib.NO_ECHO_DBZ`), anything
else is dBZ as is.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from wxembed.errors import SourceError
from wxembed.grid import Grid
from wxembed.sources import DecodedField
from wxembed.sources.grib import NO_ECHO_DBZ, load_eccodes

log = logging.getLogger(__name__)

MRMS_PARAMETER = (209, 10, 0)
"""(discipline, parameterCategory, parameterNumber) of MergedReflectivityQCComposite."""
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


def _describe(h) -> str:
    ec = load_eccodes()
    nums = "/".join(str(ec.codes_get(h, k)) for k in _PARAMETER_KEYS)
    return f"{ec.codes_get(h, 'shortName')} ({nums})"


def read_mrms(path: str | os.PathLike) -> DecodedField:
    """Decode an MRMS reflectivity composite GRIB2 file into a :class:`DecodedField`.

    Takes the message with parameter 209/10/0 (MergedReflectivityQCComposite), or the file's only
    message. dBZ is float32: -999 (outside coverage) becomes NaN, -99 (no echo) becomes -32.
    Raises :class:`SourceError` for a missing, truncated or non-GRIB file, or one without that
    message.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such MRMS GRIB2 file")
    ec = load_eccodes()
    handles: list = []
    try:
        with open(path, "rb") as f:
            while (h := ec.codes_grib_new_from_file(f)) is not None:
                handles.append(h)
        h = _pick_message(handles, path)
        grid = _grid_from_header(h, path)
        time = _valid_time(h)
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
    dbz = values.astype(np.float32).reshape(grid.shape)  # (ny*nx,) -> (ny, nx), i fastest
    dbz[dbz == MRMS_OUTSIDE] = np.nan
    dbz[dbz == MRMS_NO_ECHO] = NO_ECHO_DBZ
    log.debug("read %s: %s at %s", path, grid.describe(), time)
    return DecodedField(time=time, grid=grid, dbz=dbz, source=str(path))


def _pick_message(handles: list, path: Path):
    """The MRMS reflectivity message among a file's messages, or the file's only message."""
    ec = load_eccodes()
    if not handles:
        raise SourceError(f"{path}: not a GRIB2 file (no GRIB message found), expected MRMS")
    picked = [
        h for h in handles if tuple(ec.codes_get(h, k) for k in _PARAMETER_KEYS) == MRMS_PARAMETER
    ]
    if len(picked) != 1 and len(handles) == 1:
        log.warning(
            "%s: its only message is %s, not 209/10/0; reading it", path, _describe(handles[0])
        )
        return handles[0]
    if len(picked) != 1:
        held = ", ".join(_describe(h) for h in handles)
        raise SourceError(
            f"{path}: expected one MRMS reflectivity message (discipline/category/number "
            f"{'/'.join(map(str, MRMS_PARAMETER))}), found {len(picked)} among "
            f"{len(handles)} messages: {held}"
        )
    return picked[0]


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
