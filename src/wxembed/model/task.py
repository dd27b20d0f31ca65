"""The LightningModule around either network: one shared step for train/val, predict = embed."""

from __future__ import annotations

import lightning as L
import torch

from wxembed.model import build_model
from wxembed.model.common import normalise_raw
from wxembed.model.losses import LOSSES, distance_loss, scheduled_lr
from wxembed.reflectivity import ADD_OFFSET, NODATA, SCALE_FACTOR, unit_to_dbz


def reconstruction_sums(raw: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """``[sum of squared errors, pixels]`` (float64) of reconstructions (network scale) against
    the archive codes ``raw`` they came from, scored as :mod:`wxembed.evaluation.metrics` scores
    MSE: both in dBZ floored at 0, no-data pixels left out, the truth not clipped at 60 dBZ. So
    the training log's ``val_mse_dbz`` and ``wxembed evaluate``'s MSE agree on the same hours."""
    valid = raw != NODATA
    truth = (raw.to(torch.float64) * SCALE_FACTOR + ADD_OFFSET).clamp(min=0.0)
    pred = unit_to_dbz(recon.to(torch.float64)).clamp(min=0.0)
    err = torch.where(valid, (pred - truth) ** 2, torch.zeros_like(truth))
    return torch.stack([err.sum(), valid.sum().to(torch.float64)])


class AutoencoderModule(L.LightningModule):
    """Trains a network to reproduce radar images from its embedding.

    Batches are the archive's uint8 codes ``(batch, 1, ny, nx)``; they are normalised on the
    device (a quarter of the bytes of float32 cross the bus). Every argument is a plain value
    and is saved in the checkpoint, so the checkpoint alone rebuilds the model; ``archive`` and
    ``val_start`` (the first held-out hour) say what it was trained on.
    """

    def __init__(
        self,
        arch: str,
        in_shape: tuple[int, int],
        hparams: dict,
        *,
        loss: str = "logcosh",
        lr: float = 1e-3,
        schedule: str = "constant",
        distance_weight: float = 0.0,
        grid_json: str = "",
        archive: str = "",
        val_start: str = "",
        channels_last: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = build_model(arch, tuple(in_shape), **hparams)
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)}")
        self.loss_fn = LOSSES[loss]
        scheduled_lr(schedule, lr, 0.0)  # a ValueError naming the choices for an unknown one
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def _inputs(self, raw: torch.Tensor) -> torch.Tensor:
        x = normalise_raw(raw)  # (batch, 1, ny, nx) uint8 -> float in [0, 1]
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _step(self, raw: torch.Tensor, stage: str) -> torch.Tensor:
        x = self._inputs(raw)
        recon, target, code = self.net.training_terms(x)  # on the network's working grid
        loss = self.loss_fn(recon.float(), target.float())
        if self.hparams.distance_weight:  # code distances that rank hours as pixels do
            loss = loss + self.hparams.distance_weight * distance_loss(code, target)
        self.log(
            f"{stage}_loss",
            loss,
            prog_bar=True,
            on_step=stage == "train",
            on_epoch=stage != "train",
            batch_size=x.shape[0],
            sync_dist=stage != "train",
        )
        if stage == "val":
            self._val_sums += reconstruction_sums(raw, self.net.from_work(recon))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(2, dtype=torch.float64, device=self.device)

    def on_validation_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")
        mse = sums[0] / sums[1].clamp(min=1)
        self.log("val_mse_dbz", mse.float(), sync_dist=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Flush the log first: a checkpoint on disk means the log holds every row before it,
        so a run killed after it and resumed from it loses no logged value."""
        if self.logger is not None:
            self.logger.save()

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")

    def predict_step(self, batch, batch_idx):
        return self.net.encode(self._inputs(batch))

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        if self.hparams.schedule == "constant":
            return opt
        total = max(1, int(self.trainer.max_steps))  # the scheduler is stepped once per step

        def factor(step: int) -> float:
            return scheduled_lr(self.hparams.schedule, 1.0, step / total)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
