"""Shared pieces of the autoencoders: input normalisation, crop/pad arithmetic, losses.

The networks see reflectivity as a float in [0, 1]: dBZ clipped to 0..:data:`DBZ_MAX` and
divided by :data:`DBZ_MAX`. "No echo" (the archive's -32 dBZ floor, HRRR's -10 dBZ clear air)
and "no data" (raw 255, outside radar coverage) both become 0.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wxembed.archive import ADD_OFFSET, NODATA, SCALE_FACTOR
from wxembed.errors import WxembedError

DBZ_MAX = 60.0
"""dBZ that maps to 1.0 at the network's input and output."""

STRONG_ECHO = 35.0 / DBZ_MAX
"""35 dBZ on the network's scale: the threshold of :func:`weighted_logcosh`."""


class ModelError(WxembedError):
    """A network's hyperparameters do not fit the grid, or make no sense on their own.

    Re-exported as ``wxembed.model.ModelError``.
    """


# ---- input / output scaling ----------------------------------------------------------------


def normalise_raw(raw: Tensor) -> Tensor:
    """Archive uint8 codes to the network's input scale (float32 in [0, 1], same shape).

    ``dBZ = raw * 0.5 - 32``; raw 255 ("no data") counts as 0 dBZ; then dBZ is clipped to
    0..60 and divided by 60. So raw 255 -> 0, raw 64 (0 dBZ) -> 0, raw 184 (60 dBZ) -> 1.
    """
    dbz = raw.to(torch.float32) * SCALE_FACTOR + ADD_OFFSET
    dbz = torch.where(raw == NODATA, torch.zeros_like(dbz), dbz)
    return dbz.clamp_(0.0, DBZ_MAX) / DBZ_MAX


def normalise_dbz(dbz: Tensor) -> Tensor:
    """dBZ (float, NaN = no data) to the network's input scale; NaN counts as 0 dBZ."""
    dbz = torch.nan_to_num(dbz.to(torch.float32), nan=0.0)
    return dbz.clamp(0.0, DBZ_MAX) / DBZ_MAX


def to_dbz(x: Tensor) -> Tensor:
    """The network's [0, 1] scale back to dBZ (0..60)."""
    return x * DBZ_MAX


# ---- configs -------------------------------------------------------------------------------

C = TypeVar("C")


def make_config(cls: type[C], config: C | None, hparams: dict[str, Any], arch: str) -> C:
    """``config`` (or ``cls()``) with ``hparams`` replaced; unknown names raise
    :class:`ModelError` listing the known ones."""
    base = cls() if config is None else config
    if not isinstance(base, cls):
        raise ModelError(f"{arch} network: config must be a {cls.__name__}, got {config!r}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(hparams) - known)
    if unknown:
        raise ModelError(
            f"{arch} network: unknown hyperparameters {unknown}; known: {sorted(known)}"
        )
    return replace(base, **hparams) if hparams else base  # type: ignore[type-var]


# ---- crop / pad arithmetic -----------------------------------------------------------------


def centre_crop_box(
    shape: tuple[int, int], multiple: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right))`` to cut from ``shape`` to leave the largest size that
    ``multiple`` divides.

    With ``d`` rows (columns) too many, the rows lose ``floor(d / 2)`` at the start and the rest
    at the end, the columns ``ceil(d / 2)`` at the start and the rest at the end, as the original
    network did: HRRR's 1059 x 1799 at ``multiple`` 256 loses 17 + 18 rows and 4 + 3 columns,
    leaving 1024 x 1792. Raises :class:`ModelError` when a side is shorter than ``multiple``.
    """
    ny, nx = shape
    if ny < multiple or nx < multiple:
        raise ModelError(f"grid {ny} x {nx} is smaller than {multiple} x {multiple}")
    dy, dx = ny % multiple, nx % multiple
    return (dy // 2, dy - dy // 2), (dx - dx // 2, dx // 2)


def pad_amount(n: int, multiple: int) -> int:
    """How many points to add to ``n`` to reach the next multiple of ``multiple``."""
    return -n % multiple


def padded_shape(shape: tuple[int, int], multiple: int) -> tuple[int, int]:
    """``shape`` rounded up to multiples of ``multiple``."""
    return tuple(n + pad_amount(n, multiple) for n in shape)  # type: ignore[return-value]


def check_in_shape(in_shape: tuple[int, int], arch: str) -> tuple[int, int]:
    """``in_shape`` as a pair of positive ints, or :class:`ModelError` naming ``arch``."""
    try:
        ny, nx = (int(n) for n in in_shape)
    except (TypeError, ValueError):
        raise ModelError(f"{arch} network: in_shape must be (ny, nx), got {in_shape!r}") from None
    if ny < 1 or nx < 1:
        raise ModelError(f"{arch} network: in_shape must be positive, got {ny} x {nx}")
    return ny, nx


def check_input(x: Tensor, in_shape: tuple[int, int], arch: str) -> None:
    """Raise :class:`ModelError` unless ``x`` is ``(batch, 1, ny, nx)`` on the network's grid."""
    if x.dim() != 4 or x.shape[1] != 1 or tuple(x.shape[-2:]) != tuple(in_shape):
        raise ModelError(
            f"{arch} network built for (batch, 1, {in_shape[0]}, {in_shape[1]}) images, "
            f"got a tensor of shape {tuple(x.shape)}"
        )


# ---- losses --------------------------------------------------------------------------------


def _logcosh(diff: Tensor) -> Tensor:
    """Elementwise log(cosh(diff)), stable for any size: |d| + log1p(exp(-2|d|)) - log 2."""
    a = diff.abs()
    return a + F.softplus(-2.0 * a) - math.log(2.0)


def logcosh(pred: Tensor, target: Tensor) -> Tensor:
    """Mean log-cosh error (Keras ``LogCosh``): about MSE / 2 for small errors, MAE for large."""
    return _logcosh(pred.float() - target.float()).mean()


def weighted_logcosh(
    pred: Tensor, target: Tensor, threshold: float = STRONG_ECHO, weight: float = 3.0
) -> Tensor:
    """Mean log-cosh error with ``weight`` times the weight where the target *or* the prediction
    exceeds ``threshold`` (35 dBZ on the [0, 1] scale by default).

    Strong echoes cover a few percent of an image at most; with plain log-cosh a network can
    blur them into weak echo at almost no cost. Weighting misses (target strong) keeps the cores;
    weighting false alarms (prediction strong) stops it from painting strong echo everywhere.
    ``weight=1`` is :func:`logcosh`. The default 3 was chosen by ``bench/bench_quality.py``
    (the fast network with code_channels 8 and a constant rate, 240 s on a 264 x 449 grid):
    held-out MSE 33.7 dBZ² with weight 3 against 38.7 with weight 10 (a 300 s run).
    :func:`logcosh_csi` builds on it.
    """
    pred, target = pred.float(), target.float()
    strong = (target > threshold) | (pred.detach() > threshold)
    w = 1.0 + (weight - 1.0) * strong.to(pred.dtype)
    return (w * _logcosh(pred - target)).mean()


MODERATE_ECHO = 20.0 / DBZ_MAX
"""20 dBZ on the network's scale: the second threshold of :func:`logcosh_csi`."""


def soft_csi_loss(
    pred: Tensor, target: Tensor, threshold: float = STRONG_ECHO, tau: float = 0.03
) -> Tensor:
    """``1 - soft CSI`` at ``threshold``, pooled over the whole batch: 0 for a perfect forecast
    of the events, 1 when no predicted event overlaps a true one.

    With ``s = sigmoid((pred - threshold) / tau)`` (a differentiable "pred is an event") and the
    target's event mask ``e = target >= threshold``::

        soft_csi = sum(s * e) / (sum(s) + sum(e) - sum(s * e))

    and the loss is written ``(sum(s) + sum(e) - 2 sum(s * e)) / (sum(s) + sum(e) - sum(s * e))``
    so that a batch with no events and none predicted costs 0 (not 1); one pixel is added to
    the denominator, so that the sigmoid's tiny tails over an event-free batch cost ~0 rather
    than tails / (tails + eps), which can be anything. ``tau`` (on the [0, 1]
    scale; 0.03 = 1.8 dBZ) sets how far from the threshold a prediction still gets a gradient.
    """
    pred, target = pred.float(), target.float()
    s = torch.sigmoid((pred - threshold) / tau)
    e = (target >= threshold).to(s.dtype)
    inter = (s * e).sum()
    total = s.sum() + e.sum()
    return (total - 2.0 * inter) / (total - inter + 1.0)


def logcosh_csi(
    pred: Tensor,
    target: Tensor,
    lam35: float = 0.01,
    lam20: float = 0.0,
    weight: float = 3.0,
    tau: float = 0.05,
) -> Tensor:
    """Log-cosh plus soft-CSI terms at 35 and 20 dBZ (see :func:`soft_csi_loss`)::

        weighted_logcosh(pred, target, weight=weight)
            + lam35 * (1 - soft_csi_35) + lam20 * (1 - soft_csi_20)

    A pixel loss lets an autoencoder with a 50-number code blur a storm core into a wide
    30 dBZ smear that never reaches 35 dBZ (CSI 0). The CSI terms cost nothing for the smooth
    bulk of the image but charge a missed core and a spurious one alike, so the decoder learns
    to put strong echo where, and only where, the truth has it. ``weight=1`` uses plain
    :func:`logcosh` as the pixel term.

    This is the default loss of ``wxembed train``. Its defaults (``weight=3``, ``lam35=0.01``,
    no 20 dBZ term, ``tau=0.05`` = 3 dBZ) were picked in ``bench/bench_quality.py`` (the fast
    network, cosine schedule, 90 s per run on the 264 x 449 grid, runs sharing the machine):

    ==========================  ==============  ==========  ==========
    pixel term + CSI terms      held-out MSE    CSI 35 dBZ  CSI 20 dBZ
    ==========================  ==============  ==========  ==========
    weight 3 alone              28.4 to 29.1    0.002-0.005 0.15-0.18
    weight 6 alone              30.5            0.006       0.17
    weight 3 + 0.01 at 35       30.3            0.018       0.16
    weight 3 + 0.01 at 35, 20   33.7            0.032       0.22
    weight 3 + 0.03 at 35, 20   42.3            0.031       0.19
    ==========================  ==============  ==========  ==========

    A small 35 dBZ term buys four or more times the CSI at 35 dBZ for about 1.5 dBZ^2 of MSE; larger
    terms paint strong echo over too much of the image. (The original network, with its plain
    log-cosh, scored about 34.8 dBZ^2 and CSI 0.0001 to 0.001 in the same 90 to 100 s.)
    """
    loss = weighted_logcosh(pred, target, weight=weight) if weight != 1.0 else logcosh(pred, target)
    if lam35:
        loss = loss + lam35 * soft_csi_loss(pred, target, STRONG_ECHO, tau)
    if lam20:
        loss = loss + lam20 * soft_csi_loss(pred, target, MODERATE_ECHO, tau)
    return loss


LOSSES = {"logcosh": logcosh, "weighted_logcosh": weighted_logcosh, "logcosh_csi": logcosh_csi}
"""The training losses by name (``wxembed train --loss``)."""


# ---- learning-rate schedule ----------------------------------------------------------------

SCHEDULES = ("constant", "cosine")
WARMUP = 0.05
"""Share of training spent warming the learning rate up linearly under the ``cosine`` schedule."""


def scheduled_lr(schedule: str, lr: float, progress: float) -> float:
    """The learning rate ``progress`` (0..1) of the way through training.

    ``constant`` is ``lr`` throughout (the original network's Adam). ``cosine`` warms up linearly
    over the first :data:`WARMUP` of training, then falls along half a cosine to 0 at the end.
    """
    if schedule == "constant":
        return lr
    if schedule != "cosine":
        raise ValueError(
            f"unknown learning-rate schedule {schedule!r}; expected one of {SCHEDULES}"
        )
    p = min(max(progress, 0.0), 1.0)
    if p < WARMUP:
        return lr * (p + 1e-3) / WARMUP
    return lr * 0.5 * (1.0 + math.cos(math.pi * (p - WARMUP) / (1.0 - WARMUP)))


# ---- small shared modules ------------------------------------------------------------------


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all of them, or only those that require a gradient)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class StraightThroughClamp(nn.Module):
    """Clamp to [lo, hi] in the forward pass, identity in the backward pass.

    An output in range whose gradient never dies: a ReLU output stuck below zero where the
    target has an echo gets no gradient and stays stuck; this one is pushed back up.
    """

    def __init__(self, lo: float = 0.0, hi: float = 1.0):
        super().__init__()
        self.lo, self.hi = lo, hi

    def forward(self, x: Tensor) -> Tensor:
        return x + (x.clamp(self.lo, self.hi) - x).detach()
