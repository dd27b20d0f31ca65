"""Which reader reads a file: kinds of input told by content (then by name), and the registry.

``READERS`` maps a kind ("hrrr", "mrms", "fmi") to the function that turns one file into a
:class:`~wxembed.sources.DecodedField`; :func:`kind_of` says which kind a file is, looking at
its first bytes (GRIB2 or PGM, gzip or not) and then at its name; :func:`read_field` reads a
single field given as a query (GRIB2 REFC or a ``.npy`` dBZ array). This module is the one place
that tells formats apart.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from wxembed.errors import SourceError
from wxembed.sources import DecodedField, fmi, grib, hrrr, mrms
from wxembed.times import format_time

Reader = Callable[[str], DecodedField]
"""Turns a task key (a path, or a time for synthetic data) into a decoded field."""

GRIB_SUFFIXES = (".grib2", ".grb2", ".grib", ".grb")
"""File name endings read (and written) as GRIB2."""
INPUT_PATTERNS = ("**/*.grib2", "**/*.grib2.gz", "**/*.pgm", "**/*.pgm.gz")
"""What a folder of radar files is searched for when it is not in the NOAA layout."""
KINDS = ("auto", "hrrr", "mrms", "fmi")
"""Input kinds ``wxembed ingest --kind`` takes ("auto": :func:`kind_of` each file)."""

_NAME_TIME_RE = re.compile(r"(\d{8})[-_]?(\d{4})(\d{2})?(?!\d)")


def read_hrrr(path: str) -> DecodedField:
    """An HRRR GRIB2 file's REFC; the valid time must match the NOAA layout path, if it is one."""
    decoded = grib.decode_refc(path)
    expected = hrrr.valid_time_from_path(path)
    if expected is not None and expected != decoded.time:
        raise SourceError(
            f"{path}: REFC is valid at {format_time(decoded.time)}, but the path says "
            f"{format_time(expected)}"
        )
    return decoded


READERS: dict[str, Reader] = {"hrrr": read_hrrr, "mrms": mrms.read_mrms, "fmi": fmi.read_fmi}
"""Input kind -> the reader of one file."""


def _head(path: Path, n: int = 16) -> bytes:
    try:
        with open(path, "rb") as fh:
            head = fh.read(n)
        if head[:2] == b"\x1f\x8b":  # gzip: look inside
            with gzip.open(path, "rb") as fh:
                head = fh.read(n)
        return head
    except (OSError, EOFError):
        return b""


def kind_of(path: str | Path) -> str:
    """ "fmi" for a PGM (by its magic ``P5``/``P2`` or its name), "mrms" for an MRMS GRIB2 (by
    name: MRMS and HRRR files are both GRIB2), else "hrrr"."""
    p = Path(path)
    name = p.name
    head = _head(p)
    if head[:2] in (b"P5", b"P2") or name.endswith((".pgm", ".pgm.gz")):
        return "fmi"
    if "mrms" in name.lower() or "MergedReflectivity" in name:
        return "mrms"
    return "hrrr"


def is_grib(path: str | Path) -> bool:
    """True when the file starts with ``GRIB`` (or, when unreadable, is named like GRIB2)."""
    head = _head(Path(path), 4)
    return head == b"GRIB" if head else Path(path).suffix.lower() in GRIB_SUFFIXES


def is_npy(path: str | Path) -> bool:
    """True for a NumPy ``.npy`` file (its magic, or its name when unreadable)."""
    head = _head(Path(path), 6)
    return head == b"\x93NUMPY" if head else Path(path).suffix.lower() == ".npy"


def read_npy(path: str | Path) -> np.ndarray:
    """A ``.npy`` file's array (no pickles); :class:`SourceError` naming the file otherwise."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SourceError(f"{path}: not a readable .npy file ({exc})") from None


def read_field(path: str | Path) -> DecodedField:
    """A single field from a file: GRIB2 (REFC) or ``.npy`` (a 2-D dBZ array, NaN = no data;
    no grid and no time)."""
    path = Path(path)
    if is_npy(path):
        dbz = read_npy(path)
        if dbz.dtype.kind not in "fiu" or dbz.ndim != 2:
            raise SourceError(
                f"{path}: expected a 2-D dBZ array, got {dbz.dtype} of shape {dbz.shape}"
            )
        return DecodedField(
            time=np.datetime64("NaT", "s"),
            grid=None,  # type: ignore[arg-type]
            dbz=dbz.astype(np.float32),
            source=str(path),
        )
    return grib.decode_refc(path)


def time_from_path(path: str | Path) -> np.datetime64 | None:
    """Valid time from a file's path: the NOAA HRRR layout, or a ``YYYYMMDD[-_]HHMM[SS]`` in its
    name; None when it has neither."""
    t = hrrr.valid_time_from_path(path)
    if t is not None:
        return t
    m = _NAME_TIME_RE.search(Path(path).name)
    if not m:
        return None
    d, hm, s = m.group(1), m.group(2), m.group(3) or "00"
    try:
        return np.datetime64(f"{d[:4]}-{d[4:6]}-{d[6:]}T{hm[:2]}:{hm[2:]}:{s}", "s")
    except ValueError:
        return None


__all__ = [
    "GRIB_SUFFIXES",
    "KINDS",
    "READERS",
    "Reader",
    "is_grib",
    "is_npy",
    "kind_of",
    "read_field",
    "read_hrrr",
    "read_npy",
    "time_from_path",
]
