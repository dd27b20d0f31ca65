"""Learning the representation: train, tune."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from wxembed.cli import console
from wxembed.cli.options import parse_hparams, parse_json_option

TRAIN_REPORT = (
    "global_step",
    "parameters",
    "seconds",
    "metrics",
    "last_checkpoint",
    "best_checkpoint",
    "best_val_loss",
)
"""The members of the training report ``wxembed train`` prints."""


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
            help="logcosh_csi (strong echo weighted + soft CSI at 35 dBZ), weighted_logcosh, "
            "logcosh."
        ),
    ] = "logcosh_csi",
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps.")] = 200,
    checkpoints: Annotated[int, typer.Option(min=1, help="Checkpoints along the way.")] = 4,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    distance_weight: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Weight of the term that makes code distances rank hours as pixel distances "
            "do (for search); default 0.01 for fast, 0 for seed.",
        ),
    ] = None,
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
    grad_clip: Annotated[
        float, typer.Option(min=0.0, help="Clip the gradients' norm to this (0: no clipping).")
    ] = 1.0,
    init_from: Annotated[
        Path | None,
        typer.Option(help="Start from this checkpoint's weights (file or model folder)."),
    ] = None,
) -> None:
    """Train an autoencoder on an archive; checkpoints are self-describing."""
    from wxembed.model.losses import LOSSES, SCHEDULES  # heavy: PyTorch
    from wxembed.train import TrainConfig  # heavy: PyTorch, Lightning
    from wxembed.train import train as run_train

    one_of(loss, sorted(LOSSES), "--loss")
    one_of(schedule, SCHEDULES, "--schedule")
    config = TrainConfig(
        archive=str(archive),
        out=str(out),
        arch=arch,
        hparams=parse_hparams(hp),
        loss=loss,
        distance_weight=distance_weight,
        lr=lr,
        schedule=schedule,
        batch_size=batch_size,
        num_steps=steps,
        num_checkpoints=checkpoints,
        val_fraction=val_fraction,
        seed=seed,
        devices=devices,
        accelerator=accelerator,
        compile=compile,
        workers=workers,
        resume=resume,
        grad_clip=grad_clip,
        init_from=str(init_from) if init_from else None,
    )
    console.tame_lightning()
    report = run_train(config)
    console.echo_json({k: report[k] for k in TRAIN_REPORT})


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
    overrides = search_space(space)  # a mistake shows before the seconds of the imports
    from wxembed.tune import TuneConfig  # heavy: PyTorch, Optuna
    from wxembed.tune import tune as run_tune

    config = TuneConfig(
        archive=str(archive),
        storage=storage,
        study_name=study,
        arch=arch,
        n_images=images,
        steps=steps,
        n_trials=trials,
        max_params=max_params,
        learn_ratio=learn_ratio,
        search_space=overrides,
        seed=seed,
    )
    console.echo_json(run_tune(config))


def one_of(value: str, choices, option: str) -> str:
    """``value`` when it is one of ``choices``, else a usage error naming ``option``."""
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=option)
    return value


def search_space(text: str | None) -> dict:
    """``--space``: a JSON object mapping each hyperparameter to a non-empty list of values to
    try (numbers, strings, true/false, null), else a usage error."""
    space = parse_json_option(text, "--space")
    for name, values in space.items():
        if (
            not isinstance(values, list)
            or not values
            or not all(v is None or isinstance(v, int | float | str | bool) for v in values)
        ):
            raise typer.BadParameter(
                f"{name!r} must map to a non-empty list of values to try, e.g. "
                f'{{"{name}": [2, 3]}}; got {json.dumps(values)}',
                param_hint="--space",
            )
    return space


def register(app: typer.Typer) -> None:
    """Add train and tune to ``app``."""
    console.add_commands(app, train, tune)


__all__ = ["register", "train", "tune"]
