"""Fetch benchmark: hours per second and bytes per hour, by byte range, against a loopback server.

A ThreadingHTTPServer on 127.0.0.1 serves the NOAA layout: one GRIB2 file per hour, made with the
project's encoder on the full HRRR grid, holding the hour's synthetic REFC among ``--extra``
other messages (a few distinct noisy full-grid fields, repeated; REFC about 40 % of the way in,
as in a real ``wrfsfcf00``), and a matching ``.idx``. The files are assembled in memory from
shared pieces and answer Range requests; the server counts every body byte it sends, which is
the ground truth for what crossed the wire. ``wxembed.pipelines.fetch.fetch_hours`` then
fetches the hours
into a fresh archive through the Beam pipeline, and once more to time the resume (all skipped).

Prints one JSON object. Run: ``python bench/bench_fetch.py [--hours 24] [--workers 2]``.
Loopback has no network latency or bandwidth limit: hours per second here is the decode and
archive cost plus the pipeline's start-up, an upper bound for a real mirror.
"""

from __future__ import annotations

import argparse
import bisect
import json
import logging
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyproj  # noqa: F401  (before eccodes)


class VirtualFile:
    """A file made of shared byte pieces, so many 100 MB files cost little memory."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces
        self.starts = np.cumsum([0] + [len(p) for p in pieces]).tolist()
        self.size = self.starts[-1]

    def read(self, first: int, last: int):
        """Yield the bytes first..last (inclusive), piece by piece."""
        i = bisect.bisect_right(self.starts, first) - 1
        pos = first
        while pos <= last and i < len(self.pieces):
            piece, start = self.pieces[i], self.starts[i]
            chunk = piece[pos - start : last + 1 - start]
            yield chunk
            pos += len(chunk)
            i += 1


class CountingServer:
    """Serves ``files`` (path -> VirtualFile or bytes) with Range support; counts body bytes."""

    def __init__(self, files: dict[str, VirtualFile | bytes]):
        self.files = files
        self.sent: dict[str, int] = {}
        self.lock = threading.Lock()
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                try:
                    srv.handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        f = self.files.get(req.path)
        if f is None:
            req.send_response(404)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        if isinstance(f, bytes):
            f = VirtualFile([f])
        rng = req.headers.get("Range")
        first, last = 0, f.size - 1
        if rng:
            a, _, b = rng.removeprefix("bytes=").partition("-")
            first, last = int(a), min(int(b) if b else f.size - 1, f.size - 1)
            req.send_response(206)
            req.send_header("Content-Range", f"bytes {first}-{last}/{f.size}")
        else:
            req.send_response(200)
        req.send_header("Content-Length", str(last - first + 1))
        req.end_headers()
        n = 0
        for chunk in f.read(first, last):
            req.wfile.write(chunk)
            n += len(chunk)
        with self.lock:
            self.sent[req.path] = self.sent.get(req.path, 0) + n

    def total(self, suffix: str = "") -> int:
        with self.lock:
            return sum(n for p, n in self.sent.items() if p.endswith(suffix))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _idx_body(message: bytes, tmp: Path) -> str:
    """The idx line of one message without its number and offset: ``d=...:NAME:level:fcst:``."""
    from wxembed.sources.hrrr import idx_lines

    path = tmp / "one.grib2"
    path.write_bytes(message)
    (line,) = idx_lines(path)
    return line.split(":", 2)[2]


def build_archive(args, tmp: Path) -> tuple[dict[str, VirtualFile | bytes], dict]:
    from wxembed.grid import HRRR_CONUS
    from wxembed.sources.grib import GribParam, encode_message
    from wxembed.sources.hrrr import path_for_valid_time
    from wxembed.sources.synthetic import SynthConfig, render_hour

    grid = HRRR_CONUS
    start = np.datetime64(args.start, "s")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : grid.ny, 0 : grid.nx]
    params = [
        GribParam(0, 0, 0, 103, 2),
        GribParam(0, 0, 6, 103, 2),
        GribParam(0, 1, 1, 103, 2),
        GribParam(0, 2, 2, 103, 10),
        GribParam(0, 2, 3, 103, 10),
        GribParam(0, 3, 0, 1, 0),
        GribParam(0, 3, 5, 1, 0),
        GribParam(0, 19, 0, 1, 0),
    ]
    distinct = []
    for i, p in enumerate(params):
        values = 100 * i + 10 * np.sin(xx / (80 + 9 * i)) + 5 * np.cos(yy / (60 + 7 * i))
        values = values + rng.normal(0, 0.5, grid.shape)
        distinct.append(encode_message(values, grid, start, param=p))
    bodies = [_idx_body(m, tmp) for m in distinct]
    extras = [(distinct[i % len(distinct)], bodies[i % len(distinct)]) for i in range(args.extra)]
    at = round(0.4 * len(extras))  # REFC's place among the messages
    config = SynthConfig(seed=0, grid=grid)
    files: dict[str, VirtualFile | bytes] = {}
    refc_sizes, file_sizes = [], []
    for h in range(args.hours):
        t = start + np.timedelta64(h, "h")
        field = render_hour(config, t)
        refc = encode_message(np.where(np.isnan(field.dbz), -32.0, field.dbz), grid, t)
        pieces = [*extras[:at], (refc, _idx_body(refc, tmp)), *extras[at:]]
        lines, offset = [], 0
        for n, (message, body) in enumerate(pieces, 1):
            lines.append(f"{n}:{offset}:{body}")
            offset += len(message)
        path = "/" + path_for_valid_time(t)
        files[path] = VirtualFile([m for m, _ in pieces])
        files[path + ".idx"] = ("\n".join(lines) + "\n").encode()
        refc_sizes.append(len(refc))
        file_sizes.append(files[path].size)
    info = {
        "grid": grid.describe(),
        "messages_per_file": len(extras) + 1,
        "refc_message_number": at + 1,
        "whole_file_bytes_per_hour_median": int(np.median(file_sizes)),
        "refc_bytes_per_hour_median": int(np.median(refc_sizes)),
        "refc_bytes_total": int(sum(refc_sizes)),
        "whole_file_bytes_total": int(sum(file_sizes)),
    }
    return files, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=int, default=24, help="hours (files) to fetch")
    parser.add_argument("--start", default="2024-07-01T12", help="first valid time")
    parser.add_argument("--extra", type=int, default=48, help="other messages in each file")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)

    from wxembed.pipelines.fetch import fetch_hours

    out: dict = {"hours": args.hours, "workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="wxembed-bench-fetch-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        files, info = build_archive(args, tmp)
        out["build_seconds"] = round(time.perf_counter() - t0, 1)
        out.update(info)
        server = CountingServer(files)
        end = np.datetime64(args.start, "s") + np.timedelta64(args.hours, "h")
        try:
            t0 = time.perf_counter()
            report = fetch_hours(
                args.start,
                end,
                tmp / "a.zarr",
                base_url=server.url,
                workers=args.workers,
                progress=False,
            )
            seconds = time.perf_counter() - t0
            sent, sent_idx, sent_grib = server.total(), server.total(".idx"), server.total(".grib2")
            t0 = time.perf_counter()
            again = fetch_hours(
                args.start,
                end,
                tmp / "a.zarr",
                base_url=server.url,
                workers=args.workers,
                progress=False,
            )
            rerun_seconds = time.perf_counter() - t0
            rerun_sent = server.total() - sent
        finally:
            server.close()
    stored = report.counts()["stored"]
    out.update(
        {
            "stored": stored,
            "problems": len(report.problems()),
            "fetch_seconds": round(seconds, 2),
            "hours_per_second": round(stored / seconds, 2),
            "server_bytes_sent_per_hour": round(sent / args.hours),
            "server_grib2_range_bytes_per_hour": round(sent_grib / args.hours),
            "server_idx_bytes_per_hour": round(sent_idx / args.hours),
            "grib2_range_bytes_equal_refc_messages": sent_grib == info["refc_bytes_total"],
            "whole_file_over_sent": round(info["whole_file_bytes_total"] / sent, 1),
            "client_counted_bytes": report.bytes_fetched,
            "client_counted_whole_file_bytes": report.whole_file_bytes,
            "rerun_seconds": round(rerun_seconds, 2),
            "rerun_skipped": again.skipped,
            "rerun_bytes_sent": rerun_sent,
        }
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
