"""Options several commands share, and the checks that turn a user's typing into arguments.

A command declares ``beam_args: BeamArgs = None`` or ``checkpoint: CheckpointOption``; a time
option goes through :func:`checked_time`, ``--hp NAME=VALUE`` pairs through :func:`parse_hparams`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from wxembed.errors import GridError
from wxembed.grid import HRRR_CONUS, Grid, check_bbox

BeamArgs = Annotated[
    list[str] | None,
    typer.Option(
        "--beam", help="An Apache Beam pipeline option, repeatable: --beam=--runner=FlinkRunner"
    ),
]
"""``--beam``: options passed unchanged to Apache Beam (another runner, its settings)."""

Workers = Annotated[
    int,
    typer.Option(min=1, help="Local worker processes (DirectRunner, or a local Dask cluster)."),
]
"""``--workers``: processes of Beam's local runner (or of the Dask cluster ``--runner dask``
starts when it is given no ``--dask-address``)."""

Runner = Annotated[
    str | None,
    typer.Option(
        help="Beam runner: direct (the default: local processes), dask, or any Beam runner's "
        "name (its options through --beam)."
    ),
]
"""``--runner``: the short form of ``--beam=--runner=...``; ``dask`` is Beam's DaskRunner."""

DaskAddress = Annotated[
    str | None,
    typer.Option(
        "--dask-address",
        help="Scheduler of a running Dask cluster, e.g. tcp://host:8786 (implies --runner dask; "
        "without it, --runner dask starts a local cluster of --workers processes).",
    ),
]
"""``--dask-address``: the Dask scheduler the DaskRunner sends the pipeline to."""


def beam_options(
    beam_args: list[str] | None, runner: str | None, dask_address: str | None
) -> list[str]:
    """``--runner``/``--dask-address`` turned into Beam options, before those of ``--beam``."""
    from wxembed.pipelines import runner_args  # heavy: Beam

    return [*runner_args(runner, dask_address), *(beam_args or [])]


CHECKPOINT_HELP = "Checkpoint file or model folder (its best.ckpt)."
"""Help of every option or argument that takes a model."""

CheckpointOption = Annotated[Path, typer.Option(help=CHECKPOINT_HELP)]
"""``--checkpoint``: a checkpoint file, or a model folder written by ``wxembed train``."""

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
"""``--json``: machine-readable output instead of the text for people."""

GRIDS: dict[str, Grid] = {"hrrr": HRRR_CONUS}
"""Grids ``wxembed synth --grid`` knows by name."""


def checked_time(value: str | None, option: str) -> str | None:
    """``value`` unchanged if it parses as a time (the library takes the string), else a usage
    error naming ``option``."""
    from wxembed.times import to_seconds  # heavy: pandas

    if value is None:
        return None
    try:
        to_seconds(value)
    except (ValueError, TypeError):
        raise typer.BadParameter(
            f"{value!r} is not a time (e.g. 2024-07-01T18)", param_hint=option
        ) from None
    return value


def parse_hparams(pairs: list[str] | None) -> dict:
    """NAME=VALUE pairs to a dict, values parsed as JSON where they can be (4, [32,64], "silu")."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise typer.BadParameter(f"expects NAME=VALUE, got {pair!r}", param_hint="--hp")
        name, value = pair.split("=", 1)
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out


def parse_json_option(text: str | None, option: str) -> dict:
    """A JSON object given on the command line ({} when absent), else a usage error."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON ({exc})", param_hint=option) from None
    if not isinstance(value, dict):
        raise typer.BadParameter("expects a JSON object, e.g. {...}", param_hint=option)
    return value


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """``--bbox lon_min,lat_min,lon_max,lat_max`` (degrees) as four floats; else a
    :class:`GridError` (one ``error:`` line) saying what is wrong."""
    if text is None:
        return None
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        return check_bbox([float(p) for p in parts] if len(parts) == 4 else parts)
    except (GridError, ValueError) as exc:
        raise GridError(f"--bbox {text!r}: {exc}; e.g. --bbox=-105,30,-90,40") from None


def parse_duration_option(value: str | None, option: str, *, default_unit: str = "h") -> int | None:
    """A duration option (``30min``, ``2h``, ``1d``; a bare number in ``default_unit``) as whole
    seconds; else a :class:`WxembedError` (one ``error:`` line) naming ``option``."""
    from wxembed.times import parse_duration  # heavy: pandas

    if value is None:
        return None
    return parse_duration(value, default_unit=default_unit, what=option)


def grid_named(name: str, coarsen: int) -> Grid:
    """The grid called ``name``, coarsened by ``coarsen``."""
    if name not in GRIDS:
        raise typer.BadParameter(
            f"unknown grid {name!r}; expected one of {', '.join(GRIDS)}", param_hint="--grid"
        )
    return GRIDS[name].coarsen(coarsen)


__all__ = [
    "CHECKPOINT_HELP",
    "GRIDS",
    "AsJson",
    "BeamArgs",
    "CheckpointOption",
    "DaskAddress",
    "Runner",
    "Workers",
    "beam_options",
    "checked_time",
    "grid_named",
    "parse_bbox",
    "parse_duration_option",
    "parse_hparams",
    "parse_json_option",
]
