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
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

import numpy as np

from wxembed.archive import Archive, HourRecord, format_time, to_seconds
from wxembed.errors import GridError, MissingHour, SourceError, WxembedError
from wxembed.grid import Grid
from wxembed.pipelines import pipeline_options
from wxembed.sources import DecodedField
from wxembed.sources import hrrr as hrrr_layout

log = logging.getLogger(__name__)

Reader = Callable[[str], DecodedField]
"""Turns a task key (a path, or a time for synthetic data) into a decoded field."""

KINDS = ("auto", "hrrr", "mrms", "fmi")


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
    records: list[dict] = field(default_factory=list)
    skipped: int = 0

    def counts(self) -> dict[str, int]:
        out = {"stored": 0, "missing": 0, "failed": 0, "skipped": self.skipped}
        for r in self.records:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    def problems(self) -> list[dict]:
        return [r for r in self.records if r["status"] in ("missing", "failed")]


# ---- readers -------------------------------------------------------------------------------
def read_hrrr(path: str) -> DecodedField:
    from wxembed.sources.grib import decode_refc

    field_ = decode_refc(path)
    expected = hrrr_layout.valid_time_from_path(path)
    if expected is not None and expected != field_.time:
        raise SourceError(f"{path}: REFC is valid at {format_time(field_.time)}, but the path says "
                          f"{format_time(expected)}")  # fmt: skip
    return field_


def read_mrms(path: str) -> DecodedField:
    from wxembed.sources.mrms import read_mrms as _read

    return _read(path)


def read_fmi(path: str) -> DecodedField:
    from wxembed.sources.fmi import read_fmi as _read

    return _read(path)


def kind_of(path: str | Path) -> str:
    name = Path(path).name
    if name.endswith((".pgm", ".pgm.gz")):
        return "fmi"
    if "mrms" in name.lower() or "MergedReflectivity" in name:
        return "mrms"
    return "hrrr"


READERS: dict[str, Reader] = {"hrrr": read_hrrr, "mrms": read_mrms, "fmi": read_fmi}

_NAME_TIME_RE = re.compile(r"(\d{8})[-_]?(\d{4})(\d{2})?(?!\d)")


def time_from_path(path: str | Path) -> np.datetime64 | None:
    """Valid time from a file's path: the NOAA HRRR layout, or a YYYYMMDD[-_]HHMM[SS] in its name."""
    t = hrrr_layout.valid_time_from_path(path)
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
                found = sorted(
                    q
                    for pat in ("**/*.grib2", "**/*.grib2.gz", "**/*.pgm", "**/*.pgm.gz")
                    for q in p.glob(pat)
                )
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
        _append_ledger(ledger, rec.status)
    return {
        "time": None if rec.time is None else str(rec.time),
        "status": rec.status,
        "reason": rec.reason,
        "source": rec.source,
        "missing_values": rec.missing_values,
    }


def _append_ledger(ledger: str, status: str) -> None:
    """One line per finished hour, for the progress bar (a local file; best effort)."""
    try:
        with open(Path(ledger) / f"hours-{os.getpid()}.tsv", "a") as fh:
            fh.write(f"{status}\n")
    except OSError:  # a worker on another machine: no progress bar, nothing else lost
        pass


def _count_ledger(ledger: str) -> int:
    return sum(len(p.read_text().splitlines()) for p in Path(ledger).glob("hours-*.tsv"))


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
) -> IngestReport:
    """Run ``tasks`` through the Beam pipeline into ``archive``; skip hours already stored."""
    import apache_beam as beam

    stored = set(to_seconds(archive.stored_times()).tolist())
    todo = [t for t in tasks if t.time is None or int(to_seconds(t.time)[0]) not in stored]
    report = IngestReport(archive=archive.path, skipped=len(tasks) - len(todo))
    if report.skipped:
        log.info("%d of %d hours already stored; skipping them", report.skipped, len(tasks))
    if not todo:
        return report
    # Give known hours their slots up front, in time order; others get one when decoded.
    archive.allocate([t.time for t in todo if t.time is not None])
    with tempfile.TemporaryDirectory(prefix="wxembed-ingest-") as tmp:
        out = str(Path(tmp) / "records")
        ledger = Path(tmp) / "ledger"
        ledger.mkdir()
        stop = threading.Event()
        watcher = threading.Thread(
            target=_show_progress, args=(str(ledger), len(todo), stop, label), daemon=True
        )
        if progress:
            watcher.start()
        try:
            with beam.Pipeline(
                options=pipeline_options(beam_args, workers=min(workers, len(todo)))
            ) as root:
                _ = (
                    root
                    | "Hours" >> beam.Create(todo)
                    | "Spread" >> beam.Reshuffle()
                    | "Store" >> beam.Map(store_hour, reader=reader, archive_path=str(archive.path),
                                          ledger=str(ledger) if progress else None)
                    | "AsJson" >> beam.Map(json.dumps)
                    | "Report" >> beam.io.WriteToText(out, file_name_suffix=".jsonl")
                )  # fmt: skip
        finally:
            stop.set()
            if progress:
                watcher.join()
        for part in sorted(Path(tmp).glob("records*.jsonl")):
            report.records += [json.loads(line) for line in part.read_text().splitlines() if line]
    report.records.sort(key=lambda r: (r["time"] is None, r["time"] or "", r["source"]))
    return report


def _show_progress(ledger: str, total: int, stop: threading.Event, label: str) -> None:
    """A progress bar fed by the workers' ledger of finished hours."""
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=label, unit="h") as bar:
        while True:
            done_now = stop.wait(0.5)
            try:
                bar.update(min(_count_ledger(ledger), total) - bar.n)
            except OSError:
                continue
            if done_now:
                break


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


def synth_reader(config) -> Reader:
    """A reader that renders the synthetic generator's hour for a task key (an ISO time)."""
    from wxembed.sources.synthetic import render_hour

    return functools.partial(_render, config=config, render=render_hour)


def _render(key: str, *, config, render) -> DecodedField:
    return render(config, np.datetime64(key, "s"))


def ingest_synthetic(
    config,
    start,
    hours: int,
    archive_path: str | Path,
    *,
    beam_args: Sequence[str] | None = None,
    workers: int = 2,
    progress: bool = True,
) -> IngestReport:
    """Generate ``hours`` synthetic hours from ``start`` straight into an archive."""
    from wxembed.sources.synthetic import synthetic_times

    archive = Archive.create(
        archive_path, config.grid, exist_ok=True, title="Synthetic composite reflectivity (wxembed)",
        source=f"wxembed synthetic storm generator, seed {config.seed}",
    )  # fmt: skip
    times = synthetic_times(start, hours)
    tasks = [Task(key=str(t), time=str(t)) for t in times]
    return run_tasks(tasks, synth_reader(config), archive, beam_args=beam_args, workers=workers,
                     progress=progress, label="synth")  # fmt: skip


def describe_report(report: IngestReport) -> str:
    c = report.counts()
    return (f"{report.archive}: {c['stored']} stored, {c['missing']} missing, {c['failed']} failed, "
            f"{c['skipped']} already there")  # fmt: skip


__all__ = [
    "IngestReport",
    "Task",
    "describe_report",
    "expand_inputs",
    "ingest_files",
    "ingest_synthetic",
    "run_tasks",
    "store_hour",
    "time_from_path",
]
