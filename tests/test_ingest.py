from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import storm_field

from wxembed.archive import Archive
from wxembed.grid import HRRR_CONUS
from wxembed.pipelines import pipeline_options
from wxembed.pipelines.ingest import expand_inputs, ingest_files
from wxembed.sources.formats import time_from_path
from wxembed.sources.grib import decode_refc, write_refc_file
from wxembed.sources.hrrr import path_for_valid_time

START = np.datetime64("2024-07-01T00:00:00")


def _hour(h: int) -> np.datetime64:
    return START + np.timedelta64(h, "h")


def _write_layout(root: Path, grid, hours) -> list[Path]:
    paths = []
    for h in hours:
        t = _hour(h)
        paths.append(write_refc_file(root / path_for_valid_time(t), storm_field(grid, h, str(t))))
    return paths


@pytest.fixture
def layout(tmp_path, tiny_grid, shared_data):
    """Six good hours, plus: a real HRRR file without REFC, a truncated file, another grid."""
    root = tmp_path / "noaa"
    _write_layout(root, tiny_grid, range(6))
    shutil.copy(
        shared_data / "hrrr" / "hrrr.t00z.wrfsfcf00-HPBL.grib2",
        root / path_for_valid_time(_hour(6)),
    )
    good = (root / path_for_valid_time(_hour(0))).read_bytes()
    cut = root / path_for_valid_time(_hour(7))
    cut.parent.mkdir(parents=True, exist_ok=True)
    cut.write_bytes(good[: len(good) // 2])
    write_refc_file(
        root / path_for_valid_time(_hour(8)), storm_field(HRRR_CONUS.coarsen(8), 8, str(_hour(8)))
    )
    return root


def test_ingest_stores_good_hours_and_records_every_bad_one_with_its_reason(
    layout, tmp_path, tiny_grid
):
    report = ingest_files(layout, tmp_path / "a.zarr", workers=2, progress=False)
    assert report.counts() == {"stored": 6, "missing": 1, "failed": 2, "skipped": 0}
    m = Archive(tmp_path / "a.zarr").manifest().set_index("time")
    assert m.loc[_hour(6), "status"] == "missing"
    assert "no REFC message" in m.loc[_hour(6), "reason"] and "blh" in m.loc[_hour(6), "reason"]
    assert m.loc[_hour(7), "status"] == "failed" and "truncated" in m.loc[_hour(7), "reason"]
    assert m.loc[_hour(8), "status"] == "failed"
    assert "dx=24000" in m.loc[_hour(8), "reason"] and "expected" in m.loc[_hour(8), "reason"]
    archive = Archive(tmp_path / "a.zarr")
    for h in range(6):
        expected = decode_refc(layout / path_for_valid_time(_hour(h))).dbz
        assert np.abs(archive.read_dbz(_hour(h)) - expected).max() <= 0.25


def test_running_ingest_again_skips_stored_hours_and_keeps_them_once(layout, tmp_path):
    ingest_files(layout, tmp_path / "a.zarr", workers=1, progress=False)
    before = Archive(tmp_path / "a.zarr").read_raw([_hour(0)])
    again = ingest_files(layout, tmp_path / "a.zarr", workers=1, progress=False)
    assert again.skipped == 6
    archive = Archive(tmp_path / "a.zarr")
    assert len(archive.slot_times) == len(set(archive.slot_times.tolist())) == 9
    np.testing.assert_array_equal(archive.read_raw([_hour(0)]), before)


def test_a_listed_file_that_does_not_exist_is_recorded_as_failed(tmp_path, tiny_grid):
    paths = _write_layout(tmp_path / "noaa", tiny_grid, [0])
    ghost = tmp_path / "noaa" / path_for_valid_time(_hour(1))
    report = ingest_files([paths[0], ghost], tmp_path / "a.zarr", workers=1, progress=False)
    assert report.counts()["failed"] == 1
    assert "no such file" in report.problems()[0]["reason"]


def test_time_is_read_from_noaa_layout_and_from_radar_file_names():
    assert time_from_path("x/hrrr.20240701/conus/hrrr.t06z.wrfsfcf02.grib2") == np.datetime64(
        "2024-07-01T08:00:00"
    )
    assert time_from_path(
        "201609281445_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"
    ) == np.datetime64("2016-09-28T14:45:00")
    assert time_from_path(
        "MRMS_MergedReflectivityQCComposite_00.50_20220704-110040.grib2"
    ) == np.datetime64("2022-07-04T11:00:40")
    assert time_from_path("notime.grib2") is None


def test_a_glob_and_a_folder_expand_to_the_same_layout_files(tmp_path, tiny_grid):
    _write_layout(tmp_path / "noaa", tiny_grid, range(3))
    by_folder = expand_inputs(tmp_path / "noaa")
    by_glob = expand_inputs(str(tmp_path / "noaa" / "hrrr.*" / "conus" / "*.grib2"))
    assert by_folder == by_glob and len(by_folder) == 3


def test_other_runner_options_pass_through_unchanged():
    opts = pipeline_options(
        ["--runner", "FlinkRunner", "--flink_master", "host:8081"]
    ).get_all_options()
    assert opts["runner"] == "FlinkRunner" and opts["flink_master"] == "host:8081"
    assert opts["direct_num_workers"] == 1  # Beam's default, untouched
    local = pipeline_options([], workers=2).get_all_options()
    assert local["direct_num_workers"] == 2 and local["direct_running_mode"] == "multi_processing"


def test_an_ingest_killed_part_way_resumes_with_each_hour_exactly_once(tmp_path):
    grid = HRRR_CONUS.coarsen(2)
    hours = range(24)
    _write_layout(tmp_path / "noaa", grid, hours)
    target = tmp_path / "a.zarr"
    cmd = [
        sys.executable,
        "-m",
        "wxembed.cli",
        "ingest",
        str(tmp_path / "noaa"),
        "--archive",
        str(target),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    stored = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (target / "zarr.json").exists():
                try:
                    stored = len(Archive(target))
                except Exception:  # the store is being created or resized this instant
                    stored = 0
                if stored >= 3:
                    break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert 3 <= stored < len(hours), f"could not catch the ingest part-way (stored {stored})"

    archive = Archive(target)  # still opens
    partial = len(archive)
    assert partial < len(hours)

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    archive = Archive(target)
    slot_times = archive.slot_times.tolist()
    assert len(slot_times) == len(set(slot_times)) == len(hours)
    assert len(archive) == len(hours)
    assert archive.summary()["pending"] == 0
    for h in (0, 11, 23):
        expected = decode_refc(tmp_path / "noaa" / path_for_valid_time(_hour(h))).dbz
        assert np.abs(archive.read_dbz(_hour(h)) - expected).max() <= 0.25


def test_fmi_frames_ingest_onto_their_own_stereographic_grid(shared_data, tmp_path):
    frames = sorted((shared_data / "fmi" / "20160928").glob("*.pgm.gz"))[:3]
    report = ingest_files(frames, tmp_path / "fmi.zarr", workers=1, progress=False)
    assert report.counts()["stored"] == 3
    archive = Archive(tmp_path / "fmi.zarr")
    assert archive.grid.shape == (1226, 760) and "stere" in archive.grid.crs
    assert list(archive.stored_times()) == [
        np.datetime64("2016-09-28T14:45:00") + np.timedelta64(5 * i, "m") for i in range(3)
    ]
    dbz = archive.read_dbz(archive.stored_times()[0])
    assert 0.1 < np.isnan(dbz).mean() < 0.5  # outside radar range stays "no data"


def test_the_mrms_composite_ingests_with_its_coverage_kept_as_no_data(shared_data, tmp_path):
    (path,) = sorted((shared_data / "mrms").glob("*.grib2"))
    report = ingest_files(path, tmp_path / "mrms.zarr", workers=1, progress=False)
    assert report.counts()["stored"] == 1
    archive = Archive(tmp_path / "mrms.zarr")
    assert archive.grid.shape == (3500, 7000)
    dbz = archive.read_dbz("2022-07-04T11:00:40")
    covered = dbz[~np.isnan(dbz)]
    assert 0.3 < np.isnan(dbz).mean() < 0.45
    assert 0.01 < (covered > 20).mean() < 0.1


# ---- unlucky inputs: odd names, folders among files, a damaged first file -----------------------
def _fmi_frames(shared_data, folder: Path, n: int = 3, *, rename=None, edit=None) -> list[Path]:
    """Copies of the first ``n`` real FMI frames in ``folder``; ``rename(i, name) -> bytes`` and
    ``edit(i, pgm) -> pgm`` change the i-th one's file name and content."""
    import gzip

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, src in enumerate(sorted((shared_data / "fmi" / "20160928").glob("*.pgm.gz"))[:n]):
        name = rename(i, src.name) if rename else src.name.encode()
        dst = Path(os.fsdecode(os.fsencode(folder) + b"/" + name))
        data = src.read_bytes()
        if edit is not None:
            data = gzip.compress(edit(i, gzip.decompress(data)), compresslevel=1)
        dst.write_bytes(data)
        out.append(dst)
    return out


def test_a_file_name_that_is_not_utf8_is_stored_escaped_and_the_run_completes(
    shared_data, tmp_path
):
    def latin1(i: int, name: str) -> bytes:  # "café" as a Windows share writes it
        return (
            name.replace("fmi.radar", "fmi.caf\xe9").encode("latin-1") if i == 1 else name.encode()
        )

    files = _fmi_frames(shared_data, tmp_path / "share", rename=latin1)
    with pytest.raises(UnicodeEncodeError):
        str(files[1]).encode("utf-8")  # a name Python can only hold with a lone surrogate
    report = ingest_files(tmp_path / "share", tmp_path / "a.zarr", workers=1, progress=False)
    assert report.counts() == {"stored": 3, "missing": 0, "failed": 0, "skipped": 0}
    sources = Archive(tmp_path / "a.zarr").manifest().source.tolist()
    assert sources[1].endswith("/201609281450_fmi.caf\\xe9.composite.lowest_FIN_SUOMI1.pgm.gz")
    again = ingest_files(tmp_path / "share", tmp_path / "a.zarr", workers=1, progress=False)
    assert again.counts()["skipped"] == 3


def test_a_folder_named_like_a_radar_file_is_no_input(shared_data, tmp_path, tiny_grid):
    # sorted first among real FMI frames, in a folder and through a glob
    (tmp_path / "fmi" / "000000000000_decoy.pgm.gz").mkdir(parents=True)
    _fmi_frames(shared_data, tmp_path / "fmi", 2)
    for inputs in (tmp_path / "fmi", str(tmp_path / "fmi" / "*.pgm.gz")):
        target = tmp_path / f"fmi-{len(str(inputs))}.zarr"
        report = ingest_files(inputs, target, workers=1, progress=False)
        assert report.counts() == {"stored": 2, "missing": 0, "failed": 0, "skipped": 0}
    # and in the NOAA layout, where the folder takes the first hour's file name
    (tmp_path / "noaa" / path_for_valid_time(_hour(0))).mkdir(parents=True)
    _write_layout(tmp_path / "noaa", tiny_grid, [1, 2])
    report = ingest_files(tmp_path / "noaa", tmp_path / "hrrr.zarr", workers=1, progress=False)
    assert report.counts() == {"stored": 2, "missing": 0, "failed": 0, "skipped": 0}


def test_a_first_file_with_a_nan_grid_is_recorded_failed_and_the_next_gives_the_grid(
    shared_data, tmp_path
):
    def nan_pixels(i: int, pgm: bytes) -> bytes:
        if i:
            return pgm
        line = next(x for x in pgm.split(b"\n") if x.startswith(b"# metersperpixel_x "))
        return pgm.replace(line, b"# metersperpixel_x nan")

    _fmi_frames(shared_data, tmp_path / "fmi", edit=nan_pixels)
    report = ingest_files(tmp_path / "fmi", tmp_path / "a.zarr", workers=1, progress=False)
    assert report.counts() == {"stored": 2, "missing": 0, "failed": 1, "skipped": 0}
    (bad,) = report.problems()
    assert bad["time"].startswith("2016-09-28T14:45") and "metersperpixel_x nan" in bad["reason"]
    archive = Archive(tmp_path / "a.zarr")
    assert archive.grid.nx == 760 and archive.grid.dx == pytest.approx(999.674053)
