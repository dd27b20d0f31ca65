from __future__ import annotations

from pathlib import Path

import numpy as np
import pyproj  # noqa: F401  (before eccodes, which wxembed imports lazily)
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real reference files beside the checkout (../shared/data)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def small_grid():
    """The HRRR grid coarsened 16x (66 x 112, 48 km): real projection, tiny arrays."""
    from wxembed.grid import HRRR_CONUS

    return HRRR_CONUS.coarsen(16)


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
