"""The radar archive: one Zarr v3 store of hourly reflectivity images on one grid.

Layout (CF conventions, opens with ``xarray.open_zarr``)::

    reflectivity (time, y, x) uint8   dBZ = raw * 0.5 - 32, raw 255 = no data; zstd; 1 hour a chunk
    time         (time)       int64   valid time, seconds since 1970-01-01 (the slot table)
    status       (time)       uint8   manifest: 0 pending, 1 stored, 2 missing, 3 failed
    reason       (time)       str     manifest: why an hour is missing or failed ("" when stored)
    missing_values (time)     int32   manifest: points the source flagged missing, now no echo
    source       (time)       str     provenance: the file or URL each hour came from
    regime       (time)       str     ground-truth label where one exists (synthetic storms)
    y, x, lat, lon, crs               coordinates and the CF grid-mapping variable

Every hour that was asked for has a *slot* on the time axis, whatever became of it; the manifest
says which slots hold data. Slots are only ever added (by one process, under a lock), never
moved, so a worker writing hour t touches only slot t's chunks: the image first, then the status
that commits it. A job killed at any point leaves an archive that opens, whose stored hours are
intact, and whose unfinished hours are still ``pending``; running the job again fills them, each
hour exactly once. Readers see stored hours only, sorted by time.
"""

from __future__ import annotations

import fcntl
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from zarr.codecs import ZstdCodec

from wxembed import __version__
from wxembed.errors import ArchiveError, GridError
from wxembed.grid import Grid
from wxembed.reflectivity import ADD_OFFSET, NODATA, SCALE_FACTOR, decode_raw, encode_dbz
from wxembed.sources import DecodedField
from wxembed.times import as_time, format_time, from_seconds, to_seconds

log = logging.getLogger(__name__)

PENDING, STORED, MISSING, FAILED = 0, 1, 2, 3
STATUS_NAMES = ("pending", "stored", "missing", "failed")

_MANIFEST_ARRAYS = (
    ("status", "uint8", PENDING, "manifest status of the hour"),
    ("reason", str, "", "why the hour is missing or failed"),
    ("missing_values", "int32", 0, "points flagged missing by the source, stored as no echo"),
    ("source", str, "", "file or URL the hour came from"),
    ("regime", str, "", "ground-truth weather regime label, where known"),
)
"""(name, dtype, fill value, long name) of the manifest's per-slot arrays."""
_MANIFEST_VARS = tuple(name for name, *_ in _MANIFEST_ARRAYS)


@dataclass(frozen=True)
class HourRecord:
    """What became of one hour: the manifest row an ingest reports back."""

    time: np.datetime64
    status: str
    reason: str = ""
    source: str = ""
    missing_values: int = 0


class Archive:
    """A Zarr v3 archive of radar images on one grid (see the module docstring for the layout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "zarr.json").exists():
            raise ArchiveError(f"{self.path}: no archive here (no zarr.json); create one first")
        try:
            self._group = zarr.open_group(str(self.path), mode="r+", zarr_format=3)
            self.grid = Grid.from_json(self._group.attrs["wxembed_grid"])
        except (KeyError, ValueError, GridError) as exc:
            raise ArchiveError(f"{self.path}: not a wxembed archive ({exc})") from None
        missing = [v for v in ("reflectivity", "time", *_MANIFEST_VARS) if v not in self._group]
        if missing:
            raise ArchiveError(f"{self.path}: archive lacks variables {missing}")

    # ---- creation --------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        grid: Grid,
        *,
        title: str = "",
        source: str = "",
        exist_ok: bool = False,
    ) -> Archive:
        """Create an empty archive on ``grid``; with ``exist_ok``, open one that is already there
        (it must be on the same grid)."""
        path = Path(path)
        if (path / "zarr.json").exists():
            if not exist_ok:
                raise ArchiveError(f"{path}: an archive already exists here")
            return cls._reopen(path, grid)
        if path.exists() and any(path.iterdir()):
            raise ArchiveError(f"{path}: exists and is not an empty folder or an archive")
        path.parent.mkdir(parents=True, exist_ok=True)
        root = zarr.open_group(str(path), mode="w", zarr_format=3)
        root.attrs.update(_global_attrs(grid, title, source))
        _create_reflectivity(root, grid)
        _create_manifest(root)
        _create_coordinates(root, grid)
        log.info("created archive %s on %s", path, grid.describe())
        return cls(path)

    @classmethod
    def _reopen(cls, path: Path, grid: Grid) -> Archive:
        """The archive at ``path``, which must be on ``grid``."""
        archive = cls(path)
        try:
            archive.grid.check_same(grid, what=f"archive {path}")
        except GridError as exc:
            raise ArchiveError(f"{path}: {exc}; asked for {grid.describe()}") from None
        return archive

    # ---- the slot table and the manifest -----------------------------------------------------
    def _slot_seconds(self) -> np.ndarray:
        return np.asarray(self._group["time"][:], dtype=np.int64)

    @property
    def slot_times(self) -> np.ndarray:
        """Valid time of every slot, in slot order (not necessarily sorted)."""
        return from_seconds(self._slot_seconds())

    @contextmanager
    def _lock(self):
        # beside the store, not in it: zarr warns about foreign files inside a hierarchy
        with open(self.path.with_name(self.path.name + ".lock"), "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def allocate(self, times) -> np.ndarray:
        """Slots for ``times``: existing slots are reused, new times get new slots in time order.

        Returns the slot index of each time, in the order given.
        """
        wanted = to_seconds(times)
        if len(wanted) == 0:
            return np.zeros(0, dtype=np.int64)
        with self._lock():
            existing = self._slot_seconds()
            index = {int(t): i for i, t in enumerate(existing)}
            new = np.array(sorted({int(t) for t in wanted} - set(index)), dtype=np.int64)
            if len(new):
                n0, n1 = len(existing), len(existing) + len(new)
                for name in ("time", *_MANIFEST_VARS):
                    self._group[name].resize((n1,))
                # grow the image array last: a slot exists once its time is written
                refl = self._group["reflectivity"]
                refl.resize((n1, *refl.shape[1:]))
                self._group["time"][n0:n1] = new
                index.update({int(t): n0 + i for i, t in enumerate(new)})
                log.debug("allocated %d new slots in %s", len(new), self.path)
        return np.array([index[int(t)] for t in wanted], dtype=np.int64)

    def manifest(self) -> pd.DataFrame:
        """One row per slot, sorted by time: time, status, reason, missing_values, source, regime
        and the slot's index."""
        g = self._group
        n = g["time"].shape[0]
        df = pd.DataFrame(
            {
                "time": pd.to_datetime(self.slot_times),
                "status": pd.Categorical.from_codes(
                    np.asarray(g["status"][:]) if n else [], STATUS_NAMES
                ),
                "reason": np.asarray(g["reason"][:], dtype=object) if n else [],
                "missing_values": np.asarray(g["missing_values"][:]) if n else [],
                "source": np.asarray(g["source"][:], dtype=object) if n else [],
                "regime": np.asarray(g["regime"][:], dtype=object) if n else [],
            }
        )
        df["slot"] = np.arange(n)
        return df.sort_values("time", kind="stable").reset_index(drop=True)

    def stored_times(self) -> np.ndarray:
        """Valid times of the stored hours, sorted."""
        m = self.manifest()
        return m.loc[m.status == "stored", "time"].values.astype("datetime64[s]")

    def __len__(self) -> int:
        return int(np.count_nonzero(np.asarray(self._group["status"][:]) == STORED))

    def summary(self) -> dict[str, int]:
        counts = self.manifest().status.value_counts()
        return {name: int(counts.get(name, 0)) for name in STATUS_NAMES}

    # ---- writing -----------------------------------------------------------------------------
    def write(self, field: DecodedField, *, overwrite: bool = False) -> HourRecord:
        """Store one decoded field in its hour's slot and mark the hour stored.

        The field must be on the archive's grid (:class:`GridError` otherwise, and nothing is
        written). An hour already stored is left as it is unless ``overwrite``.
        """
        try:
            self.grid.check_same(
                field.grid, what=f"field for {format_time(field.time)} from {field.source or '?'}"
            )
        except GridError as exc:
            raise GridError(f"{exc} (archive {self.path})") from None
        if field.dbz.shape != self.grid.shape:
            raise GridError(
                f"field for {format_time(field.time)} has shape {field.dbz.shape}, "
                f"expected {self.grid.shape} (archive {self.path})"
            )
        (slot,) = self.allocate([field.time])
        g = self._group
        if not overwrite and int(g["status"][slot]) == STORED:
            log.debug("%s already stored in %s; left as it is", format_time(field.time), self.path)
            return HourRecord(as_time(field.time), "stored", "already stored", field.source)
        g["reflectivity"][slot] = encode_dbz(field.dbz)  # the image first ...
        g["missing_values"][slot] = int(field.missing_values)
        g["source"][slot] = field.source
        g["regime"][slot] = field.labels.get("regime", "")
        g["reason"][slot] = ""
        g["status"][slot] = STORED  # ... then the status that commits it
        return HourRecord(
            as_time(field.time), "stored", "", field.source, int(field.missing_values)
        )

    def record(self, time, status: str, reason: str, source: str = "") -> HourRecord:
        """Record an hour that could not be stored (``missing`` or ``failed``) with its reason.

        A stored hour is never downgraded: its data stay, and the event is only logged.
        """
        if status not in ("missing", "failed", "pending"):
            raise ValueError(f"status must be missing, failed or pending, not {status!r}")
        (slot,) = self.allocate([time])
        g = self._group
        if int(g["status"][slot]) == STORED:
            log.warning("%s is stored; not marking it %s (%s)", format_time(time), status, reason)
            return HourRecord(as_time(time), "stored", "already stored", source)
        g["reason"][slot] = reason
        g["source"][slot] = source
        g["status"][slot] = STATUS_NAMES.index(status)
        return HourRecord(as_time(time), status, reason, source)

    # ---- reading -----------------------------------------------------------------------------
    def _slots_of(self, times) -> np.ndarray:
        # A stored hour never changes slot, so the lookup is cached and re-read only on a miss.
        wanted = to_seconds(times)
        lookup = getattr(self, "_stored_slots", {})
        if any(int(t) not in lookup for t in wanted):
            m = self.manifest()
            stored = m[m.status == "stored"]
            lookup = dict(zip(to_seconds(stored.time.values).tolist(), stored.slot, strict=True))
            self._stored_slots = lookup
        slots = []
        for t in wanted:
            if int(t) not in lookup:
                raise ArchiveError(
                    f"{self.path}: {format_time(from_seconds([t])[0])} is not stored"
                )
            slots.append(lookup[int(t)])
        return np.asarray(slots, dtype=np.int64)

    def read_raw(self, times) -> np.ndarray:
        """uint8 codes of the given stored hours, shape ``(len(times), ny, nx)``."""
        if not len(np.atleast_1d(times)):
            return np.zeros((0, *self.grid.shape), np.uint8)
        refl = self._group["reflectivity"]
        return np.stack([refl[int(s)] for s in self._slots_of(times)])  # (n, ny, nx)

    def read_dbz(self, time) -> np.ndarray:
        """One stored hour in dBZ (float32, NaN = no data)."""
        return decode_raw(self.read_raw([time])[0])

    def dataset(self, *, all_slots: bool = False):
        """The archive as a lazy ``xarray.Dataset`` (dBZ decoded), stored hours sorted by time."""
        import xarray as xr  # slow to import, and only this view needs it

        ds = xr.open_zarr(str(self.path), consolidated=False, chunks=None)
        ds = ds.set_coords([v for v in ("lat", "lon", "crs") if v in ds])
        if all_slots:
            return ds.sortby("time")
        m = self.manifest()
        return ds.isel(time=m.loc[m.status == "stored", "slot"].to_numpy())


# ---- the layout, array by array (see the module docstring) -------------------------------------

_ZSTD = (ZstdCodec(level=5),)


def _global_attrs(grid: Grid, title: str, source: str) -> dict:
    """The root group's CF attributes, and the grid and version that made it."""
    created = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
    return {
        "Conventions": "CF-1.10",
        "title": title or f"Composite radar reflectivity on {grid.name}",
        "source": source,
        "institution": "made with wxembed",
        "history": f"{created} created by wxembed {__version__}",
        "wxembed_grid": grid.to_json(),
        "wxembed_version": __version__,
    }


def _create_reflectivity(root: zarr.Group, grid: Grid) -> None:
    """``reflectivity (time, y, x)``: uint8 codes, one hour a chunk, no hours yet."""
    ny, nx = grid.shape
    refl = root.create_array(
        "reflectivity",
        shape=(0, ny, nx),
        chunks=(1, ny, nx),
        dtype="uint8",
        fill_value=NODATA,
        compressors=list(_ZSTD),
        dimension_names=["time", "y", "x"],
    )
    refl.attrs.update(
        {
            "long_name": "composite radar reflectivity",
            "standard_name": "equivalent_reflectivity_factor",
            "units": "dBZ",
            "scale_factor": SCALE_FACTOR,
            "add_offset": ADD_OFFSET,
            "_FillValue": NODATA,
            "grid_mapping": "crs",
            "coordinates": "lat lon",
            "comment": f"no echo and missing points are stored as {ADD_OFFSET} dBZ; "
            "no data (outside coverage) as the fill value",
        }
    )


def _create_manifest(root: zarr.Group) -> None:
    """The slot table ``time`` and the manifest's arrays, all along ``time``, all empty."""
    time = root.create_array(
        "time", shape=(0,), chunks=(4096,), dtype="int64", fill_value=0, dimension_names=["time"]
    )
    time.attrs.update(
        {
            "standard_name": "time",
            "long_name": "valid time",
            "axis": "T",
            "units": "seconds since 1970-01-01",
            "calendar": "proleptic_gregorian",
        }
    )
    for name, dtype, fill, long_name in _MANIFEST_ARRAYS:
        arr = root.create_array(
            name, shape=(0,), chunks=(1,), dtype=dtype, fill_value=fill, dimension_names=["time"]
        )
        attrs: dict = {"long_name": long_name}
        if name == "status":
            attrs |= {"flag_values": list(range(4)), "flag_meanings": " ".join(STATUS_NAMES)}
        arr.attrs.update(attrs)


def _create_coordinates(root: zarr.Group, grid: Grid) -> None:
    """``y``, ``x``, 2-D ``lat`` and ``lon``, and the CF grid-mapping variable ``crs``."""
    for name, values in (("y", grid.y), ("x", grid.x)):
        arr = root.create_array(name, shape=values.shape, dtype="float64", dimension_names=[name])
        arr[:] = values
        arr.attrs.update(_axis_attrs(grid, name))
    lat, lon = grid.latlon()
    for name, values, units in [("lat", lat, "degrees_north"), ("lon", lon, "degrees_east")]:
        arr = root.create_array(
            name,
            shape=grid.shape,
            dtype="float32",
            compressors=list(_ZSTD),
            dimension_names=["y", "x"],
        )
        arr[:] = values.astype(np.float32)
        arr.attrs.update(
            {"units": units, "standard_name": "latitude" if name == "lat" else "longitude"}
        )
    crs = root.create_array("crs", shape=(), dtype="int32", fill_value=0, dimension_names=[])
    crs.attrs.update(grid.cf_grid_mapping())


def _axis_attrs(grid: Grid, axis: str) -> dict:
    if grid.is_geographic:
        if axis == "x":
            return {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}
        return {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}
    return {"standard_name": f"projection_{axis}_coordinate", "units": "m", "axis": axis.upper()}
