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
says which slots hold data. Slots are only ever added (by the driver of a run before its workers
start, under a lock: a file lock on a local disk, a lease object written with a create-if-absent
PUT on an object store), never moved. Each slot's image and manifest entries are objects of
their own (one chunk each), so a worker writing hour t touches only slot t's objects, without a
lock: the image first, then the provenance, then the status that commits it, then a read-back
that checks the image and its source agree (two runs writing the same hour at once end with one
whole record, and each learns which source won). A job killed at any point leaves an archive that
opens, whose stored hours are intact, and whose unfinished hours are still ``pending``; running
the job again fills them, each hour exactly once. Readers see stored hours only, sorted by time.

The archive may be a local folder or an object-store URL (``s3://bucket/hrrr.zarr``,
``memory://...``; see :mod:`wxembed.locations`). Creating one is claimed by writing the root
``zarr.json`` with a create-if-absent write, marked ``creating`` until its arrays exist, so two
processes creating the same archive at once cannot mix their arrays: one creates it, the other
gets :class:`ArchiveError` (or, with ``exist_ok``, opens it once it is ready).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import time as clock
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from wxembed import locations as loc
from wxembed.archive.layout import (
    FAILED,
    MANIFEST_VARS,
    MISSING,
    PENDING,
    STATUS_NAMES,
    STORED,
    create_coordinates,
    create_manifest,
    create_reflectivity,
    global_attrs,
)
from wxembed.errors import ArchiveError, GridError
from wxembed.grid import Grid
from wxembed.reflectivity import decode_raw, encode_dbz
from wxembed.sources import DecodedField
from wxembed.times import as_time, format_time, from_seconds, to_seconds

log = logging.getLogger(__name__)

CREATING, READY = "creating", "ready"
"""The root group's ``wxembed_state`` while an archive is being created, and after."""
_COMMIT_TRIES = 8
"""Commits of one hour before a writer gives up on a slot another keeps overwriting."""
_LEASE_SECONDS = 120.0
"""Age after which a slot-table lease on an object store is taken as abandoned."""


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
        self.path: Path | str = loc.location(path)
        """A local folder (:class:`Path`) or an object-store URL (``str``)."""
        if not loc.exists(loc.join(self.path, "zarr.json")):
            raise ArchiveError(f"{self.path}: no archive here (no zarr.json); create one first")
        try:
            self._group = zarr.open_group(store=loc.zarr_store(self.path), mode="r+")
            attrs = self._group.attrs
            if attrs.get("wxembed_state") == CREATING:
                raise ArchiveError(
                    f"{self.path}: the archive is being created by another process (or its "
                    "creation was interrupted: then remove it and create it again)"
                )
            self.grid = Grid.from_json(attrs["wxembed_grid"])
        except (KeyError, ValueError, GridError) as exc:
            raise ArchiveError(f"{self.path}: not a wxembed archive ({exc})") from None
        missing = [v for v in ("reflectivity", "time", *MANIFEST_VARS) if v not in self._group]
        if missing:
            raise ArchiveError(f"{self.path}: archive lacks variables {missing}")

    @property
    def group(self) -> zarr.Group:
        """The archive's root Zarr group (read it; write through the methods)."""
        return self._group

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
        (it must be on the same grid), waiting for one another process is creating.

        Two processes creating the same archive at once: one creates it; the other gets
        :class:`ArchiveError` ("an archive already exists here"), or opens it with ``exist_ok``.
        """
        path = loc.location(path)
        root_meta = loc.join(path, "zarr.json")
        if not loc.exists(root_meta) and isinstance(path, Path) and path.exists():
            if not path.is_dir() or any(p.name != "zarr.json" for p in path.iterdir()):
                raise ArchiveError(f"{path}: exists and is not an empty folder or an archive")
        attrs = {**global_attrs(grid, title, source), "wxembed_state": CREATING}
        claim = {"zarr_format": 3, "node_type": "group", "attributes": attrs}
        if not loc.put_if_absent(root_meta, json.dumps(claim).encode()):
            if not exist_ok:
                raise ArchiveError(f"{path}: an archive already exists here")
            return cls._reopen(path, grid)
        root = zarr.open_group(store=loc.zarr_store(path), mode="r+")
        create_reflectivity(root, grid)
        create_manifest(root)
        create_coordinates(root, grid)
        root.attrs["wxembed_state"] = READY  # the archive opens from here on
        log.info("created archive %s on %s", path, grid.describe())
        return cls(path)

    @classmethod
    def _reopen(cls, path: Path | str, grid: Grid, wait: float = 60.0) -> Archive:
        """The archive at ``path``, which must be on ``grid``; one that another process is still
        creating is waited for, ``wait`` seconds at most."""
        deadline = clock.monotonic() + wait
        while True:
            try:
                archive = cls(path)
                break
            except ArchiveError as exc:
                if "being created" not in str(exc) or clock.monotonic() > deadline:
                    raise
                clock.sleep(0.2)
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
        """Only one process adds slots at a time: a file lock beside a local archive (not in it:
        zarr warns about foreign files inside a hierarchy), a lease object on an object store."""
        if isinstance(self.path, str):
            with _lease(loc.sibling(self.path, ".lock")):
                yield
            return
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
        # slots never move, so the table read last is good for every time it holds; it is read
        # again only on a miss (one GET per 4096 slots on an object store)
        index = getattr(self, "_slot_index", {})
        if any(int(t) not in index for t in wanted):
            index = {int(t): i for i, t in enumerate(self._slot_seconds())}
            self._slot_index = index
        if all(int(t) in index for t in wanted):  # the common case in a worker: no lock
            return np.array([index[int(t)] for t in wanted], dtype=np.int64)
        with self._lock():
            existing = self._slot_seconds()
            index = {int(t): i for i, t in enumerate(existing)}
            new = np.array(sorted({int(t) for t in wanted} - set(index)), dtype=np.int64)
            if len(new):
                n0, n1 = len(existing), len(existing) + len(new)
                for name in ("time", *MANIFEST_VARS):
                    self._group[name].resize((n1,))
                # grow the image array last: a slot exists once its time is written
                refl = self._group["reflectivity"]
                refl.resize((n1, *refl.shape[1:]))
                self._group["time"][n0:n1] = new
                index.update({int(t): n0 + i for i, t in enumerate(new)})
                log.debug("allocated %d new slots in %s", len(new), self.path)
            self._slot_index = index
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
        image = encode_dbz(field.dbz)
        for attempt in range(_COMMIT_TRIES):
            self._commit(slot, image, field)
            other = self._committed_by_another(slot, image, field.source)
            if other is not None:
                break
            clock.sleep(random.uniform(0.02, 0.2) * (attempt + 1))  # torn: write again, later
        else:
            raise ArchiveError(
                f"{self.path}: {format_time(field.time)} kept being overwritten by another "
                f"writer; {field.source} not committed"
            )
        if other:
            return HourRecord(
                as_time(field.time), "superseded", f"another writer stored {other} first"
            )
        return HourRecord(
            as_time(field.time), "stored", "", field.source, int(field.missing_values)
        )

    def _commit(self, slot: int, image: np.ndarray, field: DecodedField) -> None:
        """Write one hour's objects: the image first, then its provenance, then the status that
        commits it. A slot that held another outcome is marked pending first, so an interrupted
        write never leaves the old status over the new provenance."""
        g = self._group
        if int(g["status"][slot]) != PENDING:
            g["status"][slot] = PENDING
        g["reflectivity"][slot] = image  # the image first ...
        g["missing_values"][slot] = int(field.missing_values)
        g["source"][slot] = field.source
        g["regime"][slot] = field.labels.get("regime", "")
        g["reason"][slot] = ""
        g["status"][slot] = STORED  # ... then the status that commits it

    def _committed_by_another(self, slot: int, image: np.ndarray, source: str) -> str | None:
        """After a commit: "" when the slot holds this writer's image and source, the other
        source when another writer's provenance came last (its image then stands, or it is
        repairing its own), None when the slot holds this source over another image (torn by
        a concurrent writer of the same hour: write again)."""
        g = self._group
        stored_source = str(g["source"][slot])
        if stored_source != source:
            return stored_source
        return "" if np.array_equal(g["reflectivity"][slot], image) else None

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

        ds = xr.open_zarr(
            loc.zarr_store(self.path, read_only=True), consolidated=False, chunks=None
        )
        ds = ds.set_coords([v for v in ("lat", "lon", "crs") if v in ds])
        if all_slots:
            return ds.sortby("time")
        m = self.manifest()
        return ds.isel(time=m.loc[m.status == "stored", "slot"].to_numpy())


@contextmanager
def _lease(where: str):
    """Hold the object ``where`` (created with a create-if-absent write) while the body runs;
    one older than ``_LEASE_SECONDS`` was left by a killed process and is taken over."""
    token = f"{os.getpid()}-{random.getrandbits(64):016x}".encode()
    deadline = clock.monotonic() + 10 * _LEASE_SECONDS
    while not loc.put_if_absent(
        where, json.dumps({"t": clock.time(), "by": token.decode()}).encode()
    ):
        try:
            held = json.loads(loc.read_bytes(where))
        except (FileNotFoundError, ValueError):
            continue  # released (or half written) this instant: try again
        if clock.time() - float(held.get("t", 0)) > _LEASE_SECONDS:
            log.warning("%s: taking over a lease left by %s", where, held.get("by"))
            loc.remove(where)
        elif clock.monotonic() > deadline:
            raise ArchiveError(f"{where}: the archive's slot table stayed locked")
        clock.sleep(random.uniform(0.05, 0.25))
    try:
        yield
    finally:
        loc.remove(where)


__all__ = [
    "FAILED",
    "MISSING",
    "PENDING",
    "STATUS_NAMES",
    "STORED",
    "Archive",
    "HourRecord",
    "decode_raw",
    "encode_dbz",
]
