"""Map outlines (coastlines, borders, state lines, lakes) as polylines, for drawing on grids.

Outlines come from the Natural Earth 1:10m shapefiles (public domain). They are cut to a
lon/lat box, simplified (Douglas-Peucker) and stored in a small ``.npz`` file; the package ships
one for CONUS (HRRR and MRMS) and one for Finland at 0.02 degrees, and one for the whole world
at 0.05 degrees (about 5 km), made by ``scripts/make_outlines.py``. :func:`outlines_for_grid`
picks the most detailed packaged file that covers a grid (so any grid on Earth gets outlines)
and returns the outlines in that grid's x/y coordinates. Nothing here downloads anything.

File format (``.npz``, compressed): for each kind ``K``, ``K_xy`` (float32, ``(n, 2)``, lon/lat
of all vertices of all polylines of that kind, concatenated) and ``K_offsets`` (int64,
``(m + 1,)``: polyline ``i`` is ``K_xy[offsets[i]:offsets[i + 1]]``), plus ``meta``, a JSON
string with ``kinds``, ``bbox`` (W, S, E N), ``tolerance_deg`` and ``source``.

Clipping and simplification are done with numpy (Liang-Barsky clipping of each segment,
Douglas-Peucker simplification of each clipped piece), so shapely is not needed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from wxembed.grid import Grid

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("coastline", "borders", "states", "lakes")
"""The kinds of outline, in drawing order."""

SHAPEFILES: dict[str, str] = {
    "coastline": "ne_10m_coastline",
    "borders": "ne_10m_admin_0_boundary_lines_land",
    "states": "ne_10m_admin_1_states_provinces_lines",
    "lakes": "ne_10m_lakes",
}
"""The Natural Earth 1:10m shapefile (without extension) that each kind is read from."""

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
"""Where the packaged outline files (``outlines_*.npz``) live."""

SOURCE = "Natural Earth 1:10m (public domain), https://www.naturalearthdata.com"
FORMAT_VERSION = 1
MIN_COVERAGE = 0.5
"""The least fraction of a grid's lon/lat box that a packaged file must cover to be used."""
FULL_COVERAGE = 0.99
"""A file covering this fraction of a grid's box covers it; the smallest such file is used."""
_warned: set[str] = set()  # grids already warned about: one warning each, however many figures

Outlines = dict[str, list[np.ndarray]]
BBox = tuple[float, float, float, float]


# ---- geometry: clipping and simplification -----------------------------------------------------
def clip_polyline(points: np.ndarray, bbox: BBox) -> list[np.ndarray]:
    """Cut a polyline ``(n, 2)`` (x, y) to the box ``(W, S, E, N)``: the pieces inside it.

    Each segment is clipped with Liang-Barsky; consecutive segments that stay inside are joined,
    so a line that leaves the box and comes back gives two pieces, each ending on the box edge.
    """
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 2:
        return []
    w, s, e, n = bbox
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    if hi[0] < w or lo[0] > e or hi[1] < s or lo[1] > n:
        return []
    if lo[0] >= w and hi[0] <= e and lo[1] >= s and hi[1] <= n:
        return [pts]
    p0, d = pts[:-1], np.diff(pts, axis=0)
    t0 = np.zeros(len(d))
    t1 = np.ones(len(d))
    visible = np.ones(len(d), dtype=bool)
    for p, q in (
        (-d[:, 0], p0[:, 0] - w),
        (d[:, 0], e - p0[:, 0]),
        (-d[:, 1], p0[:, 1] - s),
        (d[:, 1], n - p0[:, 1]),
    ):
        parallel = p == 0
        visible &= ~(parallel & (q < 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = q / p
        t0 = np.where(~parallel & (p < 0), np.maximum(t0, r), t0)
        t1 = np.where(~parallel & (p > 0), np.minimum(t1, r), t1)
    visible &= t0 <= t1
    idx = np.flatnonzero(visible)
    if len(idx) == 0:
        return []
    a = p0[idx] + t0[idx, None] * d[idx]
    b = p0[idx] + t1[idx, None] * d[idx]
    # a new piece starts where the previous visible segment is not the one just before, or was
    # cut at its end, or this one is cut at its start
    joined = np.zeros(len(idx), dtype=bool)
    joined[1:] = (np.diff(idx) == 1) & (t1[idx[:-1]] >= 1.0) & (t0[idx[1:]] <= 0.0)
    starts = np.flatnonzero(~joined)
    ends = np.append(starts[1:], len(idx))
    return [np.vstack([a[i : i + 1], b[i:j]]) for i, j in zip(starts, ends, strict=True)]


def simplify_polyline(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker: drop vertices closer than ``tolerance`` to the simplified line.

    The first and last vertices are always kept (a closed ring stays closed).
    """
    pts = np.asarray(points, dtype=np.float64)
    n = len(pts)
    if n < 3 or tolerance <= 0:
        return pts
    keep = np.zeros(n, dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        inner = pts[i + 1 : j]
        a, ab = pts[i], pts[j] - pts[i]
        length2 = float(ab @ ab)
        if length2 == 0.0:  # closed ring: distance to the single point
            dist = np.hypot(*(inner - a).T)
        else:  # distance to the segment a-b
            t = np.clip((inner - a) @ ab / length2, 0.0, 1.0)
            dist = np.hypot(*(inner - a - t[:, None] * ab).T)
        k = int(np.argmax(dist))
        if dist[k] > tolerance:
            keep[i + 1 + k] = True
            stack.append((i, i + 1 + k))
            stack.append((i + 1 + k, j))
    return pts[keep]


def _is_degenerate(pts: np.ndarray) -> bool:
    """True for a polyline that draws nothing: under two distinct vertices."""
    return len(pts) < 2 or bool(np.all(pts == pts[0]))


# ---- reading the shapefiles ----------------------------------------------------------------------
def _read_parts(shp_path: Path) -> list[np.ndarray]:
    """Every part (line or polygon ring) of every shape in a ``.shp`` file, as ``(n, 2)`` arrays."""
    import shapefile  # pyshp

    shx_path = shp_path.with_suffix(".shx")
    parts: list[np.ndarray] = []
    with (
        open(shp_path, "rb") as shp,
        open(shx_path, "rb") as shx,
        shapefile.Reader(shp=shp, shx=shx) as reader,
    ):
        for shape in reader.iterShapes():
            if not shape.points:
                continue
            pts = np.asarray(shape.points, dtype=np.float64)[:, :2]
            bounds = [*shape.parts, len(pts)]
            parts.extend(pts[i:j] for i, j in zip(bounds[:-1], bounds[1:], strict=True))
    return parts


def build_outlines(
    naturalearth_dir: str | Path,
    bbox_lonlat: Sequence[float],
    tolerance_deg: float = 0.02,
    kinds: Sequence[str] = KINDS,
) -> Outlines:
    """Read the Natural Earth shapefiles, cut them to ``bbox_lonlat`` and simplify them.

    ``bbox_lonlat`` is ``(W, S, E, N)`` in degrees (longitude -180..180). Returns, for each
    kind (``coastline``, ``borders``, ``states``, ``lakes``; lakes as their boundary rings), a
    list of ``(n, 2)`` float64 arrays of lon/lat vertices. Pieces that simplify to nothing are
    dropped.
    """
    bbox = _check_bbox(bbox_lonlat)
    root = Path(naturalearth_dir)
    out: Outlines = {}
    for kind in kinds:
        if kind not in SHAPEFILES:
            raise ValueError(f"unknown outline kind {kind!r}; expected one of {KINDS}")
        shp_path = root / f"{SHAPEFILES[kind]}.shp"
        if not shp_path.is_file():
            raise FileNotFoundError(f"{shp_path}: Natural Earth shapefile not found")
        lines: list[np.ndarray] = []
        for part in _read_parts(shp_path):
            for piece in clip_polyline(part, bbox):
                simple = simplify_polyline(piece, tolerance_deg)
                if not _is_degenerate(simple):
                    lines.append(simple)
        out[kind] = lines
        log.info(
            "%s: %d polylines, %d vertices in %s",
            kind,
            len(lines),
            sum(len(p) for p in lines),
            bbox,
        )
    return out


def _check_bbox(bbox: Sequence[float]) -> BBox:
    if len(bbox) != 4:
        raise ValueError(f"bbox must be (W, S, E, N), got {bbox!r}")
    w, s, e, n = (float(v) for v in bbox)
    if not (w < e and s < n):
        raise ValueError(f"bbox must be (W, S, E, N) with W < E and S < N, got {bbox!r}")
    return (w, s, e, n)


# ---- the file format -------------------------------------------------------------------------
def save_outlines(
    path: str | Path,
    outlines: Mapping[str, Sequence[np.ndarray]],
    bbox: Sequence[float] | None = None,
    tolerance_deg: float | None = None,
    source: str = SOURCE,
) -> Path:
    """Write outlines (lon/lat polylines per kind) to a compressed ``.npz`` file.

    ``bbox`` (W, S, E, N) is stored so that :func:`outlines_for_grid` can tell which grids the
    file covers; without it, the box around all vertices is stored.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    all_xy = []
    for kind, lines in outlines.items():
        lines = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in lines]
        lengths = [len(p) for p in lines]
        offsets = np.zeros(len(lines) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(lengths)
        xy = np.concatenate(lines) if lines else np.zeros((0, 2))
        arrays[f"{kind}_xy"] = xy.astype(np.float32)
        arrays[f"{kind}_offsets"] = offsets
        all_xy.append(xy)
    if bbox is None:
        xy = np.concatenate(all_xy) if all_xy else np.zeros((0, 2))
        if len(xy) == 0:
            raise ValueError("no bbox given and no vertices to take it from")
        bbox = (*xy.min(axis=0), *xy.max(axis=0))
    meta = {
        "format": FORMAT_VERSION,
        "kinds": list(outlines),
        "bbox": [float(v) for v in bbox],
        "tolerance_deg": tolerance_deg,
        "source": source,
    }
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # a file object: np.savez would otherwise append ".npz"
        np.savez_compressed(f, **arrays)
    return path


def read_outlines_meta(path: str | Path) -> dict:
    """The ``meta`` record of an outline file: kinds, bbox, tolerance_deg, source."""
    with np.load(Path(path), allow_pickle=False) as z:
        if "meta" not in z.files:
            raise ValueError(f"{path}: not an outline file (no 'meta' record)")
        return json.loads(str(z["meta"]))


def load_outlines(path: str | Path) -> Outlines:
    """Read a file written by :func:`save_outlines`: lon/lat polylines (float64) per kind."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        if "meta" not in z.files:
            raise ValueError(f"{path}: not an outline file (no 'meta' record)")
        meta = json.loads(str(z["meta"]))
        out: Outlines = {}
        for kind in meta["kinds"]:
            xy = z[f"{kind}_xy"].astype(np.float64)
            offsets = z[f"{kind}_offsets"]
            out[kind] = [xy[i:j] for i, j in zip(offsets[:-1], offsets[1:], strict=True)]
    return out


# ---- outlines on a grid ------------------------------------------------------------------------
def packaged_outline_files() -> list[Path]:
    """The outline files shipped with the package."""
    return sorted(DATA_DIR.glob("outlines_*.npz"))


def grid_lonlat_bbox(grid: Grid, samples: int = 200) -> BBox:
    """The lon/lat box (W, S, E, N) around a grid, from points along its edges."""
    if grid.is_geographic:
        lon = (np.array([grid.x[0], grid.x[-1]]) + 180.0) % 360.0 - 180.0
        lat = np.array([grid.y[0], grid.y[-1]])
        return (float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))
    import pyproj

    xs = np.linspace(grid.x[0], grid.x[-1], samples)
    ys = np.linspace(grid.y[0], grid.y[-1], samples)
    ex = np.concatenate([xs, xs, np.full(samples, xs[0]), np.full(samples, xs[-1])])
    ey = np.concatenate([np.full(samples, ys[0]), np.full(samples, ys[-1]), ys, ys])
    to_geo = pyproj.Transformer.from_crs(
        grid.pyproj_crs, grid.pyproj_crs.geodetic_crs, always_xy=True
    )
    lon, lat = to_geo.transform(ex, ey)
    lon = (np.asarray(lon) + 180.0) % 360.0 - 180.0
    lat = np.asarray(lat)
    # a grid containing a pole covers all longitudes beyond its edge nearest that pole
    pole = _pole_inside(grid)
    if pole is not None:
        return (-180.0, float(min(lat.min(), pole)), 180.0, float(max(lat.max(), pole)))
    return (float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))


def _pole_inside(grid: Grid) -> float | None:
    """90 or -90 when that pole lies inside a projected grid, else None."""
    with np.errstate(all="ignore"):
        xs, ys = grid.project(np.array([0.0, 0.0]), np.array([90.0, -90.0]))
    x_lo, x_hi = sorted([grid.x[0], grid.x[-1]])
    y_lo, y_hi = sorted([grid.y[0], grid.y[-1]])
    for pole, x, y in zip((90.0, -90.0), xs, ys, strict=True):
        if np.isfinite(x) and np.isfinite(y) and x_lo <= x <= x_hi and y_lo <= y <= y_hi:
            return pole
    return None


def bbox_coverage(inner: Sequence[float], outer: Sequence[float]) -> float:
    """The fraction of box ``inner`` (W, S, E, N) that box ``outer`` covers (0 to 1)."""
    w, s, e, n = inner
    ow, os_, oe, on = outer
    area = (e - w) * (n - s)
    if area <= 0:
        return 1.0 if (ow <= w <= oe and os_ <= s <= on) else 0.0
    dx = max(0.0, min(e, oe) - max(w, ow))
    dy = max(0.0, min(n, on) - max(s, os_))
    return dx * dy / area


def _packaged_meta(path: Path) -> dict:
    return _meta_cached(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=16)
def _meta_cached(path: str, mtime_ns: int) -> dict:
    return read_outlines_meta(path)


def best_packaged_file(grid: Grid) -> tuple[Path | None, float]:
    """The packaged outline file for ``grid`` and the fraction of its lon/lat box it covers:
    the smallest file (most detailed) among those covering the whole box, else the one that
    covers most of it."""
    grid_box = grid_lonlat_bbox(grid)
    best, best_key, best_cov = None, None, 0.0
    for candidate in packaged_outline_files():
        box = _packaged_meta(candidate)["bbox"]
        cov = bbox_coverage(grid_box, box)
        area = (box[2] - box[0]) * (box[3] - box[1])
        key = (min(cov, FULL_COVERAGE), -area)
        if best_key is None or key > best_key:
            best, best_key, best_cov = candidate, key, cov
    return best, best_cov


def outlines_for_grid(
    grid: Grid, path: str | Path | None = None, kinds: Sequence[str] | None = None
) -> Outlines:
    """Outlines in ``grid``'s x/y coordinates, for drawing over a field on that grid.

    Without ``path``, the most detailed packaged file covering the grid is used (CONUS,
    Finland, else the world file); if none covers at least half of the grid's lon/lat box (only
    when the world file is missing), one warning per grid is logged and ``{}`` returned (nothing
    is downloaded). Polylines lying wholly outside the grid are dropped. The arrays are shared
    between calls (read-only): copy them before changing them.
    """
    if path is None:
        best, cov = best_packaged_file(grid)
        if best is None or cov < MIN_COVERAGE:
            if grid.to_json() not in _warned:
                _warned.add(grid.to_json())
                log.warning(
                    "no packaged map outlines cover grid %s; drawing none (from Python, "
                    "outlines_for_grid(grid, path=...) takes a file from "
                    "scripts/make_outlines.py)",
                    grid.name,
                )
            return {}
        if cov < FULL_COVERAGE:
            log.info(
                "packaged outlines %s cover %.0f%% of grid %s", best.name, 100 * cov, grid.name
            )
        path = best
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: outline file not found")
    projected = _projected(grid.to_json(), str(path), path.stat().st_mtime_ns)
    wanted = projected if kinds is None else {k: v for k, v in projected.items() if k in kinds}
    return {k: list(v) for k, v in wanted.items()}


def _near(lines: list[np.ndarray], box: BBox, margin: float = 2.0) -> list[np.ndarray]:
    """The polylines whose lon/lat extent meets ``box`` widened by ``margin`` degrees."""
    if not lines:
        return lines
    lengths = np.array([len(p) for p in lines])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    xy = np.concatenate(lines)  # (vertices, 2), lon/lat
    lo = np.minimum.reduceat(xy, starts, axis=0)  # (lines, 2)
    hi = np.maximum.reduceat(xy, starts, axis=0)
    w, s, e, n = box
    keep = (hi[:, 0] >= w - margin) & (lo[:, 0] <= e + margin)
    keep &= (hi[:, 1] >= s - margin) & (lo[:, 1] <= n + margin)
    return [p for p, k in zip(lines, keep, strict=True) if k]


@lru_cache(maxsize=8)
def _projected(grid_json: str, path: str, mtime_ns: int) -> dict[str, tuple[np.ndarray, ...]]:
    grid = Grid.from_json(grid_json)
    outlines = load_outlines(path)
    box = grid_lonlat_bbox(grid)
    span = abs(grid.x[-1] - grid.x[0])
    if not grid.is_geographic or abs(span - (box[2] - box[0])) < 1e-6:  # not across 180 E/W
        outlines = {kind: _near(lines, box) for kind, lines in outlines.items()}
    x_lo, x_hi = sorted([grid.x[0], grid.x[-1]])
    y_lo, y_hi = sorted([grid.y[0], grid.y[-1]])
    mx, my = 0.05 * (x_hi - x_lo) + abs(grid.dx), 0.05 * (y_hi - y_lo) + abs(grid.dy)
    box = (x_lo - mx, y_lo - my, x_hi + mx, y_hi + my)
    shift_lon = grid.is_geographic and 0.5 * (grid.x[0] + grid.x[-1]) > 180.0
    out: dict[str, tuple[np.ndarray, ...]] = {}
    for kind, lines in outlines.items():
        if not lines:
            out[kind] = ()
            continue
        lengths = np.array([len(p) for p in lines])
        lonlat = np.concatenate(lines)
        lon = lonlat[:, 0] + (np.where(lonlat[:, 0] < 0, 360.0, 0.0) if shift_lon else 0.0)
        x, y = grid.project(lon, lonlat[:, 1])
        xy = np.column_stack([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)])
        kept = []
        for piece in np.split(xy, np.cumsum(lengths)[:-1]):
            piece = piece[np.all(np.isfinite(piece), axis=1)]
            if len(piece) < 2:
                continue
            lo, hi = piece.min(axis=0), piece.max(axis=0)
            if hi[0] < box[0] or lo[0] > box[2] or hi[1] < box[1] or lo[1] > box[3]:
                continue
            piece.setflags(write=False)
            kept.append(piece)
        out[kind] = tuple(kept)
    return out


def hrrr_mrms_bbox(margin_deg: float = 1.0) -> BBox:
    """A lon/lat box around the HRRR CONUS grid and the MRMS CONUS domain, whole degrees."""
    from wxembed.grid import HRRR_CONUS

    w, s, e, n = grid_lonlat_bbox(HRRR_CONUS)
    mrms = (-130.0, 20.0, -60.0, 55.0)  # MRMS CONUS: 0.01 deg, 130W-60W, 20N-55N
    w, s = min(w, mrms[0]) - margin_deg, min(s, mrms[1]) - margin_deg
    e, n = max(e, mrms[2]) + margin_deg, max(n, mrms[3]) + margin_deg
    return (float(math.floor(w)), float(math.floor(s)), float(math.ceil(e)), float(math.ceil(n)))
