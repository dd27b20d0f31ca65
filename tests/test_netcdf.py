"""CF NetCDF reader, on NetCDF-3 and NetCDF-4 files holding real radar frames.

No CF NetCDF radar file is among the reference data, so the files are written here, as another
producer would write them (xarray, CF attributes only: no wxembed ``proj4`` or ``crs_wkt``),
from real frames: three FMI composites 5 minutes apart on their stereographic grid, and a
piece of the MRMS composite on its latitude/longitude grid.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyproj
import pytest
import xarray as xr

from wxembed.errors import MissingHour, SourceError
from wxembed.grid import Grid
from wxembed.sources import DecodedField
from wxembed.sources.fmi import read_fmi
from wxembed.sources.netcdf import LONLAT_CRS, frame_key, netcdf_times, read_netcdf

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FMI_FRAMES = sorted((DATA / "fmi" / "20160928").glob("*.pgm.gz"))[:3]
MRMS_FILE = DATA / "mrms" / "MRMS_MergedReflectivityQCComposite_00.50_20220704-110040.grib2"
needs_fmi = pytest.mark.skipif(len(FMI_FRAMES) < 3, reason=f"FMI frames absent: {DATA / 'fmi'}")


def write_cf_netcdf(
    path: Path,
    fields: list[DecodedField],
    *,
    variable: str = "DBZH",
    engine: str = "h5netcdf",
    units: str | None = "dBZ",
    extra: dict | None = None,
) -> Path:
    """A CF NetCDF file of ``fields`` (one grid) along ``time``, packed as int16 with
    scale_factor 0.5 and add_offset -32 (exact for dBZ on the half-dBZ steps), NaN as the
    fill value; the grid as a CF grid_mapping, or plain lat/lon for a geographic grid."""
    grid = fields[0].grid
    dbz = np.stack([f.dbz for f in fields])  # (time, y, x)
    attrs = {"long_name": "radar reflectivity"} | ({"units": units} if units else {})
    if grid.is_geographic:
        dims = ("time", "lat", "lon")
        coords = {"lat": ("lat", grid.y, {"units": "degrees_north"})}
        coords["lon"] = ("lon", grid.x, {"units": "degrees_east"})
    else:
        dims = ("time", "y", "x")
        coords = {
            "y": ("y", grid.y, {"units": "m", "standard_name": "projection_y_coordinate"}),
            "x": ("x", grid.x, {"units": "m", "standard_name": "projection_x_coordinate"}),
        }
        attrs["grid_mapping"] = "crs"
    coords["time"] = ("time", np.array([f.time for f in fields], dtype="datetime64[ns]"))
    data = {variable: xr.DataArray(dbz, dims=dims, attrs=attrs)}
    if not grid.is_geographic:
        cf = {k: v for k, v in grid.pyproj_crs.to_cf().items() if k not in ("crs_wkt",)}
        data["crs"] = xr.DataArray(np.int32(0), attrs=cf)
    for name, array in (extra or {}).items():
        data[name] = array
    ds = xr.Dataset(data, coords=coords)
    packed = {"dtype": "int16", "scale_factor": 0.5, "add_offset": -32.0, "_FillValue": -1}
    ds.to_netcdf(path, engine=engine, encoding={variable: packed})
    return path


@pytest.fixture(scope="module")
def fmi_fields() -> list[DecodedField]:
    if len(FMI_FRAMES) < 3:
        pytest.skip(f"FMI frames absent: {DATA / 'fmi'}")
    return [read_fmi(p) for p in FMI_FRAMES]


@pytest.fixture(scope="module")
def fmi_nc(fmi_fields, tmp_path_factory) -> Path:
    """NetCDF-4: three real FMI frames, 5 minutes apart, on their polar stereographic grid."""
    return write_cf_netcdf(tmp_path_factory.mktemp("nc") / "fmi.nc", fmi_fields)


# ---- reading real frames back --------------------------------------------------------------------
def test_each_time_of_a_netcdf4_file_reads_back_the_frame_and_grid_written(fmi_fields, fmi_nc):
    times = netcdf_times(fmi_nc)
    assert times == [f.time for f in fmi_fields]
    assert times[1] - times[0] == np.timedelta64(5, "m")
    for field, t in zip(fmi_fields, times, strict=True):
        back = read_netcdf(frame_key(fmi_nc, t))
        assert back.time == field.time
        assert back.grid.same_as(field.grid), back.grid.describe()
        np.testing.assert_array_equal(back.dbz, field.dbz)  # NaN (no data) where it was
        assert back.source == f"{fmi_nc}#time={t}"


def test_the_grid_comes_from_the_cf_grid_mapping_alone(fmi_nc, fmi_fields):
    grid = read_netcdf(frame_key(fmi_nc, fmi_fields[0].time)).grid
    assert grid.pyproj_crs.to_cf()["grid_mapping_name"] == "polar_stereographic"
    assert grid.crs.startswith("PROJCRS")  # from the CF attributes, as WKT
    ref = fmi_fields[0].grid
    corners = (np.array([ref.x[0], ref.x[-1]]), np.array([ref.y[0], ref.y[-1]]))
    lonlat = pyproj.Transformer.from_crs(ref.pyproj_crs, "EPSG:4326", always_xy=True)
    lon, lat = lonlat.transform(*corners)
    x, y = grid.project(lon, lat)
    np.testing.assert_allclose(x, corners[0], atol=1e-3)
    np.testing.assert_allclose(y, corners[1], atol=1e-3)


def test_a_file_of_several_times_read_without_one_says_how_to_choose(fmi_nc):
    with pytest.raises(SourceError, match=r"holds 3 times .*#time=TIME, or ingest the file"):
        read_netcdf(fmi_nc)
    with pytest.raises(SourceError, match="holds no field at 2016-09-28T15:00:00"):
        read_netcdf(frame_key(fmi_nc, np.datetime64("2016-09-28T15:00")))


def test_a_netcdf3_file_on_plain_latitude_longitude_reads_back_exactly(fmi_fields, tmp_path):
    # the FMI frame's values on a lat/lon grid of the same shape: the reader's geographic path
    field = fmi_fields[0]
    grid = Grid("ll", LONLAT_CRS, nx=760, ny=1226, x0=18.6, y0=69.0, dx=0.02, dy=-0.009)
    path = write_cf_netcdf(tmp_path / "ll.nc", [replace(field, grid=grid)], engine="scipy")
    back = read_netcdf(path)
    assert back.grid.same_as(grid) and back.time == field.time
    np.testing.assert_array_equal(back.dbz, field.dbz)


@pytest.mark.slow
@pytest.mark.skipif(not MRMS_FILE.is_file(), reason=f"MRMS file absent: {MRMS_FILE}")
def test_a_netcdf3_latlon_file_of_real_mrms_reads_back_exactly(tmp_path):
    from wxembed.sources.formats import Reshape
    from wxembed.sources.mrms import read_mrms

    piece = Reshape(bbox=(-97.0, 49.0, -94.0, 52.0)).apply(read_mrms(MRMS_FILE))
    piece.dbz = np.rint(piece.dbz * 2) / 2  # MRMS holds 0.5 dBZ steps already; make it exact
    path = write_cf_netcdf(tmp_path / "mrms.nc", [piece], engine="scipy", variable="refl")
    back = read_netcdf(path)
    assert back.time == np.datetime64("2022-07-04T11:00:40", "s")
    assert back.grid.shape == (300, 300) and back.grid.is_geographic
    assert back.grid.x0 == pytest.approx(-96.995) and back.grid.dy == pytest.approx(-0.01)
    np.testing.assert_array_equal(back.dbz, piece.dbz)
    assert np.isnan(back.dbz).any() and (back.dbz > 35).any()  # coverage edge and storms


# ---- which variable ----------------------------------------------------------------------------
def _two_variables(fields, tmp_path, rate_units="mm/h", name="two.nc"):
    rate = xr.DataArray(
        np.zeros((1, *fields[0].grid.shape), np.float32),
        dims=("time", "y", "x"),
        attrs={"units": rate_units, "grid_mapping": "crs"},
    )
    return write_cf_netcdf(tmp_path / name, fields[:1], extra={"RATE": rate})


def test_the_only_dbz_variable_is_taken_and_another_one_is_refused_naming_its_units(
    fmi_fields, tmp_path
):
    path = _two_variables(fmi_fields, tmp_path)
    np.testing.assert_array_equal(read_netcdf(path).dbz, fmi_fields[0].dbz)
    np.testing.assert_array_equal(read_netcdf(path, variable="DBZH").dbz, fmi_fields[0].dbz)
    with pytest.raises(MissingHour, match=r"variable RATE has units 'mm/h', not dBZ"):
        read_netcdf(path, variable="RATE")
    with pytest.raises(SourceError, match=r"no variable 'rain'; it holds DBZH, RATE"):
        read_netcdf(path, variable="rain")


def test_two_dbz_variables_need_a_choice_and_none_is_a_missing_hour(fmi_fields, tmp_path):
    path = _two_variables(fmi_fields, tmp_path, rate_units="dBZ")
    with pytest.raises(SourceError, match=r"several variables are in dBZ \(DBZH, RATE\)"):
        read_netcdf(path)
    plain = write_cf_netcdf(tmp_path / "nounits.nc", fmi_fields[:1], units=None)
    with pytest.raises(MissingHour, match=r"no variable in dBZ \(it holds DBZH \[no units\]\)"):
        read_netcdf(plain)
    with pytest.raises(MissingHour, match="has no units attribute, not dBZ"):
        read_netcdf(plain, variable="DBZH")


# ---- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["h5netcdf", "scipy"], ids=["netcdf4", "netcdf3"])
def test_a_truncated_file_is_a_source_error_naming_it(fmi_fields, tmp_path, engine):
    whole = write_cf_netcdf(tmp_path / "whole.nc", fmi_fields[:1], engine=engine)
    cut = tmp_path / "cut.nc"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(SourceError, match="cut.nc"):
        read_netcdf(cut)


def test_an_irregular_or_missing_coordinate_is_refused(fmi_fields, tmp_path):
    path = write_cf_netcdf(tmp_path / "ok.nc", fmi_fields[:1])
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        ds = ds.load()
    x = ds.x.values.copy()
    x[-1] += 500.0  # the last column half a cell off: the coordinates lie about the grid
    ds.assign_coords(x=x).to_netcdf(tmp_path / "irregular.nc", engine="h5netcdf")
    with pytest.raises(SourceError, match="coordinate x is not regularly spaced"):
        read_netcdf(tmp_path / "irregular.nc")
    ds.drop_vars("x").to_netcdf(tmp_path / "nocoord.nc", engine="h5netcdf")
    with pytest.raises(SourceError, match="dimension x has no coordinate variable"):
        read_netcdf(tmp_path / "nocoord.nc")
    ds.drop_vars("crs").to_netcdf(tmp_path / "nocrs.nc", engine="h5netcdf")
    with pytest.raises(SourceError, match="grid_mapping variable 'crs' is missing"):
        read_netcdf(tmp_path / "nocrs.nc")


def test_a_file_that_is_not_netcdf_is_a_source_error(tmp_path):
    path = tmp_path / "text.nc"
    path.write_text("not NetCDF\n")
    with pytest.raises(SourceError, match="not a NetCDF file"):
        read_netcdf(path)
    with pytest.raises(SourceError, match="no such NetCDF file"):
        read_netcdf(tmp_path / "absent.nc")
