"""GRIB2 composite reflectivity (REFC): decode it from HRRR files, encode it as HRRR does.

REFC is selected by its parameter (discipline 0, category 16, number 196), not by level keys,
which differ between HRRR versions. The encoder writes grid template 30 (Lambert conformal) with
complex packing and spatial differencing, the way NCEP writes HRRR, so tests and demos can lay
out a real-format archive; the decoder reads such files and the real ones alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyproj  # noqa: F401  (pyproj before eccodes: the reverse order has crashed pyproj)

from wxembed.errors import GridError, MissingHour, SourceError
from wxembed.grid import HRRR_CONUS, Grid, lambert_grid
from wxembed.reflectivity import ADD_OFFSET
from wxembed.sources import DecodedField

log = logging.getLogger(__name__)

REFC = (0, 16, 196)
"""(discipline, parameterCategory, parameterNumber) of composite reflectivity."""
_PARAMETER_KEYS = ("discipline", "parameterCategory", "parameterNumber")
NO_ECHO_DBZ = ADD_OFFSET
"""What a missing point inside a field becomes: no echo, the archive's lowest value (-32)."""
PLAUSIBLE_DBZ = (-100.0, 100.0)
"""Reflectivity a radar or a model can report, in dBZ. A value outside (an infinity, NaN, 1e30,
a fill value written without a bitmap) is not a measurement: it counts as a missing point."""
MAX_POINTS = 100_000_000
"""The most grid points a message may declare (a 10,000 x 10,000 grid; MRMS CONUS has 24.5
million): more is refused before its values are decoded, which would take 8 bytes a point."""


@dataclass(frozen=True)
class GribParam:
    """A GRIB2 parameter and level, enough to write one message."""

    discipline: int
    category: int
    number: int
    type_of_level: int = 10  # 10 = entire atmosphere (REFC); 1 = surface; 103 = height above ground
    level: int = 0
    bits_per_value: int = 12


REFC_PARAM = GribParam(*REFC, type_of_level=10, level=0)


def load_eccodes():
    """The eccodes module, imported on first use: it is heavy, and only reading and writing GRIB2
    need it. (pyproj is imported above, before it: the reverse order has crashed pyproj.)"""
    try:
        import eccodes
    except ImportError as exc:  # pragma: no cover - eccodes is a hard dependency
        raise SourceError(f"eccodes is needed to read and write GRIB2 files: {exc}") from None
    return eccodes


# ---- decoding ----------------------------------------------------------------------------------
def grid_from_message(handle, name: str = "") -> Grid:
    """The :class:`Grid` a GRIB2 message lies on (templates 30, Lambert, and 0, lat/lon).

    A grid that is the HRRR CONUS grid is returned as :data:`HRRR_CONUS`, with its name.
    """
    grid = _grid_from_message(handle, name)
    return HRRR_CONUS if not name and grid.same_as(HRRR_CONUS) else grid


def _grid_from_message(handle, name: str) -> Grid:
    ec = load_eccodes()
    get = lambda key: ec.codes_get(handle, key)  # noqa: E731
    template = get("gridDefinitionTemplateNumber")
    scan = get("scanningMode")
    if scan & 0b1000_0000 or scan & 0b0010_0000:
        raise GridError(
            f"scanning mode {scan} (i scans negatively or columns first) is not supported"
        )
    j_positive = bool(scan & 0b0100_0000)
    nx, ny = get("Nx"), get("Ny")
    radius = _earth_radius(handle)
    if template == 30:
        if get("LaDInDegrees") != get("Latin1InDegrees"):
            log.debug("LaD differs from Latin1; using Latin1/Latin2 for the projection")
        proj = (
            f"+proj=lcc +lat_1={get('Latin1InDegrees'):g} +lat_2={get('Latin2InDegrees'):g} "
            f"+lat_0={get('LaDInDegrees'):g} +lon_0={get('LoVInDegrees'):g} +R={radius:.0f} "
            "+units=m +no_defs"
        )
        dx, dy = get("DxInMetres"), get("DyInMetres")
        return lambert_grid(
            name or f"lambert-{ny}x{nx}",
            proj,
            nx=nx,
            ny=ny,
            lat0=get("latitudeOfFirstGridPointInDegrees"),
            lon0=get("longitudeOfFirstGridPointInDegrees"),
            dx=dx,
            dy=dy if j_positive else -dy,
        )
    if template == 0:
        lon0 = (get("longitudeOfFirstGridPointInDegrees") + 180.0) % 360.0 - 180.0
        dlon, dlat = get("iDirectionIncrementInDegrees"), get("jDirectionIncrementInDegrees")
        return Grid(
            name=name or f"latlon-{ny}x{nx}",
            crs=f"+proj=longlat +R={radius:.0f} +no_defs",
            nx=nx,
            ny=ny,
            x0=lon0,
            y0=get("latitudeOfFirstGridPointInDegrees"),
            dx=dlon,
            dy=dlat if j_positive else -dlat,
        )
    raise GridError(f"grid definition template {template} is not supported (only 0 and 30)")


def _earth_radius(handle) -> float:
    ec = load_eccodes()
    shape = ec.codes_get(handle, "shapeOfTheEarth")
    if shape == 6:
        return 6371229.0
    if shape == 0:
        return 6367470.0
    if shape == 1:
        return ec.codes_get(handle, "scaledValueOfRadiusOfSphericalEarth") / 10 ** ec.codes_get(
            handle, "scaleFactorOfRadiusOfSphericalEarth"
        )
    # Oblate shapes: a sphere of the mean radius is within a pixel for radar composites.
    log.debug("shapeOfTheEarth=%s approximated by a sphere of 6371229 m", shape)
    return 6371229.0


def implausible(values: np.ndarray) -> np.ndarray:
    """True where ``values`` are not reflectivity at all (outside :data:`PLAUSIBLE_DBZ`, or NaN)."""
    lo, hi = PLAUSIBLE_DBZ
    with np.errstate(invalid="ignore"):
        return ~((values >= lo) & (values <= hi))


def check_points(handle, path: Path | str, what: str = "the message") -> int:
    """The number of values decoding ``handle`` would give; :class:`SourceError` before any is
    decoded when the message declares more than :data:`MAX_POINTS` (a crafted header can ask
    for gigabytes in a few hundred bytes)."""
    ec = load_eccodes()
    n = max(
        int(ec.codes_get(handle, "numberOfDataPoints")), int(ec.codes_get_size(handle, "values"))
    )
    if n > MAX_POINTS:
        raise SourceError(
            f"{path}: {what} declares {n:,} grid points, more than the {MAX_POINTS:,} wxembed "
            "decodes (a damaged or crafted header?)"
        )
    return n


def _describe(handle) -> str:
    ec = load_eccodes()
    parts = []
    for key in (
        "shortName",
        "discipline",
        "parameterCategory",
        "parameterNumber",
        "typeOfLevel",
        "level",
        "stepRange",
    ):
        try:
            parts.append(f"{key}={ec.codes_get(handle, key)}")
        except Exception:  # noqa: BLE001 - a key absent from this template is simply skipped
            continue
    return "{" + " ".join(parts) + "}"


def _valid_time(handle) -> np.datetime64:
    ec = load_eccodes()
    date, time = ec.codes_get(handle, "validityDate"), ec.codes_get(handle, "validityTime")
    return np.datetime64(
        f"{date // 10000:04d}-{date // 100 % 100:02d}-{date % 100:02d}T"
        f"{time // 100:02d}:{time % 100:02d}:00",
        "s",
    )


def inventory(path: str | Path) -> list[str]:
    """One line per message of a GRIB2 file: what it holds."""
    return [desc for desc, _ in _scan(Path(path), want=None)]


def _scan(path: Path, want: tuple[int, int, int] | None):
    """Yield (description, handle-or-None) per message; the handle only for the wanted parameter.

    The caller releases yielded handles.
    """
    ec = load_eccodes()
    if not path.is_file():
        raise SourceError(f"{path}: {'a folder, not a file' if path.is_dir() else 'no such file'}")
    with open(path, "rb") as fh:
        index = 0
        while True:
            offset = fh.tell()
            try:
                handle = ec.codes_grib_new_from_file(fh)
            except Exception as exc:  # eccodes raises several types for damaged files
                raise SourceError(
                    f"{path}: message {index + 1} at byte {offset} is damaged or truncated ({exc})"
                ) from None
            if handle is None:
                return
            index += 1
            try:
                key = tuple(ec.codes_get(handle, k) for k in _PARAMETER_KEYS)
                desc = _describe(handle)
            except Exception as exc:
                ec.codes_release(handle)
                raise SourceError(
                    f"{path}: message {index} at byte {offset} is unreadable ({exc})"
                ) from None
            if want is not None and key == want:
                yield desc, handle
            else:
                ec.codes_release(handle)
                yield desc, None


def decode_refc(path: str | Path, *, grid_name: str = "") -> DecodedField:
    """Composite reflectivity from a GRIB2 file, as a :class:`DecodedField` in dBZ.

    Raises :class:`MissingHour` when the file holds no REFC message (the message lists what it
    does hold) and :class:`SourceError` when it is missing, truncated or corrupt. Points flagged
    missing in the message, and values that are no reflectivity (infinities, 1e30), become no
    echo and are counted in ``missing_values``.
    """
    path = Path(path)
    held: list[str] = []
    for desc, handle in _scan(path, want=REFC):
        if handle is None:
            held.append(desc)
            continue
        return _decode_handle(handle, str(path), grid_name)
    if not held:
        raise SourceError(f"{path}: not a GRIB2 file (no GRIB2 messages in it)")
    raise MissingHour(
        f"{path}: no REFC message (discipline 0, category 16, number 196); "
        f"it holds: {'; '.join(held)}"
    )


def decode_refc_message(data: bytes, *, source: str, grid_name: str = "") -> DecodedField:
    """REFC from the bytes of one GRIB2 message (as fetched by byte range), with no file in
    between; errors as :func:`decode_refc`'s, naming ``source``."""
    ec = load_eccodes()
    handle = None
    try:
        handle = ec.codes_new_from_message(data)
        key = tuple(ec.codes_get(handle, k) for k in _PARAMETER_KEYS)
        desc = _describe(handle)
    except Exception as exc:  # eccodes raises several types for damaged messages
        if handle is not None:
            ec.codes_release(handle)
        raise SourceError(f"{source}: not a readable GRIB2 message ({exc})") from None
    if key != REFC:
        ec.codes_release(handle)
        raise MissingHour(
            f"{source}: no REFC message (discipline 0, category 16, number 196); it holds: {desc}"
        )
    return _decode_handle(handle, source, grid_name)


def _decode_handle(handle, source: str, grid_name: str) -> DecodedField:
    """The REFC message ``handle`` (released here) as a :class:`DecodedField`."""
    ec = load_eccodes()
    try:
        grid = grid_from_message(handle, name=grid_name)
        check_points(handle, source, "its REFC message")
        values = ec.codes_get_values(handle)
        missing_value = ec.codes_get(handle, "missingValue")
        has_bitmap = ec.codes_get(handle, "bitmapPresent")
        time = _valid_time(handle)
    except GridError as exc:
        raise SourceError(f"{source}: REFC message: {exc}") from None
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(f"{source}: REFC message is damaged or truncated ({exc})") from None
    finally:
        ec.codes_release(handle)
    if values.size != grid.size:
        raise SourceError(
            f"{source}: REFC has {values.size} values, expected {grid.size} for {grid.describe()}"
        )
    missing = implausible(values)  # infinities, NaN, 1e30 and the like
    if has_bitmap:
        missing |= values == missing_value
    n_missing = int(missing.sum())
    dbz = np.where(missing, NO_ECHO_DBZ, values).astype(np.float32)
    dbz = dbz.reshape(grid.shape)  # (ny*nx,) -> (ny, nx): GRIB rows are i-fastest
    if n_missing:
        log.info("%s: %d missing points stored as no echo", source, n_missing)
    return DecodedField(time=time, grid=grid, dbz=dbz, source=source, missing_values=n_missing)


# ---- encoding ----------------------------------------------------------------------------------
def _set_grid(handle, grid: Grid) -> None:
    ec = load_eccodes()
    crs = grid.pyproj_crs
    params = crs.to_cf()
    if params.get("grid_mapping_name") != "lambert_conformal_conic":
        raise GridError(
            f"GRIB2 encoding supports Lambert conformal grids only, not {grid.describe()}"
        )
    if abs(params["semi_major_axis"] - 6371229.0) > 1 or params.get(
        "inverse_flattening", 0
    ) not in (0, 0.0):
        raise GridError(
            f"GRIB2 encoding supports the 6,371,229 m sphere only, not {grid.describe()}"
        )
    lat, lon = grid.latlon()
    parallels = params["standard_parallel"]
    lat1, lat2 = parallels if isinstance(parallels, Sequence) else (parallels,) * 2
    ints = {
        "gridDefinitionTemplateNumber": 30,
        "shapeOfTheEarth": 6,
        # NCEP writes zeros (not 'missing') into the unused earth-shape octets
        "scaleFactorOfRadiusOfSphericalEarth": 0,
        "scaledValueOfRadiusOfSphericalEarth": 0,
        "scaleFactorOfEarthMajorAxis": 0,
        "scaledValueOfEarthMajorAxis": 0,
        "scaleFactorOfEarthMinorAxis": 0,
        "scaledValueOfEarthMinorAxis": 0,
        "Nx": grid.nx,
        "Ny": grid.ny,
        "latitudeOfFirstGridPoint": round(float(lat[0, 0]) * 1e6),
        "longitudeOfFirstGridPoint": round((float(lon[0, 0]) % 360.0) * 1e6),
        "resolutionAndComponentFlags": 8,
        "LaD": round(params["latitude_of_projection_origin"] * 1e6),
        "LoV": round((params["longitude_of_central_meridian"] % 360.0) * 1e6),
        "Dx": round(abs(grid.dx) * 1000),
        "Dy": round(abs(grid.dy) * 1000),
        "projectionCentreFlag": 0,
        "scanningMode": 64 if grid.dy > 0 else 0,
        "Latin1": round(lat1 * 1e6),
        "Latin2": round(lat2 * 1e6),
        "latitudeOfSouthernPole": 0,
        "longitudeOfSouthernPole": 0,
    }
    for key, value in ints.items():
        ec.codes_set_long(handle, key, int(value))


def _identification(t) -> dict[str, int]:
    """Section 1 keys, in the order they are set: NCEP's centre and tables, the reference time
    ``t`` (a ``datetime``)."""
    return {
        "centre": 7,
        "subCentre": 0,
        "tablesVersion": 2,
        "localTablesVersion": 1,
        "significanceOfReferenceTime": 1,
        "productionStatusOfProcessedData": 0,
        "typeOfProcessedData": 1,
        "year": t.year,
        "month": t.month,
        "day": t.day,
        "hour": t.hour,
        "minute": t.minute,
        "second": 0,
    }


def _product(param: GribParam, forecast_hour: int) -> dict[str, int]:
    """Section 4 keys (product template 4.0), in the order they are set."""
    return {
        "discipline": param.discipline,
        "productDefinitionTemplateNumber": 0,
        "parameterCategory": param.category,
        "parameterNumber": param.number,
        "typeOfGeneratingProcess": 2,
        "generatingProcessIdentifier": 83,
        "indicatorOfUnitForForecastTime": 1,
        "forecastTime": forecast_hour,
        "typeOfFirstFixedSurface": param.type_of_level,
        "scaleFactorOfFirstFixedSurface": 0,
        "scaledValueOfFirstFixedSurface": param.level,
        "typeOfSecondFixedSurface": 255,
    }


def encode_message(
    values: np.ndarray,
    grid: Grid,
    reference_time,
    *,
    forecast_hour: int = 0,
    param: GribParam = REFC_PARAM,
    missing_mask: np.ndarray | None = None,
) -> bytes:
    """One GRIB2 message (as bytes) of ``values`` on ``grid``, NCEP/HRRR style.

    ``missing_mask`` marks points to flag as missing through a bitmap.
    """
    ec = load_eccodes()
    values = np.asarray(values, dtype=np.float64)
    if values.shape != grid.shape:
        raise GridError(
            f"values have shape {values.shape}, expected {grid.shape} for {grid.describe()}"
        )
    t = np.datetime64(reference_time, "s").astype(object)
    handle = ec.codes_grib_new_from_samples("GRIB2")
    try:
        for key, value in _identification(t).items():
            ec.codes_set_long(handle, key, int(value))
        _set_grid(handle, grid)
        for key, value in _product(param, forecast_hour).items():
            ec.codes_set_long(handle, key, int(value))
        ec.codes_set_string(handle, "packingType", "grid_complex_spatial_differencing")
        # 12 bits over the field's range: 0.02 dBZ steps for -10..70 dBZ, finer than the
        # archive's 0.5
        ec.codes_set_long(handle, "bitsPerValue", param.bits_per_value)
        ec.codes_set_long(handle, "orderOfSpatialDifferencing", 2)
        flat = values.ravel()  # (ny, nx) -> (ny*nx,), i fastest as GRIB wants
        if missing_mask is not None and missing_mask.any():
            ec.codes_set_long(handle, "bitmapPresent", 1)
            ec.codes_set_double(handle, "missingValue", 9999.0)
            flat = np.where(missing_mask.ravel(), 9999.0, flat)
        ec.codes_set_values(handle, flat)
        return ec.codes_get_message(handle)
    finally:
        ec.codes_release(handle)


def write_refc_file(
    path: str | Path,
    field: DecodedField,
    *,
    reference_time=None,
    extra: Iterable[tuple[GribParam, np.ndarray]] = (),
    missing_mask: np.ndarray | None = None,
) -> Path:
    """Write a GRIB2 file holding ``field`` as REFC (and any ``extra`` messages after it).

    NaN (no data) is written as no echo. The file is written to a temporary name and renamed, so
    a reader never sees half a file.
    """
    path = Path(path)
    ref = np.datetime64(reference_time if reference_time is not None else field.time, "s")
    step = int((np.datetime64(field.time, "s") - ref) // np.timedelta64(1, "h"))
    dbz = np.where(np.isnan(field.dbz), NO_ECHO_DBZ, field.dbz)
    chunks = [encode_message(dbz, field.grid, ref, forecast_hour=step, missing_mask=missing_mask)]
    for param, values in extra:
        chunks.append(encode_message(values, field.grid, ref, forecast_hour=step, param=param))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(b"".join(chunks))
    tmp.replace(path)
    return path
