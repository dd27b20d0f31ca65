"""FMI composite reader against the 80 real PGM frames in ../shared/data/fmi."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyproj
import pytest

from wxembed.errors import SourceError
from wxembed.sources.fmi import fmi_files, read_fmi

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FMI_DIR = DATA / "fmi"
FIRST = FMI_DIR / "20160928" / "201609281445_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"

pytestmark = pytest.mark.skipif(
    not FIRST.is_file(), reason=f"reference FMI frames absent: {FMI_DIR}"
)

HEADER_BOTTOMLEFT = (18.6, 57.93)  # lon, lat: outer corner of the lower-left pixel
HEADER_TOPRIGHT = (34.903, 69.005)  # lon, lat: outer corner of the upper-right pixel


@pytest.fixture(scope="module")
def frame():
    return read_fmi(FIRST)


def _corner_error_m(grid, x: float, y: float, lonlat: tuple[float, float]) -> float:
    crs = grid.pyproj_crs
    lon, lat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True).transform(x, y)
    return pyproj.Geod(ellps="WGS84").inv(lon, lat, *lonlat)[2]


# ---- files and time ------------------------------------------------------------------------


def test_fmi_files_finds_all_80_frames_in_time_order():
    files = fmi_files(FMI_DIR)
    assert len(files) == 80
    times = [read_fmi(f).time for f in (files[0], files[39], files[40], files[-1])]
    assert times == sorted(times)
    assert files[0].name.startswith("201609281445")
    assert files[-1].name.startswith("201705091400")


def test_fmi_files_of_a_missing_folder_raises_source_error(tmp_path):
    with pytest.raises(SourceError, match="nowhere"):
        fmi_files(tmp_path / "nowhere")


def test_valid_time_is_the_header_obstime(frame):
    assert frame.time == np.datetime64("2016-09-28T14:45:00", "s")
    assert frame.time.dtype == np.dtype("datetime64[s]")


# ---- grid ----------------------------------------------------------------------------------


def test_grid_is_1226_rows_by_760_columns_at_1_km_north_up(frame):
    g = frame.grid
    assert g.shape == (1226, 760) == frame.dbz.shape
    assert g.dx == pytest.approx(999.674053)
    assert g.dy == pytest.approx(-999.62859)
    assert g.cell_size_km == pytest.approx(1.0, abs=0.01)
    lat, _ = g.latlon()
    assert lat[0, 380] > lat[-1, 380]  # row 0 is the north


def test_grid_outer_corners_agree_with_header_within_1_km(frame):
    g = frame.grid
    left, right = g.x0 - g.dx / 2, g.x[-1] + g.dx / 2
    top, bottom = g.y0 - g.dy / 2, g.y[-1] + g.dy / 2
    assert _corner_error_m(g, left, bottom, HEADER_BOTTOMLEFT) < 1000.0
    assert _corner_error_m(g, right, top, HEADER_TOPRIGHT) < 1000.0
    # in fact to within centimetres, on FMI's 6371288 m sphere
    assert _corner_error_m(g, right, top, HEADER_TOPRIGHT) < 0.1


def test_consecutive_frames_are_on_the_same_grid():
    files = fmi_files(FMI_DIR)
    grids = [read_fmi(f).grid for f in files[:3] + files[-2:]]
    assert all(grids[0].same_as(g) for g in grids[1:])


# ---- values --------------------------------------------------------------------------------


def test_raw_255_is_nan_and_raw_0_is_no_echo(frame):
    raw = np.frombuffer(gzip.decompress(FIRST.read_bytes())[-760 * 1226 :], np.uint8)
    raw = raw.reshape(1226, 760)
    dbz = frame.dbz
    assert dbz.dtype == np.float32
    assert np.array_equal(np.isnan(dbz), raw == 255)
    assert np.isnan(dbz).mean() == pytest.approx(0.2435, abs=0.001)  # outside coverage
    assert np.all(dbz[raw == 0] == -32.0)
    echo = raw[(raw != 0) & (raw != 255)]
    assert np.allclose(dbz[(raw != 0) & (raw != 255)], echo * 0.5 - 32.0)
    assert frame.missing_values == 0


def test_no_data_mask_is_the_same_in_every_frame(frame):
    files = fmi_files(FMI_DIR)
    for f in (files[20], files[-1]):
        assert np.array_equal(np.isnan(read_fmi(f).dbz), np.isnan(frame.dbz))


def test_plain_pgm_reads_like_the_gzipped_one(tmp_path, frame):
    path = tmp_path / "frame.pgm"
    path.write_bytes(gzip.decompress(FIRST.read_bytes()))
    plain = read_fmi(path)
    assert plain.time == frame.time and plain.grid.same_as(frame.grid)
    assert np.array_equal(plain.dbz, frame.dbz, equal_nan=True)


# ---- errors --------------------------------------------------------------------------------


def test_missing_file_raises_source_error_naming_it(tmp_path):
    with pytest.raises(SourceError, match="nope.pgm.gz"):
        read_fmi(tmp_path / "nope.pgm.gz")


def test_gzip_cut_short_raises_source_error(tmp_path):
    path = tmp_path / "cut.pgm.gz"
    path.write_bytes(FIRST.read_bytes()[:20_000])
    with pytest.raises(SourceError, match="cut.pgm.gz"):
        read_fmi(path)


def test_pgm_with_fewer_bytes_than_width_times_height_raises_source_error(tmp_path):
    path = tmp_path / "short.pgm"
    path.write_bytes(gzip.decompress(FIRST.read_bytes())[:500_000])
    with pytest.raises(SourceError, match="truncated PGM"):
        read_fmi(path)


def test_pgm_cut_inside_its_header_raises_source_error(tmp_path):
    path = tmp_path / "header.pgm"
    path.write_bytes(gzip.decompress(FIRST.read_bytes())[:300])
    with pytest.raises(SourceError, match="header.pgm"):
        read_fmi(path)


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_file_that_is_not_pgm_raises_source_error(tmp_path, gzipped):
    text = b"this is not a PGM image\n"
    path = tmp_path / ("text.pgm.gz" if gzipped else "text.pgm")
    path.write_bytes(gzip.compress(text) if gzipped else text)
    with pytest.raises(SourceError, match="not a binary PGM"):
        read_fmi(path)


def test_header_without_obstime_raises_source_error(tmp_path):
    data = gzip.decompress(FIRST.read_bytes()).replace(b"# obstime", b"# observed")
    path = tmp_path / "notime.pgm"
    path.write_bytes(data)
    with pytest.raises(SourceError, match="obstime"):
        read_fmi(path)


@pytest.mark.parametrize(
    "field, value",
    [
        ("metersperpixel_x", "nan"),
        ("metersperpixel_y", "-999.6"),
        ("bottomleft", "18.6 inf"),
        ("truelatitude", "600"),
    ],
)
def test_a_header_of_impossible_numbers_raises_source_error_naming_it(tmp_path, field, value):
    data = gzip.decompress(FIRST.read_bytes())
    line = next(x for x in data.split(b"\n") if x.startswith(f"# {field} ".encode()))
    path = tmp_path / "odd.pgm"
    path.write_bytes(data.replace(line, f"# {field} {value}".encode()))
    with pytest.raises(SourceError, match=rf"odd.pgm: .*(metersperpixel|{field}|latitude)"):
        read_fmi(path)


def test_a_file_that_expands_to_a_gibibyte_is_read_no_further_than_its_image(tmp_path, frame):
    import time
    import tracemalloc
    import zlib

    # the real frame, then 1 GiB of zeros: 16 gzip members of 64 MiB each, about 1 MB on disk
    zeros = gzip.compress(bytes(64 << 20), compresslevel=9)
    path = tmp_path / "bomb.pgm.gz"
    path.write_bytes(FIRST.read_bytes() + zeros * 16)
    assert path.stat().st_size < 3_000_000
    assert len(zlib.decompressobj(wbits=31).decompress(zeros)) == 64 << 20
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        field = read_fmi(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 5.0
    assert peak < 64 << 20, f"reading the image took {peak / 2**20:.0f} MiB"
    assert np.array_equal(field.dbz, frame.dbz, equal_nan=True)


def test_a_header_declaring_a_gigapixel_image_is_refused_unread(tmp_path):
    data = gzip.decompress(FIRST.read_bytes()).replace(b"\n760 1226\n", b"\n40000 40000\n", 1)
    path = tmp_path / "huge.pgm"
    path.write_bytes(data)
    with pytest.raises(SourceError, match="40000 x 40000 pixels, more than"):
        read_fmi(path)
