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


# ---- concurrent writers (issue 12 item 17, issue 14) ---------------------------------------------
def _race(n: int, work):
    """Run ``work(i)`` in ``n`` threads released at the same instant; each result or exception."""
    import threading

    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects every outcome
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_processes_creating_one_new_archive_at_once_leave_one_archive_and_clear_errors(
    tmp_path, tiny_grid
):
    import subprocess
    import sys

    target = tmp_path / "new.zarr"
    code = (
        "import sys, time; from wxembed.archive import Archive; from wxembed.errors import "
        "ArchiveError; from wxembed.grid import HRRR_CONUS\n"
        "while time.time() < float(sys.argv[2]): pass\n"
        "try:\n    Archive.create(sys.argv[1], HRRR_CONUS.coarsen(16)); print('created')\n"
        "except ArchiveError as e:\n    print('error:', e)\n"
    )
    import time

    start = str(time.time() + 4)  # the processes spin until the same instant, then create
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(target), start], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outs.count("created") == 1, outs
    assert all(o == f"error: {target}: an archive already exists here" for o in outs[1:]), outs
    assert Archive(target).grid.same_as(tiny_grid)


def test_threads_creating_one_archive_with_exist_ok_all_get_it_once_it_is_ready(
    tmp_path, tiny_grid
):
    target = tmp_path / "new.zarr"
    results = _race(6, lambda i: Archive.create(target, tiny_grid, exist_ok=True))
    assert all(isinstance(r, Archive) for r in results), results
    assert all(len(r.slot_times) == 0 and r.grid.same_as(tiny_grid) for r in results)


def test_an_interrupted_creation_is_named_not_a_missing_variable(tmp_path, tiny_grid):
    target = tmp_path / "half.zarr"
    target.mkdir()
    (target / "zarr.json").write_text(
        json.dumps(
            {
                "zarr_format": 3,
                "node_type": "group",
                "attributes": {"wxembed_state": "creating", "wxembed_grid": tiny_grid.to_json()},
            }
        )
    )
    with pytest.raises(ArchiveError, match="being created by another process"):
        Archive(target)
    with pytest.raises(ArchiveError, match="already exists"):
        Archive.create(target, tiny_grid)


def test_two_writers_of_the_same_hours_leave_whole_records_never_torn(archive, tiny_grid):
    hours = [str(np.datetime64("2024-07-01T00", "s") + np.timedelta64(h, "h")) for h in range(8)]
    fields = {
        who: [storm_field(tiny_grid, seed + h, t) for h, t in enumerate(hours)]
        for who, seed in (("a", 0), ("b", 100))
    }
    for who in fields:
        for f in fields[who]:
            f.source = f"/{who}/{f.source}"
    archive.allocate(hours)
    writers = {w: Archive(archive.path) for w in fields}  # one handle each, as two processes
    results = _race(2, lambda i: [writers["ab"[i]].write(f) for f in fields["ab"[i]]])
    assert not any(isinstance(r, Exception) for r in results), results
    m = archive.manifest()
    assert list(m.status) == ["stored"] * 8
    for h, t in enumerate(hours):
        winner = "a" if m.source[h].startswith("/a/") else "b"
        want = fields[winner][h]
        assert m.source[h] == want.source
        np.testing.assert_array_equal(archive.read_raw([t])[0], encode_dbz(want.dbz))  # whole
        mine = results["ab".index(winner)][h]
        theirs = results[1 - "ab".index(winner)][h]
        assert mine.status == "stored", (h, mine, theirs)  # the last whole commit stands
        # the other either saw the winner's commit over its own (and says whose), or committed
        # first and was overwritten afterwards: the run's report, read from the manifest at its
        # end, names the winner then (test_ingesting_other_files_..._says_which_files_won)
        assert theirs.status == "stored" or want.source in theirs.reason, (mine, theirs)


def test_ingesting_other_files_for_stored_hours_says_which_files_won(tmp_path, tiny_grid):
    from wxembed.pipelines.ingest import describe_report, ingest_files
    from wxembed.sources.grib import write_refc_file
    from wxembed.sources.hrrr import path_for_valid_time

    times = [np.datetime64("2024-07-01T00", "s") + np.timedelta64(h, "h") for h in range(3)]
    for who, seed in (("a", 0), ("b", 50)):
        for h, t in enumerate(times):
            write_refc_file(
                tmp_path / who / path_for_valid_time(t), storm_field(tiny_grid, seed + h, str(t))
            )
    first = ingest_files(tmp_path / "a", tmp_path / "x.zarr", workers=1, progress=False)
    assert first.counts()["stored"] == 3
    second = ingest_files(tmp_path / "b", tmp_path / "x.zarr", workers=1, progress=False)
    assert second.counts() == {
        "stored": 0,
        "missing": 0,
        "failed": 0,
        "skipped": 0,
        "superseded": 3,
    }
    line = describe_report(second)
    assert "3 superseded" in line and str(tmp_path / "a") in line
    again = ingest_files(tmp_path / "a", tmp_path / "x.zarr", workers=1, progress=False)
    assert again.counts()["skipped"] == 3 and "superseded" not in again.counts()
