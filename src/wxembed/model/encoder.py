"""A trained model in use: batched encode and decode on a device, for every caller.

:class:`EmbeddingModel` is what the Beam embed pipeline, evaluation, analysis and the report use
to turn archive hours (uint8 codes) or dBZ fields into embeddings and embeddings back into dBZ
fields. It is built from a :class:`~wxembed.model.checkpoint.Checkpoint` alone;
:func:`load_embedding_model` caches one per file version.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from wxembed.errors import EmbeddingError
from wxembed.grid import Grid
from wxembed.model.checkpoint import Checkpoint, ModelInfo, resolve_checkpoint
from wxembed.model.common import normalise_raw
from wxembed.reflectivity import dbz_to_unit, unit_to_dbz


def resolve_device(device: str = "auto") -> str:
    """The torch device for ``device``: "auto" is "cuda" when a GPU is visible, else "cpu"."""
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def compression_ratio(shape: tuple[int, int], embedding_dim: int) -> dict[str, float | int]:
    """Pixels per embedding number, and archive bytes (uint8) per embedding bytes (float32)."""
    pixels = int(shape[0]) * int(shape[1])
    return {
        "pixels": pixels,
        "embedding_dim": int(embedding_dim),
        "compression_ratio": round(pixels / embedding_dim, 1),
        "bytes_ratio": round(pixels / (4 * embedding_dim), 1),
    }


class EmbeddingModel:
    """A trained autoencoder from a checkpoint: uint8 or dBZ fields to embeddings and back.

    Inputs go through the device in batches of ``batch_size``; outputs are numpy.
    """

    def __init__(
        self, checkpoint: str | Path | Checkpoint, *, device: str = "auto", batch_size: int = 8
    ):
        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint(checkpoint)
        module = ckpt.module()
        self.checkpoint = ckpt.path
        self._ckpt = ckpt
        self.grid: Grid = ckpt.grid
        self.device = torch.device(resolve_device(device))
        self.net = module.net.to(self.device).eval()
        self.batch_size = batch_size
        self.info: ModelInfo = ckpt.info(int(module.net.embedding_dim))

    @property
    def model_id(self) -> str:
        return self.info.model_id

    @property
    def embedding_dim(self) -> int:
        return self.info.embedding_dim

    def _check_shape(self, fields: np.ndarray, what: str) -> np.ndarray:
        if fields.ndim == 2:
            fields = fields[None]  # (ny, nx) -> (1, ny, nx)
        if fields.ndim != 3 or tuple(fields.shape[1:]) != self.grid.shape:
            raise EmbeddingError(
                f"{what} of shape {tuple(fields.shape)} does not fit model {self.model_id}, "
                f"trained on {self.grid.describe()} (shape {self.grid.shape})"
            )
        return fields

    def _encode(self, fields: np.ndarray, normalise) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(fields), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(fields[i : i + self.batch_size]))
                x = normalise(x[:, None].to(self.device))  # (b, ny, nx) -> (b, 1, ny, nx) in [0, 1]
                out.append(self.net.encode(x).float().cpu().numpy())  # -> (b, d)
        return np.concatenate(out) if out else np.zeros((0, self.embedding_dim), np.float32)

    def encode_raw(self, raw: np.ndarray) -> np.ndarray:
        """Archive uint8 codes ``(n, ny, nx)`` (or one ``(ny, nx)``) -> embeddings ``(n, d)``."""
        raw = self._check_shape(np.asarray(raw), "raw field")
        if raw.dtype != np.uint8:
            raise EmbeddingError(f"raw archive codes must be uint8, got {raw.dtype}")
        return self._encode(raw, normalise_raw)

    def encode_dbz(self, dbz: np.ndarray) -> np.ndarray:
        """dBZ fields ``(n, ny, nx)`` (NaN = no data) -> embeddings ``(n, d)``."""
        unit = dbz_to_unit(self._check_shape(np.asarray(dbz, dtype=np.float32), "field"))
        return self._encode(unit, lambda x: x)

    @property
    def can_match(self) -> bool:
        """Whether the embedding records its image's echo coverage (``decode(matched=True)``
        then restores it; :mod:`wxembed.model.coverage`)."""
        return bool(self.coverage_thresholds_dbz)

    @property
    def coverage_thresholds_dbz(self) -> tuple[float, ...]:
        """The dBZ thresholds whose coverage the embedding records (``()``: none)."""
        return tuple(getattr(getattr(self.net, "config", None), "coverage", ()))

    def decode(self, z: np.ndarray, *, matched: bool = False) -> np.ndarray:
        """Embeddings ``(n, d)`` (or one ``(d,)``) -> dBZ fields ``(n, ny, nx)``, 0..60 dBZ.

        The default is the reconstruction with the least expected squared error (smooth and
        weak where the code cannot place cells); ``matched=True`` the same probability-matched
        to the coverage the embedding records, with the image's echo area at each coverage
        threshold (a network without coverage numbers decodes the same either way)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim == 1:
            z = z[None]  # (d,) -> (1, d)
        if z.ndim != 2 or z.shape[1] != self.embedding_dim:
            raise EmbeddingError(
                f"embedding of shape {tuple(z.shape)} does not fit model {self.model_id}, "
                f"which makes {self.embedding_dim} numbers"
            )
        if not np.all(np.isfinite(z)):
            raise EmbeddingError("embedding holds NaN or infinite values")
        out = []
        with torch.inference_mode():
            for i in range(0, len(z), self.batch_size):
                zz = torch.from_numpy(np.ascontiguousarray(z[i : i + self.batch_size]))
                decode = self.net.decode_matched if matched and self.can_match else self.net.decode
                y = decode(zz.to(self.device))  # (b, d) -> (b, 1, ny, nx) in [0, 1]
                out.append(unit_to_dbz(y.float())[:, 0].cpu().numpy())  # -> (b, ny, nx) dBZ
        return np.concatenate(out)

    def reconstruct_raw(
        self, raw: np.ndarray, *, matched: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings ``(n, d)`` and reconstructed dBZ ``(n, ny, nx)`` of uint8 hours."""
        z = self.encode_raw(raw)
        return z, self.decode(z, matched=matched)

    def check_grid(self, archive) -> None:
        """:class:`~wxembed.errors.CheckpointError` unless ``archive`` is on the model's grid."""
        self._ckpt.check_grid(archive)

    def compression(self) -> dict[str, float | int]:
        """How much smaller an embedding is than the image it stands for."""
        return compression_ratio(self.grid.shape, self.embedding_dim)


@lru_cache(maxsize=4)
def _cached_model(path: str, mtime_ns: int, size: int, device: str) -> EmbeddingModel:
    return EmbeddingModel(path, device=device)


def load_embedding_model(checkpoint: str | Path, *, device: str = "auto") -> EmbeddingModel:
    """The model of a checkpoint (or a model folder's best), loaded once per file version."""
    p = resolve_checkpoint(checkpoint)
    st = p.stat()
    return _cached_model(str(p.resolve()), st.st_mtime_ns, st.st_size, device)


__all__ = ["EmbeddingModel", "compression_ratio", "load_embedding_model", "resolve_device"]
