"""The fast network: the default autoencoder, built for 2-megapixel images on modest hardware.

Nothing runs at full resolution but a reshape. The image is zero-padded (at the end of each axis,
so no edge is lost) to a multiple of the total downsampling, cut into ``patch x patch`` blocks
that become channels (space-to-depth), and processed by residual blocks at 1/patch resolution and
below; the decoder mirrors it and a per-block head predicts every pixel of each block, reassembled
by depth-to-space and cropped back to the grid::

    input (B, 1, ny, nx) -> pad to (NY, NX), multiples of patch * 2**(S-1)
    pixel_unshuffle(patch) -> (B, patch**2, NY/patch, NX/patch) -> 1x1 conv to widths[0]
    stage s = 0..S-1 at 1/(patch * 2**s): [3x3 stride-2 conv from the previous stage]
                                          + enc_blocks[s] residual blocks
    1x1 conv to code_channels -> flatten -> Linear(embedding_dim): the embedding
    Linear back + act -> reshape -> 1x1 conv to widths[-1]
    stage s = S-1..0: dec_blocks[s] residual blocks, then a 2x transposed conv to stage s-1
    per-block head: 1x1 conv (widths[0] -> head_hidden) + act + 1x1 conv (-> patch**2)
    pixel_shuffle(patch) -> crop to (ny, nx) -> clamp to [0, 1] (straight-through gradient)

The output clamp passes gradients through unchanged, so a pixel predicted below zero where the
target has echo is still pushed up (a ReLU output would leave it stuck at zero). Train it with
:func:`wxembed.model.losses.logcosh_csi` (the default of ``wxembed train``), which weights
strong echoes and charges missed and spurious 35 dBZ cores: an earlier space-to-depth probe
trained with a plain loss blurred intense cells away (CSI 0 at 35 dBZ).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch.nn.functional as F
from torch import Tensor, nn

from wxembed.errors import ModelError
from wxembed.model.common import (
    StraightThroughClamp,
    check_in_shape,
    check_input,
    make_config,
    padded_shape,
)

_ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU}


@dataclass(frozen=True)
class FastConfig:
    """Hyperparameters of the fast network."""

    embedding_dim: int = 50
    """Size of the embedding."""
    patch: int = 8
    """Space-to-depth factor at the input and depth-to-space factor at the output: the finest
    resolution any convolution sees is 1/patch of the grid's."""
    widths: tuple[int, ...] = (32, 64, 96, 128)
    """Channels of each stage; stage s works at 1/(patch * 2**s) of the grid's resolution."""
    enc_blocks: tuple[int, ...] = (0, 1, 1, 1)
    """Residual blocks of each encoder stage (same length as ``widths``)."""
    dec_blocks: tuple[int, ...] = (1, 1, 1, 1)
    """Residual blocks of each decoder stage (same length as ``widths``)."""
    code_channels: int = 32
    """Channels of the coarsest feature map that the dense layers flatten and rebuild. 32 had the
    lowest held-out error of 8, 16, 32 and 64 in ``bench/bench_quality.py`` (90 s each on the
    264 x 449 grid: 29.9, 28.5, 31.1 dBZ² for 16, 32, 64; 30.6 for 8 in an earlier round); on the
    full HRRR grid (a 17 x 29 map) the two dense layers then hold 1.6 million parameters."""
    head_hidden: int = 64
    """Hidden width of the per-block output head."""
    activation: str = "silu"
    """Activation: one of relu, silu, gelu, leaky_relu."""

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "patch", "code_channels", "head_hidden"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ModelError(f"fast network: {name} must be a positive int, got {v!r}")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):  # accept lists (e.g. from a YAML file), store tuples
                object.__setattr__(self, f.name, tuple(v))
        if not self.widths or any(not isinstance(w, int) or w < 1 for w in self.widths):
            raise ModelError(f"fast network: widths must be positive ints, got {self.widths!r}")
        for name in ("enc_blocks", "dec_blocks"):
            v = getattr(self, name)
            if len(v) != len(self.widths) or any(not isinstance(b, int) or b < 0 for b in v):
                raise ModelError(
                    f"fast network: {name} must be {len(self.widths)} ints >= 0 (one per stage "
                    f"of widths={self.widths}), got {v!r}"
                )
        if self.activation not in _ACTIVATIONS:
            raise ModelError(
                f"fast network: activation must be one of {sorted(_ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )

    @property
    def reduction(self) -> int:
        """Total downsampling, ``patch * 2 ** (len(widths) - 1)``."""
        return self.patch * 2 ** (len(self.widths) - 1)


def _init(module: nn.Module) -> None:
    """He (Kaiming-normal, fan-in) weights and zero biases. PyTorch's default initialisation is
    about 1/sqrt(6) of that scale; through this many layers it makes learning several times slower
    (the loss on a fixed batch fell 6 % in 15 Adam steps, against 55 % with this one)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class ResBlock(nn.Module):
    """``x + conv3x3(act(conv3x3(act(x))))``; the second conv starts at zero (an identity)."""

    def __init__(self, channels: int, act: type[nn.Module]):
        super().__init__()
        self.body = nn.Sequential(
            act(),
            nn.Conv2d(channels, channels, 3, padding=1),
            act(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.zero_last()

    def zero_last(self) -> None:
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class FastAutoencoder(nn.Module):
    """The fast autoencoder (see the module docstring), for images of shape ``in_shape``.

    ``FastAutoencoder(in_shape, config)`` or ``FastAutoencoder(in_shape, embedding_dim=32, ...)``.
    """

    arch = "fast"
    config_class = FastConfig

    def __init__(
        self, in_shape: tuple[int, int], config: FastConfig | None = None, **hparams: object
    ):
        super().__init__()
        self.config = cfg = make_config(FastConfig, config, hparams, "fast")
        self.in_shape = check_in_shape(in_shape, "fast")
        ny, nx = self.in_shape
        m = cfg.reduction
        if ny < cfg.patch or nx < cfg.patch:
            raise ModelError(
                f"fast network: patch={cfg.patch} is larger than the grid ({ny} x {nx})"
            )
        self.padded_shape = padded_shape(self.in_shape, m)
        NY, NX = self.padded_shape
        # Padding more than doubles a side when the grid is much smaller than the downsampling.
        if NY > 2 * ny or NX > 2 * nx:
            raise ModelError(
                f"fast network: patch={cfg.patch} with {len(cfg.widths)} stages downsamples by "
                f"{m}, too deep for the grid ({ny} x {nx}, padded to {NY} x {NX}); use fewer "
                f"widths or a smaller patch"
            )
        act = _ACTIVATIONS[cfg.activation]
        w = cfg.widths
        S = len(w)

        self.stem = nn.Conv2d(cfg.patch**2, w[0], 1)
        self.enc_stages = nn.ModuleList()
        for s in range(S):
            layers: list[nn.Module] = []
            if s > 0:
                layers += [act(), nn.Conv2d(w[s - 1], w[s], 3, stride=2, padding=1)]
            layers += [ResBlock(w[s], act) for _ in range(cfg.enc_blocks[s])]
            self.enc_stages.append(nn.Sequential(*layers))
        self.code_shape = (cfg.code_channels, NY // m, NX // m)  # (C, h, w)
        flat = cfg.code_channels * (NY // m) * (NX // m)
        self.to_code = nn.Sequential(act(), nn.Conv2d(w[-1], cfg.code_channels, 1))
        self.to_embedding = nn.Linear(flat, cfg.embedding_dim)
        self.from_embedding = nn.Sequential(nn.Linear(cfg.embedding_dim, flat), act())
        self.from_code = nn.Conv2d(cfg.code_channels, w[-1], 1)
        self.dec_stages = nn.ModuleList()
        for s in reversed(range(S)):
            layers = [ResBlock(w[s], act) for _ in range(cfg.dec_blocks[s])]
            if s > 0:
                layers += [act(), nn.ConvTranspose2d(w[s], w[s - 1], 2, stride=2)]
            self.dec_stages.append(nn.Sequential(*layers))
        self.head = nn.Sequential(
            act(),
            nn.Conv2d(w[0], cfg.head_hidden, 1),
            act(),
            nn.Conv2d(cfg.head_hidden, cfg.patch**2, 1),
        )
        self.out = StraightThroughClamp(0.0, 1.0)
        self.apply(_init)
        for m in self.modules():
            if isinstance(m, ResBlock):
                m.zero_last()

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def encode(self, x: Tensor) -> Tensor:
        """(B, 1, ny, nx) in [0, 1] -> (B, embedding_dim)."""
        check_input(x, self.in_shape, "fast")
        (ny, nx), (NY, NX) = self.in_shape, self.padded_shape
        x = F.pad(x, (0, NX - nx, 0, NY - ny))  # (B, 1, ny, nx) -> (B, 1, NY, NX), zeros at the end
        h = F.pixel_unshuffle(x, self.config.patch)  # -> (B, patch**2, NY/patch, NX/patch)
        h = self.stem(h)  # -> (B, widths[0], NY/patch, NX/patch)
        for stage in self.enc_stages:
            h = stage(h)  # -> (B, widths[-1], NY/m, NX/m) after the last stage
        h = self.to_code(h).flatten(1)  # (B, code_channels, h, w) -> (B, code_channels*h*w)
        return self.to_embedding(h)  # -> (B, embedding_dim)

    def decode(self, z: Tensor) -> Tensor:
        """(B, embedding_dim) -> (B, 1, ny, nx) in [0, 1]."""
        h = self.from_embedding(z)  # (B, embedding_dim) -> (B, code_channels*h*w)
        h = h.reshape(z.shape[0], *self.code_shape)  # -> (B, code_channels, h, w)
        h = self.from_code(h)  # -> (B, widths[-1], h, w)
        for stage in self.dec_stages:
            h = stage(h)  # -> (B, widths[0], NY/patch, NX/patch) after the last stage
        h = self.head(h)  # -> (B, patch**2, NY/patch, NX/patch)
        y = F.pixel_shuffle(h, self.config.patch)  # -> (B, 1, NY, NX)
        ny, nx = self.in_shape
        return self.out(y[..., :ny, :nx])  # (B, 1, NY, NX) -> (B, 1, ny, nx)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 1, ny, nx) -> reconstruction of the same shape, in [0, 1]."""
        return self.decode(self.encode(x))
