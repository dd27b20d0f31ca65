"""Fetching HRRR REFC by byte range, against a real HTTP server on loopback.

The server serves folders in the NOAA layout (GRIB2 files made with the project's encoder, each
with REFC among other messages, and a matching ``.idx``), answers Range requests with 206 and
counts the body bytes it sends; faults (500s, a connection dropped mid-body, a stall) are
injected per path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from conftest import storm_field

from wxembed.archive import Archive
from wxembed.errors import MissingHour, SourceError
from wxembed.grid import HRRR_CONUS
from wxembed.pipelines.fetch import fetch_hours
from wxembed.sources.grib import REFC_PARAM, GribParam, decode_refc, encode_message
from wxembed.sources.hrrr import (
    MIRRORS,
    Mirror,
    grib_url,
    idx_lines,
    message_range,
    parse_idx,
    path_for_valid_time,
    write_idx,
)
from wxembed.sources.http import FetchConfig, FetchStats, fetch_hour, http_get

START = np.datetime64("2019-01-01T00:00:00", "s")
GRID = HRRR_CONUS.coarsen(8)  # 132 x 224: the real projection, small files
FAST = FetchConfig(connect_timeout=2.0, read_timeout=0.5, retries=3, backoff=0.01, backoff_max=0.05)
OTHERS = [
    GribParam(0, 0, 0, 103, 2),
    GribParam(0, 2, 2, 103, 10),
    GribParam(0, 3, 0, 1, 0),
    GribParam(0, 1, 1, 103, 2),
]


def _hour(h: int) -> np.datetime64:
    return START + np.timedelta64(h, "h")


def write_hour(root: Path, h: int, *, refc_at: int | None = 2) -> tuple[Path, int]:
    """A GRIB2 file in the NOAA layout with REFC at position ``refc_at`` among four other
    (noisy, hence large) messages, and its .idx; returns the path and REFC's size in bytes."""
    t = _hour(h)
    rng = np.random.default_rng(h)
    messages = [
        encode_message(rng.normal(0, 5, GRID.shape) + 10 * i, GRID, t, param=p)
        for i, p in enumerate(OTHERS)
    ]
    refc = b""
    if refc_at is not None:
        refc = encode_message(storm_field(GRID, h, str(t)).dbz, GRID, t, param=REFC_PARAM)
        messages.insert(refc_at, refc)
    path = root / path_for_valid_time(t)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(messages))
    write_idx(path)
    return path, len(refc)


class LoopbackArchive:
    """An HTTP server on 127.0.0.1 over a folder; each subfolder is a mirror's base URL."""

    def __init__(self, root: Path):
        self.root = root
        self.lock = threading.Lock()
        self.sent: Counter[str] = Counter()  # body bytes sent, by path
        self.asked: Counter[str] = Counter()  # requests received, by path
        self.log: list[tuple[str, str, int]] = []  # (request target, Range header, status)
        self.faults: dict[str, list[str]] = {}  # path -> faults for its next requests
        self.always: dict[str, str] = {}  # path -> a fault on every request
        self.hold_after: int | None = None  # GRIB2 range requests to serve before holding
        self.release = threading.Event()
        self.served_grib = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                try:
                    server.handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        with self.lock:
            self.sent.clear()
            self.asked.clear()
            self.log.clear()

    def bytes_sent(self, suffix: str = "") -> int:
        return sum(n for p, n in self.sent.items() if p.endswith(suffix))

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        path = urlsplit(req.path).path  # an absolute URI when asked through a proxy
        rng = req.headers.get("Range")
        with self.lock:
            self.asked[path] += 1
            queued = self.faults.get(path)
            fault = queued.pop(0) if queued else self.always.get(path)
        if path.endswith(".grib2") and rng and self.hold_after is not None:
            with self.lock:
                self.served_grib += 1
                hold = self.served_grib > self.hold_after
            if hold:
                self.release.wait(60)
                fault = "500"
        if fault in ("trickle", "flood", "flood-unsized", "padded"):
            return self._stream(req, path, rng, fault)
        if fault == "stall":
            time.sleep(1.5)  # longer than the client's read timeout
        if fault == "500":
            return self._reply(req, path, rng, 500, b"")
        file = self.root / path.lstrip("/")
        if not file.is_file():
            return self._reply(req, path, rng, 404, b"")
        data = file.read_bytes()
        status, body, headers = 200, data, {}
        if rng is not None and "norange" not in path:
            first, _, last = rng.removeprefix("bytes=").partition("-")
            first, last = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            if first >= len(data):
                return self._reply(
                    req, path, rng, 416, b"", {"Content-Range": f"bytes */{len(data)}"}
                )
            status, body = 206, data[first : last + 1]
            headers = {"Content-Range": f"bytes {first}-{last}/{len(data)}"}
        # "drop": promise the whole body, send half, hang up
        self._reply(
            req, path, rng, status, body, headers, cut=len(body) // 2 if fault == "drop" else None
        )

    def _stream(self, req, path: str, rng, fault: str) -> None:
        """A body that does not end: a byte every 0.1 s of a promised 5000 (``trickle``);
        zeros as fast as the client takes them, with Content-Length 10^12 (``flood``) or none
        (``flood-unsized``); the file and then zeros, Content-Length 10^12, ignoring any Range
        (``padded``). It stops when the client hangs up, the server closes, or after 30 s."""
        with self.lock:
            self.log.append((req.path, rng or "", 200))
        req.send_response(200)
        if fault == "flood-unsized":
            req.send_header("Connection", "close")
        else:  # a trickle promises what a real .idx holds
            req.send_header("Content-Length", str(5000 if fault == "trickle" else 10**12))
        req.end_headers()
        first = (self.root / path.lstrip("/")).read_bytes() if fault == "padded" else b""
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline and not self.release.is_set():
                out, first = (first or (b"1" if fault == "trickle" else bytes(1 << 16))), b""
                req.wfile.write(out)
                req.wfile.flush()
                with self.lock:
                    self.sent[path] += len(out)
                if fault == "trickle":
                    time.sleep(0.1)
        except OSError:  # the client hung up
            pass
        req.close_connection = True

    def _reply(self, req, path, rng, status, body, headers=None, cut=None) -> None:
        with self.lock:
            self.log.append((req.path, rng or "", status))
        req.send_response(status)
        for k, v in (headers or {}).items():
            req.send_header(k, v)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        out = body if cut is None else body[:cut]
        req.wfile.write(out)
        req.wfile.flush()
        with self.lock:
            self.sent[path] += len(out)
        if cut is not None:
            req.close_connection = True


@pytest.fixture
def no_proxy(monkeypatch):
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


@pytest.fixture
def server(tmp_path, no_proxy) -> Iterator[LoopbackArchive]:
    srv = LoopbackArchive(tmp_path / "www")
    yield srv
    srv.close()


def _grib_path(h: int, mirror: str = "good") -> str:
    return f"/{mirror}/" + path_for_valid_time(_hour(h))


def _stored_matches_file(archive: Archive, file: Path, h: int) -> None:
    expected = decode_refc(file).dbz
    assert np.abs(archive.read_dbz(_hour(h)) - expected).max() <= 0.25


# ---- the layout, the mirrors and the .idx -----------------------------------------------------
def test_mirrors_are_url_templates_over_the_noaa_layout():
    assert MIRRORS["aws"].url("2019-01-01T00") == (
        "https://noaa-hrrr-bdp-pds.s3.amazonaws.com/hrrr.20190101/conus/hrrr.t00z.wrfsfcf00.grib2"
    )
    assert (
        MIRRORS["google"]
        .url("2019-01-01T06", 2)
        .endswith("high-resolution-rapid-refresh/hrrr.20190101/conus/hrrr.t06z.wrfsfcf02.grib2")
    )
    assert grib_url("http://127.0.0.1:8/x/", "2019-01-01T00") == (
        "http://127.0.0.1:8/x/hrrr.20190101/conus/hrrr.t00z.wrfsfcf00.grib2"
    )
    assert {"aws", "google", "azure", "nomads"} <= set(MIRRORS)


def test_write_idx_lists_every_message_at_its_eccodes_offset_as_ncep_does(tmp_path):
    path, refc_size = write_hour(tmp_path, 0, refc_at=2)
    lines = idx_lines(path)
    assert len(lines) == 5
    assert lines[2].startswith("3:") and lines[2].endswith(
        ":d=2019010100:REFC:entire atmosphere:anl:"
    )
    assert lines[0].endswith(":TMP:2 m above ground:anl:")
    entries = parse_idx(path.with_name(path.name + ".idx").read_text())
    data = path.read_bytes()
    for e in entries:
        assert data[e.offset : e.offset + 4] == b"GRIB"
    first, last = message_range(entries)
    assert last - first + 1 == refc_size
    assert first == entries[2].offset and last == entries[3].offset - 1


def test_the_last_message_runs_to_the_end_of_the_file_and_sub_messages_share_an_offset():
    text = (
        "1:0:d=2019010100:TMP:2 m above ground:anl:\n"
        "2:500:d=2019010100:UGRD:10 m above ground:anl:\n"
        "2.2:500:d=2019010100:VGRD:10 m above ground:anl:\n"
        "3:900:d=2019010100:REFC:entire atmosphere:anl:\n"
    )
    entries = parse_idx(text)
    assert message_range(entries) == (900, None)
    assert message_range(entries, "UGRD", "10 m above ground") == (500, 899)
    with pytest.raises(MissingHour, match="no RETOP"):
        message_range(entries, "RETOP")
    with pytest.raises(SourceError, match="not a GRIB2 inventory line"):
        parse_idx("<html>Access denied</html>")


# ---- fetching ---------------------------------------------------------------------------------
def test_only_refc_byte_ranges_cross_the_wire_and_absent_hours_are_recorded_missing(
    server, tmp_path
):
    root = server.root / "good"
    files, refc_bytes = {}, 0
    for h, at in [(0, 2), (1, 0), (2, None), (4, 4), (5, 3)]:  # h2: no REFC; h4: REFC last
        files[h], size = write_hour(root, h, refc_at=at)
        refc_bytes += size
    # h3: no file at all (404)
    report = fetch_hours(
        START,
        _hour(6),
        tmp_path / "a.zarr",
        base_url=f"{server.url}/good",
        grid=GRID,
        workers=1,
        progress=False,
        config=FAST,
    )
    assert report.counts() == {"stored": 4, "missing": 2, "failed": 0, "skipped": 0}

    archive = Archive(tmp_path / "a.zarr")
    m = archive.manifest().set_index("time")
    assert m.loc[_hour(2), "status"] == "missing" and "no REFC" in m.loc[_hour(2), "reason"]
    assert "TMP:2 m above ground" in m.loc[_hour(2), "reason"]
    assert m.loc[_hour(3), "status"] == "missing" and "HTTP 404" in m.loc[_hour(3), "reason"]
    for h in (0, 1, 4, 5):
        _stored_matches_file(archive, files[h], h)
        assert m.loc[_hour(h), "source"].startswith(f"{server.url}/good/hrrr.20190101/")

    grib_sent = server.bytes_sent(".grib2")
    whole = sum(f.stat().st_size for f in files.values())
    assert grib_sent == refc_bytes  # exactly the REFC messages, nothing else of the files
    assert server.bytes_sent() < 0.1 * whole  # the .idx files included
    ranges = [rng for target, rng, status in server.log if target.endswith(".grib2")]
    assert len(ranges) == 4 and all(r.startswith("bytes=") for r in ranges)
    assert any(r.endswith("-") for r in ranges)  # h4: REFC is the last message
    assert report.bytes_fetched == server.bytes_sent()
    assert report.whole_file_bytes == sum(files[h].stat().st_size for h in (0, 1, 4, 5))
    assert report.hours_fetched == 6


def test_500s_a_dropped_connection_and_a_stall_are_retried_and_the_hours_stored_intact(
    server, tmp_path
):
    files = {h: write_hour(server.root / "good", h)[0] for h in range(4)}
    server.faults = {
        _grib_path(0): ["500", "500"],
        _grib_path(1): ["drop"],
        _grib_path(2) + ".idx": ["500", "drop"],
        _grib_path(3): ["stall"],
    }
    report = fetch_hours(
        START,
        _hour(4),
        tmp_path / "a.zarr",
        base_url=f"{server.url}/good",
        grid=GRID,
        workers=1,
        progress=False,
        config=FAST,
    )
    assert report.counts()["stored"] == 4, report.problems()
    archive = Archive(tmp_path / "a.zarr")
    for h, f in files.items():
        _stored_matches_file(archive, f, h)
    assert server.asked[_grib_path(0)] == 3  # 500, 500, 206
    assert server.asked[_grib_path(1)] == 2  # cut mid-body, 206
    assert server.asked[_grib_path(2) + ".idx"] == 3  # 500, cut, 200
    assert server.asked[_grib_path(3)] == 2  # stalled past the read timeout, 206


def test_a_mirror_that_keeps_failing_ends_as_a_recorded_failure_and_the_next_mirror_is_tried(
    server, tmp_path
):
    files = {h: write_hour(server.root / "good", h)[0] for h in range(3)}
    server.always[_grib_path(1)] = "500"
    report = fetch_hours(
        START,
        _hour(3),
        tmp_path / "a.zarr",
        base_url=f"{server.url}/good",
        grid=GRID,
        workers=1,
        progress=False,
        config=FAST,
    )
    assert report.counts() == {"stored": 2, "missing": 0, "failed": 1, "skipped": 0}
    (problem,) = report.problems()
    assert "gave up after 4 attempts" in problem["reason"] and "HTTP 500" in problem["reason"]
    assert (
        Archive(tmp_path / "a.zarr").manifest().set_index("time").loc[_hour(1), "status"]
        == "failed"
    )

    # the same hour through three mirrors: the first lacks it, the second fails, the third has it
    (server.root / "copy").symlink_to(server.root / "good")
    field = fetch_hour(
        _hour(1),
        FetchConfig(
            mirrors=(
                Mirror("none", f"{server.url}/none"),
                Mirror("bad", f"{server.url}/good"),
                Mirror("copy", f"{server.url}/copy"),
            ),
            retries=1,
            backoff=0.01,
        ),
    )
    np.testing.assert_array_equal(field.dbz, decode_refc(files[1]).dbz)
    assert field.source.startswith(f"{server.url}/copy/")
    with pytest.raises(SourceError, match="HTTP 500.*HTTP 404"):
        fetch_hour(
            _hour(1),
            FetchConfig(
                mirrors=(Mirror("bad", f"{server.url}/good"), Mirror("none", f"{server.url}/none")),
                retries=0,
            ),
        )


def test_an_idx_that_does_not_match_its_grib2_file_is_caught_by_decoding(server, tmp_path):
    files = {h: write_hour(server.root / "corrupt", h, refc_at=2)[0] for h in range(4)}

    def rewrite(h: int, edit) -> None:
        idx = files[h].with_name(files[h].name + ".idx")
        lines = idx.read_text().splitlines()
        idx.write_text("\n".join(edit(lines)) + "\n")

    def shift(lines, n: int, by: int):
        parts = lines[n].split(":")
        parts[1] = str(int(parts[1]) + by)
        return [*lines[:n], ":".join(parts), *lines[n + 1 :]]

    offsets = [int(line.split(":")[1]) for line in idx_lines(files[0])]
    # h0: REFC's line carries the next message's offset: the range holds another field
    rewrite(0, lambda lines: shift(lines, 2, offsets[3] - offsets[2]))
    # h1: REFC's offset is 100 bytes off: the range does not start a message
    rewrite(1, lambda lines: shift(lines, 2, 100))
    # h2: the next line's offset is too small: the range cuts REFC short
    rewrite(2, lambda lines: shift(lines, 3, -500))
    # h3: an index of another, longer file: the range runs past this one's end
    rewrite(
        3,
        lambda lines: [
            *lines[:3],
            *shift(lines, 3, 10**6)[3:4],
            "5:2000000:d=2019010100:TMP:surface:anl:",
        ],
    )
    report = fetch_hours(
        START,
        _hour(4),
        tmp_path / "a.zarr",
        base_url=f"{server.url}/corrupt",
        grid=GRID,
        workers=1,
        progress=False,
        config=FAST,
    )
    assert report.counts() == {"stored": 0, "missing": 0, "failed": 4, "skipped": 0}
    reasons = {r["time"][:19]: r["reason"] for r in report.problems()}
    assert all("the .idx does not match the GRIB2 file" in r for r in reasons.values()), reasons
    assert "holds {shortName=" in reasons[str(_hour(0))]
    assert "not the start of a GRIB message" in reasons[str(_hour(1))]
    assert "range holds" in reasons[str(_hour(2))]
    assert len(Archive(tmp_path / "a.zarr")) == 0


def test_a_server_that_ignores_range_still_yields_only_the_message(server, tmp_path):
    path, size = write_hour(server.root / "norange", 0, refc_at=1)
    entries = parse_idx(path.with_name(path.name + ".idx").read_text())
    first, last = message_range(entries)
    stats = FetchStats()
    data = http_get(
        f"{server.url}/norange/{path_for_valid_time(_hour(0))}",
        FAST,
        byte_range=(first, last),
        stats=stats,
    )
    assert data == path.read_bytes()[first : last + 1]
    assert stats.file_size == path.stat().st_size


def test_a_proxy_from_the_environment_is_honoured(server, monkeypatch):
    path, _ = write_hour(server.root / "good", 0)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)  # the loopback server plays the proxy
    monkeypatch.setenv("http_proxy", server.url)
    field = fetch_hour(
        _hour(0), FetchConfig(mirrors=(Mirror("far", "http://hrrr.example.invalid/good"),))
    )
    np.testing.assert_array_equal(field.dbz, decode_refc(path).dbz)
    targets = [target for target, _, _ in server.log]
    assert targets and all(t.startswith("http://hrrr.example.invalid/good/") for t in targets)


def test_a_fetch_killed_part_way_fetches_only_what_is_not_stored_when_run_again(server, tmp_path):
    hours = range(8)
    files = {h: write_hour(server.root / "good", h)[0] for h in hours}
    target = tmp_path / "a.zarr"
    server.hold_after = 3  # serve three hours, then hold every request until killed
    script = (
        "import pyproj; from wxembed.pipelines.fetch import fetch_hours; "
        "from wxembed.grid import HRRR_CONUS; "
        f"fetch_hours('{START}', '{_hour(8)}', {str(target)!r}, base_url='{server.url}/good', "
        "grid=HRRR_CONUS.coarsen(8), workers=1, progress=False)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stored, deadline = 0, time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                stored = len(Archive(target))
            except Exception:  # noqa: BLE001 - a resize in progress
                stored = 0
            if stored >= 3 and server.served_grib > 3:  # the fourth hour is on the wire
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert stored == 3, f"could not catch the fetch part-way (stored {stored})"
    done = set(Archive(target).stored_times().tolist())

    server.hold_after = None
    server.release.set()
    server.reset()
    report = fetch_hours(
        START,
        _hour(8),
        target,
        base_url=f"{server.url}/good",
        grid=GRID,
        workers=1,
        progress=False,
        config=FAST,
    )
    assert report.skipped == 3 and report.counts()["stored"] == 5
    asked = {target_ for target_, _, _ in server.log}
    expected = {_grib_path(h) for h in hours if _hour(h).tolist() not in done}
    assert {t for t in asked if t.endswith(".grib2")} == expected
    archive = Archive(target)
    assert len(archive) == 8 and len(set(archive.slot_times.tolist())) == 8
    for h in hours:
        _stored_matches_file(archive, files[h], h)


def test_the_fetch_command_creates_an_hrrr_archive_and_reports_missing_hours(server, tmp_path):
    from typer.testing import CliRunner

    from wxembed.cli import app

    target = tmp_path / "hrrr.zarr"
    result = CliRunner().invoke(
        app,
        [
            "fetch",
            "--start",
            "2019-01-01T00",
            "--end",
            "2019-01-01T02",
            "--archive",
            str(target),
            "--base-url",
            f"{server.url}/empty",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "0 stored, 2 missing, 0 failed" in result.output and "HTTP 404" in result.output
    archive = Archive(target)
    assert archive.grid.same_as(HRRR_CONUS) and archive.summary()["missing"] == 2
    bad = CliRunner().invoke(
        app, ["fetch", "--start", "2019-01-02", "--end", "2019-01-01", "--archive", str(target)]
    )
    assert bad.exit_code == 2 and "must be after start" in bad.output


# ---- bodies that would hold a worker or fill its memory ----------------------------------------
def test_a_trickling_response_is_cut_off_at_the_request_timeout(server):
    write_hour(server.root / "good", 0)
    server.always[_grib_path(0) + ".idx"] = "trickle"  # a byte every 0.1 s: no read times out
    config = FetchConfig(read_timeout=0.5, request_timeout=1.0, retries=1, backoff=0.01)
    t0 = time.monotonic()
    with pytest.raises(
        SourceError, match=r"gave up after 2 attempts; last: the body took over 1 s"
    ):
        http_get(f"{server.url}{_grib_path(0)}.idx", config)
    assert time.monotonic() - t0 < 4.0  # two tries of 1 s, not the 30 s the server would trickle


@pytest.mark.parametrize("fault", ["flood", "flood-unsized"])
def test_an_idx_larger_than_any_inventory_is_refused_without_reading_it_all(server, fault):
    write_hour(server.root / "good", 0)
    server.always[_grib_path(0) + ".idx"] = fault  # 10^12 bytes declared, or no end at all
    stats = FetchStats()
    config = FetchConfig(read_timeout=1.0, request_timeout=5.0, retries=0)
    with pytest.raises(SourceError, match=r"more than the 1,048,576 .*an \.idx inventory may have"):
        http_get(f"{server.url}{_grib_path(0)}.idx", config, stats=stats)
    assert stats.bytes <= config.max_idx_bytes + (1 << 16)
    # the hour is recorded as failed, not fetched
    with pytest.raises(SourceError, match="an .idx inventory may have"):
        fetch_hour(_hour(0), FetchConfig(mirrors=(Mirror("x", f"{server.url}/good"),), retries=0))


def test_a_200_to_an_open_range_reads_the_message_its_header_declares_and_no_further(server):
    path, size = write_hour(server.root / "good", 0, refc_at=4)  # REFC last: range "first-"
    first, last = message_range(parse_idx(path.with_name(path.name + ".idx").read_text()))
    assert last is None
    server.always[_grib_path(0)] = "padded"  # the file, then zeros: 10^12 bytes declared
    stats = FetchStats()
    data = http_get(f"{server.url}{_grib_path(0)}", FAST, byte_range=(first, None), stats=stats)
    assert data == path.read_bytes()[first:]  # the whole message, exactly
    assert stats.bytes <= first + size + (1 << 16)


def test_a_message_larger_than_the_cap_is_refused(server):
    write_hour(server.root / "good", 0)
    config = FetchConfig(mirrors=(Mirror("x", f"{server.url}/good"),), max_message_bytes=1000)
    with pytest.raises(SourceError, match=r"would be [\d,]+ bytes, more than the 1,000"):
        fetch_hour(_hour(0), config)
