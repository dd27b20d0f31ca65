"""The one owner of a checkpoint file: where it is, loading it safely, what model it holds.

A checkpoint written by ``wxembed train`` is self-describing: its hyperparameters name the
architecture, the network's settings, the grid (as JSON), the archive it was trained on and the
first held-out hour, so a checkpoint alone rebuilds its model. It is read with ``weights_only``,
so a file that would run code when unpickled is refused.

A model is identified by ``model_id``: the architecture and the first 12 hex digits of the
file's SHA-256 (``fast-1a2b3c4d5e6f``); the same file always gets the same id, a retrained model
another. Wherever a command takes a checkpoint it also takes a model folder (``wxembed train
--out``): the folder's ``checkpoints/best.ckpt`` (the lowest validation loss) is used, or
``last.ckpt`` when there is no best.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from wxembed.archive import Archive
from wxembed.errors import CheckpointError, GridError, ModelError
from wxembed.grid import Grid


@dataclass(frozen=True)
class ModelInfo:
    """What an index records about the model that made a set of embeddings."""

    model_id: str
    """``arch-<12 hex digits of the checkpoint's SHA-256>``."""
    arch: str
    """Network architecture ("fast" or "seed")."""
    embedding_dim: int
    """Numbers per embedding."""
    grid_json: str
    """The grid the model was trained on (:meth:`wxembed.grid.Grid.to_json`)."""
    checkpoint: str = ""
    """Path of the checkpoint file, as given when embedding."""
    archive: str = ""
    """Path of the archive whose hours were embedded."""

    @property
    def grid(self) -> Grid:
        return Grid.from_json(self.grid_json)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_id_for(arch: str, checkpoint: str | Path) -> str:
    """The id of the model in ``checkpoint``: ``arch`` and a short hash of the file."""
    return f"{arch}-{file_sha256(checkpoint)[:12]}"


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a model folder's best one (``checkpoints/best.ckpt``, else
    ``checkpoints/last.ckpt``); :class:`CheckpointError` when there is neither."""
    p = Path(path)
    if p.is_dir():
        for folder in (p / "checkpoints", p):
            for name in ("best.ckpt", "last.ckpt"):
                if (folder / name).is_file():
                    return folder / name
        raise CheckpointError(f"{p}: a folder without best.ckpt or last.ckpt (train one first)")
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint")
    return p


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint file's contents, loaded safely: tensors and plain values only, no code."""
    import torch  # here, not at the top: the index and search use this module without torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "global" not in text.lower():  # a damaged file, not a disallowed object
            raise CheckpointError(
                f"{path}: not a readable checkpoint (damaged or not a torch file)"
            ) from None
        detail = next((line for line in text.splitlines() if "global" in line.lower()), "")
        raise CheckpointError(
            f"{path}: refused: the file holds objects other than tensors and plain values "
            f"(loading it could run code): {detail.strip()}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(
            f"{path}: not a wxembed checkpoint (no state_dict / hyper_parameters)"
        )
    return ckpt


class Checkpoint:
    """A checkpoint file (or a model folder's best checkpoint), loaded safely once.

    ``Checkpoint(path).module()`` rebuilds the trained LightningModule in eval mode; ``grid``,
    ``arch``, ``hparams`` and ``model_id`` describe it without building anything.
    """

    def __init__(self, path: str | Path):
        self.path = resolve_checkpoint(path)
        self._contents = load_checkpoint(self.path)
        self.hparams: dict = dict(self._contents["hyper_parameters"])
        try:
            self.grid = Grid.from_json(self.hparams["grid_json"])
        except (KeyError, TypeError, ValueError, GridError) as exc:
            raise CheckpointError(
                f"{self.path}: no usable grid in the checkpoint ({exc})"
            ) from None

    @property
    def state_dict(self) -> dict:
        """The saved weights (tensors by name), as Lightning wrote them."""
        return self._contents["state_dict"]

    @property
    def arch(self) -> str:
        return str(self.hparams.get("arch", ""))

    @property
    def val_start(self) -> str:
        """The first held-out hour of training ("" when unknown)."""
        return str(self.hparams.get("val_start", "") or "")

    @property
    def archive(self) -> str:
        """The archive it was trained on, as recorded."""
        return str(self.hparams.get("archive", "") or "")

    @cached_property
    def model_id(self) -> str:
        return model_id_for(self.arch, self.path)

    def module(self):
        """The trained LightningModule, rebuilt from the checkpoint alone, in eval mode."""
        from wxembed.model.task import AutoencoderModule

        hparams = {**self.hparams, "channels_last": False}
        weights = self._contents["state_dict"]
        net_hp = hparams.get("hparams")
        if (  # made before the embedding carried coverage numbers: rebuild it without them
            self.arch == "fast"
            and isinstance(net_hp, dict)
            and "coverage" not in net_hp
            and getattr(weights.get("net.to_embedding.weight"), "shape", (0,))[0]
            == net_hp.get("embedding_dim", 50)
        ):
            hparams["hparams"] = {**net_hp, "coverage": ()}
        try:
            module = AutoencoderModule(**hparams)
            module.load_state_dict(self._contents["state_dict"])
        except (KeyError, TypeError, RuntimeError, ValueError, ModelError) as exc:
            raise CheckpointError(
                f"{self.path}: cannot rebuild the model ({type(exc).__name__}: {exc})"
            ) from None
        return module.eval()

    def info(self, embedding_dim: int, archive: str = "") -> ModelInfo:
        """The :class:`ModelInfo` an index records for this checkpoint's embeddings."""
        return ModelInfo(
            model_id=self.model_id,
            arch=self.arch,
            embedding_dim=int(embedding_dim),
            grid_json=self.grid.to_json(),
            checkpoint=str(self.path.resolve()),
            archive=archive or self.archive,
        )

    def check_grid(self, archive: Archive) -> None:
        """:class:`CheckpointError` unless ``archive`` is on the grid the model was trained on."""
        check_grid(self.grid, archive, f"{self.path}")


def check_grid(checkpoint_grid: Grid, archive: Archive, what: str) -> None:
    """:class:`CheckpointError` naming both grids unless ``archive`` is on ``checkpoint_grid``."""
    if not checkpoint_grid.same_as(archive.grid):
        raise CheckpointError(
            f"{what} was trained on grid {checkpoint_grid.describe()}, but archive {archive.path} "
            f"is on {archive.grid.describe()}"
        )


def load_model(path: str | Path):
    """``(module, grid)``: the trained LightningModule (eval mode) and its grid."""
    ckpt = Checkpoint(path)
    return ckpt.module(), ckpt.grid


__all__ = [
    "Checkpoint",
    "ModelInfo",
    "check_grid",
    "file_sha256",
    "load_checkpoint",
    "load_model",
    "model_id_for",
    "resolve_checkpoint",
]
