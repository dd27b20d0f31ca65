"""Shared pieces of the autoencoders: input normalisation, configs, crop/pad arithmetic.

The networks see reflectivity on the network scale of :mod:`wxembed.reflectivity`: dBZ clipped
to 0..60 and divided by 60. "No echo" (the archive's -32 dBZ floor, HRRR's -10 dBZ clear air)
and "no data" (code 255, outside radar coverage) both become 0.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from wxembed.errors import ModelError
from wxembed.reflectivity import code_to_unit_table

# ---- input / output scaling ----------------------------------------------------------------
_CODE_TO_UNIT = torch.from_numpy(code_to_unit_table())  # (256,) float32


def normalise_raw(raw: Tensor) -> Tensor:
    """Archive uint8 codes to the network's input scale (float32 in [0, 1], same shape), by
    one lookup in :func:`wxembed.reflectivity.code_to_unit_table` on the codes' device:
    code 255 (no data) -> 0, code 64 (0 dBZ) -> 0, code 184 (60 dBZ) -> 1."""
    return _CODE_TO_UNIT.to(raw.device)[raw.long()]


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
