"""The autoencoders: radar images to ``embedding_dim`` numbers (50 by default) and back.

Two architectures share one interface (``encode``, ``decode``, ``forward``, ``embedding_dim``,
``in_shape``, ``config``):

- ``"fast"`` (:class:`FastAutoencoder`, the default): space-to-depth, residual blocks at low
  resolution, depth-to-space; made for throughput on 2-megapixel images.
- ``"seed"`` (:class:`SeedAutoencoder`): the original Keras network, ported faithfully.

Inputs are ``(batch, 1, ny, nx)`` floats in [0, 1] (see :func:`normalise_raw`); ``in_shape`` is
the grid's ``(ny, nx)`` and always comes from the archive.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from wxembed.model.common import (
    DBZ_MAX,
    STRONG_ECHO,
    ModelError,
    count_parameters,
    logcosh,
    normalise_dbz,
    normalise_raw,
    to_dbz,
    weighted_logcosh,
)
from wxembed.model.fast import FastAutoencoder, FastConfig
from wxembed.model.seed import SeedAutoencoder, SeedConfig

ARCHS: dict[str, type[nn.Module]] = {"fast": FastAutoencoder, "seed": SeedAutoencoder}
"""Architecture name -> network class."""
CONFIGS: dict[str, type] = {"fast": FastConfig, "seed": SeedConfig}
"""Architecture name -> its hyperparameter dataclass."""


def build_model(
    arch: str = "fast", in_shape: tuple[int, int] | None = None, **hparams: Any
) -> nn.Module:
    """The network ``arch`` ("fast" or "seed") for images of shape ``in_shape`` (the grid's
    ``(ny, nx)``), with ``hparams`` overriding its config's defaults.

    Raises :class:`ModelError` for an unknown arch or hyperparameter, or hyperparameters that do
    not fit the grid.
    """
    if arch not in ARCHS:
        raise ModelError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHS)}")
    if in_shape is None:
        raise ModelError(f"{arch} network: in_shape (the grid's (ny, nx)) is required")
    return ARCHS[arch](in_shape, **hparams)


__all__ = [
    "ARCHS",
    "CONFIGS",
    "DBZ_MAX",
    "STRONG_ECHO",
    "FastAutoencoder",
    "FastConfig",
    "ModelError",
    "SeedAutoencoder",
    "SeedConfig",
    "build_model",
    "count_parameters",
    "logcosh",
    "normalise_dbz",
    "normalise_raw",
    "to_dbz",
    "weighted_logcosh",
]
