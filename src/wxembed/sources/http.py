"""The per-hour HTTP byte-range reader of the HRRR archive.

For one valid time, :func:`fetch_hour` reads the GRIB2 file's ``.idx`` inventory from each mirror
in turn, finds the REFC message's byte range (:func:`wxembed.sources.hrrr.message_range`) and
fetches only that range with an HTTP ``Range`` request: about 1 MB of a 100+ MB file. The message
is checked (exactly one GRIB2 message, REFC, valid at the hour asked for) and decoded; the file is
never kept. Requests go through ``requests`` with the environment honoured (``HTTPS_PROXY``,
``HTTP_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``); transient failures are retried with
exponential backoff and jitter. :mod:`wxembed.pipelines.fetch` runs it over many hours.
"""

from __future__ import annotations

import http.client
import logging
import random
import re
import threading
import time
from dataclasses import dataclass

import numpy as np
import requests
import urllib3
from requests.adapters import HTTPAdapter

from wxembed import __version__
from wxembed.errors import MissingHour, SourceError, TransientFetchError
from wxembed.sources import DecodedField
from wxembed.sources import hrrr as layout
from wxembed.sources.grib import decode_refc_message
from wxembed.times import format_time

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
    """Wall-clock limit, in seconds, for one response's body, however slowly it trickles in
    (checked after every read from the socket; a response cut off is retried)."""
    max_idx_bytes: int = 1 << 20
    """The largest ``.idx`` read, in bytes (a real one is about 10 kB): a larger body is no
    inventory, and is refused unread (by its Content-Length) or as soon as it passes this."""
    max_message_bytes: int = 64 << 20
    """The largest GRIB2 message read, in bytes (HRRR's REFC is about 1 MB): a range the
    ``.idx`` or the message's own header makes larger is refused, not downloaded."""
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


# ---- HTTP ----------------------------------------------------------------------------------------
_local = threading.local()


def _session():
    """One ``requests.Session`` per thread (keep-alive, the environment's proxies honoured)."""
    session = getattr(_local, "session", None)
    if session is None:
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
_BAD_URL = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
)


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
        except TransientFetchError as exc:
            problem, retry_after = str(exc), exc.retry_after
        except _BAD_URL as exc:
            raise SourceError(f"{url}: not a URL that can be fetched ({exc})") from None
        except (
            requests.exceptions.RequestException,
            urllib3.exceptions.HTTPError,  # raised by reading the body (a timeout, a cut)
            http.client.HTTPException,
            OSError,
        ) as exc:
            problem = f"{type(exc).__name__}: {exc}"
    raise SourceError(f"{url}: gave up after {attempts} attempts; last: {problem}")


def _read_response(resp, url: str, byte_range, config: FetchConfig, stats: FetchStats) -> bytes:
    """The inclusive ``byte_range`` of the file (all of it when None: an ``.idx``) from one
    response, checked against its status and the lengths the server states; never more bytes
    than the range (or :attr:`FetchConfig.max_idx_bytes`) needs."""
    _check_status(resp, url, byte_range)
    body = _Body(resp, config, stats)
    length = resp.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if byte_range is None:  # an .idx: small, or not an inventory at all
        limit = config.max_idx_bytes
        if length is not None and length > limit:
            raise SourceError(
                f"{url}: {length:,} bytes, more than the {limit:,} an .idx inventory may have"
            )
        if not body.read_to(limit + 1 if length is None else length) and length is not None:
            raise TransientFetchError(f"short body: {len(body.data)} of {length} bytes")
        if len(body.data) > limit:
            raise SourceError(f"{url}: more than the {limit:,} bytes an .idx inventory may have")
        return bytes(body.data)
    if resp.status_code == 206:
        expected = _partial_length(resp, url, byte_range, stats)
        _check_message_size(expected, url, config)
        return body.exactly(0, expected)
    # 200 to a Range request: the server sends the whole file; keep the range from it
    log.warning("%s: the server ignores Range requests; reading the file from its start", url)
    if length is not None:
        stats.file_size = length
    first, last = byte_range
    if last is None:  # the file's last message: its own header says how long it is
        head = body.exactly(first, 16)
        last = first + (int.from_bytes(head[8:16], "big") if head[:4] == b"GRIB" else 16) - 1
    _check_message_size(last - first + 1, url, config)
    return body.exactly(first, last - first + 1)


def _check_message_size(size: int, url: str, config: FetchConfig) -> None:
    if size > config.max_message_bytes:
        raise SourceError(
            f"{url}: the message would be {size:,} bytes, more than the "
            f"{config.max_message_bytes:,} a REFC message may have (a damaged .idx or header?)"
        )


class _Body:
    """A response body read a socket read at a time, against one deadline: a body that
    trickles in (a byte every few seconds, never tripping the read timeout) is cut off at
    :attr:`FetchConfig.request_timeout`, and nothing past what is asked for is read."""

    def __init__(self, resp, config: FetchConfig, stats: FetchStats):
        self.resp, self.config, self.stats = resp, config, stats
        self.deadline = time.monotonic() + config.request_timeout
        self.data = bytearray()

    def read_to(self, n: int) -> bool:
        """Read until ``n`` bytes in all are in hand; False when the body ended first."""
        while len(self.data) < n:
            chunk = self.resp.raw.read1(min(1 << 16, n - len(self.data)), decode_content=True)
            if not chunk:
                return False
            self.data += chunk
            self.stats.bytes += len(chunk)
            if time.monotonic() > self.deadline and len(self.data) < n:
                raise TransientFetchError(
                    f"the body took over {self.config.request_timeout:g} s "
                    f"({len(self.data):,} bytes by then)"
                )
        return True

    def exactly(self, first: int, size: int) -> bytes:
        """Bytes ``first`` to ``first + size - 1`` of the body (a short body is retried)."""
        if not self.read_to(first + size):
            raise TransientFetchError(f"short body: {len(self.data)} of {first + size} bytes")
        return bytes(self.data[first : first + size])


def _check_status(resp, url: str, byte_range) -> None:
    """Raise the error an HTTP status means, unless it is 200 or 206."""
    status = resp.status_code
    if status in MISSING_STATUSES:
        raise MissingHour(f"{url}: HTTP {status} (no such file on this mirror)")
    if status == 416:
        raise SourceError(
            f"{url}: HTTP 416: the file does not hold bytes {byte_range[0]}- that its .idx lists "
            "(the .idx does not match the GRIB2 file)"
        )
    if status in RETRY_STATUSES or status >= 500:
        raise TransientFetchError(f"HTTP {status} {resp.reason or ''}".strip(), _retry_after(resp))
    if status >= 400 or status not in (200, 206):
        raise SourceError(f"{url}: HTTP {status} {resp.reason or ''}".strip())


def _partial_length(resp, url: str, byte_range, stats: FetchStats) -> int:
    """The length of a 206 response's body, once its Content-Range is the range asked for."""
    if byte_range is None:
        raise SourceError(f"{url}: HTTP 206 to a request for the whole file")
    first, last = byte_range
    content_range = resp.headers.get("Content-Range")
    m = _CONTENT_RANGE.match(content_range or "")
    if m is None:
        raise SourceError(f"{url}: HTTP 206 without a usable Content-Range ({content_range!r})")
    got_first, got_last, total = int(m[1]), int(m[2]), m[3]
    if total != "*":
        stats.file_size = int(total)
    if got_first != first:
        raise SourceError(f"{url}: asked for bytes {first}-, the mirror sent {got_first}-")
    if last is not None and got_last != last:
        raise SourceError(
            f"{url}: the .idx gives bytes {first}-{last}, but the file ends at byte {got_last} "
            "(the .idx does not match the GRIB2 file)"
        )
    return got_last - got_first + 1


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
        raise SourceError(
            f"{source}: the bytes at the .idx's offset are not the start of a GRIB message: "
            f"{data[:8]!r} {mismatch}"
        )
    if data[7] != 2:
        raise SourceError(f"{source}: GRIB edition {data[7]}, expected 2 {mismatch}")
    total = int.from_bytes(data[8:16], "big")
    if total > len(data):
        raise SourceError(
            f"{source}: the message is {total} bytes long, the .idx range holds {len(data)} "
            f"{mismatch}"
        )
    if data[total - 4 : total] != b"7777":
        raise SourceError(f"{source}: the message does not end with 7777 {mismatch}")
    if b"GRIB" in data[total:]:
        raise SourceError(f"{source}: the .idx range holds more than one message {mismatch}")
    return data[:total]


def decode_message(data: bytes, *, source: str) -> DecodedField:
    """Decode REFC from the bytes of one GRIB2 message (as fetched by range)."""
    data = check_message(data, source)
    try:
        return decode_refc_message(data, source=source)
    except MissingHour as exc:  # the range held another message: the index lied
        held = str(exc).split("it holds: ", 1)[-1]
        raise SourceError(
            f"{source}: the range the .idx gives for REFC holds {held} "
            "(the .idx does not match the GRIB2 file)"
        ) from None


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
                raise SourceError(
                    f"{source}: REFC is valid at {format_time(decoded.time)}, "
                    f"expected {format_time(valid)}"
                )
        except MissingHour as exc:
            missing.append(str(exc))
            continue
        except SourceError as exc:
            log.debug("%s: %s", mirror.name, exc)
            failed.append(str(exc))
            continue
        stats.url = url
        log.debug(
            "%s: %d bytes in %d requests from %s",
            format_time(valid),
            stats.bytes,
            stats.requests,
            mirror.name,
        )
        return decoded
    if failed:
        raise SourceError("; ".join(failed + missing))
    raise MissingHour("; ".join(missing) or "no mirrors to ask")


__all__ = [
    "FetchConfig",
    "FetchStats",
    "check_message",
    "decode_message",
    "fetch_hour",
    "http_get",
]
