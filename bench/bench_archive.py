"""Archive benchmark: synthetic generation speed, stored bytes per hour, GRIB2 ingest throughput.

Prints one JSON object. Run: ``python bench/bench_archive.py [--hours 720] [--ingest-hours 48]``
(full HRRR grid, DirectRunner with 2 local workers).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pyproj  # noqa: F401  (before eccodes)

FLOAT32_BYTES_PER_HOUR = 1059 * 1799 * 4  # 7.62 MB: one HRRR REFC image as float32 (TFRecords)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--hours", type=int, default=720, help="synthetic hours to generate (a month)"
    )
    parser.add_argument("--ingest-hours", type=int, default=48, help="GRIB2 files to ingest")
    parser.add_argument("--start", default="2024-07-01T00")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from wxembed.archive import Archive
    from wxembed.pipelines.ingest import ingest_files, ingest_synthetic
    from wxembed.sources.synthetic import SynthConfig, render_hour, write_grib_layout

    config = SynthConfig(seed=0)
    out: dict = {"grid": config.grid.describe(), "workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="wxembed-bench-") as tmp:
        tmp = Path(tmp)
        # 1. render only, one process: seconds per hour
        t0 = time.perf_counter()
        for h in range(12):
            render_hour(config, np.datetime64(args.start, "s") + np.timedelta64(h, "h"))
        out["render_seconds_per_hour_1proc"] = round((time.perf_counter() - t0) / 12, 4)

        # 2. a month of synthetic hours into an archive through the Beam pipeline
        t0 = time.perf_counter()
        report = ingest_synthetic(
            config, args.start, args.hours, tmp / "month.zarr", workers=args.workers, progress=False
        )
        seconds = time.perf_counter() - t0
        out["synth_hours"] = report.counts()["stored"]
        out["synth_seconds"] = round(seconds, 1)
        out["synth_hours_per_second"] = round(args.hours / seconds, 2)

        # 3. stored bytes per hour: the hour chunks on disk
        sizes = [
            p.stat().st_size
            for p in (tmp / "month.zarr" / "reflectivity" / "c").rglob("*")
            if p.is_file()
        ]
        median = float(np.median(sizes))
        out["stored_bytes_per_hour_median"] = int(median)
        out["stored_bytes_per_hour_max"] = int(max(sizes))
        out["float32_bytes_per_hour"] = FLOAT32_BYTES_PER_HOUR
        out["compression_vs_float32"] = round(FLOAT32_BYTES_PER_HOUR / median, 1)
        out["archive_hours_stored"] = len(Archive(tmp / "month.zarr"))

        # 4. GRIB2 ingest throughput
        t0 = time.perf_counter()
        paths = write_grib_layout(config, args.start, args.ingest_hours, tmp / "noaa")
        out["grib_write_seconds_per_hour"] = round((time.perf_counter() - t0) / len(paths), 3)
        out["grib_bytes_per_hour_median"] = int(np.median([p.stat().st_size for p in paths]))
        t0 = time.perf_counter()
        report = ingest_files(
            tmp / "noaa", tmp / "ingest.zarr", workers=args.workers, progress=False
        )
        seconds = time.perf_counter() - t0
        out["ingest_hours"] = report.counts()["stored"]
        out["ingest_seconds"] = round(seconds, 1)
        out["ingest_hours_per_second"] = round(len(paths) / seconds, 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
