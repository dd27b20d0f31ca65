"""The ``wxembed`` command: each sub-command is a thin wrapper around a library function."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from wxembed.errors import WxembedError

app = typer.Typer(
    help="wxembed: weather-radar archives to learned representations and back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
log = logging.getLogger("wxembed")

BeamArgs = Annotated[
    list[str] | None,
    typer.Option(
        "--beam", help="An Apache Beam pipeline option, repeatable: --beam=--runner=FlinkRunner"
    ),
]


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("wxembed").setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:  # Beam relays its workers' chatter as warnings; Lightning logs twice
        logging.getLogger("apache_beam").setLevel(logging.ERROR)
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        for handler in logging.getLogger().handlers:  # Beam warns on import about GCP extras
            handler.addFilter(lambda record: not str(record.msg).startswith("apitools not found"))


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2)


def _finish(report, summary: str) -> None:
    """Every hour that did not make it, one line each on stderr; the summary; exit 1 on failures."""
    for rec in report.problems():
        typer.echo(f"{rec['status']}: {rec['time'] or '?'}: {rec['reason']}", err=True)
    typer.echo(summary)
    if report.counts()["failed"]:
        raise typer.Exit(code=1)


def _grid(name: str, coarsen: int):
    from wxembed.grid import HRRR_CONUS

    grids = {"hrrr": HRRR_CONUS}
    if name not in grids:
        raise typer.BadParameter(f"unknown grid {name!r}; expected one of {', '.join(grids)}")
    return grids[name].coarsen(coarsen)


@app.command()
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
    workers: Annotated[int, typer.Option(min=1, help="Local worker processes (DirectRunner).")] = 2,
    beam_args: BeamArgs = None,
) -> None:
    """Generate synthetic storms (convective cells, squall lines, MCSs, stratiform) hour by hour."""
    from wxembed.sources.synthetic import SynthConfig

    try:
        config = SynthConfig(seed=seed, grid=_grid(grid, coarsen))
        if grib_dir is not None:
            from wxembed.sources.synthetic import write_grib_layout

            paths = write_grib_layout(config, start, hours, grib_dir)
            typer.echo(f"wrote {len(paths)} GRIB2 files below {grib_dir}")
            return
        from wxembed.pipelines.ingest import describe_report, ingest_synthetic

        report = ingest_synthetic(
            config, start, hours, archive, beam_args=beam_args, workers=workers
        )
        typer.echo(describe_report(report))
    except WxembedError as exc:
        raise _fail(exc) from None


@app.command()
def ingest(
    inputs: Annotated[
        list[str], typer.Argument(help="Folders (NOAA layout or radar files), globs or files.")
    ],
    archive: Annotated[Path, typer.Option(help="Archive to write (created if absent).")] = Path(
        "radar.zarr"
    ),
    kind: Annotated[str, typer.Option(help="auto, hrrr, mrms or fmi.")] = "auto",
    fxx: Annotated[
        int, typer.Option(help="HRRR forecast hour to take from a NOAA-layout folder.")
    ] = 0,
    workers: Annotated[int, typer.Option(min=1, help="Local worker processes (DirectRunner).")] = 2,
    beam_args: BeamArgs = None,
) -> None:
    """Decode radar files (HRRR GRIB2, MRMS GRIB2, FMI PGM) into an archive with a Beam pipeline.

    Every hour ends in the archive's manifest: stored, missing or failed, with the reason.
    """
    from wxembed.pipelines.ingest import describe_report, ingest_files

    try:
        report = ingest_files(
            inputs, archive, kind=kind, fxx=fxx, beam_args=beam_args, workers=workers
        )
    except WxembedError as exc:
        raise _fail(exc) from None
    _finish(report, describe_report(report))


@app.command()
def info(
    archive: Annotated[Path, typer.Argument(help="An archive.")],
    manifest: Annotated[
        bool, typer.Option(help="List every hour with its status and reason.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Describe an archive: grid, hours stored, missing and failed."""
    from wxembed.archive import Archive

    try:
        a = Archive(archive)
        table = a.manifest()
    except WxembedError as exc:
        raise _fail(exc) from None
    stored = table[table.status == "stored"]
    summary = {
        "archive": str(archive),
        "grid": a.grid.describe(),
        **a.summary(),
        "first": str(stored.time.min()) if len(stored) else None,
        "last": str(stored.time.max()) if len(stored) else None,
    }
    if as_json:
        out = dict(summary)
        if manifest:
            out["hours"] = json.loads(
                table.drop(columns="slot").to_json(orient="records", date_format="iso")
            )
        typer.echo(json.dumps(out, indent=2))
        return
    for key, value in summary.items():
        typer.echo(f"{key:>8}: {value}")
    if manifest:
        typer.echo(table.drop(columns="slot").to_string(index=False))


@app.command()
def plot(
    archive: Annotated[Path, typer.Argument(help="An archive.")],
    time: Annotated[
        str | None, typer.Option(help="Valid time to draw (default: the last stored).")
    ] = None,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("hour.png"),
) -> None:
    """Draw one hour of an archive as a reflectivity map (NWS colours, coastlines and borders)."""
    from wxembed.archive import Archive
    from wxembed.times import format_time
    from wxembed.figures.plot import save_field_png

    try:
        a = Archive(archive)
        times = a.stored_times()
        if not len(times):
            raise WxembedError(f"{archive}: no stored hours to draw")
        t = times[-1] if time is None else time
        path = save_field_png(
            out, a.read_dbz(t), a.grid, title=f"Composite reflectivity {format_time(t)}"
        )
    except WxembedError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {path}")


def _hparams(pairs: list[str] | None) -> dict:
    """NAME=VALUE pairs to a dict, values parsed as JSON where they can be (4, [32,64], "silu")."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise typer.BadParameter(f"--hp expects NAME=VALUE, got {pair!r}")
        name, value = pair.split("=", 1)
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out


@app.command()
def train(
    archive: Annotated[Path, typer.Argument(help="Archive to train on.")],
    out: Annotated[Path, typer.Option(help="Folder for checkpoints and logs.")] = Path("model"),
    arch: Annotated[str, typer.Option(help="fast (ours) or seed (the original network).")] = "fast",
    hp: Annotated[
        list[str] | None, typer.Option(help="Hyperparameter NAME=VALUE, repeatable.")
    ] = None,
    loss: Annotated[
        str,
        typer.Option(
            help="logcosh_csi (strong echo weighted + soft CSI at 35 dBZ), weighted_logcosh, logcosh."
        ),
    ] = "logcosh_csi",
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps.")] = 200,
    checkpoints: Annotated[int, typer.Option(min=1, help="Checkpoints along the way.")] = 4,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    lr: Annotated[float, typer.Option(help="Adam learning rate (peak of the schedule).")] = 1e-3,
    schedule: Annotated[
        str, typer.Option(help="cosine (warm-up, then down to 0 at the last step) or constant.")
    ] = "cosine",
    val_fraction: Annotated[float, typer.Option(help="Latest share of hours held out.")] = 0.2,
    devices: Annotated[int, typer.Option(min=1, help="GPUs (DDP when more than one).")] = 1,
    accelerator: Annotated[str, typer.Option(help="auto, cpu or gpu.")] = "auto",
    compile: Annotated[bool, typer.Option(help="torch.compile the network.")] = False,
    workers: Annotated[int, typer.Option(min=0, help="Data loader processes (disk reads).")] = 0,
    seed: Annotated[int, typer.Option()] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoints/last.ckpt.")] = False,
) -> None:
    """Train an autoencoder on an archive; checkpoints are self-describing."""
    from wxembed.train import TrainConfig
    from wxembed.train import train as run_train

    config = TrainConfig(
        archive=str(archive), out=str(out), arch=arch, hparams=_hparams(hp), loss=loss, lr=lr,
        schedule=schedule, batch_size=batch_size, num_steps=steps, num_checkpoints=checkpoints, val_fraction=val_fraction,
        seed=seed, devices=devices, accelerator=accelerator, compile=compile, workers=workers, resume=resume,
    )  # fmt: skip
    try:
        report = run_train(config)
    except WxembedError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps({k: report[k] for k in ("global_step", "parameters", "seconds", "metrics",
                                                    "last_checkpoint", "best_checkpoint", "best_val_loss")},
                          indent=2))  # fmt: skip


@app.command()
def tune(
    archive: Annotated[Path, typer.Argument(help="Archive whose first hours are overfitted.")],
    storage: Annotated[
        str, typer.Option(help="Optuna storage URL (shared, resumable).")
    ] = "sqlite:///tune.db",
    study: Annotated[str, typer.Option(help="Study name.")] = "wxembed-tune",
    arch: Annotated[str, typer.Option(help="seed (grid search) or fast (TPE).")] = "seed",
    images: Annotated[int, typer.Option(min=1, help="Hours in the batch to overfit.")] = 4,
    steps: Annotated[int, typer.Option(min=1, help="Adam steps per candidate.")] = 100,
    trials: Annotated[int | None, typer.Option(help="Trials in this call (default: all).")] = None,
    max_params: Annotated[int, typer.Option(help="Parameter budget.")] = 1_000_000,
    learn_ratio: Annotated[
        float, typer.Option(help="Learns when final <= ratio x initial loss.")
    ] = 0.25,
    space: Annotated[
        str | None, typer.Option(help='JSON search space override, e.g. {"num_layers": [2,3]}.')
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Overfit-a-small-batch search: the smallest embedding that still learns a few images."""
    from wxembed.tune import TuneConfig
    from wxembed.tune import tune as run_tune

    config = TuneConfig(
        archive=str(archive), storage=storage, study_name=study, arch=arch, n_images=images, steps=steps,
        n_trials=trials, max_params=max_params, learn_ratio=learn_ratio,
        search_space=json.loads(space) if space else {}, seed=seed,
    )  # fmt: skip
    try:
        summary = run_tune(config)
    except WxembedError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps(summary, indent=2, default=str))


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint written by `wxembed train`.")],
    archive: Annotated[Path, typer.Argument(help="The archive to score on (its held-out hours).")],
    out: Annotated[Path, typer.Option(help="JSON file to write.")] = Path("evaluation.json"),
    max_hours: Annotated[
        int | None, typer.Option(help="Score at most this many held-out hours.")
    ] = None,
) -> None:
    """Score the autoencoder against PCA (as many numbers) and climatology on held-out hours."""
    from wxembed.evaluation.evaluate import evaluate as run_evaluate
    from wxembed.figures.report import check_writable

    try:
        check_writable(out)
        result = run_evaluate(checkpoint, archive, max_hours=max_hours)
    except WxembedError as exc:
        raise _fail(exc) from None
    out.write_text(json.dumps(result, indent=2))
    typer.echo(json.dumps({"scores": result["scores"], "autoencoder_beats_pca": result["autoencoder_beats_pca"]},
                          indent=2))  # fmt: skip
    typer.echo(f"wrote {out}")


@app.command()
def report(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint written by `wxembed train`.")],
    archive: Annotated[Path, typer.Argument(help="The archive it is evaluated on.")],
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("report.html"),
) -> None:
    """One self-contained HTML report: metrics against the baselines, reconstructions, loss curves."""
    from wxembed.figures.report import build_report

    try:
        path, _ = build_report(checkpoint, archive, out)
    except WxembedError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {path}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for everything the job makes.")] = Path(
        "wxembed-output"
    ),
    hours: Annotated[int, typer.Option(min=8, help="Synthetic hours to generate.")] = 96,
    start: Annotated[str, typer.Option(help="First valid time (UTC).")] = "2024-07-01T00",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    steps: Annotated[int, typer.Option(min=1, help="Training steps (batch 4).")] = 150,
    coarsen: Annotated[int, typer.Option(min=1, help="Coarsen the HRRR grid by this factor.")] = 1,
) -> None:
    """The main job on the embedded default data: synthetic storms on the HRRR grid, then train,
    embed, search, cluster, interpolate, evaluate and write the HTML report."""
    from wxembed.demo import run_demo

    try:
        result = run_demo(out, hours=hours, start=start, seed=seed, steps=steps, coarsen=coarsen)
    except WxembedError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps(result, indent=2, default=str))
    typer.echo(f"report: {result['report']}")


@app.command()
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
) -> None:
    """Fetch HRRR composite reflectivity from the public archive, only REFC's byte range an hour.

    Hours already stored are skipped; every other hour ends in the manifest: stored, missing
    (not on any mirror, or no REFC) or failed (after retries), with the reason.
    """
    from wxembed.pipelines.fetch import describe_fetch, fetch_hours
    from wxembed.sources.hrrr import DEFAULT_MIRRORS

    try:
        report = fetch_hours(
            start, end, archive, mirrors=mirror or DEFAULT_MIRRORS, base_url=base_url, fxx=fxx,
            workers=workers, beam_args=beam_args,
        )  # fmt: skip
    except WxembedError as exc:
        raise _fail(exc) from None
    _finish(report, describe_fetch(report))


def _register_embedding_commands() -> None:
    from wxembed.cli.embeddings import register

    register(app)


_register_embedding_commands()

if __name__ == "__main__":  # pragma: no cover
    app()
