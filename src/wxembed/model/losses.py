"""Training losses and the learning-rate schedule, on the network scale ([0, 1] = 0..60 dBZ)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from wxembed.reflectivity import NETWORK_MAX_DBZ

STRONG_ECHO = 35.0 / NETWORK_MAX_DBZ
"""35 dBZ on the network's scale: the threshold of :func:`weighted_logcosh`."""
MODERATE_ECHO = 20.0 / NETWORK_MAX_DBZ
"""20 dBZ on the network's scale: the second threshold of :func:`logcosh_csi`."""


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


def distance_loss(code: Tensor, target: Tensor) -> Tensor:
    """Mean squared *relative* error of the batch's pairwise code distances against the pairwise
    distances of the images they encode (Euclidean, network scale, on the grid ``target`` is on)::

        mean over pairs i < j of ((|z_i - z_j| - |x_i - x_j|) / (|x_i - x_j| + 0.001))^2

    Search finds hours by code distance; the hours a user means by "most like this one" are the
    nearest in pixel space. PCA's coefficients keep only the part of a distance that lies in its
    leading EOFs, and the part it drops (cells it cannot place) decides which hours are nearest:
    PCA-50's ten nearest held 8 % of the true ten on ``bench_representation``'s data. This term
    teaches the encoder's correction to carry that part too (the relative error weights the near
    pairs, the ones that decide a neighbour list, as much as the far ones). 0 for a batch of one.
    """
    n = code.shape[0]
    if n < 2:
        return code.sum() * 0.0
    i, j = torch.triu_indices(n, n, 1, device=code.device)
    flat = target.float().flatten(1)
    dx = (flat[i] - flat[j]).norm(dim=1)
    dz = (code.float()[i] - code.float()[j]).norm(dim=1)
    return (((dz - dx) / (dx + 1e-3)) ** 2).mean()


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
