"""COMMANDS: the ``wxembed`` command, one module per group of sub-commands, each a few lines
over a library call.

    data.py        synth, fetch, ingest, info, plot      (sources, archive, pipelines)
    learn.py       train, tune                           (train.py, tune.py)
    embeddings.py  embed, search, interpolate, cluster, encode, decode   (pipelines, analysis)
    score.py       evaluate, report, demo                (evaluation, figures, demo.py)
    serve.py       serve                                 (the web explorer, serve/)
    options.py     options several commands share, and the checks of what a user typed
    console.py     log lines, one-line errors (exit code 2), JSON, end-of-run summaries

The group modules import wxembed's light modules (errors, grid) at the top; a module that loads
PyTorch, Apache Beam, matplotlib, DuckDB, SciPy or even pandas and zarr is imported inside the
commands that use it (marked ``# heavy``), so that ``wxembed --help`` does not wait the seconds
they take to import.
"""

from __future__ import annotations

from typing import Annotated

import typer

from wxembed.cli import data, embeddings, learn, score, serve
from wxembed.cli.console import setup_logging

app = typer.Typer(
    help="wxembed: weather-radar archives to learned representations and back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _main(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Show every detail: dependencies' logs, Beam workers' lines."
        ),
    ] = False,
) -> None:
    setup_logging(verbose)


for _group in (data, learn, embeddings, score, serve):
    _group.register(app)

__all__ = ["app"]

if __name__ == "__main__":  # pragma: no cover
    app()
