from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.image import imread

from wxembed.errors import GridError
from wxembed.figures.plot import (
    NO_DATA_COLOR,
    nws_reflectivity_cmap,
    save_comparison_png,
    save_field_png,
)
from wxembed.grid import HRRR_CONUS, Grid

RED = to_rgba("#fd0000")[:3]
GREY = to_rgba(NO_DATA_COLOR)[:3]


def _color(dbz: float) -> tuple[float, float, float, float]:
    cmap, norm = nws_reflectivity_cmap()
    return tuple(cmap(norm(dbz)))


def _mask_of(img: np.ndarray, rgb: tuple[float, float, float], tol: float = 0.02) -> np.ndarray:
    return np.all(np.abs(img[..., :3] - np.asarray(rgb)) < tol, axis=-1)


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    """(row, column) of the mask's centre, as fractions of the image height and width."""
    rows, cols = np.nonzero(mask)
    return rows.mean() / mask.shape[0], cols.mean() / mask.shape[1]


# ---- colour scale ------------------------------------------------------------------------------
def test_colour_scale_maps_50_dbz_to_red():
    assert _color(50.0) == pytest.approx(to_rgba("#fd0000"))
    assert _color(54.9) == pytest.approx(to_rgba("#fd0000"))


def test_colour_scale_maps_20_dbz_to_green():
    r, g, b, a = _color(20.0)
    assert (r, g, b, a) == pytest.approx(to_rgba("#02fd02"))
    assert g > 0.9 and r < 0.1 and b < 0.1


def test_colour_scale_is_transparent_below_5_dbz():
    assert _color(4.9)[3] == 0.0
    assert _color(-20.0)[3] == 0.0
    assert _color(5.0) == pytest.approx(to_rgba("#04e9e7"))


def test_colour_scale_shows_nan_as_grey_and_75_dbz_up_as_near_white():
    cmap, norm = nws_reflectivity_cmap()
    assert tuple(cmap(norm(np.ma.masked_invalid([np.nan])))[0]) == pytest.approx(
        to_rgba(NO_DATA_COLOR)
    )
    assert _color(75.0) == pytest.approx(to_rgba("#fdfdfd"))
    assert _color(90.0) == pytest.approx(to_rgba("#fdfdfd"))


def test_colour_scale_has_15_bins_of_5_dbz():
    cmap, norm = nws_reflectivity_cmap()
    assert cmap.N == 15
    np.testing.assert_array_equal(norm.boundaries, np.arange(5, 85, 5))


# ---- pictures ----------------------------------------------------------------------------------
def test_storm_in_the_north_east_of_an_hrrr_field_appears_top_right(tmp_path):
    grid = HRRR_CONUS.coarsen(4)  # dy > 0: row 0 is the south
    dbz = np.zeros(grid.shape, dtype=np.float32)
    dbz[-40:, -60:] = 52.0  # last rows = north, last columns = east
    path = save_field_png(tmp_path / "ne.png", dbz, grid, outlines=False, colorbar=False)
    img = imread(path)
    red = _mask_of(img, RED)
    assert red.sum() > 500
    row, col = _centroid(red)
    assert row < 0.3 and col > 0.8
    # the south-west of the field (no echo) is white
    h, w = red.shape
    assert np.all(img[int(0.8 * h), int(0.1 * w), :3] > 0.99)


def test_storm_in_row_0_of_a_north_first_grid_appears_at_the_top(tmp_path):
    grid = Grid("ll", "EPSG:4326", nx=200, ny=150, x0=20.0, y0=70.0, dx=0.05, dy=-0.05)
    dbz = np.zeros(grid.shape, dtype=np.float32)
    dbz[:20, -30:] = 50.0  # row 0 = north (dy < 0), last columns = east
    path = save_field_png(tmp_path / "ll.png", dbz, grid, outlines=False, colorbar=False)
    row, col = _centroid(_mask_of(imread(path), RED))
    assert row < 0.3 and col > 0.8


def test_nan_field_points_are_drawn_grey(tmp_path):
    grid = HRRR_CONUS.coarsen(8)
    dbz = np.zeros(grid.shape, dtype=np.float32)
    dbz[:30, :50] = np.nan  # south-west
    path = save_field_png(tmp_path / "nan.png", dbz, grid, outlines=False, colorbar=False)
    grey = _mask_of(imread(path), GREY)
    assert grey.sum() > 500
    row, col = _centroid(grey)
    assert row > 0.7 and col < 0.2


def test_field_png_with_outlines_draws_dark_lines(tmp_path):
    grid = HRRR_CONUS.coarsen(4)
    dbz = np.zeros(grid.shape, dtype=np.float32)
    without = imread(save_field_png(tmp_path / "a.png", dbz, grid, outlines=False))
    with_lines = imread(save_field_png(tmp_path / "b.png", dbz, grid, outlines=True))
    dark = lambda img: int(np.sum(img[..., :3].max(axis=-1) < 0.5))  # noqa: E731
    assert dark(with_lines) > dark(without) + 5000


def test_field_png_refuses_a_field_of_the_wrong_shape(tmp_path):
    with pytest.raises(GridError):
        save_field_png(tmp_path / "x.png", np.zeros((10, 10)), HRRR_CONUS.coarsen(4))


def test_comparison_png_shows_a_missed_storm_blue_in_the_difference_panel(tmp_path):
    grid = HRRR_CONUS.coarsen(4)
    truth = np.zeros(grid.shape, dtype=np.float32)
    truth[100:160, 200:260] = 50.0
    reconstruction = np.zeros_like(truth)  # the storm is missed: difference -50 dBZ
    path = save_comparison_png(tmp_path / "cmp.png", truth, reconstruction, grid, outlines=False)
    img = imread(path)
    h, w = img.shape[:2]
    assert w > 2.5 * h  # three panels side by side
    dark_blue = (img[..., 2] > 0.25) & (img[..., 0] < 0.15) & (img[..., 1] < 0.3)
    red = _mask_of(img, RED)
    # the storm is red in the first panel, absent from the second, dark blue in the third
    # (column ranges of the panels' fields; the colour bars lie right of panels 2 and 3)
    first, second, third = (
        slice(0, w // 3),
        slice(int(0.34 * w), int(0.6 * w)),
        slice(2 * w // 3, int(0.93 * w)),
    )
    assert red[:, first].sum() > 200
    assert red[:, second].sum() == 0
    assert dark_blue[:, third].sum() > 200
    assert dark_blue[:, first].sum() == 0
