"""The seed network: the original Keras convolutional autoencoder, ported to PyTorch faithfully.

Layout, for ``L = num_layers``, ``p = pool_size``, ``f = num_filters``::

    input (B, 1, ny, nx)
    crop to the largest (ny', nx') that p**L divides    (see common.centre_crop_box)
    L x [Conv2d(2**(i + f), kernel p, "same") + ReLU + MaxPool(p)]      i = 0 .. L-1
    flatten -> Dense(num_dense), linear: the embedding
    Dense(flat) + ReLU -> reshape
    L x [Conv2d(2**(L - i - 1 + f), kernel p, "same") + ReLU + Upsample(p, nearest)]
    Conv2d(1, kernel 3, "same") + ReLU
    zero-pad back to (ny, nx)

With ``SeedConfig(4, 4, 4, 50)`` on the HRRR grid (1059 x 1799 -> 1024 x 1792 -> 4 x 7 x 128 =
3,584 after the encoder) it has 969,123 parameters. "same" with an even kernel pads one more point
after than before, as TensorFlow does (:class:`SameConv2d`). Flattening is in
PyTorch's channel-first order, so porting Keras weights of the dense layers needs a permutation.
Weights start as Keras starts them (Glorot-uniform, zero biases): with PyTorch's default
initialisation the final ReLU often starts dead (zero everywhere) and never learns.
``num_dense=0`` drops the dense layers: the flattened encoder output is the embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch.nn.functional as F
from torch import Tensor, nn

from wxembed.errors import ModelError
from wxembed.model.common import (
    centre_crop_box,
    check_in_shape,
    check_input,
    make_config,
)


@dataclass(frozen=True)
class SeedConfig:
    """Hyperparameters of the seed network (the original's names and defaults)."""

    num_layers: int = 4
    """Encoder (and decoder) blocks; each divides (multiplies) the image size by ``pool_size``."""
    pool_size: int = 4
    """Max-pool / upsampling factor of each block, and the convolutions' kernel size."""
    num_filters: int = 4
    """log2 of the first block's channels: block i has ``2 ** (i + num_filters)``."""
    num_dense: int = 50
    """Size of the embedding (a linear dense layer); 0 = no dense bottleneck."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ModelError(f"seed network: {f.name} must be an int, got {v!r}")
        if self.num_layers < 1:
            raise ModelError(f"seed network: num_layers must be >= 1, got {self.num_layers}")
        if self.pool_size < 2:
            raise ModelError(f"seed network: pool_size must be >= 2, got {self.pool_size}")
        if not 0 <= self.num_filters <= 12:
            raise ModelError(f"seed network: num_filters must be in 0..12, got {self.num_filters}")
        if self.num_dense < 0:
            raise ModelError(f"seed network: num_dense must be >= 0, got {self.num_dense}")

    @property
    def reduction(self) -> int:
        """Total downsampling of the encoder, ``pool_size ** num_layers``."""
        return self.pool_size**self.num_layers


class SameConv2d(nn.Conv2d):
    """Conv2d with Keras/TensorFlow "same" padding, done explicitly: ``(k - 1) // 2`` zeros
    before and the rest after (one more after for an even kernel)."""

    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__(c_in, c_out, kernel)
        before = (kernel - 1) // 2
        after = kernel - 1 - before
        self._same = (before, after, before, after)  # F.pad order: left, right, top, bottom

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, self._same))


def _keras_init(module: nn.Module) -> None:
    """Keras's default initialisation: Glorot-uniform weights, zero biases."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


class SeedAutoencoder(nn.Module):
    """The original autoencoder (see the module docstring), for images of shape ``in_shape``.

    ``SeedAutoencoder(in_shape, config)`` or ``SeedAutoencoder(in_shape, num_layers=3, ...)``.
    """

    arch = "seed"

    def __init__(self, in_shape: tuple[int, int], config: SeedConfig | None = None, **hparams: int):
        super().__init__()
        self.config = config = make_config(SeedConfig, config, hparams, "seed")
        self.in_shape = check_in_shape(in_shape, "seed")
        ny, nx = self.in_shape
        m = config.reduction
        if ny < m or nx < m:
            raise ModelError(
                f"seed network: num_layers={config.num_layers} with pool_size={config.pool_size} "
                f"downsamples by {m} and needs a grid of at least {m} x {m} points; "
                f"the grid is {ny} x {nx}"
            )
        (self.crop_top, self.crop_bottom), (self.crop_left, self.crop_right) = centre_crop_box(
            self.in_shape, m
        )
        self.crop_shape = (
            ny - self.crop_top - self.crop_bottom,
            nx - self.crop_left - self.crop_right,
        )
        L, p, f = config.num_layers, config.pool_size, config.num_filters

        enc: list[nn.Module] = []
        c_in = 1
        for i in range(L):
            c_out = 2 ** (i + f)
            enc += [SameConv2d(c_in, c_out, p), nn.ReLU(), nn.MaxPool2d(p)]
            c_in = c_out
        self.encoder_convs = nn.Sequential(*enc)
        self.code_shape = (c_in, self.crop_shape[0] // m, self.crop_shape[1] // m)  # (C, h, w)
        flat = c_in * self.code_shape[1] * self.code_shape[2]
        self._flat = flat
        if config.num_dense:
            self.to_embedding: nn.Module = nn.Linear(flat, config.num_dense)
            self.from_embedding: nn.Module = nn.Sequential(
                nn.Linear(config.num_dense, flat), nn.ReLU()
            )
        else:
            self.to_embedding = nn.Identity()
            self.from_embedding = nn.Identity()

        dec: list[nn.Module] = []
        for i in range(L):
            c_out = 2 ** (L - i - 1 + f)
            dec += [
                SameConv2d(c_in, c_out, p),
                nn.ReLU(),
                nn.Upsample(scale_factor=p, mode="nearest"),
            ]
            c_in = c_out
        dec += [SameConv2d(c_in, 1, 3), nn.ReLU()]
        self.decoder_convs = nn.Sequential(*dec)
        self.apply(_keras_init)

    @property
    def embedding_dim(self) -> int:
        return self.config.num_dense or self._flat

    def crop(self, x: Tensor) -> Tensor:
        """(B, 1, ny, nx) -> (B, 1, ny', nx'), the part of the image the network sees."""
        ny, nx = self.in_shape
        return x[..., self.crop_top : ny - self.crop_bottom, self.crop_left : nx - self.crop_right]

    def encode(self, x: Tensor) -> Tensor:
        """(B, 1, ny, nx) in [0, 1] -> (B, embedding_dim)."""
        check_input(x, self.in_shape, "seed")
        h = self.encoder_convs(self.crop(x))  # (B, 1, ny', nx') -> (B, C, ny'/m, nx'/m)
        h = h.flatten(1)  # (B, C, h, w) -> (B, C*h*w)
        return self.to_embedding(h)  # (B, C*h*w) -> (B, num_dense)

    def decode(self, z: Tensor) -> Tensor:
        """(B, embedding_dim) -> (B, 1, ny, nx); zero outside the cropped part."""
        h = self.from_embedding(z)  # (B, num_dense) -> (B, C*h*w)
        h = h.reshape(z.shape[0], *self.code_shape)  # (B, C*h*w) -> (B, C, h, w)
        y = self.decoder_convs(h)  # (B, C, h, w) -> (B, 1, ny', nx')
        # (B, 1, ny', nx') -> (B, 1, ny, nx): zeros where the input was cropped
        return F.pad(y, (self.crop_left, self.crop_right, self.crop_top, self.crop_bottom))

    def forward(self, x: Tensor) -> Tensor:
        """(B, 1, ny, nx) -> reconstruction of the same shape."""
        return self.decode(self.encode(x))

    def training_terms(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(reconstruction, target, embedding)`` for the training loss: on the full grid, as
        the original."""
        z = self.encode(x)
        return self.decode(z), x, z

    def from_work(self, y: Tensor) -> Tensor:
        """The reconstruction on the grid: this network works on the grid itself."""
        return y

    def fit_data(self, batches) -> None:
        """Nothing is fitted before training: the original learns everything by gradient."""
