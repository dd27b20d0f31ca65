"""Pictures of reflectivity fields: the NWS colour scale, map outlines, PNG files.

Everything draws on :class:`matplotlib.figure.Figure` objects with the Agg canvas, never through
``pyplot``: no global state, no windows, safe in worker processes. Fields are drawn with
``imshow`` in the grid's own x/y coordinates (fast on the full 1059 x 1799 HRRR grid), the right
way up whatever the sign of ``grid.dy``, with the outlines of :mod:`wxembed.figures.outlines`
on top.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import BoundaryNorm, ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from wxembed.archive import Archive
from wxembed.errors import GridError, WxembedError
from wxembed.figures.outlines import outlines_for_grid
from wxembed.grid import Grid
from wxembed.reflectivity import decode_raw
from wxembed.times import format_time

log = logging.getLogger(__name__)

NWS_LEVELS: tuple[int, ...] = tuple(range(5, 80, 5))
"""Lower edges (dBZ) of the NWS reflectivity colour bins: 5, 10, ..., 75."""

NWS_COLORS: tuple[str, ...] = (
    "#04e9e7",  # 5
    "#019ff4",  # 10
    "#0300f4",  # 15
    "#02fd02",  # 20
    "#01c501",  # 25
    "#008e00",  # 30
    "#fdf802",  # 35
    "#e5bc00",  # 40
    "#fd9500",  # 45
    "#fd0000",  # 50
    "#d40000",  # 55
    "#bc0000",  # 60
    "#f800fd",  # 65
    "#9854c6",  # 70
    "#fdfdfd",  # 75 and above
)
"""The NWS reflectivity colours, one per 5 dBZ bin from 5 dBZ."""

NO_DATA_COLOR = "#a0a0a0"
"""Grey, where the field is NaN (no data, e.g. outside radar coverage)."""

OUTLINE_STYLE: dict[str, tuple[str, float]] = {
    "lakes": ("#303030", 0.4),
    "states": ("#707070", 0.4),
    "borders": ("#202020", 0.7),
    "coastline": ("#202020", 0.6),
}
"""Colour and line width of each kind of outline (drawn in this order)."""


def nws_reflectivity_cmap() -> tuple[ListedColormap, BoundaryNorm]:
    """The NWS reflectivity colour scale: 5 dBZ bins from 5 to 75+ dBZ.

    Below 5 dBZ is transparent (the background shows), 75 dBZ and above is near-white, NaN
    (no data) is grey. Use as ``ax.imshow(dbz, cmap=cmap, norm=norm)``.
    """
    cmap = ListedColormap(list(NWS_COLORS), name="nws_reflectivity").with_extremes(
        under=(1.0, 1.0, 1.0, 0.0), over=NWS_COLORS[-1], bad=NO_DATA_COLOR
    )
    bounds = [*NWS_LEVELS, NWS_LEVELS[-1] + 5]
    norm = BoundaryNorm(bounds, ncolors=len(NWS_COLORS))
    return cmap, norm


def grid_extent(grid: Grid) -> tuple[float, float, float, float]:
    """``(left, right, bottom, top)`` of the grid's cells (edges, not centres), ascending."""
    xs = (grid.x0 - grid.dx / 2, grid.x0 + grid.dx * (grid.nx - 0.5))
    ys = (grid.y0 - grid.dy / 2, grid.y0 + grid.dy * (grid.ny - 0.5))
    return (min(xs), max(xs), min(ys), max(ys))


def _aspect(grid: Grid) -> float:
    """Equal aspect in metres; for a lat/lon grid, 1/cos(latitude) at the grid's centre."""
    if not grid.is_geographic:
        return 1.0
    lat = grid.y0 + grid.dy * (grid.ny - 1) / 2
    return 1.0 / max(math.cos(math.radians(lat)), 0.05)


def _as_image(field: np.ndarray, grid: Grid) -> np.ndarray:
    """The field oriented for ``imshow(origin="lower")``: row 0 south, column 0 west."""
    field = np.asarray(field) if not np.ma.isMaskedArray(field) else field
    if field.shape != grid.shape:
        raise GridError(f"field of shape {field.shape} does not fit grid {grid.describe()}")
    if grid.dy < 0:
        field = field[::-1, :]
    if grid.dx < 0:
        field = field[:, ::-1]
    return field


def draw_outlines(
    ax: Axes, outlines: Mapping[str, Sequence[np.ndarray]], zorder: float = 3.0
) -> list[LineCollection]:
    """Draw outlines (polylines in the axes' data coordinates) as line collections."""
    drawn = []
    kinds = [k for k in OUTLINE_STYLE if k in outlines] + [
        k for k in outlines if k not in OUTLINE_STYLE
    ]
    for kind in kinds:
        lines = outlines[kind]
        if not len(lines):
            continue
        color, width = OUTLINE_STYLE.get(kind, ("#202020", 0.5))
        coll = LineCollection(
            list(lines), colors=color, linewidths=width, zorder=zorder, label=kind
        )
        ax.add_collection(coll, autolim=False)
        drawn.append(coll)
    return drawn


def _draw_image(
    ax: Axes,
    field: np.ndarray,
    grid: Grid,
    cmap,
    norm: Normalize,
    title: str | None,
    outlines: bool | Mapping[str, Sequence[np.ndarray]],
) -> AxesImage:
    image = _as_image(field, grid)
    extent = grid_extent(grid)
    im = ax.imshow(
        image,
        origin="lower",
        extent=extent,
        cmap=cmap,
        norm=norm,
        interpolation="nearest",
        aspect=_aspect(grid),
        zorder=1,
    )
    if outlines is True:
        outlines = outlines_for_grid(grid)
    if outlines:
        draw_outlines(ax, outlines)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return im


def plot_field(
    ax: Axes,
    dbz: np.ndarray,
    grid: Grid,
    title: str | None = None,
    outlines: bool | Mapping[str, Sequence[np.ndarray]] = True,
    colorbar: bool = True,
) -> AxesImage:
    """Draw a ``(ny, nx)`` reflectivity field (dBZ) on ``ax`` with the NWS colour scale.

    North is up whatever the grid's scan order. ``outlines``: True for the packaged map outlines
    of the grid (none, with a logged warning, where no packaged file covers it), False for none,
    or outlines already in the grid's x/y coordinates (from
    :func:`wxembed.figures.outlines.outlines_for_grid`). Returns the image.
    """
    cmap, norm = nws_reflectivity_cmap()
    im = _draw_image(ax, dbz, grid, cmap, norm, title, outlines)
    if colorbar:
        cb = ax.get_figure().colorbar(im, ax=ax, ticks=list(NWS_LEVELS), shrink=0.85, pad=0.02)
        cb.set_label("dBZ")
        cb.ax.tick_params(labelsize=8)
    return im


def _figsize(grid: Grid, panels: int = 1, width: float = 10.0) -> tuple[float, float]:
    left, right, bottom, top = grid_extent(grid)
    ratio = (top - bottom) * _aspect(grid) / (right - left)
    panel_w = width
    return (panel_w * panels, min(max(panel_w * 0.9 * ratio + 0.6, 2.5), 3 * panel_w))


def _save(fig: Figure, path: str | Path, dpi: int) -> Path:
    path = Path(path)
    kinds = FigureCanvasAgg(fig).get_supported_filetypes()
    if path.suffix.lower().lstrip(".") not in kinds:
        raise WxembedError(
            f"{path}: cannot draw a picture in a {path.suffix or 'suffix-less'} file; name it "
            f".png (or .{', .'.join(sorted(k for k in kinds if k != 'png'))})"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path


def save_field_png(
    path: str | Path,
    dbz: np.ndarray,
    grid: Grid,
    title: str | None = None,
    dpi: int = 100,
    outlines: bool | Mapping[str, Sequence[np.ndarray]] = True,
    colorbar: bool = True,
) -> Path:
    """Write a PNG of a reflectivity field (see :func:`plot_field`); returns its path."""
    fig = Figure(figsize=_figsize(grid), layout="constrained")
    ax = fig.add_subplot()
    plot_field(ax, dbz, grid, title=title, outlines=outlines, colorbar=colorbar)
    return _save(fig, path, dpi)


def save_comparison_png(
    path: str | Path,
    truth: np.ndarray,
    reconstruction: np.ndarray,
    grid: Grid,
    titles: Sequence[str] = ("original", "reconstruction", "reconstruction - original"),
    dpi: int = 100,
    diff_limit: float = 20.0,
    floor_dbz: float | None = 0.0,
    outlines: bool | Mapping[str, Sequence[np.ndarray]] = True,
) -> Path:
    """Write a PNG of original, reconstruction and their difference side by side.

    The difference (reconstruction minus original, dBZ) uses a diverging scale from
    ``-diff_limit`` (blue) to ``+diff_limit`` (red); both fields are first raised to
    ``floor_dbz`` (None: not) so that differences between "no echo" values do not show. Where
    either field is NaN the difference is NaN (grey).
    """
    if len(titles) != 3:
        raise ValueError(f"titles must name the three panels, got {titles!r}")
    truth = np.asarray(truth, dtype=np.float32)
    reconstruction = np.asarray(reconstruction, dtype=np.float32)
    if truth.shape != reconstruction.shape:
        raise GridError(
            f"truth {truth.shape} and reconstruction {reconstruction.shape} differ in shape"
        )
    if outlines is True:
        outlines = outlines_for_grid(grid)
    a, b = truth, reconstruction
    if floor_dbz is not None:
        a, b = np.maximum(a, floor_dbz), np.maximum(b, floor_dbz)  # NaN stays NaN
    diff = b - a

    fig = Figure(figsize=_figsize(grid, panels=3, width=6.5), layout="constrained")
    axes = fig.subplots(1, 3)
    cmap, norm = nws_reflectivity_cmap()
    im = _draw_image(axes[0], truth, grid, cmap, norm, titles[0], outlines)
    _draw_image(axes[1], reconstruction, grid, cmap, norm, titles[1], outlines)
    cb = fig.colorbar(im, ax=list(axes[:2]), ticks=list(NWS_LEVELS), shrink=0.85, pad=0.01)
    cb.set_label("dBZ")
    cb.ax.tick_params(labelsize=8)

    dcmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad=NO_DATA_COLOR)
    dnorm = Normalize(vmin=-diff_limit, vmax=diff_limit)
    dim = _draw_image(axes[2], diff, grid, dcmap, dnorm, titles[2], outlines)
    dcb = fig.colorbar(dim, ax=axes[2], shrink=0.85, pad=0.01, extend="both")
    dcb.set_label("dBZ difference")
    dcb.ax.tick_params(labelsize=8)
    return _save(fig, path, dpi)


def save_gallery_png(
    path: str | Path,
    fields: Sequence[np.ndarray],
    grid: Grid,
    titles: Sequence[str],
    ncols: int = 3,
    dpi: int = 80,
    outlines: bool | Mapping[str, Sequence[np.ndarray]] = True,
) -> Path:
    """Write a PNG of several reflectivity fields on one grid in a table of panels (a query and
    its matches, decoded cluster centroids, an interpolation triptych...)."""
    if len(fields) != len(titles) or not fields:
        raise ValueError(
            f"need one title per field, got {len(fields)} fields and {len(titles)} titles"
        )
    if outlines is True:
        outlines = outlines_for_grid(grid)
    ncols = min(ncols, len(fields))
    nrows = -(-len(fields) // ncols)
    w, h = _figsize(grid, width=4.5)
    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    cmap, norm = nws_reflectivity_cmap()
    im = None
    for ax, field, title in zip(axes, fields, titles, strict=False):
        im = _draw_image(ax, np.asarray(field, dtype=np.float32), grid, cmap, norm, title, outlines)
    for ax in axes[len(fields) :]:
        ax.set_axis_off()
    cb = fig.colorbar(im, ax=list(axes), ticks=list(NWS_LEVELS), shrink=0.8, pad=0.01)
    cb.set_label("dBZ")
    return _save(fig, path, dpi)


def save_loss_png(path: str | Path, metrics_csv: str | Path, dpi: int = 90) -> Path:
    """Write a PNG of the training and validation loss curves from a Lightning CSV log."""
    log_df = pd.read_csv(metrics_csv)
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for column, label in (("train_loss", "training"), ("val_loss", "validation")):
        if column in log_df:
            rows = log_df[["step", column]].dropna()
            ax.plot(
                rows.step, rows[column], marker="o" if column == "val_loss" else None, label=label
            )
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Training loss")
    return _save(fig, path, dpi)


def save_panels_png(
    path: str | Path, grid: Grid, panels: Sequence[tuple[np.ndarray, str]], *, dpi: int = 80
) -> Path:
    """One PNG of reflectivity fields side by side (three to a row), each with its title."""
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    ny, nx = grid.shape
    fig = Figure(figsize=(5.0 * cols, 5.0 * rows * ny / nx + 0.6), layout="constrained")
    for i, (dbz, title) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        plot_field(ax, dbz, grid, title=title, colorbar=False)
    return _save(fig, path, dpi)


def plot_matches(
    path: str | Path,
    archive: Archive,
    matches: pd.DataFrame,
    *,
    query_dbz: np.ndarray | None = None,
    query_title: str = "query",
    dpi: int = 80,
) -> Path:
    """One PNG with the query (when given) and each match of a search (``rank``, ``time``,
    ``distance``) read from ``archive``, titled with its time and distance."""
    times = matches["time"].values.astype("datetime64[s]")
    fields = (
        decode_raw(archive.read_raw(times)) if len(times) else np.zeros((0, *archive.grid.shape))
    )
    panels = ([(query_dbz, query_title)] if query_dbz is not None else []) + [
        (f, f"#{r} {format_time(t)}  d={d:.3g}")
        for f, r, t, d in zip(fields, matches["rank"], times, matches["distance"], strict=True)
    ]
    if not panels:
        raise WxembedError("nothing to draw: no matches and no query field")
    return save_panels_png(path, archive.grid, panels, dpi=dpi)


def save_interpolation_png(path: str | Path, report: dict, grid: Grid) -> Path:
    """The real hour, the decoded embedding mix and the pixel average of an interpolation
    (:func:`wxembed.analysis.interpolate_hours` with ``keep_fields=True``) side by side."""
    fields, mse = report["fields"], {k: v["mse"] for k, v in report["scores"].items()}
    return save_panels_png(
        path,
        grid,
        [
            (fields["truth"], f"real {report['truth_time']}"),
            (
                fields["embedding_midpoint"],
                f"decoded embedding mix (MSE {mse['embedding_midpoint']:.3g})",
            ),
            (fields["pixel_average"], f"pixel average (MSE {mse['pixel_average']:.3g})"),
        ],
    )


def save_cluster_pngs(out_dir: str | Path, report: dict) -> list[Path]:
    """Each decoded centroid of a clustering (:func:`wxembed.analysis.cluster_index` with
    ``decode=True``) as ``cluster_NN.png``, titled with its size and nearest hour."""
    out, n = Path(out_dir), report["hours"]
    pictures = []
    for c, field in enumerate(report["centroid_fields"]):
        size = report["sizes"][c]
        title = (
            f"cluster {c}: {size} hours ({100 * size / n:.0f}%), "
            f"nearest {report['nearest_hours'][c]}"
        )
        pictures.append(
            save_field_png(out / f"cluster_{c:02d}.png", field, report["grid"], title=title)
        )
    return pictures
