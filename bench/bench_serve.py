"""The explorer under load: ``wxembed serve`` on loopback, several clients at once.

Builds an index of ``--rows`` 50-number embeddings (one an hour from 1900, as
``bench_search.py`` does: ``--data walk`` embedding-like rows that drift from hour to hour, or
``--data random`` independent numbers) and an archive of ``--hours`` full-resolution HRRR hours
(cycling through a few rendered synthetic ones), starts ``wxembed serve`` on them in a process of
its own (127.0.0.1, a free port; it builds the approximate search structure before it listens
when the index has 200,000 rows or more), then runs one phase per endpoint with ``--clients``
client threads, each on its own keep-alive connection, sending requests back to back:

- ``search``: ``GET /api/hours/{hour}/similar?k=10`` for a random hour of the index (one day
  excluded on each side), for ``--seconds`` seconds (``search_1_client``: one client alone, a
  quarter of that time); ``search_exact`` and ``search_exact_1_client``: the same against a
  second server started with ``--exact`` (every row read per query), unless ``--no-exact``;
- ``png_cold``: ``GET /api/hours/{hour}/image.png`` (the full 1059 x 1799 map), each hour asked
  for once, not yet drawn (``png_cold_1_client``: a quarter of the hours, one client alone);
- ``png_cached``: every picture again, ``--repeat`` times each.

Prints ONE JSON object: per phase, requests, errors (non-200 or failed), requests/s and the
latency's p50, p95, p99 and max in ms; the search method each server reports (``/api/info``);
and the set-up times. The clients share the machine's cores with the server.

    python bench/bench_serve.py                       # 10^6 rows, 8 clients
    python bench/bench_serve.py --rows 100000 --seconds 10
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyproj  # noqa: F401  (before eccodes)


def _index(path: Path, rows: int, dim: int, data: str) -> np.ndarray:
    from bench_search import embeddings  # this folder's: the same rows as bench_search.py

    from wxembed.grid import HRRR_CONUS
    from wxembed.index import EmbeddingIndex
    from wxembed.model.checkpoint import ModelInfo

    matrix = embeddings(data, rows, dim, seed=0)  # (rows, dim)
    times = np.datetime64("1900-01-01T00", "s") + np.arange(rows) * np.timedelta64(1, "h")
    with EmbeddingIndex(path) as index:
        index.add_vectors(
            ModelInfo(f"bench-{rows}", "fast", dim, HRRR_CONUS.to_json()), times, matrix
        )
    return times


def _archive(path: Path, hours: int, distinct: int) -> np.ndarray:
    from wxembed.archive import Archive
    from wxembed.sources import DecodedField
    from wxembed.sources.synthetic import SynthConfig, render_hour

    config = SynthConfig(seed=0)
    t0 = np.datetime64("2024-07-01T00", "s")
    fields = [render_hour(config, t0 + np.timedelta64(h, "h")) for h in range(distinct)]
    archive = Archive.create(path, config.grid)
    for h in range(hours):
        f = fields[h % distinct]
        archive.write(DecodedField(t0 + np.timedelta64(h, "h"), f.grid, f.dbz, source="bench"))
    return archive.stored_times()


def _start_server(archive: Path, index: Path, *extra: str) -> tuple[subprocess.Popen, str, int]:
    command = [sys.executable, "-m", "wxembed", "serve", "--archive", str(archive)]
    command += ["--index", str(index), "--port", "0", *extra]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stdout.readline().decode()
    if "http://" not in line:
        proc.kill()
        raise SystemExit(f"wxembed serve did not start: {line}{proc.stderr.read().decode()}")
    address = line.split(" at ")[1].split()[0]  # http://127.0.0.1:PORT/
    host, port = address.removeprefix("http://").rstrip("/").rsplit(":", 1)
    return proc, host, int(port)


def _iso(t) -> str:
    return str(np.datetime64(t, "s")) + "Z"


def _phase(host: str, port: int, clients: int, paths, seconds: float | None) -> dict:
    """``clients`` threads sending GETs back to back: each takes the next path of ``paths``
    (an iterator shared by all) until it runs out or ``seconds`` have passed."""
    lock, lat, errors = threading.Lock(), [], [0]
    it = iter(paths)
    deadline = None if seconds is None else time.perf_counter() + seconds

    def client():
        con = http.client.HTTPConnection(host, port, timeout=60)
        while deadline is None or time.perf_counter() < deadline:
            with lock:
                path = next(it, None)
            if path is None:
                break
            t0 = time.perf_counter()
            try:
                con.request("GET", path)
                r = con.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                con.close()
                con = http.client.HTTPConnection(host, port, timeout=60)
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                errors[0] += not ok
        con.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    a = np.asarray(lat) * 1e3
    return {
        "requests": len(lat),
        "errors": errors[0],
        "requests_per_s": round(len(lat) / wall, 1),
        **{f"p{q}_ms": round(float(np.percentile(a, q)), 1) for q in (50, 95, 99)},
        "max_ms": round(float(a.max()), 1),
    }


def _search_method(host: str, port: int) -> dict:
    con = http.client.HTTPConnection(host, port, timeout=60)
    con.request("GET", "/api/info")
    info = json.loads(con.getresponse().read())
    con.close()
    return (info.get("index") or {}).get("search")


def _exact_baseline(args, tmp: Path, times: np.ndarray, result: dict) -> None:
    """The search phases against a server started with ``--exact`` (one at a time: the other
    server is stopped, so the two never share the cores)."""
    t0 = time.perf_counter()
    proc, host, port = _start_server(tmp / "archive.zarr", tmp / "index.duckdb", "--exact")
    result["setup_seconds"]["server_start_exact"] = round(time.perf_counter() - t0, 1)
    try:
        result["search_method_exact"] = _search_method(host, port)
        rng = np.random.default_rng(1)  # the same hours as the default server's phases
        searches = (
            f"/api/hours/{_iso(times[i])}/similar?k=10"
            for i in iter(lambda: int(rng.integers(len(times))), None)
        )
        result["search_exact_1_client"] = _phase(host, port, 1, searches, args.seconds / 4)
        result["search_exact"] = _phase(host, port, args.clients, searches, args.seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="index rows (hours)")
    parser.add_argument("--dim", type=int, default=50, help="embedding size")
    parser.add_argument("--hours", type=int, default=64, help="full-resolution archive hours")
    parser.add_argument("--distinct", type=int, default=4, help="distinct rendered hours in them")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the search phase")
    parser.add_argument("--repeat", type=int, default=4, help="cached requests per picture")
    parser.add_argument(
        "--data", choices=("walk", "random"), default="walk", help="embedding-like or random rows"
    )
    parser.add_argument(
        "--no-exact", action="store_true", help="skip the search phases of a --exact server"
    )
    args = parser.parse_args()

    result: dict = {
        "machine": platform.processor() or platform.machine(),
        "cpus": len(os.sched_getaffinity(0)),
        "rows": args.rows,
        "clients": args.clients,
        "data": args.data,
        "setup_seconds": {},
    }
    with tempfile.TemporaryDirectory(prefix="wxembed-bench-serve-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        times = _index(tmp / "index.duckdb", args.rows, args.dim, args.data)
        result["setup_seconds"]["index"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        hours = _archive(tmp / "archive.zarr", args.hours, args.distinct)
        result["setup_seconds"]["archive"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        proc, host, port = _start_server(tmp / "archive.zarr", tmp / "index.duckdb")
        result["setup_seconds"]["server_start"] = round(time.perf_counter() - t0, 1)
        try:
            result["search_method"] = _search_method(host, port)
            rng = np.random.default_rng(1)
            searches = (
                f"/api/hours/{_iso(times[i])}/similar?k=10"
                for i in iter(lambda: int(rng.integers(len(times))), None)
            )
            pictures = [f"/api/hours/{_iso(t)}/image.png" for t in hours]
            alone = len(pictures) // 4  # a quarter for one client, the rest for them all
            result["search_1_client"] = _phase(host, port, 1, searches, args.seconds / 4)
            result["search"] = _phase(host, port, args.clients, searches, args.seconds)
            result["png_cold_1_client"] = _phase(host, port, 1, pictures[:alone], None)
            result["png_cold"] = _phase(host, port, args.clients, pictures[alone:], None)
            again = [p for p in pictures for _ in range(args.repeat)]
            result["png_cached"] = _phase(host, port, args.clients, again, None)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        if not args.no_exact:
            _exact_baseline(args, tmp, times, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
