"""Scale benchmark: ingest and embed hours/s on Beam's DirectRunner and on Dask with 1 and 2
worker processes, into an archive on local disk and on a loopback S3 server (moto); the ratio of
2 Dask workers to 1; and, on the full HRRR grid, the per-hour costs and bytes that the README's
estimate for a decade of HRRR is made from.

Prints one JSON object. Run: ``python bench/bench_scale.py [--hours 12] [--coarsen 4]
[--full-hours 2]`` (needs the ``distributed`` extra; about 2 minutes on 2 cores). Ingest reads
synthetic GRIB2 files in the NOAA layout (real GRIB2 decoding); embed uses a freshly initialised
network of our architecture (its cost does not depend on its weights). Each configuration gets
a fresh archive; cluster start-up is timed apart from the pipelines.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import pyproj  # noqa: F401  (before eccodes)


def untrained_checkpoint(path: Path, grid) -> Path:
    """A checkpoint of a fresh default network on ``grid`` (weights do not change the cost)."""
    import lightning as L

    from wxembed.model.task import AutoencoderModule

    module = AutoencoderModule("fast", grid.shape, {}, grid_json=grid.to_json())
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def start_s3() -> object:
    """moto's S3 server on loopback, with a bucket, reachable through AWS_* variables."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
    )
    import boto3

    boto3.client("s3").create_bucket(Bucket="bench")
    return server


def run_matrix(args, tmp: Path, grid, files: Path, ckpt: Path) -> dict:
    """ingest + embed for every runner x store; hours/s of each."""
    from dask.distributed import LocalCluster

    from wxembed.pipelines import runner_args
    from wxembed.pipelines.embed import embed_archive
    from wxembed.pipelines.ingest import ingest_files

    out: dict = {}
    runners = [("direct-2", None, 2)] + [(f"dask-{n}", n, n) for n in (1, 2)]
    for name, dask_workers, workers in runners:
        cluster, beam_args = None, None
        if dask_workers:
            started, cluster = timed(
                LocalCluster, n_workers=dask_workers, threads_per_worker=1, dashboard_address=":0"
            )
            beam_args = runner_args("dask", cluster.scheduler_address)
            out[f"{name}_cluster_start_s"] = round(started, 2)
            # warm the workers (imports, the model) on four hours, untimed: a cluster serves
            # many runs; the DirectRunner starts its processes anew each run, so it is not warmed
            warm, _ = timed(warm_up, files, tmp / f"{name}-warm", ckpt, cluster.scheduler_address)
            out[f"{name}_warm_up_s"] = round(warm, 2)
        try:
            for store in ("local", "s3"):
                base = str(tmp / f"{name}") if store == "local" else f"s3://bench/{name}"
                archive = f"{base}/a.zarr"
                s_in, rep = timed(
                    ingest_files,
                    files,
                    archive,
                    beam_args=beam_args,
                    workers=workers,
                    progress=False,
                )
                assert rep.counts()["stored"] == args.hours, rep.counts()
                s_emb, emb = timed(
                    embed_archive,
                    archive,
                    ckpt,
                    tmp / f"{name}-{store}.duckdb",
                    shards_dir=f"{base}/shards",
                    beam_args=beam_args,
                    workers=workers,
                    progress=False,
                )
                assert emb["hours"] == args.hours
                out[f"{name}_{store}"] = {
                    "ingest_hours_per_s": round(args.hours / s_in, 3),
                    "embed_hours_per_s": round(args.hours / s_emb, 3),
                    "ingest_s": round(s_in, 2),
                    "embed_s": round(s_emb, 2),
                }
                print(name, store, out[f"{name}_{store}"], file=sys.stderr, flush=True)
        finally:
            if cluster is not None:
                cluster.close()
    for store in ("local", "s3"):
        one, two = out[f"dask-1_{store}"], out[f"dask-2_{store}"]
        out[f"dask_2_over_1_{store}"] = {
            k: round(two[k] / one[k], 2) for k in ("ingest_hours_per_s", "embed_hours_per_s")
        }
    return out


def warm_up(files: Path, scratch: Path, ckpt: Path, address: str) -> None:
    """Ingest four hours of ``files`` into ``scratch``, and load the model in every worker
    (Dask may run a small job's partitions on one worker only)."""
    from dask.distributed import Client

    from wxembed.model.checkpoint import Checkpoint
    from wxembed.pipelines import runner_args
    from wxembed.pipelines.embed import EmbedHours
    from wxembed.pipelines.ingest import expand_inputs, ingest_files

    first = expand_inputs(files)[:4]
    ingest_files(first, scratch / "a.zarr", beam_args=runner_args("dask", address), progress=False)
    embed = EmbedHours(str(scratch / "a.zarr"), str(ckpt), Checkpoint(ckpt).model_id, "")
    with Client(address) as client:
        client.run(embed.setup)


def full_grid_costs(hours: int, tmp: Path) -> dict:
    """Per-hour seconds (one process) and bytes on the full HRRR grid: GRIB2 REFC message,
    stored chunk, decode+store, embed."""
    from wxembed.archive import Archive
    from wxembed.pipelines.embed import embed_archive
    from wxembed.pipelines.ingest import ingest_files
    from wxembed.sources.synthetic import SynthConfig, write_grib_layout

    config = SynthConfig(seed=1)
    files = write_grib_layout(config, "2024-07-02T00", hours, tmp / "full-noaa")
    grib_bytes = sum(p.stat().st_size for p in files) / hours
    ingest_files(files[:1], tmp / "warm.zarr", workers=1, progress=False)  # imports, eccodes
    s_in, _ = timed(ingest_files, tmp / "full-noaa", tmp / "full.zarr", workers=1, progress=False)
    archive = Archive(tmp / "full.zarr")
    chunks = list((tmp / "full.zarr" / "reflectivity").rglob("c/*/0/0"))
    stored = sum(p.stat().st_size for p in chunks) / max(len(chunks), 1)
    ckpt = untrained_checkpoint(tmp / "full.ckpt", archive.grid)
    embed_archive(tmp / "full.zarr", ckpt, tmp / "warm.duckdb", workers=1, progress=False)
    s_emb, _ = timed(
        embed_archive, tmp / "full.zarr", ckpt, tmp / "full.duckdb", workers=1, progress=False
    )
    return {
        "grid": archive.grid.describe(),
        "hours": hours,
        "grib2_refc_bytes_per_hour": round(grib_bytes),
        "stored_bytes_per_hour": round(stored),
        "ingest_s_per_hour_1proc": round(s_in / hours, 3),
        "embed_s_per_hour_1proc_cpu": round(s_emb / hours, 3),
        "note": "ingest and embed include each run's fixed start-up, spread over the hours",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=int, default=12, help="hours per configuration")
    parser.add_argument("--coarsen", type=int, default=4, help="HRRR grid coarsened by this")
    parser.add_argument("--full-hours", type=int, default=2, help="hours on the full grid (0: no)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from wxembed.grid import HRRR_CONUS
    from wxembed.sources.synthetic import SynthConfig, write_grib_layout

    grid = HRRR_CONUS.coarsen(args.coarsen)
    out: dict = {"grid": grid.describe(), "hours": args.hours, "cpus": os.cpu_count()}
    server = start_s3()
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="wxembed-bench-scale-") as tmp:
            tmp = Path(tmp)
            write_grib_layout(
                SynthConfig(seed=0, grid=grid), "2024-07-01T00", args.hours, tmp / "noaa"
            )
            ckpt = untrained_checkpoint(tmp / "u.ckpt", grid)
            out["runs"] = run_matrix(args, tmp, grid, tmp / "noaa", ckpt)
            if args.full_hours:
                out["full_grid"] = full_grid_costs(args.full_hours, tmp)
    finally:
        server.stop()
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
