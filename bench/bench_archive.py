"""Archive benchmark: synthetic generation speed, stored bytes per hour, GRIB2 ingest throughput,
and how many frames a second each reader decodes from the reference files.

Prints one JSON object. Run: ``python bench/bench_archive.py [--hours 720] [--ingest-hours 48]``
(full HRRR grid, DirectRunner with 2 local workers); ``--readers-only`` measures the readers
alone (ODIM HDF5, CF NetCDF, FMI PGM, MRMS GRIB2 from ../shared/data; about a minute).
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
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--hours", type=int, default=720, help="synthetic hours to generate (a month)"
    )
    parser.add_argument("--ingest-hours", type=int, default=48, help="GRIB2 files to ingest")
    parser.add_argument("--start", default="2024-07-01T00")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA, help="the reference data folder")
    parser.add_argument("--readers-only", action="store_true", help="only the readers' rates")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.readers_only:
        print(json.dumps({"readers": reader_rates(args.data)}, indent=2))
        return

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
    if args.data.is_dir():
        out["readers"] = reader_rates(args.data)
    print(json.dumps(out, indent=2))


def _odim_reflectivity(src: Path, dst: Path) -> Path:
    """A copy of a real OPERA rain-rate composite as DBZH (uint8, gain 0.5, offset -32)."""
    import shutil

    import h5py

    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        what = f["dataset1/what"]
        rate = f["dataset1/data1/data"][...]
        with np.errstate(divide="ignore", invalid="ignore"):
            dbz = 10 * np.log10(200 * np.maximum(rate, 1e-3) ** 1.6)
        raw = np.clip(np.rint((dbz + 32) / 0.5), 1, 254).astype(np.uint8)
        raw[rate <= 0] = 0
        raw[rate == what.attrs["nodata"]] = 255
        del f["dataset1/data1/data"]
        f.create_dataset("dataset1/data1/data", data=raw, compression="gzip", chunks=True)
        what.attrs.update({"quantity": np.bytes_("DBZH"), "gain": 0.5, "offset": -32.0})
        what.attrs.update({"nodata": 255.0, "undetect": 0.0})
    return dst


def _rate(read, keys: list, repeat: int = 1) -> dict:
    t0 = time.perf_counter()
    for _ in range(repeat):
        for key in keys:
            field = read(key)
    seconds = time.perf_counter() - t0
    frames = repeat * len(keys)
    return {
        "grid": f"{field.grid.ny} x {field.grid.nx}",
        "frames": frames,
        "frames_per_second": round(frames / seconds, 2),
    }


def reader_rates(data: Path) -> dict:
    """Frames a second each reader decodes (one process, files in the page cache)."""
    from wxembed.sources.fmi import read_fmi
    from wxembed.sources.formats import Reshape, reader_for
    from wxembed.sources.mrms import read_mrms
    from wxembed.sources.netcdf import frame_key, read_netcdf
    from wxembed.sources.odim import read_odim

    out = {}
    with tempfile.TemporaryDirectory(prefix="wxembed-bench-readers-") as tmp:
        opera = [
            _odim_reflectivity(p, Path(tmp) / p.with_suffix(".h5").name)
            for p in sorted((data / "odim").glob("T_PAAH21_*.hdf"))
        ]
        out["odim"] = _rate(read_odim, opera, repeat=5)
        cut = reader_for("odim", reshape=Reshape(bbox=(-5, 42, 20, 58), coarsen=4))
        out["odim_bbox_coarsen4"] = _rate(cut, [str(p) for p in opera], repeat=5)
        fmi = sorted((data / "fmi").rglob("*.pgm.gz"))[:12]
        out["fmi"] = _rate(read_fmi, fmi)
        fields = [read_fmi(p) for p in fmi]
        nc = _netcdf_of(fields, Path(tmp) / "fmi.nc")
        out["netcdf"] = _rate(read_netcdf, [frame_key(nc, f.time) for f in fields])
        out["mrms"] = _rate(read_mrms, sorted((data / "mrms").glob("*.grib2")))
    return out


def _netcdf_of(fields: list, path: Path) -> Path:
    """The frames as one CF NetCDF-4 file (int16, scale 0.5, offset -32; grid_mapping)."""
    import xarray as xr

    grid = fields[0].grid
    refl = xr.DataArray(
        np.stack([f.dbz for f in fields]),
        dims=("time", "y", "x"),
        attrs={"units": "dBZ", "grid_mapping": "crs"},
    )
    crs = xr.DataArray(np.int32(0), attrs=grid.pyproj_crs.to_cf())
    coords = {"time": [f.time for f in fields], "y": grid.y, "x": grid.x}
    packed = {"dtype": "int16", "scale_factor": 0.5, "add_offset": -32.0, "_FillValue": -1}
    ds = xr.Dataset({"DBZH": refl, "crs": crs}, coords=coords)
    ds.to_netcdf(path, engine="h5netcdf", encoding={"DBZH": packed})
    return path


if __name__ == "__main__":
    main()
