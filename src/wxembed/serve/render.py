"""Pictures for the page, fast: a field as a palette PNG in the NWS colours with map outlines.

:func:`wxembed.figures.plot.save_field_png` draws a publication figure with matplotlib (about a
second for a full HRRR hour). The page needs the bare map, many times: here each pixel is one
table lookup from its archive code (or dBZ) to a palette entry, the outlines are a mask drawn
once per grid and size, and the image is an 8-bit palette PNG (a full HRRR hour in tens of
milliseconds). The colours are those of :mod:`wxembed.figures.plot`; the outlines those of
:func:`wxembed.figures.outlines.outlines_for_grid`. North is up whatever the grid's scan order.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from PIL import Image

from wxembed.figures.outlines import outlines_for_grid
from wxembed.figures.plot import NO_DATA_COLOR, NWS_COLORS, NWS_LEVELS
from wxembed.grid import Grid
from wxembed.reflectivity import ADD_OFFSET, NODATA, SCALE_FACTOR, encode_dbz

BACKGROUND, NO_DATA, OUTLINE = 0, 16, 17
"""Palette entries: below the first NWS level (white), no data (grey), map outlines."""
FIRST_NWS = 1
"""Palette entry of the first NWS colour (5 dBZ); the 15 colours follow."""
DIFF_LIMIT, DIFF_STEP = 20.0, 2.0
"""A difference image runs from -DIFF_LIMIT (blue) to +DIFF_LIMIT dBZ (red) in DIFF_STEP bins,
one centred on 0 (white)."""
DIFF_BINS = int(2 * DIFF_LIMIT / DIFF_STEP) + 1
FIRST_DIFF = 18
"""Palette entry of the first of ``DIFF_BINS`` difference colours (RdBu_r)."""
OUTLINE_COLOR = "#303030"


def _rgb(color) -> list[int]:
    return [round(255 * c) for c in to_rgb(color)]


@lru_cache(maxsize=1)
def palette() -> bytes:
    """The 256-entry RGB palette of every picture the page shows."""
    colors = [[255, 255, 255]] * 256
    for i, c in enumerate(NWS_COLORS):
        colors[FIRST_NWS + i] = _rgb(c)
    colors[NO_DATA] = _rgb(NO_DATA_COLOR)
    colors[OUTLINE] = _rgb(OUTLINE_COLOR)
    diverging = colormaps["RdBu_r"]
    for i in range(DIFF_BINS):
        colors[FIRST_DIFF + i] = _rgb(diverging(i / (DIFF_BINS - 1)))
    return bytes(v for rgb in colors for v in rgb)


@lru_cache(maxsize=1)
def code_lookup() -> np.ndarray:
    """(256,) uint8: the palette entry of each archive code."""
    dbz = np.arange(256, dtype=np.float32) * SCALE_FACTOR + ADD_OFFSET
    table = np.full(256, BACKGROUND, dtype=np.uint8)
    level = np.floor((dbz - NWS_LEVELS[0]) / 5.0).astype(int)  # 0 for 5..10 dBZ, ...
    colored = level >= 0
    table[colored] = FIRST_NWS + np.minimum(level[colored], len(NWS_COLORS) - 1)
    table[NODATA] = NO_DATA
    return table


def code_indices(raw: np.ndarray) -> np.ndarray:
    """Archive codes ``(ny, nx)`` uint8 -> palette entries."""
    return np.take(code_lookup(), np.asarray(raw, dtype=np.uint8))


def dbz_indices(dbz: np.ndarray) -> np.ndarray:
    """dBZ ``(ny, nx)`` (NaN = no data) -> palette entries, via the archive's code."""
    return code_indices(encode_dbz(dbz))


def difference_indices(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """``b - a`` in dBZ, both raised to ``floor`` first (as the report's comparison figure does),
    as diverging palette entries; grey where either is NaN."""
    with np.errstate(invalid="ignore"):
        diff = np.maximum(np.asarray(b, np.float32), floor) - np.maximum(
            np.asarray(a, np.float32), floor
        )
    bins = np.rint(np.nan_to_num(diff, nan=0.0) / DIFF_STEP) + DIFF_BINS // 2
    out = (FIRST_DIFF + np.clip(bins, 0, DIFF_BINS - 1)).astype(np.uint8)
    out[np.isnan(diff)] = NO_DATA
    return out


def _oriented(a: np.ndarray, grid: Grid) -> np.ndarray:
    """Rows north to south, columns west to east."""
    if grid.dy > 0:  # row 0 is the southernmost
        a = a[::-1, :]
    if grid.dx < 0:
        a = a[:, ::-1]
    return a


MIN_WIDTH = 900
"""A picture of a small grid is enlarged (each cell a block of pixels) to at least this width,
so that its outlines are thin lines rather than whole cells."""


def layout(grid: Grid, width: int | None) -> tuple[int, int]:
    """``(step, factor)``: every ``step``-th cell, each drawn ``factor`` pixels wide, so that the
    picture is at most ``width`` pixels wide (None: the grid's own size, or :data:`MIN_WIDTH`
    for a smaller grid)."""
    if width and grid.nx > width:
        return math.ceil(grid.nx / width), 1
    return 1, max(1, (width or MIN_WIDTH) // grid.nx)


@lru_cache(maxsize=16)
def _outline_pixels(grid_json: str, step: int, factor: int) -> np.ndarray | None:
    """Flat positions of the outlines' pixels in a picture oriented and sized by
    :func:`layout`'s ``step`` and ``factor``, or None when no packaged outlines cover the
    grid."""
    grid = Grid.from_json(grid_json)
    outlines = outlines_for_grid(grid)
    pieces = [p for lines in outlines.values() for p in lines]
    if not pieces:
        return None
    shape = (math.ceil(grid.ny / step) * factor, math.ceil(grid.nx / step) * factor)
    mask = np.zeros(shape, dtype=bool)
    shift = (factor - 1) / 2  # a cell's centre in its block of pixels
    for xy in pieces:  # (m, 2) grid x/y -> fractional picture (row, col), before orienting
        col = (xy[:, 0] - grid.x0) / grid.dx / step * factor + shift
        row = (xy[:, 1] - grid.y0) / grid.dy / step * factor + shift
        seg = np.hypot(np.diff(col), np.diff(row))  # (m - 1,) lengths in pixels
        n = np.maximum(np.ceil(seg * 2).astype(int), 1)  # samples half a pixel apart
        start = np.repeat(np.arange(len(seg)), n)
        frac = np.concatenate([np.arange(k) / k for k in n])
        rr = np.rint(row[start] + frac * np.diff(row)[start]).astype(int)
        cc = np.rint(col[start] + frac * np.diff(col)[start]).astype(int)
        ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        mask[rr[ok], cc[ok]] = True
    return np.flatnonzero(_oriented(mask, grid))


def png(
    values: np.ndarray,
    grid: Grid,
    *,
    lookup: np.ndarray | None = None,
    width: int | None = None,
    outlines: bool = True,
) -> bytes:
    """Palette entries ``(ny, nx)`` on ``grid`` (or values mapped to them by ``lookup``, e.g.
    archive codes by :func:`code_lookup`) as PNG bytes, north up, sized by :func:`layout` (at
    most ``width`` pixels wide), with the grid's map outlines."""
    if values.shape != grid.shape:
        raise ValueError(f"picture of shape {values.shape} does not fit {grid.describe()}")
    step, factor = layout(grid, width)
    picture = _oriented(values[::step, ::step], grid)  # a view
    if lookup is not None:
        picture = np.take(lookup, picture)  # one pass: oriented, strided and looked up
    if factor > 1:
        picture = np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)
    picture = np.ascontiguousarray(picture, dtype=np.uint8)
    if outlines:
        pixels = _outline_pixels(grid.to_json(), step, factor)
        if pixels is not None:
            picture.reshape(-1)[pixels] = OUTLINE
    image = Image.fromarray(picture, mode="P")
    image.putpalette(palette())
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=3)
    return out.getvalue()


def colour_scale() -> list[dict]:
    """The NWS scale as the page's legend draws it: lower edge (dBZ) and colour of each bin."""
    return [{"dbz": level, "color": c} for level, c in zip(NWS_LEVELS, NWS_COLORS, strict=True)]


__all__ = [
    "code_indices",
    "code_lookup",
    "colour_scale",
    "dbz_indices",
    "difference_indices",
    "palette",
    "layout",
    "png",
]
