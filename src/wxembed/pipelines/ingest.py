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
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

import apache_beam as beam
import numpy as np

from wxembed.archive import Archive, HourRecord
from wxembed.errors import GridError, MissingHour, SourceError, WxembedError
from wxembed.grid import Grid
from wxembed.pipelines import pipeline_options
from wxembed.pipelines.progress import Ledger, progress_bar, temporary_ledger
from wxembed.sources import DecodedField
from wxembed.sources import hrrr as hrrr_layout
from wxembed.sources.formats import (
    INPUT_PATTERNS,
    KINDS,
    READERS,
    Reader,
    kind_of,
    time_from_path,
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
            if not found:
                found = sorted(q for pat in INPUT_PATTERNS for q in p.glob(pat))
            if not found:
                raise SourceError(f"{p}: no GRIB2 or PGM files found in this folder")
            files += found
        elif any(c in str(item) for c in "*?["):
            matched = sorted(Path(m) for m in glob(str(item), recursive=True))
            if not matched:
                raise SourceError(f"{item}: the pattern matches no files")
            files += matched
        else:
            files.append(p)  # a missing file is reported per hour, not here
    return list(dict.fromkeys(files))


# ---- the worker step -----------------------------------------------------------------------
def store_hour(task: Task, reader: Reader, archive_path: str, ledger: str | None = None) -> dict:
    """Read one task and write it into the archive; return its manifest record as a dict.

    Every outcome ends in the manifest when the hour's time is known; only a file whose time
    cannot be told (unreadable and not named by time) is reported in the returned record alone.
    """
    archive = Archive(archive_path)
    time = np.datetime64(task.time, "s") if task.time else None
    try:
        decoded = reader(task.key)
        if time is not None and decoded.time != time:
            raise SourceError(
                f"{task.key}: holds {format_time(decoded.time)}, expected {format_time(time)}"
            )
        rec = archive.write(decoded)
    except MissingHour as exc:
        rec = _record(archive, time, "missing", str(exc), task.key)
    except (SourceError, GridError) as exc:
        rec = _record(archive, time, "failed", str(exc), task.key)
    except WxembedError:
        raise  # an archive problem stops the job: nothing can be recorded reliably
    except Exception as exc:  # noqa: BLE001 - any other failure of one hour is recorded, not fatal
        log.exception("unexpected error on %s", task.key)
        rec = _record(
            archive, time, "failed", f"{task.key}: unexpected {type(exc).__name__}: {exc}", task.key
        )
    if rec.status != "stored":
        log.warning("%s", rec.reason)
    if ledger:
        Ledger(ledger).append("hour", rec.status)
    return {
        "time": None if rec.time is None else str(rec.time),
        "status": rec.status,
        "reason": rec.reason,
        "source": rec.source,
        "missing_values": rec.missing_values,
    }


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
    stored = set(to_seconds(archive.stored_times()).tolist())
    todo = [t for t in tasks if t.time is None or int(to_seconds(t.time)[0]) not in stored]
    report = IngestReport(archive=archive.path, skipped=len(tasks) - len(todo))
    if report.skipped:
        log.info("%d of %d hours already stored; skipping them", report.skipped, len(tasks))
    if not todo:
        return report
    # Give known hours their slots up front, in time order; others get one when decoded.
    archive.allocate([t.time for t in todo if t.time is not None])
    with temporary_ledger() as own, tempfile.TemporaryDirectory(prefix="wxembed-ingest-") as tmp:
        ledger = ledger or own
        out = str(Path(tmp) / "records")
        store = functools.partial(
            store_hour,
            reader=reader,
            archive_path=str(archive.path),
            ledger=ledger.folder if progress else None,
        )
        options = pipeline_options(beam_args, workers=min(workers, len(todo)))
        bar = progress_bar(
            ledger if progress else None, len(todo), label, postfix=postfix, count=_hours_done
        )
        with bar, beam.Pipeline(options=options) as root:
            _ = (
                root
                | "Hours" >> beam.Create(todo)
                | "Spread" >> beam.Reshuffle()
                | "Store" >> beam.Map(store)
                | "AsJson" >> beam.Map(json.dumps)
                | "Report" >> beam.io.WriteToText(out, file_name_suffix=".jsonl")
            )
        for part in sorted(Path(tmp).glob("records*.jsonl")):
            report.records += [json.loads(line) for line in part.read_text().splitlines() if line]
    report.records.sort(key=lambda r: (r["time"] is None, r["time"] or "", r["source"]))
    return report


def _hours_done(rows: list[list[str]]) -> int:
    """Hours finished, as the ledger's ``hour`` rows count them."""
    return sum(1 for r in rows if r[0] == "hour")


def ingest_files(
    inputs: Sequence[str | Path] | str | Path,
    archive_path: str | Path,
    *,
    kind: str = "auto",
    fxx: int | None = 0,
    beam_args: Sequence[str] | None = None,
    workers: int = 2,
    progress: bool = True,
) -> IngestReport:
    """Ingest radar files (HRRR GRIB2, MRMS GRIB2 or FMI PGM) into an archive, creating it if
    needed on the grid of the first readable file."""
    if kind not in KINDS:
        raise SourceError(f"unknown input kind {kind!r}; expected one of {', '.join(KINDS)}")
    files = expand_inputs(inputs, fxx=fxx)
    if not files:
        raise SourceError("no input files given")
    kinds = {kind_of(f) for f in files} if kind == "auto" else {kind}
    if len(kinds) > 1:
        raise SourceError(
            f"inputs mix kinds {sorted(kinds)}; ingest one kind per archive or pass --kind"
        )
    reader = READERS[kinds.pop()]
    archive = _open_or_create(archive_path, files, reader)
    tasks = []
    for f in files:
        t = time_from_path(f)
        tasks.append(Task(key=str(f), time=None if t is None else str(t)))
    return run_tasks(
        tasks, reader, archive, beam_args=beam_args, workers=workers, progress=progress
    )


def _open_or_create(archive_path: str | Path, files: Sequence[Path], reader: Reader) -> Archive:
    path = Path(archive_path)
    if (path / "zarr.json").exists():
        return Archive(path)
    errors = []
    for f in files:  # the first readable file gives the grid
        try:
            grid: Grid = reader(str(f)).grid
            break
        except SourceError as exc:
            errors.append(str(exc))
    else:
        raise SourceError(
            "cannot create the archive: no input could be read: " + "; ".join(errors[:3])
        )
    return Archive.create(
        path, grid, source=f"radar files ingested by wxembed, the first {files[0]}"
    )


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
    return (
        f"{report.archive}: {c['stored']} stored, {c['missing']} missing, {c['failed']} failed, "
        f"{c['skipped']} already there"
    )


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
