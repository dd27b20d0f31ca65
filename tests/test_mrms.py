"""MRMS reader against the real MergedReflectivityQCComposite frame in ../shared/data/mrms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyproj  # noqa: F401  (pyproj before eccodes)
import pytest

from wxembed.errors import SourceError
from wxembed.grid import Grid
from wxembed.sources import DecodedField
from wxembed.sources.mrms import coarsen_mrms, mrms_coverage_stats, read_mrms

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MRMS_FILE = DATA / "mrms" / "MRMS_MergedReflectivityQCComposite_00.50_20220704-110040.grib2"
HRRR_TP = DATA / "hrrr" / "subset_20201214_hrrr.t00z.wrfsfcf12.grib2"

needs_mrms = pytest.mark.skipif(
    not MRMS_FILE.is_file(), reason=f"reference MRMS file absent: {MRMS_FILE}"
)


@pytest.fixture(scope="module")
def mrms() -> DecodedField:
    if not MRMS_FILE.is_file():
        pytest.skip(f"reference MRMS file absent: {MRMS_FILE}")
    return read_mrms(MRMS_FILE)


# ---- grid and time -------------------------------------------------------------------------


def test_grid_is_7000_by_3500_at_a_hundredth_degree_rows_north_to_south(mrms):
    g = mrms.grid
    assert g.shape == (3500, 7000)
    assert mrms.dbz.shape == g.shape
    assert g.is_geographic
    assert g.dx == pytest.approx(0.01)
    assert g.dy == pytest.approx(-0.01)


def test_grid_corners_are_the_header_first_and_last_points(mrms):
    lat, lon = mrms.grid.y, mrms.grid.x  # a geographic grid: y is latitude, x longitude
    assert lat[0] == pytest.approx(54.995, abs=1e-6)
    assert lon[0] == pytest.approx(-129.995, abs=1e-6)  # 230.005 E
    assert lat[-1] == pytest.approx(20.005, abs=1e-6)
    assert lon[-1] == pytest.approx(-60.005, abs=1e-6)  # 299.995 E


def test_grid_crs_is_the_headers_iau1965_spheroid(mrms):
    ellipsoid = mrms.grid.pyproj_crs.ellipsoid
    assert ellipsoid.semi_major_metre == pytest.approx(6378160.0)
    assert ellipsoid.semi_minor_metre == pytest.approx(6356775.0)


def test_grid_survives_a_json_round_trip(mrms):
    assert Grid.from_json(mrms.grid.to_json()).same_as(mrms.grid)


def test_valid_time_keeps_the_seconds_of_the_header(mrms):
    assert mrms.time == np.datetime64("2022-07-04T11:00:40", "s")
    assert mrms.time.dtype == np.dtype("datetime64[s]")


# ---- values --------------------------------------------------------------------------------


def test_outside_coverage_becomes_nan_and_no_echo_becomes_minus_32(mrms):
    dbz = mrms.dbz
    assert dbz.dtype == np.float32
    assert int(np.isnan(dbz).sum()) == 8_739_515  # -999 in the file
    assert int((dbz == -32.0).sum()) == 14_413_677  # -99 in the file
    assert not np.any(dbz == -999.0) and not np.any(dbz == -99.0)
    assert np.nanmin(dbz) >= -32.0 and np.nanmax(dbz) == pytest.approx(67.5)
    assert mrms.missing_values == 0


def test_oceans_are_outside_coverage_and_the_plains_inside(mrms):
    def at(lat: float, lon: float) -> float:
        g = mrms.grid
        return mrms.dbz[round((lat - g.y0) / g.dy), round((lon - g.x0) / g.dx)]

    assert np.isnan(at(30.0, -128.0))  # Pacific
    assert np.isnan(at(30.0, -70.0))  # Atlantic
    assert not np.isnan(at(38.5, -98.0))  # Kansas


def test_coverage_fractions_match_the_measured_values(mrms):
    # Measured on this frame, strictly greater than the threshold, over covered pixels.
    # The data README says ~5 %, 0.8 %, 0.12 %: about 1.75x these. Its numbers equal the
    # exceedance counts divided by the count of *outside* (-999) pixels, not covered ones.
    stats = mrms_coverage_stats(mrms.dbz)
    assert stats["n_coverage"] == 15_760_485
    assert stats["coverage"] == pytest.approx(0.6433, rel=1e-3)
    assert stats["gt_20"] == pytest.approx(0.02749, rel=0.01)
    assert stats["gt_35"] == pytest.approx(0.004601, rel=0.01)
    assert stats["gt_45"] == pytest.approx(0.0006894, rel=0.01)


def test_coverage_stats_ignore_nan_and_count_strictly_greater():
    dbz = np.array([[np.nan, -32.0, 20.0, 21.0], [36.0, 46.0, np.nan, -32.0]], dtype=np.float32)
    stats = mrms_coverage_stats(dbz)
    assert stats["coverage"] == pytest.approx(6 / 8)
    assert stats["gt_20"] == pytest.approx(3 / 6)
    assert stats["gt_35"] == pytest.approx(2 / 6)
    assert stats["gt_45"] == pytest.approx(1 / 6)


def test_coarsen_averages_covered_cells_and_drops_mostly_uncovered_blocks():
    grid = Grid(
        name="t",
        crs="+proj=longlat +R=6371229 +no_defs",
        nx=5,
        ny=4,
        x0=-100.0,
        y0=40.0,
        dx=0.01,
        dy=-0.01,
    )
    dbz = np.full(grid.shape, -32.0, dtype=np.float32)
    dbz[0, 0], dbz[0, 1], dbz[1, 0] = 10.0, 20.0, np.nan  # block (0,0): mean of 10, 20, -32
    dbz[2:4, 2:4] = np.nan  # block (1,1): no coverage
    dbz[2, 0] = np.nan  # block (1,0): 3 of 4 covered
    field = DecodedField(time=np.datetime64("2022-07-04T11:00:40", "s"), grid=grid, dbz=dbz)
    out = coarsen_mrms(field, 2)
    assert out.grid.same_as(grid.coarsen(2))
    assert out.dbz.shape == (2, 2)
    assert out.dbz[0, 0] == pytest.approx((10 + 20 - 32) / 3)
    assert np.isnan(out.dbz[1, 1])
    assert out.dbz[1, 0] == pytest.approx(-32.0)


# ---- errors --------------------------------------------------------------------------------


def test_missing_file_raises_source_error_naming_it(tmp_path):
    path = tmp_path / "nope.grib2"
    with pytest.raises(SourceError, match="nope.grib2"):
        read_mrms(path)


@needs_mrms
@pytest.mark.parametrize("keep", [100, 1_000_000], ids=["in-header", "in-data"])
def test_grib_cut_short_raises_source_error(tmp_path, keep):
    path = tmp_path / "cut.grib2"
    path.write_bytes(MRMS_FILE.read_bytes()[:keep])
    with pytest.raises(SourceError, match="cut.grib2"):
        read_mrms(path)


@needs_mrms
def test_corrupt_packed_data_raises_source_error(tmp_path):
    data = bytearray(MRMS_FILE.read_bytes())
    data[5000:5400] = bytes(400)
    path = tmp_path / "corrupt.grib2"
    path.write_bytes(bytes(data))
    with pytest.raises(SourceError, match="corrupt.grib2"):
        read_mrms(path)


@pytest.mark.parametrize(
    "text, message",
    [("plain text\n", "not a GRIB2 file"), ("text that says GRIB\n", "cannot decode")],
    ids=["no-grib-marker", "false-grib-marker"],
)
def test_file_that_is_not_grib_raises_source_error(tmp_path, text, message):
    path = tmp_path / "text.grib2"
    path.write_text(text * 100)
    with pytest.raises(SourceError, match=message):
        read_mrms(path)


@pytest.mark.skipif(not HRRR_TP.is_file(), reason=f"reference HRRR file absent: {HRRR_TP}")
def test_grib_without_reflectivity_message_lists_what_it_holds():
    with pytest.raises(SourceError, match=r"found 0 among 2 messages: tp \(0/1/8\)"):
        read_mrms(HRRR_TP)
