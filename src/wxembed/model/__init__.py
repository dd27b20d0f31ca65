"""LEARN: the autoencoders, radar images to ``embedding_dim`` numbers (50 by default) and back.

- ``fast.py``: our network (the default): space-to-depth, residual blocks at low resolution.
- ``seed.py``: the original Keras network, ported faithfully.
- ``losses.py``: log-cosh, strong-echo weighting, soft CSI; the learning-rate schedule.
- ``task.py``: the Lightning module that trains either network.
- ``checkpoint.py``: the one owner of a checkpoint file (safe load, identity, grid check).
- ``encoder.py``: a trained model in use, batched encode/decode on a device.

Both networks share one interface (``encode``, ``decode``, ``forward``, ``training_terms``,
``from_work``, ``embedding_dim``, ``in_shape``, ``config``). Inputs are ``(batch, 1, ny, nx)``
floats in [0, 1] (see :func:`normalise_raw`); ``in_shape`` is the grid's ``(ny, nx)`` and always
comes from the archive.

Names are re-exported lazily, so ``wxembed.model.checkpoint`` can be imported (by the index) without
importing PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FastAutoencoder": "fast",
    "FastConfig": "fast",
    "SeedAutoencoder": "seed",
    "SeedConfig": "seed",
    "count_parameters": "common",
    "normalise_raw": "common",
    "LOSSES": "losses",
    "SCHEDULES": "losses",
    "STRONG_ECHO": "losses",
    "logcosh": "losses",
    "logcosh_csi": "losses",
    "weighted_logcosh": "losses",
    "Checkpoint": "checkpoint",
    "ModelInfo": "checkpoint",
    "EmbeddingModel": "encoder",
    "load_embedding_model": "encoder",
}

ARCHS = ("fast", "seed")
"""Architecture names: "fast" (ours, the default) and "seed" (the original)."""


def _network_class(arch: str):
    from wxembed.errors import ModelError

    if arch not in ARCHS:
        raise ModelError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHS)}")
    return __getattr__({"fast": "FastAutoencoder", "seed": "SeedAutoencoder"}[arch])


def build_model(arch: str = "fast", in_shape: tuple[int, int] | None = None, **hparams: Any):
    """The network ``arch`` ("fast" or "seed") for images of shape ``in_shape`` (the grid's
    ``(ny, nx)``), with ``hparams`` overriding its config's defaults.

    Raises :class:`~wxembed.errors.ModelError` for an unknown arch or hyperparameter, or
    hyperparameters that do not fit the grid.
    """
    from wxembed.errors import ModelError

    cls = _network_class(arch)
    if in_shape is None:
        raise ModelError(f"{arch} network: in_shape (the grid's (ny, nx)) is required")
    return cls(in_shape, **hparams)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"wxembed.model.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'wxembed.model' has no attribute {name!r}")


__all__ = ["ARCHS", "build_model", *_EXPORTS]
