"""The small shared fixtures, built once per session, and the helpers that build them.

The session fixtures form one chain, each small and deterministic:

- ``tiny_grid``: the HRRR grid coarsened 16x (66 x 112, 48 km);
- ``tiny_archive``: four days of synthetic June storms on it (``TINY_HOURS`` hours from
  ``TINY_START``, generator seed 0);
- ``untrained_checkpoint``: a fresh small fast network (``FAST_HP``) saved by Lightning;
- ``trained_model``: that network trained on ``tiny_archive`` for ``TINY_STEPS`` steps (a model
  folder: ``checkpoints/last.ckpt`` and ``checkpoints/best.ckpt``);
- ``tiny_index``: every hour of ``tiny_archive`` embedded with ``trained_model``'s last.ckpt.

They are read-only: a test that writes to an archive, a model folder or an index copies it
first, or builds its own with the helpers below (``make_archive``,
``write_untrained_checkpoint``, ``train_model``).

PyTorch runs on one thread unless ``OMP_NUM_THREADS`` says otherwise: the tensors here are
tiny, and on a shared 2-core machine a second thread's waits made training 4-6 times slower
(the 80 steps of ``trained_model``: 3-4 s on one thread, 15-23 s on two).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyproj  # noqa: F401  (before eccodes, which wxembed imports lazily)
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before anything imports torch; see above

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

TINY_COARSEN = 16
"""``tiny_grid`` is ``HRRR_CONUS.coarsen(TINY_COARSEN)``: 66 x 112 points, 48 km apart."""
TINY_START, TINY_HOURS = "2024-06-01T00", 96
"""``tiny_archive``'s first hour and its length: four days, enough for test_analysis's
statistics (search, clustering, interpolation) and for PCA with 50 components."""
FAST_HP = {
    "widths": [16, 32],
    "enc_blocks": [0, 1],
    "dec_blocks": [1, 1],
    "head_hidden": 32,
    "code_channels": 8,
}
"""A small fast network (50-number embedding): 80 steps train in 2-4 s on one CPU thread."""
TINY_STEPS = 80
"""Training steps of ``trained_model``."""


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real reference files beside the checkout (../shared/data)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


# ---- helpers -----------------------------------------------------------------------------------
@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run PyTorch on one thread inside the block, whatever ``OMP_NUM_THREADS`` says: the
    shared fixtures are built the same way everywhere."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def make_archive(
    path: str | Path, hours: int, *, seed: int = 0, grid=None, start: str = TINY_START
) -> Path:
    """A synthetic archive at ``path``: ``hours`` hours of the storm generator from ``start``,
    on ``grid`` (default: the tiny grid), through the ingest pipeline on one worker."""
    from wxembed.grid import HRRR_CONUS
    from wxembed.pipelines.ingest import ingest_synthetic
    from wxembed.sources.synthetic import SynthConfig

    grid = grid if grid is not None else HRRR_CONUS.coarsen(TINY_COARSEN)
    config = SynthConfig(seed=seed, grid=grid)
    ingest_synthetic(config, start, hours, path, workers=1, progress=False)
    return Path(path)


def write_untrained_checkpoint(
    path: str | Path, grid, *, arch: str = "fast", seed: int = 0, **hparams
) -> Path:
    """A checkpoint of a freshly initialised network on ``grid`` (``FAST_HP`` updated with
    ``hparams`` for the fast network), written by Lightning in the layout training writes."""
    import lightning as L
    import torch

    from wxembed.model.task import AutoencoderModule

    path = Path(path)
    torch.manual_seed(seed)
    base = FAST_HP if arch == "fast" else {}
    module = AutoencoderModule(arch, grid.shape, {**base, **hparams}, grid_json=grid.to_json())
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=path.parent,
    )
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


def train_model(archive: str | Path, out: str | Path, **config) -> dict:
    """Train the small fast network on ``archive`` into the model folder ``out`` (on one thread);
    ``config`` overrides :class:`wxembed.train.TrainConfig` fields. Returns train's report."""
    from wxembed.train import TrainConfig, train

    base = dict(
        arch="fast",
        hparams=FAST_HP,
        num_steps=TINY_STEPS,
        num_checkpoints=1,
        batch_size=4,
        lr=2e-3,
        progress=False,
    )
    with one_torch_thread():
        return train(TrainConfig(archive=str(archive), out=str(out), **{**base, **config}))


def storm_field(grid, seed: int, time: str):
    """A deterministic storm-like DecodedField: a few Gaussian cells over no echo."""
    from wxembed.sources import DecodedField

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : grid.ny, 0 : grid.nx]
    dbz = np.full(grid.shape, -10.0, dtype=np.float32)
    for _ in range(4):
        cy, cx = rng.uniform(0, grid.ny), rng.uniform(0, grid.nx)
        peak, width = rng.uniform(35, 60), rng.uniform(2, 6)
        cell = peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
        dbz = np.maximum(dbz, cell.astype(np.float32))
    return DecodedField(
        time=np.datetime64(time, "s"), grid=grid, dbz=dbz, source=f"test-seed-{seed}"
    )


def storm_archive(path: str | Path, grid, hours: int, start: str = "2024-07-01T00"):
    """An archive of ``hours`` consecutive :func:`storm_field` hours (seeds 0, 1, ...) from
    ``start``, written directly (no pipeline): for a test that needs a few hours of its own."""
    from wxembed.archive import Archive

    archive = Archive.create(path, grid)
    first = np.datetime64(start, "s")
    for h in range(hours):
        archive.write(storm_field(grid, h, str(first + np.timedelta64(h, "h"))))
    return archive


# ---- the shared session fixtures ---------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_grid():
    """The HRRR grid coarsened 16x (66 x 112, 48 km): real projection, tiny arrays."""
    from wxembed.grid import HRRR_CONUS

    return HRRR_CONUS.coarsen(TINY_COARSEN)


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory, tiny_grid) -> Path:
    """Path of a synthetic archive: ``TINY_HOURS`` hours of June storms on ``tiny_grid`` (seed 0,
    four regimes: clear, isolated cells, MCS, stratiform). Read-only: copy it to write to it."""
    root = tmp_path_factory.mktemp("tiny_archive")
    return make_archive(root / "a.zarr", TINY_HOURS, seed=0, grid=tiny_grid)


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory, tiny_grid) -> Path:
    """A checkpoint file of a freshly initialised small fast network (``FAST_HP``, torch seed 0)
    on ``tiny_grid``: plumbing tests need a real model, not a good one."""
    root = tmp_path_factory.mktemp("untrained")
    return write_untrained_checkpoint(root / "untrained.ckpt", tiny_grid)


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory, tiny_archive) -> Path:
    """A model folder: the small fast network trained on ``tiny_archive`` for ``TINY_STEPS``
    steps, with ``checkpoints/last.ckpt``, ``checkpoints/best.ckpt`` and ``train_report.json``.
    The last 19 hours (from 2024-06-04T05) are its held-out hours. A real model, not a good one:
    its validation loss hardly moves in 80 steps (0.01206 at step 18, 0.01203 at best)."""
    out = tmp_path_factory.mktemp("trained") / "model"
    train_model(tiny_archive, out)
    return out


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory, tiny_archive, trained_model) -> Path:
    """Path of a DuckDB index holding every hour of ``tiny_archive`` embedded with
    ``trained_model``'s ``checkpoints/last.ckpt``."""
    from wxembed.pipelines.embed import embed_archive

    index = tmp_path_factory.mktemp("tiny_index") / "i.duckdb"
    checkpoint = trained_model / "checkpoints" / "last.ckpt"
    with one_torch_thread():
        embed_archive(tiny_archive, checkpoint, index, workers=1, progress=False)
    return index


@pytest.fixture(scope="session")
def dask_cluster():
    """A ``dask.distributed.LocalCluster`` of two single-threaded worker processes, shared by
    the Dask tests (test_dask.py, test_object_store.py): its address, e.g. ``tcp://127.0.0.1:N``.
    Skipped when the ``distributed`` extra is not installed."""
    distributed = pytest.importorskip("dask.distributed", reason="pip install -e '.[distributed]'")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()
