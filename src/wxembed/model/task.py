"""The LightningModule around either network: one shared step for train/val, predict = embed."""

from __future__ import annotations

import lightning as L
import torch

from wxembed.model import build_model
from wxembed.model.common import normalise_raw
from wxembed.model.losses import LOSSES, scheduled_lr
from wxembed.reflectivity import NETWORK_MAX_DBZ


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
        recon = self.net(x)
        loss = self.loss_fn(recon.float(), x.float())
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
            mse_dbz = torch.mean(((recon.float() - x.float()) * NETWORK_MAX_DBZ) ** 2)
            self.log("val_mse_dbz", mse_dbz, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        return loss

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
