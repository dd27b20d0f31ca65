"""Which reader reads a file (by content, never by name), and ingest's --bbox / --coarsen."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from test_netcdf import write_cf_netcdf
from test_odim import V20, V24, reflectivity_copy

from wxembed.errors import GridError, MissingHour, SourceError
from wxembed.grid import Grid, coarsen_dbz
from wxembed.sources import DecodedField
from wxembed.sources.formats import (
    Reshape,
    choose_kind,
    frames,
    read_field,
    read_hrrr,
    reader_for,
    sniff,
    time_from_path,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MRMS = DATA / "mrms" / "MRMS_MergedReflectivityQCComposite_00.50_20220704-110040.grib2"
HRRR = DATA / "hrrr" / "hrrr.t00z.wrfsfcf00-HPBL.grib2"
FMI = sorted((DATA / "fmi" / "20160928").glob("*.pgm.gz"))
pytestmark = pytest.mark.skipif(not MRMS.is_file(), reason=f"reference data absent: {DATA}")


@pytest.fixture(scope="module")
def dbzh(tmp_path_factory) -> Path:
    """A reflectivity copy of the real 18:00 OPERA composite."""
    return reflectivity_copy(V20, tmp_path_factory.mktemp("fmt") / "opera_20180824180000.h5")


@pytest.fixture(scope="module")
def renamed_mrms(tmp_path_factory) -> Path:
    """The real MRMS composite under a name that says nothing (a link: no 100 MB copy)."""
    link = tmp_path_factory.mktemp("renamed") / "refl.grib2"
    link.symlink_to(MRMS)
    return link


# ---- kinds by content ----------------------------------------------------------------------------
def test_every_real_kind_is_told_by_its_bytes_and_said_what_it_is(renamed_mrms, dbzh, tmp_path):
    from wxembed.sources.fmi import read_fmi

    nc4 = write_cf_netcdf(tmp_path / "a.bin", [read_fmi(FMI[0])])
    nc3 = write_cf_netcdf(tmp_path / "b.dat", [read_fmi(FMI[0])], engine="scipy")
    np.save(tmp_path / "z.npy", np.zeros((4, 4)))
    cases = {
        renamed_mrms: ("mrms", "discipline 209 category 10 number 0"),
        HRRR: ("hrrr", "GRIB2 (first message discipline 0"),
        FMI[0]: ("fmi", "PGM image (magic P5"),
        V20: ("odim", "ODIM_H5/V2_0, object COMP"),
        V24: ("odim", "ODIM_H5/V2_4, object COMP"),
        nc4: ("netcdf", "HDF5 (NetCDF-4"),
        nc3: ("netcdf", "NetCDF-3"),
        tmp_path / "z.npy": ("npy", "NumPy"),
    }
    for path, (kind, said) in cases.items():
        found = sniff(path)
        assert found[0] == kind and said in found[1], (path, found)


def test_what_is_not_a_radar_file_is_unknown_with_the_reason(tmp_path):
    (tmp_path / "notes.grib2").write_text("minutes of the meeting\n")
    expected = "not a format wxembed reads (it starts with b'minutes ')"
    assert sniff(tmp_path / "notes.grib2") == ("unknown", expected)
    assert sniff(tmp_path / "absent.h5") == ("unknown", "no such file")
    assert sniff(tmp_path) == ("unknown", "a folder, not a file")


def test_mrms_named_like_anything_is_read_as_mrms_and_hrrr_reading_points_to_it(renamed_mrms):
    assert choose_kind([renamed_mrms]) == "mrms"
    with pytest.raises(MissingHour, match=r"no REFC message.*read it with --kind mrms"):
        read_hrrr(str(renamed_mrms))


def test_mixed_or_unreadable_inputs_are_refused_with_what_each_is(dbzh, tmp_path, caplog):
    with pytest.raises(SourceError, match=r"inputs mix kinds \(1 fmi, 1 odim\)"):
        choose_kind([FMI[0], dbzh])
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(SourceError, match=r"x.txt: not a format wxembed reads .* GRIB2, PGM"):
        choose_kind([tmp_path / "x.txt"])
    assert choose_kind([dbzh, tmp_path / "x.txt"]) == "odim"  # the text file fails on its own
    with caplog.at_level(logging.WARNING):
        assert choose_kind([dbzh], "netcdf") == "netcdf"  # --kind overrides, with a word
    assert "--kind netcdf, but" in caplog.text and "ODIM HDF5" in caplog.text
    with pytest.raises(SourceError, match="unknown input kind 'tiff'"):
        choose_kind([dbzh], "tiff")


def test_frames_are_one_per_file_or_one_per_time_of_a_netcdf_file(tmp_path):
    from wxembed.sources.fmi import read_fmi

    nc = write_cf_netcdf(tmp_path / "seq.nc", [read_fmi(p) for p in FMI[:2]])
    assert frames(nc, "netcdf") == [
        (f"{nc}#time=2016-09-28T14:45:00", "2016-09-28T14:45:00"),
        (f"{nc}#time=2016-09-28T14:50:00", "2016-09-28T14:50:00"),
    ]
    assert frames(V20, "odim") == [(str(V20), "2018-08-24T18:00:00")]
    assert time_from_path(V24) == np.datetime64("2024-11-26T01:00:00")


def test_read_field_reads_a_query_of_any_kind(dbzh, tmp_path):
    assert read_field(dbzh).grid.shape == (2200, 1900)
    assert read_field(FMI[0]).time == np.datetime64("2016-09-28T14:45:00")
    (tmp_path / "q.tif").write_bytes(b"II*\x00" + bytes(100))
    with pytest.raises(SourceError, match="a field file is GRIB2, PGM, ODIM HDF5 or NetCDF"):
        read_field(tmp_path / "q.tif")


# ---- --bbox and --coarsen ------------------------------------------------------------------------
def test_coarsening_averages_linear_z_and_leaves_mostly_uncovered_blocks_as_no_data():
    dbz = np.full((4, 4), -32.0, np.float32)
    dbz[0, 0] = 50.0  # one core among three no-echo cells
    dbz[2:, 2:] = np.nan
    dbz[2, 2] = 30.0  # one covered cell of four: under half covered
    dbz[2:, :2] = 20.0
    out = coarsen_dbz(dbz, 2)
    z = (10**5.0 + 3 * 10**-3.2) / 4
    np.testing.assert_allclose(out[0, 0], 10 * np.log10(z), atol=1e-4)  # 43.98, not 2.5 (dBZ mean)
    assert out[0, 1] == pytest.approx(-32.0) and out[1, 0] == pytest.approx(20.0)
    assert np.isnan(out[1, 1])


def test_a_box_and_a_coarsening_cut_the_opera_composite_as_the_grid_says(dbzh):
    field = reader_for("odim")(str(dbzh))
    box = (-5.0, 42.0, 20.0, 58.0)
    small = reader_for("odim", reshape=Reshape(bbox=box, coarsen=4))(str(dbzh))
    rows, cols = field.grid.window_of(box)
    assert small.grid.same_as(field.grid.subset(rows, cols).coarsen(4))
    np.testing.assert_array_equal(small.dbz, coarsen_dbz(field.dbz[rows, cols], 4))
    lat, lon = small.grid.latlon()  # every corner of the box lies inside the cut grid
    assert lon.min() < -5.0 and lon.max() > 20.0 and lat.min() < 42.0 and lat.max() > 58.0
    assert small.grid.shape == (234, 259) and small.grid.dx == 8000.0
    assert field.grid.derivation_of(small.grid) == (slice(835, 1771), slice(354, 1390), 4)
    assert Reshape(bbox=box, coarsen=4).describe() == (
        "cut to lon -5..20, lat 42..58, coarsened 4x (block mean in linear Z)"
    )


def test_a_box_off_the_grid_or_malformed_is_a_clear_error(dbzh):
    with pytest.raises(GridError, match="does not overlap grid"):
        reader_for("odim", reshape=Reshape(bbox=(-120.0, 30.0, -100.0, 40.0)))(str(dbzh))
    with pytest.raises(GridError, match="lat_min < lat_max"):
        Reshape(bbox=(0.0, 50.0, 10.0, 40.0))
    with pytest.raises(SourceError, match="--variable is for NetCDF files; these are odim"):
        reader_for("odim", variable="DBZH")


def test_a_grid_that_is_not_cut_from_another_is_not_derived_from_it():
    g = Grid("g", "EPSG:4326", nx=100, ny=50, x0=0.0, y0=0.0, dx=0.1, dy=0.1)
    assert g.derivation_of(g.subset(slice(10, 30), slice(5, 45)).coarsen(2)) is not None
    shifted = Grid("s", "EPSG:4326", nx=10, ny=10, x0=0.05, y0=0.0, dx=0.2, dy=0.2)
    assert g.derivation_of(shifted) is None  # half a fine cell off
    assert g.derivation_of(Grid("c", "EPSG:3857", nx=10, ny=10, x0=0, y0=0, dx=1, dy=1)) is None


def test_a_reshaped_field_keeps_its_time_and_source():
    g = Grid("g", "EPSG:4326", nx=8, ny=8, x0=0.0, y0=0.0, dx=1.0, dy=1.0)
    f = DecodedField(np.datetime64("2024-07-01T12:05", "s"), g, np.zeros((8, 8), np.float32), "s")
    out = Reshape(coarsen=2).apply(f)
    assert (out.time, out.source, out.dbz.shape) == (f.time, "s", (4, 4))


def test_the_readmes_python_route_into_an_archive_runs_as_written(tmp_path, monkeypatch, capsys):
    from wxembed.archive import Archive

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Any other format, from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert "'stored': 12" in capsys.readouterr().out
    archive = Archive(tmp_path / "my-radar.zarr")
    times = archive.stored_times()
    assert len(times) == 12 and np.all(np.diff(times) == np.timedelta64(300, "s"))
    assert archive.read_dbz(times[0])[110, 210] == 45.0
    lat, lon = archive.grid.latlon()
    assert 60 < lat.mean() < 75 and 15 < lon.mean() < 35  # Finland's projection, as written


# ---- durations: --exclude, --gap -----------------------------------------------------------------
@pytest.mark.parametrize(
    "text, seconds",
    [("30min", 1800), ("10 min", 600), ("2h", 7200), ("1.5h", 5400), ("1h30min", 5400)]
    + [("90s", 90), ("1d", 86400), ("2", 7200), (0.5, 1800), ("0", 0)],
)
def test_durations_read_minutes_hours_and_days_and_bare_numbers_as_hours(text, seconds):
    from wxembed.times import format_duration, parse_duration

    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    "text, message",
    [("inf", "finite"), (float("nan"), "finite"), ("-1h", "not a duration"), ("soon", "not a")]
    + [("", "expected a duration"), ("1e9h", "not a duration"), ("0.5s", "whole number")],
)
def test_a_duration_that_is_not_one_is_refused_saying_how_to_write_it(text, message):
    from wxembed.errors import WxembedError
    from wxembed.times import parse_duration

    with pytest.raises(WxembedError, match=message):
        parse_duration(text, what="--exclude")


def test_a_grid_with_a_nan_step_is_refused_before_anything_is_built_on_it():
    with pytest.raises(GridError, match="must be finite numbers"):
        Grid("fmi", "EPSG:4326", nx=10, ny=10, x0=0.0, y0=0.0, dx=float("nan"), dy=1.0)
