"""Training: an archive in, a self-describing checkpoint out (PyTorch Lightning).

``train(TrainConfig(archive=..., out=...))`` splits the archive's stored hours by time (the last
``val_fraction`` for validation), reads the uint8 chunks (held in memory when they fit, else by
worker processes), and checkpoints every ``num_steps // num_checkpoints`` steps (the original's
"virtual epochs"). It also keeps ``best.ckpt`` at the lowest validation loss seen (a small
archive overfits, so the last checkpoint is not always the best) beside ``last.ckpt``.
``resume=True`` continues from ``out/checkpoints/last.ckpt`` with the same step count, optimiser
and learning-rate schedule state, and appends to ``logs/version_0/metrics.csv``: the rows logged
before that checkpoint's step are kept, those logged after it (work lost in the kill, done again)
are dropped, and so are periodic checkpoints of later steps. Checkpoints are loaded with
``weights_only`` everywhere, so a file that would run code when unpickled is refused.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from torch.utils.data import DataLoader, Dataset

from wxembed.archive import Archive
from wxembed.errors import ArchiveError, CheckpointError
from wxembed.grid import Grid
from wxembed.model.checkpoint import Checkpoint, check_grid, load_checkpoint
from wxembed.model.common import normalise_raw
from wxembed.model.task import AutoencoderModule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """How to train a model on an archive."""

    archive: str
    """Path of the Zarr archive to train on."""
    out: str = "model"
    """Folder for checkpoints, logs and the training report."""
    arch: str = "fast"
    """Network: "fast" (ours, the default) or "seed" (the original design)."""
    hparams: dict = field(default_factory=dict)
    """Hyperparameters of the network (e.g. num_layers, pool_size, num_filters, num_dense)."""
    loss: str = "logcosh_csi"
    """"logcosh_csi" (log-cosh weighted on strong echo plus a soft-CSI term at 35 dBZ),
    "weighted_logcosh" (without the CSI term) or "logcosh" (the original's)."""
    distance_weight: float | None = None
    """Weight of :func:`wxembed.model.losses.distance_loss` (code distances that rank hours as
    pixel distances do, for search). None: 0.01 for the fast network, 0 for the original."""
    lr: float = 1e-3
    """Adam learning rate (the peak, under the cosine schedule)."""
    schedule: str = "cosine"
    """Learning-rate schedule over num_steps: "cosine" (warm-up, then down to 0) or "constant"
    (the original's plain Adam)."""
    batch_size: int = 4
    """Images per step (per device)."""
    num_steps: int = 200
    """Optimiser steps in all."""
    num_checkpoints: int = 4
    """Checkpoints written along the way (every num_steps // num_checkpoints steps)."""
    val_fraction: float = 0.2
    """The latest hours kept for validation (time-ordered split)."""
    seed: int = 0
    """Seed of every random generator."""
    devices: int = 1
    """Devices to train on; more than one uses DDP (distributed data parallel)."""
    accelerator: str = "auto"
    """"cpu", "gpu" or "auto"."""
    compile: bool = False
    """torch.compile the network (GPU)."""
    workers: int = 0
    """DataLoader worker processes when the archive is read from disk."""
    in_memory_limit_gb: float = 4.0
    """Hold the training hours in memory (uint8) when they take less than this."""
    grad_clip: float | None = 1.0
    """Clip the gradients' global norm to this (None or 0: no clipping). Without it the default
    learning rate blew up on the real FMI frames (validation MSE lowest near step 76, then up
    7-fold by step 150)."""
    init_from: str | None = None
    """Start from the weights of this checkpoint (file or model folder) instead of random ones:
    it must hold the same architecture and hyperparameters on the same grid (fine-tuning)."""
    resume: bool = False
    """Continue from out/checkpoints/last.ckpt."""
    progress: bool = True
    """Show a progress bar."""

    @property
    def resolved_distance_weight(self) -> float:
        """:attr:`distance_weight`, with None resolved for the network."""
        if self.distance_weight is not None:
            return float(self.distance_weight)
        return DISTANCE_WEIGHT if self.arch == "fast" else 0.0


DISTANCE_WEIGHT = 0.01
"""The fast network's default weight of the distance term (200 CPU s on
``bench_representation``'s data before its recalibration: search recall@10 0.100 against
0.082 without it, held-out MSE unchanged at 27.0 dBZ²)."""


# ---- data ------------------------------------------------------------------------------------
class ArchiveHours(Dataset):
    """Stored hours of an archive as uint8 tensors ``(1, ny, nx)``, read lazily per worker."""

    def __init__(self, archive_path: str | Path, times: np.ndarray):
        self.archive_path = str(archive_path)
        self.times = np.asarray(times)
        self._archive: Archive | None = None

    def __len__(self) -> int:
        return len(self.times)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._archive is None:  # opened in the worker process, not pickled across
            self._archive = Archive(self.archive_path)
        raw = self._archive.read_raw([self.times[i]])  # (1, ny, nx) uint8
        return torch.from_numpy(raw)

    def __getstate__(self):
        return {**self.__dict__, "_archive": None}


class InMemoryHours(Dataset):
    """The same hours, read once into one uint8 tensor ``(n, 1, ny, nx)``."""

    def __init__(self, archive: Archive, times: np.ndarray):
        self.data = torch.from_numpy(np.stack([archive.read_raw([t])[0] for t in times]))[:, None]

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.data[i]


def split_times(archive: Archive, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Time-ordered split of the stored hours: earlier for training, the latest for validation."""
    times = archive.stored_times()
    if len(times) < 2:
        raise ArchiveError(
            f"{archive.path}: {len(times)} stored hour(s); training needs at least 2 "
            "(one for training, one held out)"
        )
    n_val = min(max(1, int(round(len(times) * val_fraction))), len(times) - 1)
    return times[:-n_val], times[-n_val:]


def _dataset(archive: Archive, times: np.ndarray, limit_gb: float) -> Dataset:
    nbytes = len(times) * archive.grid.size
    if nbytes <= limit_gb * 1e9:
        log.info("holding %d hours (%.2f GB) in memory", len(times), nbytes / 1e9)
        return InMemoryHours(archive, times)
    return ArchiveHours(archive.path, times)


# ---- training --------------------------------------------------------------------------------
def _check_resume(config: TrainConfig, archive: Archive, last: Path) -> int | None:
    """Refuse to overwrite checkpoints, or to resume from nothing or from another grid; return
    the step resumed from (None for a new run)."""
    out = Path(config.out)
    if config.resume:
        if not last.exists():
            raise CheckpointError(f"{last}: nothing to resume (no last checkpoint in {out})")
        resumed = load_checkpoint(last)  # refuses an unsafe file before Lightning opens it
        check_grid(Grid.from_json(resumed["hyper_parameters"]["grid_json"]), archive, str(last))
        step = int(resumed["global_step"])
        _drop_checkpoints_after(last.parent, step)
        return step
    if last.exists():
        raise CheckpointError(
            f"{out} already holds checkpoints; pass resume=True (--resume) or another --out"
        )
    return None


def _drop_checkpoints_after(folder: Path, step: int) -> None:
    """Delete the periodic checkpoints of steps after ``step``: a run killed between writing one
    and updating ``last.ckpt`` left it, and the resumed run writes that step again (Lightning
    would name the second ``step=N-v1.ckpt``)."""
    for path in folder.glob("step=*.ckpt"):
        n = path.stem.removeprefix("step=")
        if n.isdigit() and int(n) > step:
            log.info("%s: written after step %d, the step resumed from; redone", path, step)
            path.unlink()


class _HistoryWriter(ExperimentWriter):
    """Lightning's CSV writer, except that it keeps the rows of ``metrics.csv`` logged before
    ``from_step`` (Lightning's deletes the file) and rewrites the whole file, atomically, on
    each save (the header grows as new columns appear)."""

    def __init__(self, log_dir: str, from_step: int):
        self.from_step = from_step
        self.rows: list[dict] = []
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # called by __init__: read, do not delete
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as file:
                rows = list(csv.DictReader(file))
            self.rows = [r for r in rows if r.get("step") and float(r["step"]) < self.from_step]
            kept, path = len(self.rows), self.metrics_file_path
            log.info(
                "%s: %d rows kept, %d logged after step %d dropped",
                path,
                kept,
                len(rows) - kept,
                self.from_step,
            )

    def save(self) -> None:
        if not self.metrics:
            return
        self.rows.extend(self.metrics)
        self.metrics = []
        keys = sorted(set().union(*self.rows))
        tmp = f"{self.metrics_file_path}.tmp"
        with open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.metrics_file_path)


FIT_HOURS = 2000
"""Most training hours (evenly spaced) that a network's closed-form part is fitted on."""


def _fit_data(module: AutoencoderModule, hours: Dataset) -> None:
    """Fit what the network fits in closed form (the fast network's EOF path) on the training
    hours, at most :data:`FIT_HOURS` of them (evenly spaced), taken from the training data set
    itself (held in memory when it fits, so nothing is read twice)."""
    pick = np.unique(np.linspace(0, len(hours) - 1, FIT_HOURS).round().astype(int))
    batches = (
        normalise_raw(torch.stack([hours[int(k)] for k in pick[i : i + 64]]))
        for i in range(0, len(pick), 64)
    )
    t0 = time.perf_counter()
    module.net.fit_data(batches)
    log.info(
        "fitted the network's closed-form part on %d hours in %.1f s",
        len(pick),
        time.perf_counter() - t0,
    )


def _build_module(
    config: TrainConfig, archive: Archive, train_hours: Dataset, val_start: np.datetime64, gpu: bool
) -> AutoencoderModule:
    module = AutoencoderModule(
        config.arch,
        archive.grid.shape,
        dict(config.hparams),
        loss=config.loss,
        lr=config.lr,
        schedule=config.schedule,
        distance_weight=config.resolved_distance_weight,
        grid_json=archive.grid.to_json(),
        archive=str(archive.path),
        val_start=str(val_start),
        channels_last=gpu,
    )
    if config.init_from:
        _load_weights(module, config.init_from, archive)
    elif not config.resume:  # a resumed run restores what was fitted from its checkpoint
        _fit_data(module, train_hours)
    if config.compile:
        module.net = torch.compile(module.net)
    return module


def _load_weights(module: AutoencoderModule, path: str, archive: Archive) -> None:
    """Copy a checkpoint's network weights into ``module`` (same network, same grid)."""
    source = Checkpoint(path)
    source.check_grid(archive)
    mine = {k: module.hparams[k] for k in ("arch", "hparams")}
    theirs = {k: source.hparams.get(k) for k in ("arch", "hparams")}
    if mine != theirs:
        raise CheckpointError(
            f"{source.path}: holds {theirs}, not the network asked for ({mine}); "
            "start from a checkpoint of the same architecture and hyperparameters"
        )
    prefix = "net."
    weights = {k[len(prefix) :]: v for k, v in source.state_dict.items() if k.startswith(prefix)}
    module.net.load_state_dict(weights)  # strict: the same network has the same weights
    log.info("starting from the weights of %s (%s)", source.path, source.model_id)


def _loaders(
    config: TrainConfig, archive: Archive, train_times, val_times, gpu: bool
) -> tuple[DataLoader, DataLoader]:
    train_data = _dataset(archive, train_times, config.in_memory_limit_gb)
    val_data = _dataset(archive, val_times, config.in_memory_limit_gb)
    workers = config.workers if isinstance(train_data, ArchiveHours) else 0
    loader = dict(
        batch_size=config.batch_size,
        num_workers=workers,
        pin_memory=gpu,
        persistent_workers=workers > 0,
    )
    drop_last = len(train_data) > config.batch_size
    return (
        DataLoader(train_data, shuffle=True, drop_last=drop_last, **loader),
        DataLoader(val_data, shuffle=False, **loader),
    )


class StepProgressBar(TQDMProgressBar):
    """One bar for the whole run, on stderr: optimiser steps out of ``max_steps`` (a run is
    counted in steps, not epochs), the losses beside it; no bar per epoch or validation."""

    def init_train_tqdm(self) -> Tqdm:
        bar = Tqdm(
            desc="train",
            total=self.trainer.max_steps,
            unit="step",
            file=sys.stderr,
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            smoothing=0,
        )
        bar.update(self.trainer.global_step)  # a resumed run starts where it stopped
        return bar

    def init_validation_tqdm(self) -> Tqdm:
        return Tqdm(disable=True)

    def on_train_epoch_start(self, *_) -> None:  # the one bar spans every epoch
        pass

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, *_) -> None:
        bar = self.train_progress_bar
        if self._should_update(trainer.global_step, bar.total):
            bar.update(trainer.global_step - bar.n)
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer: L.Trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the log's version, always 0 here
        return metrics


def _trainer(
    config: TrainConfig, n_train: int, gpu: bool, resumed_from: int | None
) -> tuple[L.Trainer, ModelCheckpoint]:
    """The Lightning Trainer, and the callback that keeps ``best.ckpt``."""
    out = Path(config.out)
    logger = CSVLogger(out, name="logs", version=0)
    if resumed_from is not None:  # its writer, set before first use: keeps the history
        logger._experiment = _HistoryWriter(logger.log_dir, resumed_from)
    ckpt_dir = out / "checkpoints"
    every = max(1, config.num_steps // max(1, config.num_checkpoints))
    checkpoints = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="step={step}",
        every_n_train_steps=every,
        save_top_k=-1,
        save_last=True,
        auto_insert_metric_name=False,
    )
    best = ModelCheckpoint(  # the lowest validation loss so far: a small archive overfits
        dirpath=ckpt_dir,
        filename="best",
        monitor="val_loss",
        mode="min",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    step_validation = n_train > every * config.batch_size  # else: once per (short) epoch
    trainer = L.Trainer(
        max_steps=config.num_steps,
        max_epochs=-1,
        accelerator="gpu" if gpu else "cpu",
        devices=config.devices,
        strategy="ddp" if config.devices > 1 else "auto",
        precision="bf16-mixed" if gpu else "32-true",
        callbacks=[
            checkpoints,
            best,
            LearningRateMonitor(logging_interval="step"),
            *([StepProgressBar()] if config.progress else []),
        ],
        logger=logger,
        val_check_interval=every if step_validation else None,
        check_val_every_n_epoch=None if step_validation else 1,
        log_every_n_steps=max(1, min(10, every)),
        gradient_clip_val=config.grad_clip or None,
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        deterministic=False,
        num_sanity_val_steps=0,
    )
    return trainer, best


def train(config: TrainConfig) -> dict:
    """Train; return a report (steps, losses, checkpoint paths, seconds).

    The steps: check what is in ``out`` (resume or refuse to overwrite), split the stored hours
    by time, build the network and the data loaders, fit with Lightning, and write the final
    state to ``last.ckpt`` and the report to ``train_report.json``.
    """
    archive = Archive(config.archive)
    out = Path(config.out)
    last = out / "checkpoints" / "last.ckpt"
    resumed_from = _check_resume(config, archive, last)
    L.seed_everything(config.seed, workers=True, verbose=False)
    train_times, val_times = split_times(archive, config.val_fraction)
    gpu = config.accelerator == "gpu" or (
        config.accelerator == "auto" and torch.cuda.is_available()
    )
    train_loader, val_loader = _loaders(config, archive, train_times, val_times, gpu)
    module = _build_module(config, archive, train_loader.dataset, val_times[0], gpu)
    trainer, best = _trainer(config, len(train_loader.dataset), gpu, resumed_from)
    t0 = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if config.resume else None)
    seconds = time.perf_counter() - t0
    trainer.save_checkpoint(last)  # the final state, whether or not it fell on a checkpoint step
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best_score = best.best_model_score
    report = {
        "config": asdict(config),
        "global_step": int(trainer.global_step),
        "resumed_from_step": resumed_from,
        "train_hours": len(train_times),
        "val_hours": len(val_times),
        "parameters": sum(p.numel() for p in module.net.parameters()),
        "seconds": round(seconds, 2),
        "metrics": {k: (None if math.isnan(v) else v) for k, v in metrics.items()},
        "last_checkpoint": str(last),
        "best_checkpoint": best.best_model_path or None,
        "best_val_loss": float(best_score) if best_score is not None else None,
    }
    (out / "train_report.json").write_text(json.dumps(report, indent=2, default=str))
    return report
