from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wxembed.figures.outlines import (
    DATA_DIR,
    KINDS,
    best_packaged_file,
    build_outlines,
    clip_polyline,
    load_outlines,
    outlines_for_grid,
    read_outlines_meta,
    save_outlines,
    simplify_polyline,
)
from wxembed.grid import HRRR_CONUS, Grid

REPO = Path(__file__).resolve().parents[1]
NATURALEARTH = REPO.parent / "shared" / "data" / "naturalearth"
needs_naturalearth = pytest.mark.skipif(
    not (NATURALEARTH / "ne_10m_coastline.shp").is_file(),
    reason=f"Natural Earth shapefiles not found at {NATURALEARTH}",
)
CONUS_FILE = DATA_DIR / "outlines_conus.npz"
FINLAND_FILE = DATA_DIR / "outlines_finland.npz"
WORLD_FILE = DATA_DIR / "outlines_world.npz"


def _distance_to_polylines(px: float, py: float, lines: list[np.ndarray]) -> float:
    """Least distance from a point to any segment of the polylines (same units as them)."""
    best = np.inf
    for line in lines:
        a, b = line[:-1], line[1:]
        ab = b - a
        l2 = np.einsum("ij,ij->i", ab, ab)
        p = np.array([px, py])
        t = np.clip(np.einsum("ij,ij->i", p - a, ab) / np.where(l2 == 0, 1, l2), 0, 1)
        d = np.hypot(*(a + t[:, None] * ab - p).T)
        best = min(best, float(d.min()))
    return best


def _conus_coast_distance_km(lat: float, lon: float) -> float:
    coast = outlines_for_grid(HRRR_CONUS)["coastline"]
    x, y = HRRR_CONUS.project(np.array([lon]), np.array([lat]))
    return _distance_to_polylines(float(x[0]), float(y[0]), coast) / 1000.0


# ---- geometry ----------------------------------------------------------------------------------
def test_clip_cuts_a_crossing_line_at_the_box_edge():
    pieces = clip_polyline(np.array([[-1.0, 0.5], [0.5, 0.5], [2.0, 0.5]]), (0, 0, 1, 1))
    assert len(pieces) == 1
    np.testing.assert_allclose(pieces[0], [[0.0, 0.5], [0.5, 0.5], [1.0, 0.5]])


def test_clip_splits_a_line_that_leaves_and_comes_back_into_two_pieces():
    line = np.array([[0.2, 0.5], [0.5, 2.0], [0.8, 0.5]])
    pieces = clip_polyline(line, (0, 0, 1, 1))
    assert len(pieces) == 2
    assert pieces[0][-1][1] == pytest.approx(1.0) and pieces[1][0][1] == pytest.approx(1.0)


def test_clip_drops_a_line_wholly_outside_the_box():
    assert clip_polyline(np.array([[2.0, 2.0], [3.0, 3.0]]), (0, 0, 1, 1)) == []


def test_simplify_drops_nearly_collinear_vertices_and_keeps_a_far_one():
    line = np.array([[0, 0], [1, 0.001], [2, 0], [3, 1.0], [4, 0]], dtype=float)
    out = simplify_polyline(line, 0.01)
    np.testing.assert_array_equal(out, [[0, 0], [2, 0], [3, 1.0], [4, 0]])


def test_simplify_keeps_a_closed_ring_closed():
    t = np.linspace(0, 2 * np.pi, 200)
    ring = np.column_stack([np.cos(t), np.sin(t)])
    ring[-1] = ring[0]
    out = simplify_polyline(ring, 0.05)
    assert 4 <= len(out) < 50
    np.testing.assert_array_equal(out[0], out[-1])


# ---- the file format ---------------------------------------------------------------------------
def test_save_and_load_round_trip_keeps_polylines_to_float32_precision(tmp_path):
    outlines = {
        "coastline": [np.array([[-122.5, 37.7], [-122.4, 37.8], [-122.3, 37.9]])],
        "lakes": [np.array([[-88.0, 43.0], [-87.0, 43.0], [-87.5, 44.0], [-88.0, 43.0]])],
        "borders": [],
    }
    path = save_outlines(tmp_path / "o.npz", outlines, bbox=(-130, 30, -80, 50), tolerance_deg=0.02)
    back = load_outlines(path)
    assert set(back) == set(outlines)
    assert back["borders"] == []
    for kind in ("coastline", "lakes"):
        assert len(back[kind]) == 1
        np.testing.assert_allclose(back[kind][0], outlines[kind][0], atol=1e-5)
    meta = read_outlines_meta(path)
    assert meta["bbox"] == [-130, 30, -80, 50] and meta["tolerance_deg"] == 0.02


# ---- the packaged files ------------------------------------------------------------------------
@pytest.mark.parametrize("path", [CONUS_FILE, FINLAND_FILE], ids=["conus", "finland"])
def test_packaged_outline_file_is_smaller_than_1_mb(path):
    assert path.is_file()
    assert path.stat().st_size < 1_000_000


def test_packaged_world_file_covers_the_globe_in_under_2_mb():
    assert WORLD_FILE.stat().st_size < 2_000_000
    meta = read_outlines_meta(WORLD_FILE)
    assert meta["bbox"] == [-180, -90, 180, 90] and set(meta["kinds"]) == set(KINDS)


def test_packaged_conus_outlines_have_every_kind():
    outlines = load_outlines(CONUS_FILE)
    for kind in KINDS:
        assert len(outlines[kind]) > 50, kind


def test_packaged_conus_bbox_covers_the_hrrr_grid_corners():
    w, s, e, n = read_outlines_meta(CONUS_FILE)["bbox"]
    lat, lon = HRRR_CONUS.latlon()
    assert w <= lon.min() and lon.max() <= e and s <= lat.min() and lat.max() <= n


def test_packaged_conus_outlines_mostly_fall_inside_the_hrrr_grid():
    outlines = load_outlines(CONUS_FILE)
    lonlat = np.concatenate([p for kind in KINDS for p in outlines[kind]])
    x, y = HRRR_CONUS.project(lonlat[:, 0], lonlat[:, 1])
    g = HRRR_CONUS
    inside = (x >= g.x[0]) & (x <= g.x[-1]) & (y >= g.y[0]) & (y <= g.y[-1])
    assert inside.mean() > 0.5


@pytest.mark.parametrize(
    "lat, lon", [(37.77, -122.42), (35.25, -75.53)], ids=["san-francisco", "cape-hatteras"]
)
def test_coastline_passes_within_20_km_of_a_coastal_point(lat, lon):
    assert _conus_coast_distance_km(lat, lon) < 20.0


@pytest.mark.parametrize(
    "lat, lon", [(39.10, -94.58), (39.74, -104.99)], ids=["kansas-city", "denver"]
)
def test_coastline_stays_over_200_km_from_an_inland_city(lat, lon):
    assert _conus_coast_distance_km(lat, lon) > 200.0


def test_outlines_for_hrrr_are_in_grid_metres_inside_its_extent():
    outlines = outlines_for_grid(HRRR_CONUS)
    assert set(outlines) == set(KINDS)
    xy = np.concatenate(outlines["states"])
    g = HRRR_CONUS
    inside = (
        (xy[:, 0] >= g.x[0]) & (xy[:, 0] <= g.x[-1]) & (xy[:, 1] >= g.y[0]) & (xy[:, 1] <= g.y[-1])
    )
    assert inside.mean() > 0.8


def test_outlines_for_a_finnish_grid_come_from_the_finland_file():
    grid = Grid("fi-ll", "EPSG:4326", nx=400, ny=300, x0=18.0, y0=70.5, dx=0.045, dy=-0.04)
    coast = outlines_for_grid(grid)["coastline"]
    assert len(coast) > 10
    xy = np.concatenate(coast)
    assert xy[:, 0].min() >= 17.0 and xy[:, 1].max() <= 71.0  # lon/lat in the Finland box


def test_a_grid_no_regional_file_covers_gets_the_world_file_near_the_real_coast(caplog):
    grid = Grid("aus", "EPSG:4326", nx=100, ny=100, x0=128.0, y0=-10.0, dx=0.1, dy=-0.1)
    assert best_packaged_file(grid) == (WORLD_FILE, 1.0)
    with caplog.at_level(logging.WARNING):
        coast = outlines_for_grid(grid)["coastline"]
    assert not caplog.records
    darwin = (130.84, -12.46)  # on the coast
    assert _distance_to_polylines(*darwin, coast) < 0.1  # degrees: within about 10 km
    assert _distance_to_polylines(133.0, -16.0, coast) > 2.0  # inland Northern Territory


def test_an_opera_laea_grid_gets_european_coastlines_from_the_world_file():
    laea = "+proj=laea +lat_0=55.0 +lon_0=10.0 +x_0=1950000.0 +y_0=-2100000.0 +ellps=WGS84"
    grid = Grid("opera", laea, nx=1900, ny=2200, x0=1000.0, y0=-1000.0, dx=2000.0, dy=-2000.0)
    assert best_packaged_file(grid)[0] == WORLD_FILE
    coast = outlines_for_grid(grid)["coastline"]
    x, y = grid.project(np.array([-4.49]), np.array([48.39]))  # Brest, on the Atlantic coast
    assert _distance_to_polylines(float(x[0]), float(y[0]), coast) < 10_000.0  # metres
    x, y = grid.project(np.array([2.35]), np.array([48.86]))  # Paris, 180 km inland
    assert _distance_to_polylines(float(x[0]), float(y[0]), coast) > 100_000.0


def test_the_most_detailed_covering_file_is_chosen():
    assert best_packaged_file(HRRR_CONUS)[0] == CONUS_FILE
    fi = Grid("fi-ll", "EPSG:4326", nx=400, ny=300, x0=18.0, y0=70.5, dx=0.045, dy=-0.04)
    assert best_packaged_file(fi)[0] == FINLAND_FILE


def test_without_packaged_files_many_figures_warn_once(monkeypatch, tmp_path, caplog):
    import wxembed.figures.outlines as outlines

    monkeypatch.setattr(outlines, "DATA_DIR", tmp_path)  # no outline files at all
    grid = Grid("nowhere", "EPSG:4326", nx=10, ny=10, x0=1.0, y0=1.0, dx=0.1, dy=0.1)
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert outlines_for_grid(grid) == {}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no packaged map outlines cover grid nowhere" in caplog.text
    assert "outlines_for_grid(grid, path=...)" in caplog.text  # a Python route, not an option


def test_outlines_for_grid_reads_the_file_given_as_path(tmp_path):
    grid = Grid("aus", "EPSG:4326", nx=100, ny=100, x0=130.0, y0=-20.0, dx=0.1, dy=-0.1)
    line = np.array([[131.0, -21.0], [135.0, -25.0]])
    path = save_outlines(tmp_path / "aus.npz", {"coastline": [line]}, bbox=(129, -31, 141, -19))
    out = outlines_for_grid(grid, path=path)
    np.testing.assert_allclose(out["coastline"][0], line, atol=1e-5)


# ---- building from the shapefiles --------------------------------------------------------------
SF_BBOX = (-123.2, 37.3, -121.8, 38.3)


@needs_naturalearth
def test_build_outlines_keeps_every_vertex_inside_a_small_bbox():
    outlines = build_outlines(NATURALEARTH, SF_BBOX, tolerance_deg=0.02)
    assert len(outlines["coastline"]) > 0
    xy = np.concatenate([p for lines in outlines.values() for p in lines])
    w, s, e, n = SF_BBOX
    eps = 1e-9
    assert xy[:, 0].min() >= w - eps and xy[:, 0].max() <= e + eps
    assert xy[:, 1].min() >= s - eps and xy[:, 1].max() <= n + eps


@needs_naturalearth
def test_build_outlines_on_a_small_bbox_reproduces_the_packaged_coastline():
    small = build_outlines(NATURALEARTH, SF_BBOX, tolerance_deg=0.02, kinds=["coastline"])
    packaged = load_outlines(CONUS_FILE)["coastline"]
    vertices = np.concatenate(small["coastline"])
    # every vertex of the small build lies on the original line, which Douglas-Peucker keeps
    # within the tolerance (0.02 deg) of the packaged line (+ float32 rounding)
    worst = max(_distance_to_polylines(x, y, packaged) for x, y in vertices)
    assert worst < 0.0201


@needs_naturalearth
def test_make_outlines_script_writes_a_loadable_file(tmp_path):
    out = tmp_path / "fi.npz"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_outlines.py"),
            "--naturalearth",
            str(NATURALEARTH),
            "--bbox",
            "24",
            "60",
            "25.5",
            "60.5",
            "--out",
            str(out),
            "--tolerance",
            "0.01",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    meta = read_outlines_meta(out)
    assert meta["bbox"] == [24, 60, 25.5, 60.5] and meta["tolerance_deg"] == 0.01
    assert len(load_outlines(out)["coastline"]) > 0  # the Helsinki coast
