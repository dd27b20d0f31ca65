"""MRMS reader against the real MergedReflectivityQCComposite frame in ../shared/data/mrms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyproj  # noqa: F401  (pyproj before eccodes)
import pytest

from wxembed.errors import MissingHour, SourceError
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
def test_grib_without_reflectivity_message_is_a_missing_hour_listing_what_it_holds():
    with pytest.raises(
        MissingHour,
        match=r"found 0 among 2 messages: tp, Total Precipitation, kg m\*\*-2 \(0/1/8\)",
    ):
        read_mrms(HRRR_TP)


# ---- another product, and values that are no reflectivity ------------------------------------
BLOCK = (1500, 3000, 120, 160)
"""(first row, first column, rows, columns) of the block cut from the real frame: Kansas."""


def edited_mrms(
    dst: Path,
    message: bytes,
    raw: np.ndarray | None = None,
    *,
    param: tuple[int, int, int] | None = None,
    level: tuple[int, int] | None = None,
    minute: int | None = None,
) -> Path:
    """A GRIB2 ``message`` (the real frame's, or a block cut from it) written to ``dst`` with its
    parameter (and level, minute) replaced, and its values by ``raw`` when given."""
    import eccodes as ec

    h = ec.codes_new_from_message(message)
    try:
        if param is not None:
            keys = ("discipline", "parameterCategory", "parameterNumber")
            for key, value in zip(keys, param, strict=True):
                ec.codes_set_long(h, key, value)
        if level is not None:
            ec.codes_set_long(h, "typeOfFirstFixedSurface", level[0])
            ec.codes_set_long(h, "scaledValueOfFirstFixedSurface", level[1])
        if minute is not None:
            ec.codes_set_long(h, "minute", minute)
        if raw is not None:
            ec.codes_set_values(h, np.asarray(raw, np.float64).ravel())
        dst.write_bytes(ec.codes_get_message(h))
    finally:
        ec.codes_release(h)
    return dst


@pytest.fixture(scope="module")
def kansas(mrms) -> np.ndarray:
    """The real frame's values in :data:`BLOCK`, its -999/-99 sentinels restored."""
    r0, c0, ny, nx = BLOCK
    block = mrms.dbz[r0 : r0 + ny, c0 : c0 + nx].astype(np.float64)
    return np.where(np.isnan(block), -999.0, np.where(block == -32.0, -99.0, block))


@pytest.fixture(scope="module")
def kansas_message(kansas) -> bytes:
    """The real frame's message cut to :data:`BLOCK` (its header, with the block's corners and
    size), its values written as IEEE floats, which hold any value."""
    import eccodes as ec

    r0, c0, ny, nx = BLOCK
    lat0, lon0 = 54.995 - 0.01 * r0, 230.005 + 0.01 * c0
    with open(MRMS_FILE, "rb") as fh:
        h = ec.codes_grib_new_from_file(fh)
    try:
        ec.codes_set_string(h, "packingType", "grid_ieee")
        ec.codes_set_long(h, "Ni", nx)
        ec.codes_set_long(h, "Nj", ny)
        ec.codes_set(h, "latitudeOfFirstGridPointInDegrees", lat0)
        ec.codes_set(h, "longitudeOfFirstGridPointInDegrees", lon0)
        ec.codes_set(h, "latitudeOfLastGridPointInDegrees", lat0 - 0.01 * (ny - 1))
        ec.codes_set(h, "longitudeOfLastGridPointInDegrees", lon0 + 0.01 * (nx - 1))
        ec.codes_set_values(h, kansas.ravel())
        return ec.codes_get_message(h)
    finally:
        ec.codes_release(h)


def _as_read(raw: np.ndarray) -> np.ndarray:
    """What the reader makes of MRMS values: -999 -> NaN, -99 -> -32, the rest as they are."""
    return np.where(raw == -999, np.nan, np.where(raw == -99, -32.0, raw)).astype(np.float32)


@needs_mrms
@pytest.mark.parametrize(
    "param, level, holds",
    [
        ((209, 6, 1), None, r"PrecipRate, mm/h \(209/6/1\)"),
        ((209, 10, 1), None, r"HeightCompositeReflectivity, m \(209/10/1\)"),
        ((0, 0, 0), (103, 2), r"2t, 2 metre temperature, K \(0/0/0\)"),
    ],
    ids=["rain-rate", "echo-height", "2m-temperature"],
)
def test_a_file_of_another_quantity_is_a_missing_hour_naming_what_it_holds(
    tmp_path, param, level, holds
):
    name = "MRMS_Other_00.50_20220704-110040.grib2"
    path = edited_mrms(tmp_path / name, MRMS_FILE.read_bytes(), param=param, level=level)
    with pytest.raises(MissingHour, match=rf"no MRMS reflectivity product.*: {holds}$"):
        read_mrms(path)


@needs_mrms
@pytest.mark.parametrize("param", [(209, 11, 0), (209, 3, 57)], ids=["base", "lowest-altitude"])
def test_the_other_reflectivity_products_are_read_as_dbz(tmp_path, kansas, kansas_message, param):
    field = read_mrms(edited_mrms(tmp_path / "refl.grib2", kansas_message, param=param))
    assert field.grid.shape == (120, 160) and field.time == np.datetime64("2022-07-04T11:00:40")
    np.testing.assert_array_equal(field.dbz, _as_read(kansas))
    assert field.missing_values == 0


@needs_mrms
def test_infinities_and_fill_values_are_counted_missing_and_stored_as_no_echo(
    tmp_path, kansas, kansas_message
):
    raw = kansas.copy()
    inside = np.argwhere(raw != -999)[:5]  # five points inside radar coverage
    for (r, c), bad in zip(inside, [np.inf, -np.inf, 1e30, -1e30, np.nan], strict=True):
        raw[r, c] = bad
    field = read_mrms(edited_mrms(tmp_path / "bad.grib2", kansas_message, raw))
    assert field.missing_values == 5
    assert all(field.dbz[r, c] == -32.0 for r, c in inside)
    others = np.ones(raw.shape, bool)
    others[tuple(inside.T)] = False
    np.testing.assert_array_equal(field.dbz[others], _as_read(kansas)[others])


@needs_mrms
def test_an_ingest_stores_reflectivity_and_records_a_rain_rate_file_as_missing(
    tmp_path, kansas, kansas_message
):
    from wxembed.archive import Archive
    from wxembed.pipelines.ingest import ingest_files

    good = tmp_path / "MRMS_MergedReflectivityQCComposite_00.50_20220704-110040.grib2"
    good.write_bytes(kansas_message)
    rate = np.where(kansas == -999, -3.0, np.where(kansas == -99, 0.0, 2.5))  # mm/h; -3: no data
    rain = tmp_path / "MRMS_PrecipRate_00.00_20220704-110240.grib2"
    edited_mrms(rain, kansas_message, rate, param=(209, 6, 1), minute=2)
    report = ingest_files([good, rain], tmp_path / "a.zarr", workers=1, progress=False)
    assert report.counts() == {"stored": 1, "missing": 1, "failed": 0, "skipped": 0}
    m = Archive(tmp_path / "a.zarr").manifest().set_index("time")
    rain_hour, good_hour = (
        np.datetime64("2022-07-04T11:02:40"),
        np.datetime64("2022-07-04T11:00:40"),
    )
    assert m.loc[rain_hour, "status"] == "missing"
    assert "PrecipRate, mm/h (209/6/1)" in m.loc[rain_hour, "reason"]
    assert m.loc[good_hour, "status"] == "stored"
    assert np.nanmax(Archive(tmp_path / "a.zarr").read_dbz(good_hour)) == np.nanmax(
        _as_read(kansas)
    )
