"""Getting data into an archive, and looking at it: synth, fetch, ingest, info, plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from wxembed.cli import console
from wxembed.cli.options import (
    AsJson,
    BeamArgs,
    DaskAddress,
    Runner,
    Workers,
    beam_options,
    checked_time,
    grid_named,
    parse_bbox,
)
from wxembed.errors import ArchiveError


def synth(
    archive: Annotated[Path, typer.Option(help="Archive to write (created if absent).")] = Path(
        "synthetic.zarr"
    ),
    start: Annotated[
        str, typer.Option(help="First valid time (UTC), e.g. 2024-07-01T00.")
    ] = "2024-07-01T00",
    hours: Annotated[int, typer.Option(min=1, help="Number of hourly fields.")] = 48,
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same storms.")
    ] = 0,
    grid: Annotated[str, typer.Option(help="Grid name.")] = "hrrr",
    coarsen: Annotated[int, typer.Option(min=1, help="Coarsen the grid by this factor.")] = 1,
    grib_dir: Annotated[
        Path | None,
        typer.Option(help="Write GRIB2 files in the NOAA layout here instead of an archive."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="With --grib-dir: replace GRIB2 files already there.")
    ] = False,
    workers: Workers = 2,
    beam_args: BeamArgs = None,
    runner: Runner = None,
    dask_address: DaskAddress = None,
) -> None:
    """Generate synthetic storms (convective cells, squall lines, MCSs, stratiform) hour by hour."""
    from wxembed.pipelines.ingest import describe_report, ingest_synthetic  # heavy: Beam
    from wxembed.sources.synthetic import SynthConfig, write_grib_layout  # heavy: SciPy

    config = SynthConfig(seed=seed, grid=grid_named(grid, coarsen))
    if grib_dir is not None:
        paths = write_grib_layout(config, start, hours, grib_dir, overwrite=overwrite)
        typer.echo(f"wrote {len(paths)} GRIB2 files below {grib_dir}")
        return
    with console.beam_worker_output():
        report = ingest_synthetic(
            config,
            start,
            hours,
            archive,
            beam_args=beam_options(beam_args, runner, dask_address),
            workers=workers,
        )
    console.finish_run(report, describe_report(report))


def fetch(
    start: Annotated[
        str, typer.Option(help="First valid time (UTC), e.g. 2019-01-01 or 2019-01-01T06.")
    ],
    end: Annotated[
        str, typer.Option(help="End valid time (UTC), exclusive: 2019-02-01 ends with 31 Jan 23Z.")
    ],
    archive: Annotated[
        Path, typer.Option(help="Archive to write (created on the HRRR grid if absent).")
    ] = Path("hrrr.zarr"),
    fxx: Annotated[
        int, typer.Option(min=0, max=48, help="Forecast hour of the files (0 = analysis).")
    ] = 0,
    mirror: Annotated[
        list[str] | None,
        typer.Option(
            help="Mirror to try, in order, repeatable: aws, google, azure, nomads or a base URL "
            "(default: aws, google, azure, nomads)."
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="Fetch from this base URL only (a local mirror, a test server)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Local worker processes: also the downloads in flight.")
    ] = 4,
    beam_args: BeamArgs = None,
    runner: Runner = None,
    dask_address: DaskAddress = None,
) -> None:
    """Fetch HRRR composite reflectivity from the public archive, only REFC's byte range an hour.

    Hours already stored are skipped; every other hour ends in the manifest: stored, missing
    (not on any mirror, or no REFC) or failed (after retries), with the reason.
    """
    from wxembed.pipelines.fetch import describe_fetch, fetch_hours  # heavy: Beam
    from wxembed.sources.hrrr import DEFAULT_MIRRORS

    with console.beam_worker_output():
        report = fetch_hours(
            start,
            end,
            archive,
            mirrors=mirror or DEFAULT_MIRRORS,
            base_url=base_url,
            fxx=fxx,
            workers=workers,
            beam_args=beam_options(beam_args, runner, dask_address),
        )
    console.finish_run(report, describe_fetch(report))


def ingest(
    inputs: Annotated[
        list[str], typer.Argument(help="Folders (NOAA layout or radar files), globs or files.")
    ],
    archive: Annotated[Path, typer.Option(help="Archive to write (created if absent).")] = Path(
        "radar.zarr"
    ),
    kind: Annotated[
        str,
        typer.Option(help="auto (told by each file's content), hrrr, mrms, fmi, odim or netcdf."),
    ] = "auto",
    variable: Annotated[
        str | None,
        typer.Option(help="NetCDF: the variable to read (default: the file's only one in dBZ)."),
    ] = None,
    bbox: Annotated[
        str | None,
        typer.Option(
            help="Keep only this lon/lat box: lon_min,lat_min,lon_max,lat_max (degrees), "
            "e.g. --bbox=-105,30,-90,40."
        ),
    ] = None,
    coarsen: Annotated[
        int,
        typer.Option(
            min=1, help="Average blocks of N x N cells into one (mean in linear Z), after --bbox."
        ),
    ] = 1,
    fxx: Annotated[
        int, typer.Option(help="HRRR forecast hour to take from a NOAA-layout folder.")
    ] = 0,
    workers: Workers = 2,
    beam_args: BeamArgs = None,
    runner: Runner = None,
    dask_address: DaskAddress = None,
) -> None:
    """Decode radar files (HRRR or MRMS GRIB2, FMI PGM, ODIM HDF5, CF NetCDF) into an archive.

    The kind of each file is told by its content. Every hour (or frame below the hour) ends in
    the archive's manifest: stored, missing or failed, with the reason. --bbox and --coarsen
    make a large grid (MRMS, OPERA) small enough to train on; the archive keeps the grid they
    make.
    """
    from wxembed.pipelines.ingest import describe_report, ingest_files  # heavy: Beam
    from wxembed.sources.formats import Reshape

    reshape = Reshape(bbox=parse_bbox(bbox), coarsen=coarsen)
    with console.beam_worker_output():
        report = ingest_files(
            inputs,
            archive,
            kind=kind,
            fxx=fxx,
            variable=variable,
            reshape=reshape,
            beam_args=beam_options(beam_args, runner, dask_address),
            workers=workers,
        )
    console.finish_run(report, describe_report(report))


def info(
    archive: Annotated[Path, typer.Argument(help="An archive.")],
    manifest: Annotated[
        bool, typer.Option(help="List every hour with its status and reason.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Describe an archive: grid, hours stored, missing and failed."""
    from wxembed.archive import Archive  # heavy: zarr, pandas

    a = Archive(archive)
    table = a.manifest().drop(columns="slot")
    stored = table.time[table.status == "stored"]
    summary = {
        "archive": str(archive),
        "grid": a.grid.describe(),
        **a.summary(),
        "first": str(stored.min()) if len(stored) else None,
        "last": str(stored.max()) if len(stored) else None,
    }
    if as_json:
        if manifest:
            summary["hours"] = json.loads(table.to_json(orient="records", date_format="iso"))
        console.echo_json(summary)
        return
    for key, value in summary.items():
        typer.echo(f"{key:>8}: {value}")
    if manifest:
        typer.echo(table.to_string(index=False))


def plot(
    archive: Annotated[Path, typer.Argument(help="An archive.")],
    time: Annotated[
        str | None, typer.Option(help="Valid time to draw (default: the last stored).")
    ] = None,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("hour.png"),
) -> None:
    """Draw one hour of an archive as a reflectivity map (NWS colours, coastlines and borders)."""
    from wxembed.archive import Archive  # heavy: zarr, pandas
    from wxembed.figures.plot import save_field_png  # heavy: matplotlib
    from wxembed.times import format_time

    a = Archive(archive)
    times = a.stored_times()
    if not len(times):
        raise ArchiveError(f"{archive}: no stored hours to draw")
    t = times[-1] if time is None else checked_time(time, "--time")
    title = f"Composite reflectivity {format_time(t)}"
    typer.echo(f"wrote {save_field_png(out, a.read_dbz(t), a.grid, title=title)}")


def register(app: typer.Typer) -> None:
    """Add synth, fetch, ingest, info and plot to ``app``."""
    console.add_commands(app, synth, fetch, ingest, info, plot)


__all__ = ["fetch", "info", "ingest", "plot", "register", "synth"]
