"""Fetch HRRR composite reflectivity from the public archive by byte range, resumably.

For each hour the reader reads the GRIB2 file's ``.idx`` inventory, finds the REFC message's
byte range (:func:`wxembed.sources.hrrr.message_range`) and fetches only that range with an HTTP
``Range`` request: about 1 MB of a 100+ MB file. The message is checked (it must be exactly one
GRIB2 message, and REFC) and decoded straight into the archive; the file is never kept.

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
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from wxembed.archive import Archive, format_time, to_seconds
from wxembed.errors import MissingHour, SourceError, WxembedError
from wxembed.grid import HRRR_CONUS, Grid
from wxembed.pipelines.ingest import IngestReport, Task, describe_report, run_tasks
from wxembed.sources import DecodedField
from wxembed.sources import hrrr as layout

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
"""HTTP statuses worth retrying (with any other 5xx)."""
MISSING_STATUSES = frozenset({404, 410})
"""HTTP statuses that mean the mirror does not have the file."""


@dataclass(frozen=True)
class FetchConfig:
    """How to fetch: where from, what, and how patiently. Picklable, for Beam workers."""

    mirrors: tuple[layout.Mirror, ...] = tuple(layout.MIRRORS[m] for m in layout.DEFAULT_MIRRORS)
    """Mirrors tried in this order for each hour; the next one is asked when a mirror lacks the
    hour or keeps failing."""
    fxx: int = 0
    """Forecast hour of the files to read (0 = the analysis); the archive is keyed by valid time,
    so hour ``t`` comes from the run at ``t - fxx``."""
    variable: str = "REFC"
    """wgrib2 name of the message to fetch, as the ``.idx`` lists it."""
    level: str = "entire atmosphere"
    """Its level, as the ``.idx`` lists it."""
    connect_timeout: float = 10.0
    """Seconds to wait for a connection."""
    read_timeout: float = 30.0
    """Seconds to wait for the server between two reads (a stalled response is retried)."""
    request_timeout: float = 300.0
    """Wall-clock limit, in seconds, for one response's body (a trickling one is retried)."""
    retries: int = 4
    """Retries of one request on a mirror after 5xx/429, timeouts and dropped connections."""
    backoff: float = 1.0
    """Seconds before the first retry; doubled for each next one, with jitter (x0.5 to x1)."""
    backoff_max: float = 30.0
    """Longest wait between two tries, in seconds (also caps a server's Retry-After)."""
    ledger: str | None = None
    """Folder where readers log each hour's outcome and bytes (set by :func:`fetch_hours`, for
    its progress bar and summary); None logs nothing."""


@dataclass
class FetchStats:
    """What fetching one hour moved over the network."""

    bytes: int = 0
    """Body bytes received, the ``.idx`` and retried attempts included."""
    requests: int = 0
    """HTTP requests sent."""
    file_size: int = 0
    """Size of the whole GRIB2 file when the mirror told it (Content-Range), else 0."""
    url: str = ""
    """The GRIB2 file the message came from."""


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


class _Retry(Exception):
    """A failure worth trying again (5xx, timeout, dropped connection, short body)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


# ---- HTTP ----------------------------------------------------------------------------------------
_local = threading.local()


def _session():
    """One ``requests.Session`` per thread (keep-alive, the environment's proxies honoured)."""
    session = getattr(_local, "session", None)
    if session is None:
        import requests
        from requests.adapters import HTTPAdapter

        from wxembed import __version__

        session = requests.Session()  # trust_env: HTTP(S)_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE
        session.headers.update(
            {"User-Agent": f"wxembed/{__version__}", "Accept-Encoding": "identity"}
        )
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=4, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _local.session = session
    return session


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def http_get(
    url: str,
    config: FetchConfig,
    *,
    byte_range: tuple[int, int | None] | None = None,
    stats: FetchStats | None = None,
) -> bytes:
    """GET ``url``, or the inclusive ``byte_range`` of it, retrying transient failures.

    Raises :class:`MissingHour` on 404/410, :class:`SourceError` on other client errors, on a
    range the file does not hold, and when the retries run out.
    """
    import requests

    stats = stats if stats is not None else FetchStats()
    headers = {}
    if byte_range is not None:
        first, last = byte_range
        headers["Range"] = f"bytes={first}-{'' if last is None else last}"
    attempts = config.retries + 1
    problem, retry_after = "", None
    for attempt in range(attempts):
        if attempt:
            delay = min(config.backoff_max, config.backoff * 2 ** (attempt - 1))
            delay *= random.uniform(0.5, 1.0)
            if retry_after is not None:
                delay = min(config.backoff_max, max(delay, retry_after))
            log.debug("%s: %s; retry %d/%d in %.2f s", url, problem, attempt, config.retries, delay)
            time.sleep(delay)
        retry_after = None
        try:
            stats.requests += 1
            with _session().get(
                url,
                headers=headers,
                stream=True,
                timeout=(config.connect_timeout, config.read_timeout),
            ) as resp:
                return _read_response(resp, url, byte_range, config, stats)
        except _Retry as exc:
            problem, retry_after = str(exc), exc.retry_after
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema) as exc:  # fmt: skip
            raise SourceError(f"{url}: not a URL that can be fetched ({exc})") from None
        except (requests.exceptions.RequestException, OSError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
    raise SourceError(f"{url}: gave up after {attempts} attempts; last: {problem}")


def _read_response(resp, url: str, byte_range, config: FetchConfig, stats: FetchStats) -> bytes:
    status = resp.status_code
    if status in MISSING_STATUSES:
        raise MissingHour(f"{url}: HTTP {status} (no such file on this mirror)")
    if status == 416:
        raise SourceError(f"{url}: HTTP 416: the file does not hold bytes {byte_range[0]}- that "
                          "its .idx lists (the .idx does not match the GRIB2 file)")  # fmt: skip
    if status in RETRY_STATUSES or status >= 500:
        raise _Retry(f"HTTP {status} {resp.reason or ''}".strip(), _retry_after(resp))
    if status >= 400 or status not in (200, 206):
        raise SourceError(f"{url}: HTTP {status} {resp.reason or ''}".strip())
    first, last = byte_range if byte_range is not None else (0, None)
    skip = 0  # bytes to drop at the start of the body: a server that ignores Range sends all
    if status == 206:
        if byte_range is None:
            raise SourceError(f"{url}: HTTP 206 to a request for the whole file")
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if m is None:
            raise SourceError(f"{url}: HTTP 206 without a usable Content-Range "
                              f"({resp.headers.get('Content-Range')!r})")  # fmt: skip
        got_first, got_last, total = int(m[1]), int(m[2]), m[3]
        if total != "*":
            stats.file_size = int(total)
        if got_first != first:
            raise SourceError(f"{url}: asked for bytes {first}-, the mirror sent {got_first}-")
        if last is not None and got_last != last:
            raise SourceError(f"{url}: the .idx gives bytes {first}-{last}, but the file ends at "
                              f"byte {got_last} (the .idx does not match the GRIB2 file)")  # fmt: skip
        expected = got_last - got_first + 1
    else:
        length = resp.headers.get("Content-Length")
        if byte_range is not None:
            log.warning("%s: the server ignores Range requests; reading the file from its start",
                        url)  # fmt: skip
            if length is not None:
                stats.file_size = int(length)
        skip = first
        expected = (last + 1 if last is not None else None) if byte_range is not None else None
        if expected is None and length is not None:
            expected = int(length)
    deadline = time.monotonic() + config.request_timeout
    chunks, received = [], 0
    for chunk in resp.iter_content(chunk_size=1 << 16):
        received += len(chunk)
        stats.bytes += len(chunk)
        chunks.append(chunk)
        if (
            status == 200
            and expected is not None
            and byte_range is not None
            and received >= expected
        ):
            break  # the range is in hand: drop the connection rather than read the rest
        if time.monotonic() > deadline:
            raise _Retry(f"the body took over {config.request_timeout:g} s")
    body = b"".join(chunks)
    if expected is not None and len(body) < expected:
        raise _Retry(f"short body: {len(body)} of {expected} bytes")
    if status == 200 and byte_range is not None:
        body = body[skip:expected]
    return body


def _retry_after(resp) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: use the backoff instead
        return None


# ---- one hour ------------------------------------------------------------------------------------
def check_message(data: bytes, source: str) -> bytes:
    """``data`` must be one whole GRIB2 message (trailing padding is dropped); else
    :class:`SourceError` saying the ``.idx`` does not match the GRIB2 file."""
    mismatch = "(the .idx does not match the GRIB2 file)"
    if len(data) < 16 or data[:4] != b"GRIB":
        raise SourceError(f"{source}: the bytes at the .idx's offset are not the start of a GRIB "
                          f"message: {data[:8]!r} {mismatch}")  # fmt: skip
    if data[7] != 2:
        raise SourceError(f"{source}: GRIB edition {data[7]}, expected 2 {mismatch}")
    total = int.from_bytes(data[8:16], "big")
    if total > len(data):
        raise SourceError(f"{source}: the message is {total} bytes long, the .idx range holds "
                          f"{len(data)} {mismatch}")  # fmt: skip
    if data[total - 4 : total] != b"7777":
        raise SourceError(f"{source}: the message does not end with 7777 {mismatch}")
    if b"GRIB" in data[total:]:
        raise SourceError(f"{source}: the .idx range holds more than one message {mismatch}")
    return data[:total]


def decode_message(data: bytes, *, source: str) -> DecodedField:
    """Decode REFC from the bytes of one GRIB2 message (as fetched by range)."""
    from wxembed.sources.grib import decode_refc

    data = check_message(data, source)
    with tempfile.TemporaryDirectory(prefix="wxembed-fetch-msg-") as tmp:
        path = Path(tmp) / "message.grib2"
        path.write_bytes(data)
        try:
            decoded = decode_refc(path)
        except MissingHour as exc:  # the range held another message: the index lied
            held = str(exc).split("it holds: ", 1)[-1]
            raise SourceError(f"{source}: the range the .idx gives for REFC holds {held} "
                              "(the .idx does not match the GRIB2 file)") from None  # fmt: skip
        except SourceError as exc:
            raise SourceError(str(exc).replace(str(path), source)) from None
    decoded.source = source
    return decoded


def fetch_hour(valid_time, config: FetchConfig, *, stats: FetchStats | None = None) -> DecodedField:
    """REFC valid at ``valid_time``: from the first mirror that has it, by byte range.

    Raises :class:`MissingHour` when every mirror lacks it (HTTP 404, or no REFC in the index)
    and :class:`SourceError` when any mirror failed otherwise and none delivered.
    """
    stats = stats if stats is not None else FetchStats()
    valid = np.datetime64(valid_time, "s")
    run = valid - np.timedelta64(config.fxx, "h")
    missing: list[str] = []
    failed: list[str] = []
    for mirror in config.mirrors:
        url = mirror.url(run, config.fxx)
        try:
            text = http_get(layout.idx_url(url), config, stats=stats)
            entries = layout.parse_idx(text.decode("utf-8", "replace"), source=layout.idx_url(url))
            first, last = layout.message_range(
                entries, config.variable, config.level, source=layout.idx_url(url)
            )
            data = http_get(url, config, byte_range=(first, last), stats=stats)
            source = f"{url} bytes={first}-{'' if last is None else last}"
            decoded = decode_message(data, source=source)
            if decoded.time != valid:
                raise SourceError(f"{source}: REFC is valid at {format_time(decoded.time)}, "
                                  f"expected {format_time(valid)}")  # fmt: skip
        except MissingHour as exc:
            missing.append(str(exc))
            continue
        except SourceError as exc:
            log.debug("%s: %s", mirror.name, exc)
            failed.append(str(exc))
            continue
        stats.url = url
        log.debug("%s: %d bytes in %d requests from %s", format_time(valid), stats.bytes,
                  stats.requests, mirror.name)  # fmt: skip
        return decoded
    if failed:
        raise SourceError("; ".join(failed + missing))
    raise MissingHour("; ".join(missing) or "no mirrors to ask")


def read_hour(key: str, *, config: FetchConfig) -> DecodedField:
    """The pipeline's reader: the task key is the valid time (ISO, UTC)."""
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
        _log_hour(config, key, outcome, stats)


def _log_hour(config: FetchConfig, key: str, outcome: str, stats: FetchStats) -> None:
    if config.ledger is None:
        return
    line = f"{key}\t{outcome}\t{stats.bytes}\t{stats.file_size}\t{stats.requests}\n"
    try:  # one short append per hour: atomic enough across this process's threads
        with open(Path(config.ledger) / f"hours-{os.getpid()}.tsv", "a") as fh:
            fh.write(line)
    except OSError as exc:  # a worker on another machine: no progress, nothing else lost
        log.debug("cannot log %s to %s: %s", key, config.ledger, exc)


def _read_ledger(ledger: str | Path) -> dict[str, int]:
    totals = {"hours": 0, "bytes": 0, "whole_file_bytes": 0}
    for part in Path(ledger).glob("hours-*.tsv"):
        for line in part.read_text().splitlines():
            cells = line.split("\t")
            if len(cells) != 5:
                continue  # a line being written
            totals["hours"] += 1
            totals["bytes"] += int(cells[2])
            totals["whole_file_bytes"] += int(cells[3])
    return totals


# ---- many hours ----------------------------------------------------------------------------------
def hourly_times(start, end) -> np.ndarray:
    """Whole hours from ``start`` up to ``end`` (exclusive), UTC, as ``datetime64[s]``."""
    first, stop = (to_seconds(t)[0] for t in (start, end))
    for t, name in ((first, "start"), (stop, "end")):
        if t % 3600:
            raise WxembedError(
                f"{name} must be a whole hour, not {format_time(np.datetime64(int(t), 's'))}"
            )
    if stop <= first:
        raise WxembedError(f"end ({format_time(np.datetime64(int(stop), 's'))}) must be after start "
                           f"({format_time(np.datetime64(int(first), 's'))})")  # fmt: skip
    return np.arange(first, stop, 3600).astype("datetime64[s]")


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
    """Fetch REFC for every hour in ``[start, end)`` into an archive (created on ``grid`` if absent).

    ``base_url``, when given, is the only mirror asked; else ``mirrors`` in order. ``mirrors``,
    ``base_url`` and ``fxx`` override those of ``config``, which sets timeouts and retries.
    ``workers`` bounds the downloads in flight (one hour per worker at a time). Hours already
    stored are skipped; the others end in the manifest as stored, missing or failed.
    """
    if not 0 <= fxx <= 48:
        raise WxembedError(f"forecast hour must be 0 to 48, not {fxx}")
    times = hourly_times(start, end)
    chosen = resolve_mirrors([base_url] if base_url else mirrors)
    config = replace(config or FetchConfig(), mirrors=chosen, fxx=fxx)
    archive = Archive.create(
        archive_path, grid, exist_ok=True, title="HRRR composite reflectivity (REFC)",
        source=f"NOAA HRRR wrfsfcf{fxx:02d} REFC, fetched by byte range from "
               f"{', '.join(m.name for m in chosen)}",
    )  # fmt: skip
    tasks = [Task(key=str(t), time=str(t)) for t in times]
    with tempfile.TemporaryDirectory(prefix="wxembed-fetch-") as ledger:
        config = replace(config, ledger=ledger)
        reader = functools.partial(read_hour, config=config)
        stop = threading.Event()
        watcher = None
        if progress:
            stored = set(to_seconds(archive.stored_times()).tolist())
            todo = sum(int(s) not in stored for s in to_seconds(times))
            if todo:
                watcher = threading.Thread(target=_show_progress, args=(ledger, todo, stop),
                                           daemon=True)  # fmt: skip
                watcher.start()
        t0 = time.perf_counter()
        try:
            report = run_tasks(tasks, reader, archive, beam_args=beam_args, workers=workers,
                               progress=False, label="fetch")  # fmt: skip
        finally:
            stop.set()
            if watcher is not None:
                watcher.join()
        seconds = time.perf_counter() - t0
        totals = _read_ledger(ledger)
    out = FetchReport(
        **{f.name: getattr(report, f.name) for f in fields(IngestReport)},
        hours_fetched=totals["hours"], bytes_fetched=totals["bytes"],
        whole_file_bytes=totals["whole_file_bytes"], seconds=round(seconds, 3),
    )  # fmt: skip
    log.debug("%s", describe_fetch(out))
    return out


def _show_progress(ledger: str, total: int, stop: threading.Event) -> None:
    """Hours done, bytes fetched and their rate, from the readers' ledger."""
    from tqdm.auto import tqdm

    t0 = time.monotonic()
    with tqdm(total=total, desc="fetch", unit="h") as bar:
        while True:
            done_now = stop.wait(0.5)
            try:
                totals = _read_ledger(ledger)
            except (OSError, ValueError):
                continue
            bar.update(min(totals["hours"], total) - bar.n)
            rate = totals["bytes"] / max(time.monotonic() - t0, 1e-9)
            bar.set_postfix_str(f"{human_bytes(totals['bytes'])}, {human_bytes(rate)}/s")
            if done_now:
                break


def human_bytes(n: float) -> str:
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
        line += (f"; fetched {human_bytes(report.bytes_fetched)} for {report.hours_fetched} hours "
                 f"({human_bytes(per_hour)} an hour, {report.hours_fetched / max(report.seconds, 1e-9):.2f} "
                 f"hours/s)")  # fmt: skip
        if report.whole_file_bytes:
            line += f"; the whole files are {human_bytes(report.whole_file_bytes)}"
    return line


__all__ = [
    "FetchConfig",
    "FetchReport",
    "FetchStats",
    "check_message",
    "decode_message",
    "describe_fetch",
    "fetch_hour",
    "fetch_hours",
    "hourly_times",
    "http_get",
    "read_hour",
    "resolve_mirrors",
]
