"""Ingest: radar files (or synthetic hours) -> decode -> the Zarr archive, as a Beam pipeline.

    root | Create(tasks) | Reshuffle() | Map(store_hour) | Map(json.dumps) | WriteToText(report)

Each task is one hour: a file to decode, or a time for the synthetic generator. A worker decodes
it and writes it into its slot of the archive (see :mod:`wxembed.archive`), or records why it
could not: ``missing`` (the source has no such hour, e.g. no REFC message) or ``failed`` (a
damaged file, another grid, any error), with the reason. No hour is dropped silently. Hours
already stored are skipped before any work, so an interrupted ingest resumes where it stopped.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

import apache_beam as beam
import numpy as np

from wxembed import locations as loc
from wxembed.archive import Archive, HourRecord
from wxembed.errors import ArchiveError, GridError, MissingHour, SourceError, WxembedError
from wxembed.grid import Grid
from wxembed.pipelines import beam_pipeline, check_runner
from wxembed.pipelines.progress import Ledger, progress_bar, temporary_ledger
from wxembed.pipelines.workers import worker_errors
from wxembed.sources import DecodedField
from wxembed.sources import hrrr as hrrr_layout
from wxembed.sources.formats import (
    FOLDER_KINDS,
    INPUT_PATTERNS,
    Reader,
    Reshape,
    choose_kind,
    frames,
    reader_for,
)
from wxembed.sources.synthetic import SynthConfig, render_hour
from wxembed.times import format_time, hour_range, to_seconds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One hour to ingest."""

    key: str
    """What the reader reads: a file path, or an ISO time for generated data."""
    time: str | None = None
    """Valid time if known before reading (ISO, UTC), so stored hours can be skipped."""


@dataclass
class IngestReport:
    """What an ingest did, hour by hour."""

    archive: Path
    """The archive written to."""
    records: list[dict] = field(default_factory=list)
    """One manifest record per hour worked on (time, status, reason, source, missing_values),
    sorted by time."""
    skipped: int = 0
    """Hours skipped because the archive already held them."""

    def counts(self) -> dict[str, int]:
        """Hours stored, missing, failed and skipped."""
        out = {"stored": 0, "missing": 0, "failed": 0, "skipped": self.skipped}
        for r in self.records:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    def problems(self) -> list[dict]:
        """The records of the hours that ended missing or failed."""
        return [r for r in self.records if r["status"] in ("missing", "failed")]


def expand_inputs(inputs: Sequence[str | Path] | str | Path, *, fxx: int | None = 0) -> list[Path]:
    """Files from a folder in the NOAA layout (or holding radar files), globs, or plain paths."""
    if isinstance(inputs, str | Path):
        inputs = [inputs]
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = hrrr_layout.find_layout_files(p, fxx)
            if not found:  # files only: a folder named like one (x.grib2/) is no input
                found = sorted(q for pat in INPUT_PATTERNS for q in p.glob(pat) if q.is_file())
            if not found:
                raise SourceError(f"{p}: no {FOLDER_KINDS} files found in this folder")
            files += found
        elif any(c in str(item) for c in "*?["):
            matched = sorted(Path(m) for m in glob(str(item), recursive=True))
            matched = [m for m in matched if not m.is_dir()]  # a missing file: per hour
            if not matched:
                raise SourceError(f"{item}: the pattern matches no files")
            files += matched
        else:
            files.append(p)  # a missing file is reported per hour, not here
    return list(dict.fromkeys(files))


# ---- the worker step -----------------------------------------------------------------------
def store_hour(
    task: Task,
    reader: Reader,
    archive_path: str,
    ledger: str | None = None,
    archive: Archive | None = None,
) -> dict:
    """Read one task and write it into the archive (``archive``, when the caller opened it
    already); return its manifest record as a dict.

    Every outcome ends in the manifest when the hour's time is known; only a file whose time
    cannot be told (unreadable and not named by time) is reported in the returned record alone.
    """
    archive = archive if archive is not None else Archive(archive_path)
    time = np.datetime64(task.time, "s") if task.time else None
    try:
        rec = _store(archive, task, reader, time)
    except OSError as exc:  # the archive's disk: full, read-only, gone; every hour would fail
        raise ArchiveError(
            f"{archive_path}: cannot write to the archive ({exc.strerror or exc}); the hours "
            "stored so far are intact: free space or fix the folder, then run the same "
            "command again"
        ) from None
    if rec.status != "stored":
        log.warning("%s", rec.reason)
    record = {
        "time": None if rec.time is None else str(rec.time),
        "status": rec.status,
        "reason": rec.reason,
        "source": rec.source,
        "missing_values": rec.missing_values,
    }
    if ledger:  # the bar's count, and the one record of an hour whose time was never known
        Ledger(ledger).append("hour", rec.status, json.dumps({"key": task.key, **record}))
    return record


def _store(archive: Archive, task: Task, reader: Reader, time) -> HourRecord:
    """Read ``task`` and store it, or record why not; an ``OSError`` of the archive's own
    writes propagates. File names that are not UTF-8 (Latin-1 shares) are kept escaped."""
    key = printable(task.key)
    try:
        decoded = reader(task.key)
        if time is not None and decoded.time != time:
            raise SourceError(
                f"{key}: holds {format_time(decoded.time)}, expected {format_time(time)}"
            )
        decoded.source = printable(decoded.source)
    except MissingHour as exc:
        return _record(archive, time, "missing", printable(str(exc)), key)
    except (SourceError, GridError) as exc:
        return _record(archive, time, "failed", printable(str(exc)), key)
    except WxembedError:
        raise  # an archive problem stops the job: nothing can be recorded reliably
    except Exception as exc:  # noqa: BLE001 - any other failure of one hour is recorded, not fatal
        log.exception("unexpected error on %s", key)
        reason = printable(f"{key}: unexpected {type(exc).__name__}: {exc}")
        return _record(archive, time, "failed", reason, key)
    try:
        return archive.write(decoded)
    except GridError as exc:
        return _record(archive, time, "failed", printable(str(exc)), key)


def printable(text: str) -> str:
    """``text`` as UTF-8 can hold it: a file name's undecodable bytes (which Python keeps as
    lone surrogates) written as ``\\xe9`` escapes, so it can be stored and shown."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class StoreHours(beam.DoFn):
    """:func:`store_hour` for each task, with the archive opened once per worker (its slot
    table read once, not for every hour: on an object store that is requests saved). Yields
    nothing: the outcomes are in the manifest."""

    def __init__(self, reader: Reader, archive_path: str, ledger: str | None):
        self.reader, self.archive_path, self.ledger = reader, archive_path, ledger

    def setup(self) -> None:
        self._archive = Archive(self.archive_path)

    def process(self, task: Task):
        store_hour(task, self.reader, self.archive_path, self.ledger, archive=self._archive)
        return iter(())


def _record(archive: Archive, time, status: str, reason: str, source: str) -> HourRecord:
    if time is None:
        return HourRecord(None, status, reason, source)  # type: ignore[arg-type]
    return archive.record(time, status, reason, source)


# ---- the pipeline ----------------------------------------------------------------------------
def run_tasks(
    tasks: Sequence[Task],
    reader: Reader,
    archive: Archive,
    *,
    beam_args: Sequence[str] | None = None,
    workers: int = 2,
    progress: bool = True,
    label: str = "ingest",
    ledger: Ledger | None = None,
    postfix: Callable[[list[list[str]], float], str] | None = None,
) -> IngestReport:
    """Run ``tasks`` through the Beam pipeline into ``archive``; skip hours already stored.

    With ``progress``, a bar counts the hours the workers finish (in ``ledger``, or a
    temporary one); ``postfix`` adds a note to it (see
    :func:`~wxembed.pipelines.progress.progress_bar`).
    """
    check_runner(beam_args)
    stored = set(to_seconds(archive.stored_times()).tolist())
    todo = [t for t in tasks if t.time is None or int(to_seconds(t.time)[0]) not in stored]
    waiting = {id(t) for t in todo}
    done = [t for t in tasks if id(t) not in waiting]
    # an hour stored from another file than this run's is reported as superseded, naming it
    others = (
        [r for r in records_of(archive, done, []) if r["status"] == "superseded"] if done else []
    )
    report = IngestReport(archive=archive.path, records=others, skipped=len(done) - len(others))
    if done:
        log.info("%d of %d hours already stored; skipping them", len(done), len(tasks))
    if not todo:
        return report
    # Give known hours their slots up front, in time order; others get one when decoded.
    try:
        archive.allocate([t.time for t in todo if t.time is not None])
    except OSError as exc:
        problem = exc.strerror or exc
        raise ArchiveError(f"{archive.path}: cannot write to the archive ({problem})") from None
    with temporary_ledger() as own:
        ledger = ledger if ledger is not None else own  # an empty Ledger is falsy
        store = StoreHours(reader, str(archive.path), ledger.folder)
        bar = progress_bar(
            ledger if progress else None, len(todo), label, postfix=postfix, count=_hours_done
        )
        n_workers = min(workers, len(todo))
        with (
            worker_errors(),
            bar,
            beam_pipeline(beam_args, workers=n_workers, items=len(todo)) as root,
        ):
            _ = (
                root
                | "Hours" >> beam.Create(todo)
                | "Spread" >> beam.Reshuffle()
                | "Store" >> beam.ParDo(store)
            )
        report.records += records_of(archive, todo, ledger.rows())
    report.records.sort(key=lambda r: (r["time"] is None, r["time"] or "", r["source"]))
    return report


def records_of(archive: Archive, tasks: Sequence[Task], rows: list[list[str]]) -> list[dict]:
    """What became of each task, read back from the archive's manifest (whatever runner ran
    them, and whoever else wrote the same hours), sorted by time.

    A task whose file holds an hour another run stored from another file is ``superseded``,
    its reason naming the file that won. Only a task whose hour could not be told (a file not
    named by time that could not be read) has no manifest row: its record comes from the
    worker's line in the progress ledger, where one reached it.
    """
    m = Archive(archive.path).manifest()
    by_time = {
        int(s): row for s, row in zip(to_seconds(m.time.values), m.itertuples(), strict=True)
    }
    by_source = {row.source: row for row in m.itertuples() if row.source}
    from_workers = {}
    for r in rows:
        if r[0] == "hour" and len(r) == 3:
            rec = json.loads(r[2])
            from_workers[rec.pop("key")] = rec
    records = []
    for task in tasks:
        key = printable(task.key)  # as the manifest holds it
        row = by_time.get(int(to_seconds(task.time)[0])) if task.time else by_source.get(key)
        if row is None or row.status == "pending":
            records.append(from_workers.get(task.key) or _no_outcome(task))
            continue
        rec = {
            "time": str(np.datetime64(row.time, "s")),
            "status": str(row.status),
            "reason": row.reason,
            "source": row.source,
            "missing_values": int(row.missing_values),
        }
        if rec["status"] == "stored" and task.key != task.time and row.source != key:
            rec["status"] = "superseded"
            rec["reason"] = f"{row.source} is stored for this hour (another run); {key} unused"
        records.append(rec)
    records.sort(key=lambda r: (r["time"] is None, r["time"] or "", r["source"]))
    return records


def _no_outcome(task: Task) -> dict:
    """The record of a task that left no trace: its worker was lost before recording it."""
    return {
        "time": task.time,
        "status": "failed",
        "reason": printable(f"{task.key}: no outcome was recorded (its worker was lost?)"),
        "source": printable(task.key),
        "missing_values": 0,
    }


def _hours_done(rows: list[list[str]]) -> int:
    """Hours finished, as the ledger's ``hour`` rows count them."""
    return sum(1 for r in rows if r[0] == "hour")


def ingest_files(
    inputs: Sequence[str | Path] | str | Path,
    archive_path: str | Path,
    *,
    kind: str = "auto",
    fxx: int | None = 0,
    variable: str | None = None,
    reshape: Reshape | None = None,
    beam_args: Sequence[str] | None = None,
    workers: int = 2,
    progress: bool = True,
) -> IngestReport:
    """Ingest radar files (HRRR or MRMS GRIB2, FMI PGM, ODIM HDF5, CF NetCDF: the kind told by
    content unless ``kind`` says) into an archive, creating it if needed on the grid of the
    first readable file; ``variable`` names a NetCDF file's variable, ``reshape`` cuts each
    field to a lon/lat box and coarsens it (see :class:`~wxembed.sources.formats.Reshape`)."""
    files = expand_inputs(inputs, fxx=fxx)
    if not files:
        raise SourceError("no input files given")
    chosen = choose_kind(files, kind)
    reader = reader_for(chosen, variable=variable, reshape=reshape)
    tasks = [Task(key=k, time=t) for f in files for k, t in frames(f, chosen, variable)]
    note = "" if reshape is None else f"; each field {reshape.describe()}"
    archive = _open_or_create(archive_path, [t.key for t in tasks], reader, note)
    return run_tasks(
        tasks, reader, archive, beam_args=beam_args, workers=workers, progress=progress
    )


def _open_or_create(
    archive_path: str | Path, files: Sequence[str], reader: Reader, note: str = ""
) -> Archive:
    path = loc.location(archive_path)
    if loc.exists(loc.join(path, "zarr.json")):
        return Archive(path)
    errors = []
    for f in files:  # the first readable file gives the grid; the others are recorded per hour
        try:
            grid: Grid = reader(str(f)).grid
            break
        except (SourceError, GridError, OSError) as exc:
            errors.append(printable(str(exc)))
    else:
        raise SourceError(
            "cannot create the archive: no input could be read: " + "; ".join(errors[:3])
        )
    try:
        return Archive.create(  # exist_ok: another ingest creating it at the same time wins
            path,
            grid,
            source=printable(f"radar files ingested by wxembed, the first {f}{note}"),
            exist_ok=True,
        )
    except OSError as exc:
        raise ArchiveError(f"{path}: cannot create the archive here ({exc.strerror})") from None


def synth_reader(config: SynthConfig) -> Reader:
    """A reader that renders the synthetic generator's hour for a task key (an ISO time)."""
    return functools.partial(_render, config=config)


def _render(key: str, *, config: SynthConfig) -> DecodedField:
    return render_hour(config, np.datetime64(key, "s"))


def ingest_synthetic(
    config: SynthConfig,
    start,
    hours: int,
    archive_path: str | Path,
    *,
    beam_args: Sequence[str] | None = None,
    workers: int = 2,
    progress: bool = True,
) -> IngestReport:
    """Generate ``hours`` synthetic hours from ``start`` straight into an archive."""
    archive = Archive.create(
        archive_path,
        config.grid,
        exist_ok=True,
        title="Synthetic composite reflectivity (wxembed)",
        source=f"wxembed synthetic storm generator, seed {config.seed}",
    )
    tasks = [Task(key=str(t), time=str(t)) for t in hour_range(start, hours)]
    reader = synth_reader(config)
    return run_tasks(
        tasks,
        reader,
        archive,
        beam_args=beam_args,
        workers=workers,
        progress=progress,
        label="synth",
    )


def describe_report(report: IngestReport) -> str:
    """One line: the archive and how many hours were stored, missing, failed or skipped."""
    c = report.counts()
    line = (
        f"{report.archive}: {c['stored']} stored, {c['missing']} missing, {c['failed']} failed, "
        f"{c['skipped']} already there"
    )
    lost = [r for r in report.records if r["status"] == "superseded"]
    if lost:
        winners = sorted({r["source"] for r in lost})
        line += (
            f"; {len(lost)} superseded: another run stored those hours first, from "
            f"{winners[0]}" + (f" and {len(winners) - 1} other files" if len(winners) > 1 else "")
        )
    return line


__all__ = [
    "IngestReport",
    "Task",
    "describe_report",
    "expand_inputs",
    "ingest_files",
    "ingest_synthetic",
    "run_tasks",
    "store_hour",
    "synth_reader",
]
