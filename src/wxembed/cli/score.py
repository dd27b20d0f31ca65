"""Scoring and showing a model: evaluate, report, and the main job end to end, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wxembed.cli import console
from wxembed.cli.options import CHECKPOINT_HELP, Workers

CheckpointArgument = Annotated[
    Path, typer.Argument(help=f"{CHECKPOINT_HELP} Written by `wxembed train`.")
]


def evaluate(
    checkpoint: CheckpointArgument,
    archive: Annotated[Path, typer.Argument(help="The archive to score on (its held-out hours).")],
    out: Annotated[Path, typer.Option(help="JSON file to write.")] = Path("evaluation.json"),
    max_hours: Annotated[
        int | None, typer.Option(help="Score at most this many held-out hours.")
    ] = None,
) -> None:
    """Score the autoencoder against PCA (as many numbers) and climatology on held-out hours."""
    from wxembed.evaluation.evaluate import evaluate as run_evaluate  # heavy: PyTorch
    from wxembed.figures.report import check_writable

    check_writable(out)  # before the work, not after it
    result = run_evaluate(checkpoint, archive, max_hours=max_hours)
    console.write_atomically(out, console.to_json(result))  # whole, or not at all
    console.echo_json({k: result[k] for k in ("scores", "autoencoder_beats_pca")})
    typer.echo(f"wrote {out}")


def report(
    checkpoint: CheckpointArgument,
    archive: Annotated[Path, typer.Argument(help="The archive it is evaluated on.")],
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("report.html"),
) -> None:
    """One self-contained HTML report: metrics against baselines, reconstructions, loss curves."""
    from wxembed.figures.report import build_report  # heavy: PyTorch, matplotlib

    path, _ = build_report(checkpoint, archive, out)
    typer.echo(f"wrote {path}")


def demo(
    out: Annotated[Path, typer.Option(help="Folder for everything the job makes.")] = Path(
        "wxembed-output"
    ),
    hours: Annotated[int, typer.Option(min=8, help="Synthetic hours to generate.")] = 96,
    start: Annotated[str, typer.Option(help="First valid time (UTC).")] = "2024-07-01T00",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    steps: Annotated[int, typer.Option(min=1, help="Training steps (batch 4).")] = 150,
    coarsen: Annotated[int, typer.Option(min=1, help="Coarsen the HRRR grid by this factor.")] = 1,
    workers: Workers = 2,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print every result as JSON instead of a summary.")
    ] = False,
) -> None:
    """The main job, end to end, on the embedded default data (synthetic storms).

    Synthetic storms on the HRRR grid, then train, embed, search, cluster, interpolate, evaluate
    and write the HTML report; a line for each of the 8 stages, a summary at the end.
    """
    from wxembed.demo import describe_demo, run_demo  # heavy: PyTorch, Beam

    console.tame_lightning()
    # its stage lines, not each stage's detail (--verbose shows that)
    with console.show_only("wxembed.demo"), console.beam_worker_output():
        result = run_demo(
            out,
            hours=hours,
            start=start,
            seed=seed,
            steps=steps,
            coarsen=coarsen,
            workers=workers,
        )
    if as_json:
        console.echo_json(result)
    else:
        typer.echo(describe_demo(result))


def register(app: typer.Typer) -> None:
    """Add evaluate, report and demo to ``app``."""
    console.add_commands(app, evaluate, report, demo)


__all__ = ["demo", "evaluate", "register", "report"]
