"""FMI radar reflectivity composites of Finland: 8-bit PGM images, usually gzipped.

Each file is a binary PGM (``P5``) whose header comments carry the metadata, e.g.::

    # obstime 201609281445
    # metersperpixel_x 999.674053
    # metersperpixel_y 999.62859
    # projection radar {
    # type stereographic
    # centrallongitude 25
    # centrallatitude 90
    # truelatitude 60
    # bottomleft 18.600000 57.930000
    # topright 34.903000 69.005000
    # }
    760 1226
    255

i.e. 760 columns by 1226 rows, row 0 the northernmost. Raw values, as found in the 80 reference
frames: 255 = no data (outside radar coverage: the same 24.3 % of pixels in every frame),
0 = no echo, 1..~180 = echo; dBZ = raw * 0.5 - 32, the archive's own encoding.

Georeferencing. ``bottomleft`` and ``topright`` are the outer corners of the image (the lower-left
corner of the lower-left pixel, the upper-right corner of the upper-right pixel), on a polar
stereographic projection of a sphere of radius 6371288 m (the radius pysteps also uses for these
files). With that sphere the projected corners lie ``nx * metersperpixel_x`` and
``ny * metersperpixel_y`` apart to within millimetres; with the GRIB sphere (6371229 m) they are
7 m and 11 m off, with WGS84 about 3 km off. The Grid's first point is the centre of the top-left
pixel, so ``y0`` is the top row's y and ``dy = -metersperpixel_y``.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyproj

from wxembed.errors import SourceError
from wxembed.grid import Grid
from wxembed.sources import DecodedField
from wxembed.sources.grib import MAX_POINTS

log = logging.getLogger(__name__)

FMI_EARTH_RADIUS = 6371288.0
"""Radius (m) of the sphere FMI's stereographic composites are projected from."""
FMI_NODATA = 255
"""Raw value for 'no data' (outside coverage); decoded to NaN."""
FMI_NO_ECHO = 0
"""Raw value for 'no echo'; decodes to -32 dBZ."""
SCALE_FACTOR = 0.5
"""dBZ per raw step (FMI's encoding, which is also the archive's)."""
ADD_OFFSET = -32.0
"""dBZ of raw 0."""

_GZIP_MAGIC = b"\x1f\x8b"
_HEADER_BYTES = 16384  # enough for any FMI header; the raster follows it
_TIME_IN_NAME = re.compile(r"(?<!\d)(\d{12})(?!\d)")


@contextmanager
def _open_stream(path: Path) -> Iterator[BinaryIO]:
    """The file for reading, through gzip when it starts with the gzip magic; its read errors
    (a truncated or corrupt gzip stream) become :class:`SourceError` naming the file."""
    if not path.is_file():
        kind = "a folder, not an FMI PGM file" if path.is_dir() else "no such FMI PGM file"
        raise SourceError(f"{path}: {kind}")
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            with gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else nullcontext(raw) as f:
                yield f
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(
            f"{path}: cannot read as an FMI PGM file (.pgm or .pgm.gz): {type(exc).__name__}: {exc}"
        ) from None


def _read_image(path: Path) -> tuple[dict[str, list[str]], int, int, bytes]:
    """(header fields, width, height, raster bytes): only as many bytes as the header declares
    are read (decompressed), so a file that expands to gigabytes costs no more than its image."""
    with _open_stream(path) as f:
        head = f.read(_HEADER_BYTES)
        meta, nx, ny, _maxval, offset = _parse_header(head, path)
        need = nx * ny
        raster = head[offset : offset + need]
        if len(raster) < need:
            raster += f.read(need - len(raster))
        if len(raster) < need:
            raise SourceError(
                f"{path}: truncated PGM, {len(raster)} raster bytes for {ny} x {nx} = {need} pixels"
            )
        if len(head) > offset + need or f.read(1):
            log.debug("%s: bytes after the image ignored", path)
    return meta, nx, ny, raster


def _parse_header(data: bytes, path: Path) -> tuple[dict[str, list[str]], int, int, int, int]:
    """PGM header -> (comment fields, width, height, maxval, offset of the raster)."""
    if data[:2] != b"P5":
        raise SourceError(f"{path}: not a binary PGM image (expected magic 'P5', got {data[:2]!r})")
    meta: dict[str, list[str]] = {}
    tokens: list[int] = []
    pos, n = 2, len(data)
    while len(tokens) < 3:
        while pos < n and data[pos : pos + 1].isspace():
            pos += 1
        if pos >= n:
            raise SourceError(f"{path}: PGM header ends early (expected width, height, maxval)")
        if data[pos : pos + 1] == b"#":
            end = data.find(b"\n", pos)
            end = n if end < 0 else end
            line = data[pos + 1 : end].decode("latin-1").strip()
            if line:
                key, _, value = line.partition(" ")
                meta.setdefault(key, []).append(value.strip())
            pos = end + 1
            continue
        start = pos
        while pos < n and not data[pos : pos + 1].isspace() and data[pos : pos + 1] != b"#":
            pos += 1
        token = data[start:pos]
        if not token.isdigit():
            raise SourceError(f"{path}: malformed PGM header, expected a number, got {token!r}")
        tokens.append(int(token))
    if pos >= n or not data[pos : pos + 1].isspace():
        raise SourceError(f"{path}: PGM header ends early (no raster after maxval)")
    width, height, maxval = tokens
    if width < 1 or height < 1 or not 0 < maxval < 256:
        raise SourceError(
            f"{path}: expected an 8-bit PGM, got width={width} height={height} maxval={maxval}"
        )
    if width * height > MAX_POINTS:
        raise SourceError(
            f"{path}: the PGM header declares {width} x {height} pixels, more than the "
            f"{MAX_POINTS:,} wxembed reads"
        )
    return meta, width, height, maxval, pos + 1


def _field(meta: dict[str, list[str]], key: str, path: Path, count: int = 1) -> list[float]:
    if key not in meta:
        raise SourceError(f"{path}: FMI PGM header lacks '# {key}'")
    parts = meta[key][0].split()
    try:
        values = [float(p) for p in parts[:count]]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise SourceError(f"{path}: '# {key} {meta[key][0]}' is not {count} finite number(s)")
    return values


def _obstime(meta: dict[str, list[str]], path: Path) -> np.datetime64:
    text = meta.get("obstime", [""])[0].strip()
    try:
        return np.datetime64(datetime.strptime(text, "%Y%m%d%H%M"), "s")
    except ValueError:
        raise SourceError(
            f"{path}: FMI PGM header has no valid '# obstime YYYYMMDDHHMM' (got {text!r})"
        ) from None


def _grid(meta: dict[str, list[str]], nx: int, ny: int, path: Path) -> Grid:
    """The Grid of the image: its pixel centres on the header's stereographic projection."""
    kind = meta.get("type", [""])[0].strip()
    if kind != "stereographic":
        raise SourceError(f"{path}: expected an FMI stereographic projection, got type {kind!r}")
    (lon_0,) = _field(meta, "centrallongitude", path)
    (lat_0,) = _field(meta, "centrallatitude", path)
    (lat_ts,) = _field(meta, "truelatitude", path)
    (mx,) = _field(meta, "metersperpixel_x", path)
    (my,) = _field(meta, "metersperpixel_y", path)
    bl = _field(meta, "bottomleft", path, 2)
    tr = _field(meta, "topright", path, 2)
    if mx <= 0 or my <= 0:
        raise SourceError(f"{path}: metersperpixel_x/_y must be positive, got {mx:g}, {my:g}")
    if not all(-90 <= lat <= 90 for lat in (lat_0, lat_ts, bl[1], tr[1])):
        raise SourceError(f"{path}: a latitude of the FMI projection header is beyond +/-90")
    crs = (
        f"+proj=stere +lat_0={lat_0:g} +lon_0={lon_0:g} +lat_ts={lat_ts:g} "
        f"+R={FMI_EARTH_RADIUS:.0f} +units=m +no_defs"
    )
    try:
        to_xy = pyproj.Transformer.from_crs(
            pyproj.CRS(crs).geodetic_crs, pyproj.CRS(crs), always_xy=True
        )
    except pyproj.exceptions.ProjError as exc:
        raise SourceError(f"{path}: PROJ refuses the header's projection ({exc})") from None
    (x_bl, x_tr), (y_bl, y_tr) = to_xy.transform([bl[0], tr[0]], [bl[1], tr[1]])
    if not all(math.isfinite(v) for v in (x_bl, x_tr, y_bl, y_tr)):
        raise SourceError(f"{path}: the header's corners cannot be placed on its projection")
    off_x, off_y = x_bl + nx * mx - x_tr, y_bl + ny * my - y_tr
    if max(abs(off_x), abs(off_y)) > 0.5 * min(mx, my):
        log.warning(
            "%s: header corners disagree with the pixel size by %.0f m (x), %.0f m (y)",
            path,
            off_x,
            off_y,
        )
    return Grid(
        name="fmi-finland",
        crs=crs,
        nx=nx,
        ny=ny,
        x0=float(x_bl + 0.5 * mx),
        y0=float(y_bl + (ny - 0.5) * my),
        dx=mx,
        dy=-my,
    )


def read_fmi(path: str | os.PathLike) -> DecodedField:
    """Decode an FMI composite (``.pgm.gz`` or ``.pgm``) into a :class:`DecodedField`.

    dBZ = raw * 0.5 - 32 (float32), raw 255 (no data) -> NaN; raw 0 is no echo (-32 dBZ).
    Raises :class:`SourceError` for a missing, truncated or non-PGM file or a header without the
    projection and ``obstime``.
    """
    path = Path(path)
    meta, nx, ny, data = _read_image(path)
    raw = np.frombuffer(data, dtype=np.uint8).reshape(ny, nx)
    dbz = raw.astype(np.float32) * np.float32(SCALE_FACTOR) + np.float32(ADD_OFFSET)
    dbz[raw == FMI_NODATA] = np.nan
    return DecodedField(
        time=_obstime(meta, path), grid=_grid(meta, nx, ny, path), dbz=dbz, source=str(path)
    )


def fmi_time(path: str | os.PathLike) -> np.datetime64:
    """Observation time of an FMI file: the 12-digit stamp in its name, else its ``obstime``."""
    path = Path(path)
    match = _TIME_IN_NAME.search(path.name)
    if match:
        try:
            return np.datetime64(datetime.strptime(match.group(1), "%Y%m%d%H%M"), "s")
        except ValueError:
            pass
    with _open_stream(path) as f:
        meta = _parse_header(f.read(_HEADER_BYTES), path)[0]
    return _obstime(meta, path)


def fmi_files(folder: str | os.PathLike) -> list[Path]:
    """All ``*.pgm.gz`` and ``*.pgm`` files under ``folder`` (recursively), sorted by time."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"{folder}: no such folder of FMI PGM files")
    files = {p for pattern in ("*.pgm.gz", "*.pgm") for p in folder.rglob(pattern) if p.is_file()}
    return sorted(files, key=lambda p: (fmi_time(p), str(p)))
