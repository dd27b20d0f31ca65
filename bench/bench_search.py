"""Embedding index benchmark: search latency at 10^4, 10^5 and 10^6 hours, and embedding throughput.

Prints ONE JSON object:

- ``search``: for each size, a DuckDB index of 50-number embeddings (one an hour from 1900;
  ``--data walk``: embedding-like rows that drift from hour to hour, see :func:`embedding_like`;
  ``--data random``: independent normal numbers, with no neighbourhoods), the seconds to load
  them once (``vectors()``), and the latency of a query through
  :meth:`wxembed.index.EmbeddingIndex.search` (an hour of the index, k=10, one day excluded on
  each side): median, 95th percentile and max over ``--queries`` random hours, for Euclidean
  distance, the same with month and hour-of-day filters (an eighth of the rows) and with 18
  hours of the day (three quarters), and cosine distance; each exact
  (``exact=True``) and as searched by default (``*_default``: approximate from 200,000 rows,
  :mod:`wxembed.index.ann`) with its ``recall_at_10`` against the exact answers, and ``ann``:
  per metric, the structure's build seconds, lists, calibrated ``nprobe`` and recall, and
  whether it was kept.
- ``embed``: an archive at full HRRR resolution (``--hours`` hours cycling through
  ``--distinct`` synthetic ones) embedded by the default fast network (untrained: the cost does
  not depend on the weights). ``model_hours_per_s_N_threads`` is the network alone (batches
  already in memory, normalise + encode) on N torch threads; ``pipeline_hours_per_s`` is
  :func:`wxembed.pipelines.embed.embed_archive` end to end (Beam DirectRunner start-up, reading
  the archive, encoding, Parquet shards, loading the index) and ``pipeline_marginal_hours_per_s``
  the rate once the workers are up (against a run on one batch of hours); the peak resident
  memory of the driver and its workers shows that the archive is never held whole.

    python bench/bench_search.py                   # CPU
    python bench/bench_search.py --device cuda     # the embedding part on a GPU
    python bench/bench_search.py --skip-embed      # search only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyproj  # noqa: F401  (before eccodes)


def _ms(values: list[float]) -> dict:
    a = np.asarray(values) * 1e3
    return {
        "median_ms": round(float(np.median(a)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "max_ms": round(float(a.max()), 2),
    }


def embedding_like(n: int, d: int, seed: int = 0, latent: int = 16) -> np.ndarray:
    """(n, d) rows that drift from hour to hour as a radar archive's embeddings do: an AR(1)
    walk (0.95 an hour) in ``latent`` directions seen through a fixed projection, plus noise.
    Synthetic (there is no archive of a million real hours here); ``--data random`` is the
    other extreme, numbers with no neighbourhoods at all."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    phi = 0.95
    steps = rng.standard_normal((n, latent), dtype=np.float32)
    walk = lfilter([np.sqrt(1 - phi**2)], [1, -phi], steps, axis=0).astype(np.float32)
    x = walk @ (rng.standard_normal((latent, d), dtype=np.float32) / np.sqrt(latent))
    x += 0.1 * rng.standard_normal((n, d), dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)  # (n, d)


def embeddings(kind: str, n: int, d: int, seed: int = 0) -> np.ndarray:
    """``--data``: ``walk`` (:func:`embedding_like`) or ``random`` (independent normals)."""
    if kind == "walk":
        return embedding_like(n, d, seed)
    return np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)


def _timed(index, picks, exact: bool, kwargs: dict) -> tuple[list[float], list[set]]:
    lat, found = [], []
    for t in picks:
        t0 = time.perf_counter()
        df = index.search(t, k=10, exclude_hours=24, exact=exact, **kwargs)
        lat.append(time.perf_counter() - t0)
        found.append(set(df.time))
    return lat, found


def bench_search(n: int, d: int, queries: int, tmp: Path, data: str, seed: int = 0) -> dict:
    from wxembed.grid import HRRR_CONUS
    from wxembed.index import EmbeddingIndex, ann
    from wxembed.model.checkpoint import ModelInfo

    rng = np.random.default_rng(seed)
    matrix = embeddings(data, n, d, seed)  # (n, d)
    times = np.datetime64("1900-01-01T00", "s") + np.arange(n) * np.timedelta64(1, "h")
    info = ModelInfo(f"bench-{n}", "fast", d, HRRR_CONUS.to_json())
    path = tmp / f"search-{n}.duckdb"
    t0 = time.perf_counter()
    with EmbeddingIndex(path) as index:
        index.add_vectors(info, times, matrix)
    insert_s = time.perf_counter() - t0
    del matrix
    out: dict = {"rows": n, "embedding_dim": d, "insert_seconds": round(insert_s, 2)}
    with EmbeddingIndex(path, read_only=True) as index:
        t0 = time.perf_counter()
        index.vectors()
        out["load_seconds"] = round(time.perf_counter() - t0, 3)
        picks = times[rng.integers(0, n, queries)]
        cases = {
            "euclidean": {},
            "euclidean_filtered": {"months": [6, 7, 8], "hours": list(range(12, 24))},
            "euclidean_18_hours_of_day": {"hours": list(range(18))},  # 3/4 of the rows
            "cosine": {"metric": "cosine"},
        }
        vs = index.vectors()
        out["ann"] = {}
        for metric in ("euclidean", "cosine"):
            vs.searcher(metric, wait=True)  # build the structure (above ann.ANN_MIN_ROWS)
            out["ann"][metric] = ann.status(vs, metric)
        for name, kwargs in cases.items():
            index.search(picks[0], k=10, exact=True, **kwargs)  # warm (norms, unit rows)
            lat, truth = _timed(index, picks, True, kwargs)
            out[name] = _ms(lat)
            lat, found = _timed(index, picks, False, kwargs)
            pairs = zip(truth, found, strict=True)
            recall = np.mean([len(a & b) / max(1, len(a)) for a, b in pairs])
            out[f"{name}_default"] = {**_ms(lat), "recall_at_10": round(float(recall), 4)}
    path.unlink()
    return out


def _untrained_checkpoint(grid, path: Path) -> Path:
    """A checkpoint of the default fast network, untrained, in the layout training writes."""
    import torch

    from wxembed.model.task import AutoencoderModule

    torch.manual_seed(0)
    module = AutoencoderModule(
        "fast", grid.shape, {}, loss="weighted_logcosh", grid_json=grid.to_json()
    )
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (Linux /proc), in MiB."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(status.split("VmRSS:")[1].split()[0])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total / 1024


class PeakMemory:
    """Samples the resident memory of this process and its workers every 0.1 s."""

    def __enter__(self):
        import threading

        self.peak, self._stop = 0.0, threading.Event()
        self.base = _tree_rss_mb(os.getpid())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, _tree_rss_mb(os.getpid()))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _archive(path: Path, hours: int, distinct: int, start: str = "2024-07-01T00"):
    """An archive of ``hours`` full-resolution hours cycling through ``distinct`` rendered
    ones (embedding costs the same whatever the storms; rendering is not what is measured)."""
    from wxembed.archive import Archive
    from wxembed.sources import DecodedField
    from wxembed.sources.synthetic import SynthConfig, render_hour

    config = SynthConfig(seed=0)
    t0 = np.datetime64(start, "s")
    fields = [render_hour(config, t0 + np.timedelta64(h, "h")) for h in range(distinct)]
    archive = Archive.create(path, config.grid)
    for h in range(hours):
        f = fields[h % distinct]
        archive.write(DecodedField(t0 + np.timedelta64(h, "h"), f.grid, f.dbz, source="bench"))
    return archive


def bench_embed(args: argparse.Namespace, tmp: Path) -> dict:
    import torch

    from wxembed.model.encoder import EmbeddingModel
    from wxembed.pipelines.embed import embed_archive

    t0 = time.perf_counter()
    small = _archive(tmp / "small.zarr", args.batch, min(args.distinct, args.batch))
    archive = _archive(tmp / "full.zarr", args.hours, args.distinct)
    out: dict = {
        "grid": archive.grid.describe(),
        "archive_seconds": round(time.perf_counter() - t0, 1),
    }
    ckpt = _untrained_checkpoint(archive.grid, tmp / "untrained.ckpt")

    # the network alone, batches in memory, on one thread and on all of them
    model = EmbeddingModel(ckpt, device=args.device, batch_size=args.batch)
    raw = archive.read_raw(archive.stored_times()[: args.batch])  # (batch, ny, nx) uint8
    cuda = model.device.type == "cuda"
    all_threads = torch.get_num_threads()
    out["model"] = {"device": str(model.device), "batch": args.batch}
    for threads in [all_threads] if cuda else sorted({1, all_threads}):
        torch.set_num_threads(threads)
        model.encode_raw(raw)  # warm-up
        if cuda:
            torch.cuda.synchronize()
        rounds = max(1, args.model_rounds)
        t0 = time.perf_counter()
        for _ in range(rounds):
            model.encode_raw(raw)
        if cuda:
            torch.cuda.synchronize()
        rate = round(rounds * len(raw) / (time.perf_counter() - t0), 2)
        out["model"][f"model_hours_per_s_{threads}_threads"] = rate
    torch.set_num_threads(all_threads)
    del model, raw

    # the pipeline end to end, on a batch of hours and on the whole archive: the difference
    # is the rate once the workers are up
    runs = {}
    for name, a in (("small", small), ("full", archive)):
        with PeakMemory() as mem:
            report = embed_archive(
                a.path,
                ckpt,
                tmp / f"{name}.duckdb",
                batch_size=args.batch,
                workers=args.workers,
                progress=False,
                device=args.device,
            )
        runs[name] = (report, mem)
    full, mem = runs["full"]
    extra_hours = full["hours"] - runs["small"][0]["hours"]
    extra_seconds = full["seconds"] - runs["small"][0]["seconds"]
    out["pipeline"] = {
        "device": full["device"],
        "workers": args.workers,
        "batch": args.batch,
        "hours": full["hours"],
        "seconds": full["seconds"],
        "pipeline_hours_per_s": full["hours_per_s"],
        "pipeline_marginal_hours_per_s": round(extra_hours / extra_seconds, 2)
        if extra_seconds > 0
        else None,
        "startup_seconds_small_run": runs["small"][0]["seconds"],
        "archive_uint8_mib": round(full["hours"] * archive.grid.size / 2**20, 1),
        "rss_mib_before": round(mem.base, 1),
        "rss_mib_peak_driver_and_workers": round(mem.peak, 1),
        "rss_mib_peak_small_run": round(runs["small"][1].peak, 1),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="index sizes")
    parser.add_argument("--dim", type=int, default=50, help="embedding size")
    parser.add_argument("--queries", type=int, default=50, help="timed queries per case")
    parser.add_argument(
        "--data", choices=("walk", "random"), default="walk", help="embedding-like or random rows"
    )
    parser.add_argument("--hours", type=int, default=64, help="full-resolution hours to embed")
    parser.add_argument("--distinct", type=int, default=8, help="distinct rendered hours in them")
    parser.add_argument("--batch", type=int, default=8, help="hours per forward pass")
    parser.add_argument("--workers", type=int, default=2, help="DirectRunner worker processes")
    parser.add_argument("--model-rounds", type=int, default=3, help="timed batches, network alone")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (embedding only)")
    parser.add_argument("--skip-embed", action="store_true", help="search latency only")
    parser.add_argument("--skip-search", action="store_true", help="embedding throughput only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)

    import torch

    result: dict = {
        "machine": platform.processor() or platform.machine(),
        "cpus": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
    }
    with tempfile.TemporaryDirectory(prefix="wxembed-bench-") as tmp:
        tmp = Path(tmp)
        if not args.skip_search:
            result["search"] = [
                bench_search(int(n), args.dim, args.queries, tmp, args.data)
                for n in args.sizes.split(",")
            ]
        if not args.skip_embed:
            result["embed"] = bench_embed(args, tmp)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
