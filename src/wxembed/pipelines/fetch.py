"""Fetch HRRR composite reflectivity from the public archive by byte range, resumably.

For each hour the reader (:func:`wxembed.sources.http.fetch_hour`) reads the GRIB2 file's
``.idx`` inventory, finds the REFC message's byte range and fetches only that range with an HTTP
``Range`` request: about 1 MB of a 100+ MB file. The message is checked (exactly one GRIB2
message, REFC, valid at the hour asked for) and decoded straight into the archive; the file is
never kept. What each hour moved goes to the progress ledger (:mod:`wxembed.pipelines.progress`),
which feeds the progress bar's rate and the :class:`FetchReport`.

Hours run through the ingest pipeline (:func:`wxembed.pipelines.ingest.run_tasks`), keyed by
valid time, so hours already stored are skipped and every other hour ends in the manifest:
stored, ``missing`` (HTTP 404 on every mirror, or no REFC in the index) or ``failed`` (errors
that outlived the retries, or a mirror whose ``.idx`` does not match its GRIB2 file), with the
reason. Mirrors are tried in order for each hour; a mirror that fails or lacks the hour hands
over to the next.

Parallelism: each hour is one small ``.idx`` request and one range request, so the downloads in
flight are bounded by the pipeline's workers (``workers`` local processes on the DirectRunner,
one hour at a time each), not by a separate pool. Requests go through ``requests`` with the
environment honoured (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``);
the public buckets need no credentials.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from wxembed.archive import Archive
from wxembed.errors import MissingHour, WxembedError
from wxembed.grid import HRRR_CONUS, Grid
from wxembed.pipelines.ingest import IngestReport, Task, describe_report, run_tasks
from wxembed.pipelines.progress import Ledger, temporary_ledger
from wxembed.sources import DecodedField
from wxembed.sources import hrrr as layout
from wxembed.sources.http import FetchConfig, FetchStats, fetch_hour
from wxembed.times import hours_between

log = logging.getLogger(__name__)


@dataclass
class FetchReport(IngestReport):
    """An :class:`IngestReport` with what went over the network (local runners; 0 elsewhere)."""

    hours_fetched: int = 0
    """Hours the readers tried (not those skipped as already stored)."""
    bytes_fetched: int = 0
    """Body bytes received for them, ``.idx`` files and retries included."""
    whole_file_bytes: int = 0
    """What downloading those hours' whole GRIB2 files would have moved (sizes the mirrors told)."""
    seconds: float = 0.0
    """Wall-clock seconds of the pipeline."""


def read_hour(key: str, *, config: FetchConfig) -> DecodedField:
    """The pipeline's reader: the task key is the valid time (ISO, UTC). What each hour moved
    goes to the ledger (``config.ledger``) as ``fetch, key, outcome, bytes, file size,
    requests``."""
    stats = FetchStats()
    outcome = "failed"
    try:
        decoded = fetch_hour(key, config, stats=stats)
        outcome = "read"
        return decoded
    except MissingHour:
        outcome = "missing"
        raise
    finally:
        if config.ledger is not None:
            Ledger(config.ledger).append(
                "fetch", key, outcome, stats.bytes, stats.file_size, stats.requests
            )


def _fetch_totals(rows: list[list[str]]) -> dict[str, int]:
    """Hours, bytes and whole-file bytes of the ledger's ``fetch`` rows."""
    fetched = [r for r in rows if r[0] == "fetch" and len(r) == 6]
    return {
        "hours": len(fetched),
        "bytes": sum(int(r[3]) for r in fetched),
        "whole_file_bytes": sum(int(r[4]) for r in fetched),
    }


def _rate(rows: list[list[str]], seconds: float) -> str:
    """The progress bar's note: bytes fetched so far, and their rate."""
    fetched = _fetch_totals(rows)["bytes"]
    return f"{human_bytes(fetched)}, {human_bytes(fetched / max(seconds, 1e-9))}/s"


def resolve_mirrors(mirrors: Iterable[str | layout.Mirror]) -> tuple[layout.Mirror, ...]:
    """Mirrors by name (``aws``, ``google``, ``azure``, ``nomads``), base URL or :class:`Mirror`."""
    out = tuple(m if isinstance(m, layout.Mirror) else layout.resolve_mirror(m) for m in mirrors)
    if not out:
        raise WxembedError("no mirrors to fetch from")
    return out


def fetch_hours(
    start,
    end,
    archive_path: str | Path,
    *,
    mirrors: Sequence[str | layout.Mirror] = layout.DEFAULT_MIRRORS,
    base_url: str | None = None,
    fxx: int = 0,
    grid: Grid = HRRR_CONUS,
    workers: int = 4,
    beam_args: Sequence[str] | None = None,
    progress: bool = True,
    config: FetchConfig | None = None,
) -> FetchReport:
    """Fetch REFC for every hour in ``[start, end)`` into an archive (created on ``grid`` if
    absent).

    ``base_url``, when given, is the only mirror asked; else ``mirrors`` in order. ``mirrors``,
    ``base_url`` and ``fxx`` override those of ``config``, which sets timeouts and retries.
    ``workers`` bounds the downloads in flight (one hour per worker at a time). Hours already
    stored are skipped; the others end in the manifest as stored, missing or failed.
    """
    if not 0 <= fxx <= 48:
        raise WxembedError(f"forecast hour must be 0 to 48, not {fxx}")
    times = hours_between(start, end)
    chosen = resolve_mirrors([base_url] if base_url else mirrors)
    config = replace(config or FetchConfig(), mirrors=chosen, fxx=fxx)
    archive = Archive.create(
        archive_path,
        grid,
        exist_ok=True,
        title="HRRR composite reflectivity (REFC)",
        source=f"NOAA HRRR wrfsfcf{fxx:02d} REFC, fetched by byte range from "
        f"{', '.join(m.name for m in chosen)}",
    )
    tasks = [Task(key=str(t), time=str(t)) for t in times]
    with temporary_ledger() as ledger:
        reader = functools.partial(read_hour, config=replace(config, ledger=ledger.folder))
        t0 = time.perf_counter()
        report = run_tasks(
            tasks,
            reader,
            archive,
            beam_args=beam_args,
            workers=workers,
            progress=progress,
            label="fetch",
            ledger=ledger,
            postfix=_rate,
        )
        seconds = time.perf_counter() - t0
        out = _fetch_report(report, ledger.rows(), seconds)
    log.debug("%s", describe_fetch(out))
    return out


def _fetch_report(report: IngestReport, rows: list[list[str]], seconds: float) -> FetchReport:
    """The ingest's report, with what the ledger's ``fetch`` rows say went over the network."""
    totals = _fetch_totals(rows)
    return FetchReport(
        **{f.name: getattr(report, f.name) for f in fields(IngestReport)},
        hours_fetched=totals["hours"],
        bytes_fetched=totals["bytes"],
        whole_file_bytes=totals["whole_file_bytes"],
        seconds=round(seconds, 3),
    )


def human_bytes(n: float) -> str:
    """``512 B``, ``1.5 MB``: a byte count in decimal units."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def describe_fetch(report: FetchReport) -> str:
    """One line: the manifest counts, and what went over the network."""
    line = describe_report(report)
    if report.hours_fetched:
        per_hour = report.bytes_fetched / report.hours_fetched
        rate = report.hours_fetched / max(report.seconds, 1e-9)
        line += (
            f"; fetched {human_bytes(report.bytes_fetched)} for {report.hours_fetched} hours "
            f"({human_bytes(per_hour)} an hour, {rate:.2f} hours/s)"
        )
        if report.whole_file_bytes:
            line += f"; the whole files are {human_bytes(report.whole_file_bytes)}"
    return line


__all__ = ["FetchReport", "describe_fetch", "fetch_hours", "read_hour", "resolve_mirrors"]
