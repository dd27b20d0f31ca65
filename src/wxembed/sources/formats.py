"""Which reader reads a file: kinds of input told by content, the registry, and ingest's reshaping.

``READERS`` maps a kind to the function that turns one file into a
:class:`~wxembed.sources.DecodedField`. :func:`sniff` says which kind a file is from its bytes,
never its name: GRIB2 by its ``GRIB`` magic, then MRMS (discipline 209, NSSL's local table) or
else NCEP (HRRR's REFC); HDF5 by its signature, then ODIM (``Conventions ODIM_H5``, a ``what``
group with ``object``) or else NetCDF-4; NetCDF-3 by ``CDF``; PGM (FMI) by ``P5``; gzip is
looked inside. :func:`reader_for` builds the reader an ingest hands to its workers, with the
:class:`Reshape` (``--bbox``, ``--coarsen``) applied to each field; :func:`read_field` reads a
query file of any kind. This module is the one place that tells formats apart.
"""

from __future__ import annotations

import functools
import gzip
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from wxembed.errors import MissingHour, SourceError
from wxembed.grid import Grid, check_bbox, coarsen_dbz
from wxembed.sources import DecodedField, fmi, grib, hrrr, mrms, netcdf, odim
from wxembed.times import format_time

log = logging.getLogger(__name__)

Reader = Callable[[str], DecodedField]
"""Turns a task key (a path, or a time for synthetic data) into a decoded field."""

GRIB_SUFFIXES = (".grib2", ".grb2", ".grib", ".grb")
"""File name endings read (and written) as GRIB2."""
INPUT_PATTERNS = tuple(
    f"**/*{end}"
    for end in (".grib2", ".grib2.gz", ".grb2", ".pgm", ".pgm.gz", ".h5", ".hdf", ".hdf5", ".nc")
)
"""What a folder of radar files is searched for when it is not in the NOAA layout."""
FOLDER_KINDS = "GRIB2, PGM, ODIM HDF5 or NetCDF"
"""The files a folder is searched for, in words."""
KINDS = ("auto", "hrrr", "mrms", "fmi", "odim", "netcdf")
"""Input kinds ``wxembed ingest --kind`` takes ("auto": :func:`sniff` each file)."""
MRMS_DISCIPLINE = mrms.MRMS_PARAMETER[0]

_NAME_TIME_RE = re.compile(r"(\d{8})[-_]?(\d{4})(\d{2})?(?!\d)")
_HEAD_BYTES = 65536  # enough for a GRIB2 message's sections 0-4


def read_hrrr(path: str) -> DecodedField:
    """An HRRR GRIB2 file's REFC; the valid time must match the NOAA layout path, if it is one."""
    try:
        decoded = grib.decode_refc(path)
    except MissingHour as exc:
        kind, found = sniff(path)
        if kind == "mrms":
            raise MissingHour(f"{exc}; the file is {found}: read it with --kind mrms") from None
        raise
    expected = hrrr.valid_time_from_path(path)
    if expected is not None and expected != decoded.time:
        raise SourceError(
            f"{path}: REFC is valid at {format_time(decoded.time)}, but the path says "
            f"{format_time(expected)}"
        )
    return decoded


READERS: dict[str, Callable[..., DecodedField]] = {
    "hrrr": read_hrrr,
    "mrms": mrms.read_mrms,
    "fmi": fmi.read_fmi,
    "odim": odim.read_odim,
    "netcdf": netcdf.read_netcdf,
}
"""Input kind -> the reader of one file (``netcdf`` also takes ``variable=``)."""
DESCRIPTIONS = {
    "hrrr": "GRIB2 with a REFC message (HRRR, or any NCEP composite reflectivity)",
    "mrms": "MRMS MergedReflectivityQCComposite GRIB2 (NSSL discipline 209)",
    "fmi": "FMI radar composite, 8-bit PGM (gzipped or not) with the projection in its header",
    "odim": "ODIM HDF5 composite or image (object COMP or IMAGE) of DBZH, TH or another dBZ",
    "netcdf": "CF NetCDF-3 or -4: a variable in dBZ on a grid_mapping or lat/lon grid",
}
"""What each kind is, in a line (``wxembed ingest --help``, the README's table)."""


# ---- telling kinds apart by content ------------------------------------------------------------
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


def _grib_found(head: bytes) -> tuple[str, str]:
    """The kind of a GRIB file and what its first message is, from its section headers."""
    discipline, edition = head[6], head[7]
    if edition != 2:
        return "hrrr", f"GRIB edition {edition} (wxembed reads GRIB2)"
    param = ""
    pos = 16
    while pos + 11 <= len(head):  # sections 1, 2, 3 then 4: length (4 bytes), number (1 byte)
        length, number = int.from_bytes(head[pos : pos + 4], "big"), head[pos + 4]
        if number == 4:
            param = f" category {head[pos + 9]} number {head[pos + 10]}"
            break
        if length < 5 or number > 4:
            break
        pos += length
    if discipline == MRMS_DISCIPLINE:
        return "mrms", f"MRMS GRIB2 (discipline {discipline}{param}, NSSL's local table)"
    return "hrrr", f"GRIB2 (first message discipline {discipline}{param})"


def _hdf5_found(path: Path) -> tuple[str, str]:
    """ODIM or NetCDF-4, from the root attributes of an HDF5 file."""
    h5py = odim.load_h5py()
    try:
        with h5py.File(path, "r") as f:
            conventions = odim.attr_text(f.attrs.get("Conventions", b""))
            is_odim = conventions.upper().startswith("ODIM") or (
                "what" in f and "object" in f["what"].attrs
            )
            if is_odim:
                obj = odim.attr_text(f["what"].attrs.get("object", b"?")) if "what" in f else "?"
                return "odim", f"ODIM HDF5 ({conventions or 'no Conventions'}, object {obj})"
            return "netcdf", f"HDF5 (NetCDF-4{', ' + conventions if conventions else ''})"
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        guess = "netcdf" if path.suffix.lower() in (".nc", ".nc4") else "odim"
        return guess, f"a damaged HDF5 file ({type(exc).__name__})"


def sniff(path: str | Path) -> tuple[str, str]:
    """``(kind, what was found)`` from a file's first bytes: kind is one of :data:`KINDS` but
    ``auto``, ``"npy"`` for a NumPy array, or ``"unknown"``; an unreadable file is ``unknown``
    with the reason."""
    p = Path(path)
    if p.is_dir():
        return "unknown", "a folder, not a file"
    head = _head(p, _HEAD_BYTES)
    if not head:
        return "unknown", "an empty or unreadable file" if p.exists() else "no such file"
    if head[:4] == b"GRIB" and len(head) >= 16:
        return _grib_found(head)
    if odim.HDF5_SIGNATURE in head[:8] or head[512:520] == odim.HDF5_SIGNATURE:
        if _head(p, 2)[:2] == b"\x1f\x8b":
            return "unknown", "a gzipped HDF5 file (gunzip it first)"
        return _hdf5_found(p)
    if head[:4] in netcdf.NETCDF3_SIGNATURES:
        return "netcdf", "NetCDF-3 (classic)"
    if head[:2] in (b"P5", b"P2"):
        return "fmi", f"PGM image (magic {head[:2].decode()}, the FMI composites' format)"
    if head[:6] == b"\x93NUMPY":
        return "npy", "a NumPy .npy array"
    return "unknown", f"not a format wxembed reads (it starts with {head[:8]!r})"


def kind_of(path: str | Path) -> str:
    """The kind of a file, by content (:func:`sniff`)."""
    return sniff(path)[0]


def choose_kind(files: Sequence[str | Path], kind: str = "auto") -> str:
    """The one kind an ingest reads ``files`` as: ``kind`` unless it is ``auto``, else what their
    contents say (unreadable files are read, and recorded as failed, with the others).
    :class:`SourceError` when they mix kinds or none is a radar file."""
    if kind not in KINDS:
        raise SourceError(f"unknown input kind {kind!r}; expected one of {', '.join(KINDS)}")
    found = {str(f): sniff(f) for f in files}
    kinds = Counter(k for k, _ in found.values() if k in READERS)
    if kind != "auto":
        other = [(f, what) for f, (k, what) in found.items() if k in READERS and k != kind]
        if other:
            log.warning("--kind %s, but %s is %s (and %d more)", kind, *other[0], len(other) - 1)
        return kind
    if not kinds:
        first, (_, what) = next(iter(found.items()))
        raise SourceError(f"{first}: {what}; wxembed reads {FOLDER_KINDS} radar files")
    if len(kinds) > 1:
        mix = ", ".join(f"{n} {k}" for k, n in kinds.most_common())
        raise SourceError(f"inputs mix kinds ({mix}); ingest one kind per archive or pass --kind")
    chosen = next(iter(kinds))
    example = next(what for k, what in found.values() if k == chosen)
    log.info("reading %d files as %s: %s", len(found), chosen, example)
    return chosen


def is_grib(path: str | Path) -> bool:
    """True when the file starts with ``GRIB`` (or, when unreadable, is named like GRIB2)."""
    head = _head(Path(path), 4)
    return head == b"GRIB" if head else Path(path).suffix.lower() in GRIB_SUFFIXES


def is_npy(path: str | Path) -> bool:
    """True for a NumPy ``.npy`` file (its magic, or its name when unreadable)."""
    head = _head(Path(path), 6)
    return head == b"\x93NUMPY" if head else Path(path).suffix.lower() == ".npy"


def is_field_file(path: str | Path) -> bool:
    """True for a file :func:`read_field` may read: any radar kind, or a ``.npy`` array."""
    return kind_of(path) in (*READERS, "npy")


def read_npy(path: str | Path) -> np.ndarray:
    """A ``.npy`` file's array (no pickles); :class:`SourceError` naming the file otherwise."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SourceError(f"{path}: not a readable .npy file ({exc})") from None


def read_field(path: str | Path, *, variable: str | None = None) -> DecodedField:
    """A single field from a file of any kind :func:`sniff` knows (HRRR or MRMS GRIB2, ODIM
    HDF5, NetCDF, FMI PGM), or a ``.npy`` 2-D dBZ array (NaN = no data; no grid, no time)."""
    path = Path(path)
    kind, found = sniff(path)
    if kind == "npy":
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
    if kind not in READERS:
        raise SourceError(f"{path}: {found}; a field file is {FOLDER_KINDS}, or a .npy dBZ array")
    if kind == "netcdf":
        return netcdf.read_netcdf(path, variable=variable)
    return READERS[kind](str(path))


# ---- what an ingest reads: frames and reshaping -----------------------------------------------
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


def frames(
    path: str | Path, kind: str, variable: str | None = None
) -> list[tuple[str, str | None]]:
    """``(task key, valid time or None)`` of every field a file holds: one for most files, one
    per time for a NetCDF file with several (keys :func:`wxembed.sources.netcdf.frame_key`)."""
    named = time_from_path(path)
    plain = [(str(path), None if named is None else str(named))]
    if kind != "netcdf":
        return plain
    try:
        times = netcdf.netcdf_times(path, variable)
    except SourceError:
        return plain  # recorded, with its reason, when the worker reads it
    if len(times) == 1:
        return plain if np.isnat(times[0]) else [(str(path), str(times[0]))]
    return [(netcdf.frame_key(path, t), str(t)) for t in times]


@dataclass(frozen=True)
class Reshape:
    """What ingest does to each field before storing it: cut to a box, then coarsen."""

    bbox: tuple[float, float, float, float] | None = None
    """``(lon_min, lat_min, lon_max, lat_max)`` in degrees: keep the block of cells that
    covers it (``--bbox``); None keeps the whole grid."""
    coarsen: int = 1
    """Block size of the coarsening (``--coarsen``): mean in linear Z of ``coarsen x coarsen``
    cells (:func:`wxembed.grid.coarsen_dbz`); 1 leaves the resolution as it is."""

    def __post_init__(self) -> None:
        if self.bbox is not None:
            object.__setattr__(self, "bbox", check_bbox(self.bbox))
        if int(self.coarsen) != self.coarsen or self.coarsen < 1:
            raise SourceError(f"coarsen must be a whole number of 1 or more, got {self.coarsen}")

    @property
    def is_identity(self) -> bool:
        return self.bbox is None and self.coarsen == 1

    def describe(self) -> str:
        parts = []
        if self.bbox is not None:
            w, s, e, n = self.bbox
            parts.append(f"cut to lon {w:g}..{e:g}, lat {s:g}..{n:g}")
        if self.coarsen > 1:
            parts.append(f"coarsened {self.coarsen}x (block mean in linear Z)")
        return ", ".join(parts) or "as read"

    def apply(self, field: DecodedField) -> DecodedField:
        """The field cut to :attr:`bbox` and coarsened by :attr:`coarsen`."""
        if self.is_identity:
            return field
        grid, dbz = field.grid, field.dbz
        if self.bbox is not None:
            rows, cols = _window(grid.to_json(), self.bbox)
            grid, dbz = grid.subset(rows, cols), dbz[rows, cols]
        if self.coarsen > 1:
            if min(grid.shape) < self.coarsen:
                raise SourceError(
                    f"{field.source}: cannot coarsen {grid.shape[0]} x {grid.shape[1]} cells "
                    f"by {self.coarsen}"
                )
            grid, dbz = grid.coarsen(self.coarsen), coarsen_dbz(dbz, self.coarsen)
        return replace(field, grid=grid, dbz=np.ascontiguousarray(dbz, dtype=np.float32))


@functools.lru_cache(maxsize=16)
def _window(grid_json: str, bbox: tuple[float, float, float, float]) -> tuple[slice, slice]:
    return Grid.from_json(grid_json).window_of(bbox)


def read_reshaped(
    key: str, *, kind: str, variable: str | None = None, reshape: Reshape | None = None
) -> DecodedField:
    """Read ``key`` as ``kind`` and apply ``reshape``: the reader :func:`reader_for` makes."""
    if kind == "netcdf":
        field = netcdf.read_netcdf(key, variable=variable)
    else:
        field = READERS[kind](key)
    return field if reshape is None else reshape.apply(field)


def reader_for(kind: str, *, variable: str | None = None, reshape: Reshape | None = None) -> Reader:
    """The reader of one kind of file, with ``variable`` (NetCDF) and ``reshape`` applied; it
    pickles, so Beam's workers can take it."""
    if kind not in READERS:
        raise SourceError(f"unknown input kind {kind!r}; expected one of {', '.join(READERS)}")
    if variable is not None and kind != "netcdf":
        raise SourceError(f"--variable is for NetCDF files; these are {kind}")
    if reshape is not None and reshape.is_identity:
        reshape = None
    return functools.partial(read_reshaped, kind=kind, variable=variable, reshape=reshape)


__all__ = [
    "DESCRIPTIONS",
    "FOLDER_KINDS",
    "GRIB_SUFFIXES",
    "KINDS",
    "READERS",
    "Reader",
    "Reshape",
    "choose_kind",
    "frames",
    "is_field_file",
    "is_grib",
    "is_npy",
    "kind_of",
    "read_field",
    "read_hrrr",
    "read_npy",
    "read_reshaped",
    "reader_for",
    "sniff",
    "time_from_path",
]
