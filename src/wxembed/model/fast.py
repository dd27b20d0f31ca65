"""The fast network: the default autoencoder, the same size on any grid.

It works at a *working resolution*: the image is averaged down by a whole factor ``f`` (the
smallest that leaves at most ``work_pixels`` points), encoded and decoded there, and the
reconstruction is brought back to the grid by bilinear interpolation. Its parameters do not
depend on the grid either: the encoder's coarsest map is pooled to a fixed ``latent`` grid
before the dense layers, and the decoder's dense layer rebuilds that grid and interpolates it to
its own coarsest map. So the same network (about 0.6 M parameters with the defaults) serves
HRRR's 1059 x 1799, MRMS's 3500 x 7000 and FMI's 1 km grids, and a training step costs about the
same on each::

    input (B, 1, ny, nx) -> zero-pad to multiples of f -> f x f block means: (B, 1, wy, wx)
    pad to (WY, WX), multiples of patch * 2**(S-1) (zeros at the end of each axis)
    pixel_unshuffle(patch) -> (B, patch**2, WY/patch, WX/patch) -> 1x1 conv to widths[0]
    stage s = 0..S-1 at 1/(patch * 2**s): [3x3 stride-2 conv] + enc_blocks[s] residual blocks
    1x1 conv to code_channels -> adaptive average pool to latent (ly, lx) -> flatten
    -> Linear(embedding_dim): the embedding
    Linear back + act -> (B, code_channels, ly, lx) -> bilinear to the coarsest map
    -> 1x1 conv to widths[-1]
    stage s = S-1..0: dec_blocks[s] residual blocks, then a 2x transposed conv to stage s-1
    per-block head: 1x1 conv (widths[0] -> head_hidden) + act + 1x1 conv (-> patch**2)
    pixel_shuffle(patch) -> crop to (wy, wx) -> clamp to [0, 1] (straight-through gradient)
    -> bilinear to (f wy, f wx) -> crop to (ny, nx)

With ``eof_path`` (the default) a linear EOF path runs beside the convolutions::

    embedding      = EOFs . (work - mean)  +  conv encoder's correction   (starts at 0)
    reconstruction = clamp(mean + embedding . EOFs  +  conv decoder's residual)   (starts at 0)

The mean and the ``embedding_dim`` leading EOFs of the working-grid images are fitted on the
training hours before the first step (:meth:`FastAutoencoder.fit_data`, a few seconds) and kept
fixed. So a new network *is* PCA of the same size on the working grid, already clamped to the
physical range, and gradient steps only add what a linear code cannot: the decoder's
non-linear residual (sharper, non-negative echo) and the encoder's correction. Without it, the
network needs thousands of steps to find what PCA finds in closed form (``bench_representation``).

With ``coverage`` (the default: 10, 20 and 35 dBZ) the embedding's last numbers are not learned
but the image's exact echo coverage, the share of the grid at or above each threshold
(:mod:`wxembed.model.coverage`), scaled by ``coverage_weight``::

    embedding = [ learned numbers (embedding_dim - 3) | coverage_weight * sqrt(wy wx * share) ]

The decoder reads them (so it knows how much echo to paint), :meth:`FastAutoencoder.decode_matched`
restores that coverage by probability matching, and a search can weigh them to find hours
with as much weather (``search_similar(coverage_weight=...)``).

Training compares the working-resolution reconstruction with the block means of the input
(:meth:`FastAutoencoder.training_terms`), so a step never touches the full grid after the first
pooling. The output clamp passes gradients through unchanged, so a pixel predicted below zero
where the target has echo is still pushed up. Train it with
:func:`wxembed.model.losses.logcosh_csi` (the default of ``wxembed train``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields

import torch
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
from wxembed.model.coverage import coverage, match_coverage
from wxembed.reflectivity import NETWORK_MAX_DBZ

_ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU}


@dataclass(frozen=True)
class FastConfig:
    """Hyperparameters of the fast network."""

    embedding_dim: int = 50
    """Size of the embedding."""
    work_pixels: int = 40_000
    """Most points of the working grid: the input is averaged down by the smallest whole factor
    that leaves at most this many (HRRR's 1.9 M points by 7, to 152 x 257)."""
    patch: int = 2
    """Space-to-depth factor at the working grid's input and depth-to-space factor at its
    output: the finest map any convolution sees is 1/patch of the working grid."""
    widths: tuple[int, ...] = (32, 64, 96, 128)
    """Channels of each stage; stage s works at 1/(patch * 2**s) of the working grid."""
    enc_blocks: tuple[int, ...] = (0, 1, 1, 1)
    """Residual blocks of each encoder stage (same length as ``widths``)."""
    dec_blocks: tuple[int, ...] = (1, 1, 1, 1)
    """Residual blocks of each decoder stage (same length as ``widths``)."""
    code_channels: int = 32
    """Channels of the latent grid that the dense layers flatten and rebuild."""
    latent: tuple[int, int] = (8, 12)
    """The fixed grid (rows, columns) the coarsest map is pooled to before the dense layers."""
    head_hidden: int = 64
    """Hidden width of the per-block output head."""
    activation: str = "silu"
    """Activation: one of relu, silu, gelu, leaky_relu."""
    eof_path: bool = True
    """Add a linear EOF (PCA) path beside the convolutions: the embedding is the working-grid
    image's projection on its leading EOFs plus the encoder's learned correction, and the
    reconstruction is the EOF synthesis plus the decoder's learned residual. The EOFs are fitted
    on the training hours before the first step (:meth:`FastAutoencoder.fit_data`) and then
    fixed; the learned parts start at zero, so training starts from PCA of the same size and
    only has to improve on it."""
    coverage: tuple[float, ...] = (10.0, 20.0, 35.0)
    """dBZ thresholds whose echo coverage the embedding carries exactly: its last
    ``len(coverage)`` numbers are ``coverage_weight * sqrt(working pixels * share)``, the share
    of the grid at or above each threshold (:mod:`wxembed.model.coverage`). They make embedding
    distances count how much weather an hour has, and let :meth:`FastAutoencoder.decode_matched`
    give a reconstruction the right echo area. The other numbers are learned; ``()`` has none."""
    coverage_weight: float = 0.01
    """How much a difference in coverage counts in embedding distance, against the learned
    numbers (whose distances follow pixel distance on the working grid). Small by default, so
    that plain Euclidean search ranks hours about as pixel distance does; a search can weigh
    coverage more (``search_similar(coverage_weight=1)``: hours with as much echo first)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):  # accept lists (e.g. from JSON), store tuples
                object.__setattr__(self, f.name, tuple(v))
        if not isinstance(self.eof_path, bool):
            raise ModelError(f"fast network: eof_path must be true or false, got {self.eof_path!r}")
        for name in ("embedding_dim", "work_pixels", "patch", "code_channels", "head_hidden"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ModelError(f"fast network: {name} must be a positive int, got {v!r}")
        if not self.widths or any(not isinstance(w, int) or w < 1 for w in self.widths):
            raise ModelError(f"fast network: widths must be positive ints, got {self.widths!r}")
        if len(self.latent) != 2 or any(not isinstance(n, int) or n < 1 for n in self.latent):
            raise ModelError(f"fast network: latent must be two positive ints, got {self.latent}")
        for name in ("enc_blocks", "dec_blocks"):
            v = getattr(self, name)
            if len(v) != len(self.widths) or any(not isinstance(b, int) or b < 0 for b in v):
                raise ModelError(
                    f"fast network: {name} must be {len(self.widths)} ints >= 0 (one per stage "
                    f"of widths={self.widths}), got {v!r}"
                )
        if any(not isinstance(t, int | float) or isinstance(t, bool) for t in self.coverage) or (
            list(self.coverage) != sorted(set(self.coverage))
            or any(not 0 < t < NETWORK_MAX_DBZ for t in self.coverage)
        ):
            raise ModelError(
                "fast network: coverage must be ascending dBZ thresholds between 0 and "
                f"{NETWORK_MAX_DBZ:g}, got {self.coverage!r}"
            )
        if len(self.coverage) >= self.embedding_dim:
            raise ModelError(
                f"fast network: embedding_dim={self.embedding_dim} leaves no learned number "
                f"beside {len(self.coverage)} coverage numbers (coverage={self.coverage!r})"
            )
        w = self.coverage_weight
        if not isinstance(w, int | float) or isinstance(w, bool) or not 0 < w < math.inf:
            raise ModelError(f"fast network: coverage_weight must be > 0, got {w!r}")
        if self.activation not in _ACTIVATIONS:
            raise ModelError(
                f"fast network: activation must be one of {sorted(_ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )

    @property
    def learned_dim(self) -> int:
        """Numbers of the embedding that are learned (all but the coverage numbers)."""
        return self.embedding_dim - len(self.coverage)

    @property
    def reduction(self) -> int:
        """Downsampling of the working grid to the coarsest map, ``patch * 2**(len(widths)-1)``."""
        return self.patch * 2 ** (len(self.widths) - 1)

    def work_factor(self, shape: tuple[int, int]) -> int:
        """The averaging factor from a grid of ``shape`` to its working grid."""
        return max(1, math.ceil(math.sqrt(shape[0] * shape[1] / self.work_pixels)))


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

    def __init__(
        self, in_shape: tuple[int, int], config: FastConfig | None = None, **hparams: object
    ):
        super().__init__()
        self.config = cfg = make_config(FastConfig, config, hparams, "fast")
        self.in_shape = check_in_shape(in_shape, "fast")
        ny, nx = self.in_shape
        self.factor = cfg.work_factor(self.in_shape)
        self.work_shape = (-(-ny // self.factor), -(-nx // self.factor))  # ceil division
        wy, wx = self.work_shape
        m = cfg.reduction
        if wy < cfg.patch or wx < cfg.patch:
            raise ModelError(
                f"fast network: patch={cfg.patch} is larger than the working grid ({wy} x {wx})"
            )
        self.padded_shape = padded_shape(self.work_shape, m)
        py, px = self.padded_shape
        if py > 2 * wy or px > 2 * wx:  # padding would more than double a side
            raise ModelError(
                f"fast network: patch={cfg.patch} with {len(cfg.widths)} stages downsamples by "
                f"{m}, too deep for the working grid ({wy} x {wx}, padded to {py} x {px}); use "
                "fewer widths, a smaller patch or a larger work_pixels"
            )
        self.coarse_shape = (py // m, px // m)
        thresholds = torch.tensor([t / NETWORK_MAX_DBZ for t in cfg.coverage])
        self.register_buffer("coverage_thresholds", thresholds, persistent=False)
        self.coverage_scale = cfg.coverage_weight * math.sqrt(wy * wx)
        act = _ACTIVATIONS[cfg.activation]
        self._build(cfg, act)
        self.out = StraightThroughClamp(0.0, 1.0)
        self.apply(_init)
        for module in self.modules():
            if isinstance(module, ResBlock):
                module.zero_last()
        if cfg.eof_path:
            self._add_eof_path(cfg)

    def _add_eof_path(self, cfg: FastConfig) -> None:
        """Buffers of the EOF path (filled by :meth:`fit_data`); the learned parts start at 0."""
        wy, wx = self.work_shape
        d = cfg.learned_dim
        # kept in float16 (used in float32): d x wy*wx numbers are most of a checkpoint's size
        self.register_buffer("eof_mean", torch.zeros(1, 1, wy, wx, dtype=torch.float16))
        self.register_buffer("eofs", torch.zeros(d, wy * wx, dtype=torch.float16))
        self.register_buffer("eof_scale", torch.ones(d))  # spread of each EOF's coefficient
        for layer in (self.to_embedding, self.head[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _build(self, cfg: FastConfig, act: type[nn.Module]) -> None:
        w, stages = cfg.widths, len(cfg.widths)
        self.stem = nn.Conv2d(cfg.patch**2, w[0], 1)
        self.enc_stages = nn.ModuleList()
        for s in range(stages):
            layers: list[nn.Module] = []
            if s > 0:
                layers += [act(), nn.Conv2d(w[s - 1], w[s], 3, stride=2, padding=1)]
            layers += [ResBlock(w[s], act) for _ in range(cfg.enc_blocks[s])]
            self.enc_stages.append(nn.Sequential(*layers))
        flat = cfg.code_channels * cfg.latent[0] * cfg.latent[1]
        self.to_code = nn.Sequential(act(), nn.Conv2d(w[-1], cfg.code_channels, 1))
        self.to_embedding = nn.Linear(flat, cfg.learned_dim)
        self.from_embedding = nn.Sequential(nn.Linear(cfg.embedding_dim, flat), act())
        self.from_code = nn.Conv2d(cfg.code_channels, w[-1], 1)
        self.dec_stages = nn.ModuleList()
        for s in reversed(range(stages)):
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

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def to_work(self, x: Tensor) -> Tensor:
        """(B, 1, ny, nx) -> (B, 1, wy, wx): f x f block means (zero-padded at the far edges)."""
        if self.factor == 1:
            return x
        (ny, nx), (wy, wx), f = self.in_shape, self.work_shape, self.factor
        x = F.pad(x, (0, wx * f - nx, 0, wy * f - ny))  # (B, 1, wy*f, wx*f)
        return F.avg_pool2d(x, f)  # -> (B, 1, wy, wx)

    def from_work(self, y: Tensor) -> Tensor:
        """(B, 1, wy, wx) -> (B, 1, ny, nx): bilinear to the grid's resolution."""
        if self.factor == 1:
            return y
        (ny, nx), (wy, wx), f = self.in_shape, self.work_shape, self.factor
        up = F.interpolate(y, size=(wy * f, wx * f), mode="bilinear", align_corners=False)
        return up[..., :ny, :nx]  # (B, 1, wy*f, wx*f) -> (B, 1, ny, nx)

    @torch.no_grad()
    def fit_data(self, batches: Iterable[Tensor]) -> None:
        """Fit the EOF path on training images (batches of (B, 1, ny, nx) in [0, 1]): their mean
        and leading ``embedding_dim`` EOFs on the working grid (a randomised SVD,
        :func:`torch.svd_lowrank`). Without the EOF path there is nothing to fit."""
        if not self.config.eof_path:
            return
        stack = torch.cat([self.to_work(b.float()).flatten(1).cpu() for b in batches])
        d = self.config.learned_dim
        if len(stack) < 2:
            raise ModelError("fast network: fitting the EOF path needs two or more images")
        mean = stack.mean(0)
        _, _, v = torch.svd_lowrank(stack - mean, q=min(d + 10, *stack.shape), niter=4)
        eofs = torch.zeros_like(self.eofs)
        eofs[: v.shape[1]] = v[:, :d].T.to(eofs)  # fewer images than numbers: the rest stay 0
        eofs = eofs.half()
        scale = ((stack - mean) @ eofs.float().T.cpu()).std(0).clamp(min=1e-3)
        self.eof_mean.copy_(mean.view_as(self.eof_mean))
        self.eofs.copy_(eofs)
        self.eof_scale.copy_(scale)

    def coverage_numbers(self, x: Tensor) -> Tensor:
        """(B, 1, ny, nx) in [0, 1] -> (B, len(coverage)): the embedding's coverage numbers."""
        share = coverage(x, self.coverage_thresholds)
        return self.coverage_scale * share.sqrt()

    def shares(self, z: Tensor) -> Tensor:
        """(B, embedding_dim) -> (B, len(coverage)): the coverage an embedding records."""
        return (z[:, self.config.learned_dim :] / self.coverage_scale).clamp(0, 1) ** 2

    def encode_work(self, x: Tensor) -> Tensor:
        """(B, 1, wy, wx) on the working grid -> (B, learned_dim): the learned numbers."""
        z = self._encode_conv(x)
        if self.config.eof_path:  # the EOF coefficients plus the learned correction
            z = z + (x - self.eof_mean.float()).flatten(1) @ self.eofs.float().T
        return z

    def _encode_conv(self, x: Tensor) -> Tensor:
        (wy, wx), (py, px) = self.work_shape, self.padded_shape
        x = F.pad(x, (0, px - wx, 0, py - wy))  # -> (B, 1, py, px), zeros at the end
        h = F.pixel_unshuffle(x, self.config.patch)  # -> (B, patch**2, py/patch, px/patch)
        h = self.stem(h)  # -> (B, widths[0], py/patch, px/patch)
        for stage in self.enc_stages:
            h = stage(h)  # -> (B, widths[-1], py/m, px/m) after the last stage
        h = F.adaptive_avg_pool2d(self.to_code(h), self.config.latent)  # -> (B, C, ly, lx)
        return self.to_embedding(h.flatten(1))  # (B, C*ly*lx) -> (B, learned_dim)

    def decode_work(self, z: Tensor) -> Tensor:
        """(B, embedding_dim) -> (B, 1, wy, wx) in [0, 1], on the working grid."""
        ly, lx = self.config.latent
        eof, d = self.config.eof_path, self.config.learned_dim
        z, cov = z[:, :d], z[:, d:]
        h = torch.cat([z / self.eof_scale if eof else z, cov / self.coverage_scale], 1)
        h = self.from_embedding(h)  # EOF coefficients and coverage numbers scaled to about 1
        h = h.reshape(z.shape[0], -1, ly, lx)  # -> (B, C, ly, lx)
        h = F.interpolate(h, size=self.coarse_shape, mode="bilinear", align_corners=False)
        h = self.from_code(h)  # -> (B, widths[-1], py/m, px/m)
        for stage in self.dec_stages:
            h = stage(h)  # -> (B, widths[0], py/patch, px/patch) after the last stage
        h = self.head(h)  # -> (B, patch**2, py/patch, px/patch)
        y = F.pixel_shuffle(h, self.config.patch)  # -> (B, 1, py, px)
        wy, wx = self.work_shape
        y = y[..., :wy, :wx]  # -> (B, 1, wy, wx)
        if eof:  # the learned residual on top of the EOF synthesis
            y = y + self.eof_mean.float() + (z @ self.eofs.float()).view(-1, 1, wy, wx)
        return self.out(y)

    def encode(self, x: Tensor) -> Tensor:
        """(B, 1, ny, nx) in [0, 1] -> (B, embedding_dim): the learned numbers, then the
        coverage numbers."""
        check_input(x, self.in_shape, "fast")
        return torch.cat([self.encode_work(self.to_work(x)), self.coverage_numbers(x)], 1)

    def decode(self, z: Tensor) -> Tensor:
        """(B, embedding_dim) -> (B, 1, ny, nx) in [0, 1]: the reconstruction with the least
        expected squared error (smooth where the code cannot say where cells are)."""
        return self.from_work(self.decode_work(z))

    def decode_matched(self, z: Tensor) -> Tensor:
        """(B, embedding_dim) -> (B, 1, ny, nx) in [0, 1]: :meth:`decode` probability-matched
        to the coverage the embedding records (:func:`wxembed.model.coverage.match_coverage`):
        the echo area at each coverage threshold is the image's, the strongest echo where the
        smooth reconstruction is highest. Higher skill at thresholds, larger squared error.
        Without coverage numbers it is :meth:`decode`."""
        y = self.decode(z)
        if not self.config.coverage:
            return y
        matched = match_coverage(y, self.shares(z), self.coverage_thresholds)
        return matched.clamp(0.0, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 1, ny, nx) -> reconstruction of the same shape, in [0, 1]."""
        return self.decode(self.encode(x))

    def training_terms(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(reconstruction, target, code)`` on the working grid, for the training loss; the
        code is the embedding's learned numbers (the distance term leaves coverage alone)."""
        check_input(x, self.in_shape, "fast")
        target = self.to_work(x)
        z = self.encode_work(target)
        return self.decode_work(torch.cat([z, self.coverage_numbers(x)], 1)), target, z
