from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from conftest import storm_field

from wxembed.archive import Archive, decode_raw, encode_dbz
from wxembed.errors import ArchiveError, GridError
from wxembed.grid import HRRR_CONUS


@pytest.fixture
def archive(tmp_path, tiny_grid):
    return Archive.create(tmp_path / "a.zarr", tiny_grid)


def test_dbz_is_stored_in_half_dbz_steps_from_minus_32_and_nan_is_no_data():
    dbz = np.array([-40.0, -32.0, -10.2, 0.0, 35.26, 95.0, 120.0, np.nan], dtype=np.float32)
    back = decode_raw(encode_dbz(dbz))
    np.testing.assert_array_equal(back[:7], [-32.0, -32.0, -10.0, 0.0, 35.5, 95.0, 95.0])
    assert np.isnan(back[7])
    assert encode_dbz(dbz).dtype == np.uint8


def test_archive_opens_with_xarray_as_cf_dbz_on_its_grid(archive, tiny_grid):
    field = storm_field(tiny_grid, 0, "2024-07-01T00")
    archive.write(field)
    ds = xr.open_zarr(archive.path, consolidated=False)
    refl = ds.reflectivity
    assert refl.dims == ("time", "y", "x")
    assert refl.attrs["units"] == "dBZ" and refl.attrs["grid_mapping"] == "crs"
    assert refl.encoding["dtype"] == np.uint8
    assert refl.encoding["scale_factor"] == 0.5 and refl.encoding["add_offset"] == -32.0
    assert np.abs(refl.isel(time=0).values - field.dbz).max() <= 0.25
    assert ds.crs.attrs["grid_mapping_name"] == "lambert_conformal_conic"
    lat, lon = tiny_grid.latlon()
    np.testing.assert_allclose(ds.lat.values, lat, atol=1e-4)
    assert "wxembed_grid" in ds.attrs and json.loads(ds.attrs["wxembed_grid"])["nx"] == tiny_grid.nx


def test_each_hour_is_one_zstd_chunk(archive, tiny_grid):
    meta = json.loads((archive.path / "reflectivity" / "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, tiny_grid.ny, tiny_grid.nx]
    assert any(c["name"] == "zstd" for c in meta["codecs"])


def test_appending_an_hour_already_stored_neither_duplicates_nor_changes_it(archive, tiny_grid):
    first = storm_field(tiny_grid, 0, "2024-07-01T00")
    archive.write(first)
    again = storm_field(tiny_grid, 99, "2024-07-01T00")  # same hour, other values
    rec = archive.write(again)
    assert rec.reason == "already stored"
    assert len(archive.slot_times) == 1 and len(archive) == 1
    assert np.abs(archive.read_dbz("2024-07-01T00") - first.dbz).max() <= 0.25


def test_hours_written_out_of_order_read_back_sorted(archive, tiny_grid):
    for hour in ("03", "01", "02"):
        archive.write(storm_field(tiny_grid, int(hour), f"2024-07-01T{hour}"))
    times = archive.dataset().time.values
    assert list(times) == sorted(times) and len(times) == 3
    assert list(archive.manifest().time.dt.hour) == [1, 2, 3]


def test_a_field_on_another_grid_is_refused_and_stored_hours_are_untouched(archive, tiny_grid):
    kept = storm_field(tiny_grid, 0, "2024-07-01T00")
    archive.write(kept)
    other = storm_field(HRRR_CONUS.coarsen(8), 1, "2024-07-01T01")
    with pytest.raises(GridError, match=r"hrrr-conus/8.*expected 'hrrr-conus/16'"):
        archive.write(other)
    assert list(archive.stored_times()) == [np.datetime64("2024-07-01T00:00:00")]
    assert np.abs(archive.read_dbz("2024-07-01T00") - kept.dbz).max() <= 0.25


def test_manifest_records_missing_and_failed_hours_with_reasons(archive, tiny_grid):
    archive.record("2024-07-01T01", "missing", "no file upstream", source="s3://x")
    archive.record("2024-07-01T02", "failed", "truncated", source="f.grib2")
    archive.write(storm_field(tiny_grid, 0, "2024-07-01T00"))
    m = archive.manifest()
    assert list(m.status) == ["stored", "missing", "failed"]
    assert list(m.reason) == ["", "no file upstream", "truncated"]
    assert archive.summary() == {"pending": 0, "stored": 1, "missing": 1, "failed": 1}
    assert len(archive.dataset().time) == 1  # readers see stored hours only


def test_a_failure_never_downgrades_a_stored_hour(archive, tiny_grid):
    archive.write(storm_field(tiny_grid, 0, "2024-07-01T00"))
    archive.record("2024-07-01T00", "failed", "later copy was corrupt")
    assert archive.manifest().status.tolist() == ["stored"]


def test_a_missing_hour_can_be_filled_later(archive, tiny_grid):
    archive.record("2024-07-01T00", "missing", "404")
    archive.write(storm_field(tiny_grid, 0, "2024-07-01T00"))
    m = archive.manifest()
    assert m.status.tolist() == ["stored"] and m.reason.tolist() == [""]


def test_reading_an_hour_that_is_not_stored_names_it(archive):
    with pytest.raises(ArchiveError, match="2024-07-01 05:00:00Z is not stored"):
        archive.read_dbz("2024-07-01T05")


def test_create_refuses_an_existing_archive_on_another_grid(archive):
    with pytest.raises(ArchiveError, match="already exists"):
        Archive.create(archive.path, archive.grid)
    assert Archive.create(archive.path, archive.grid, exist_ok=True).grid.same_as(archive.grid)
    with pytest.raises(ArchiveError, match="hrrr-conus/8"):
        Archive.create(archive.path, HRRR_CONUS.coarsen(8), exist_ok=True)


def test_opening_something_that_is_not_an_archive_says_so(tmp_path):
    with pytest.raises(ArchiveError, match="no archive here"):
        Archive(tmp_path)
    import zarr

    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=3)
    with pytest.raises(ArchiveError, match="not a wxembed archive"):
        Archive(tmp_path / "plain.zarr")
