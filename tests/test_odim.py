"""ODIM HDF5 reader against the real OPERA composites in ../shared/data/odim.

The three real files hold rain rate, not reflectivity: they are refused as such, and the
reflectivity cases are copies of them edited with h5py (quantity, gain/offset, flags, values),
whose values are checked against h5py's own reading of the raster.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pyproj
import pytest

from wxembed.errors import MissingHour, SourceError
from wxembed.sources.odim import read_odim

ODIM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "odim"
V20 = ODIM / "T_PAAH21_C_EUOC_20180824180000.hdf"  # H5rad 2.0
V24 = ODIM / "T_PAAH22_C_EUOC_20241126010000.hdf"  # H5rad 2.4
needs_odim = pytest.mark.skipif(not V20.is_file(), reason=f"reference ODIM files absent: {ODIM}")
pytestmark = needs_odim


def _what_with_quantity(f: h5py.File) -> h5py.Group:
    """The ``what`` group holding dataset1's quantity (dataset-level in 2.0, data-level in 2.4)."""
    inner = f.get("dataset1/data1/what")
    return inner if inner is not None and "quantity" in inner.attrs else f["dataset1/what"]


def reflectivity_copy(
    src: Path,
    dst: Path,
    *,
    quantity: str = "DBZH",
    gain: float = 0.5,
    offset: float = -32.0,
    nodata: int = 255,
    undetect: int = 0,
) -> Path:
    """A copy of a real OPERA rain-rate composite turned into a reflectivity one: the rate is
    converted with Marshall-Palmer (Z = 200 R^1.6) and coded as uint8 with ``gain``/``offset``;
    the file's nodata and undetect pixels keep their meaning under the new flag values."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        what = _what_with_quantity(f)
        rate = f["dataset1/data1/data"][...]
        outside = rate == what.attrs["nodata"]
        dry = (rate == what.attrs["undetect"]) | (rate <= 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            dbz = 10 * np.log10(200 * np.where(dry | outside, 1.0, rate) ** 1.6)
        raw = np.clip(np.rint((dbz - offset) / gain), 1, 254).astype(np.uint8)
        raw[dry] = undetect
        raw[outside] = nodata
        del f["dataset1/data1/data"]
        f.create_dataset("dataset1/data1/data", data=raw, compression="gzip", chunks=True)
        what.attrs.update(
            {
                "quantity": np.bytes_(quantity),
                "gain": gain,
                "offset": offset,
                "nodata": float(nodata),
                "undetect": float(undetect),
            }
        )
    return dst


def _expected_dbz(path: Path) -> np.ndarray:
    """dBZ from h5py's own reading of the edited raster: raw * gain + offset, flags applied."""
    with h5py.File(path, "r") as f:
        what = _what_with_quantity(f)
        raw = f["dataset1/data1/data"][...].astype(np.float64)
        dbz = (raw * what.attrs["gain"] + what.attrs["offset"]).astype(np.float32)
        dbz[raw == what.attrs["undetect"]] = -32.0
        dbz[raw == what.attrs["nodata"]] = np.nan
    return dbz


@pytest.fixture(scope="module")
def refl20(tmp_path_factory) -> Path:
    return reflectivity_copy(V20, tmp_path_factory.mktemp("odim") / "dbzh20.h5")


def _edit(path: Path, fn) -> Path:
    with h5py.File(path, "r+") as f:
        fn(f)
    return path


# ---- the real files ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [V20, V24], ids=["h5rad-2.0", "h5rad-2.4"])
def test_a_real_rain_rate_composite_is_missing_with_the_quantity_named(path):
    with pytest.raises(MissingHour, match=r"holds RATE \(rain rate, mm/h\).*not reflectivity"):
        read_odim(path)


# ---- reflectivity copies: values, grid and time -------------------------------------------------
@pytest.mark.parametrize("src", [V20, V24], ids=["h5rad-2.0", "h5rad-2.4"])
def test_values_are_gain_and_offset_applied_with_nodata_as_nan_and_undetect_as_no_echo(
    src, tmp_path
):
    path = reflectivity_copy(src, tmp_path / "dbzh.h5")
    field = read_odim(path)
    expected = _expected_dbz(path)
    np.testing.assert_array_equal(field.dbz, expected)  # NaN where expected is NaN
    assert field.dbz.dtype == np.float32
    covered = ~np.isnan(field.dbz)
    assert 0.2 < covered.mean() < 0.95  # Europe's radars, not the Atlantic
    assert (field.dbz[covered] == -32.0).mean() > 0.5  # mostly no echo
    assert np.nanmax(field.dbz) > 40.0  # convective cores in late August / a November front


def test_grid_is_the_opera_laea_grid_with_its_corners_where_the_file_says(refl20):
    field = read_odim(refl20)
    g = field.grid
    assert g.shape == (2200, 1900) and g.dx == 2000.0 and g.dy == -2000.0
    with h5py.File(refl20, "r") as f:
        where = f["where"].attrs
        corners = {c: (where[f"{c}_lon"], where[f"{c}_lat"]) for c in ("LL", "UL", "UR", "LR")}
    to_xy = pyproj.Transformer.from_crs(g.pyproj_crs.geodetic_crs, g.pyproj_crs, always_xy=True)
    ul_x, ul_y = to_xy.transform(*corners["UL"])
    assert g.x0 == pytest.approx(ul_x + 1000.0, abs=0.01)  # centre of the top-left cell
    assert g.y0 == pytest.approx(ul_y - 1000.0, abs=0.01)
    lr_x, lr_y = to_xy.transform(*corners["LR"])
    assert g.x[-1] == pytest.approx(lr_x - 1000.0, abs=0.01)
    assert g.y[-1] == pytest.approx(lr_y + 1000.0, abs=0.01)
    lon, lat = to_xy.transform(g.x[950], g.y[1100], direction="INVERSE")
    assert 54.0 < lat < 56.0 and 9.0 < lon < 11.0  # the projection's centre, 55N 10E, mid-grid


def test_valid_time_is_the_nominal_time_in_what(refl20):
    assert read_odim(refl20).time == np.datetime64("2018-08-24T18:00:00", "s")


def test_a_reflectivity_dataset_is_found_after_a_rain_rate_one(tmp_path):
    path = reflectivity_copy(V20, tmp_path / "two.h5")

    def swap(f):  # dataset1 RATE-like, dataset2 the reflectivity
        f.move("dataset1", "dataset9")
        f.move("dataset2", "dataset1")
        f["dataset1/what"].attrs["quantity"] = np.bytes_("RATE")
        f.move("dataset9", "dataset2")

    _edit(path, swap)
    with h5py.File(path, "r") as f:
        raw = f["dataset2/data1/data"][...]
    field = read_odim(path)
    assert np.array_equal(np.isnan(field.dbz), raw == 255)


# ---- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [4096, 600_000], ids=["in-superblock", "in-raster"])
def test_a_truncated_file_is_a_source_error_naming_it(refl20, tmp_path, keep):
    path = tmp_path / "cut.h5"
    path.write_bytes(refl20.read_bytes()[:keep])
    with pytest.raises(SourceError, match="cut.h5"):
        read_odim(path)


@pytest.mark.parametrize(
    "group, attr, message",
    [
        ("where", "projdef", "lacks the attribute projdef"),
        ("where", "xsize", "lacks the attribute xsize"),
        ("where", "LL_lat", "lacks the attribute LL_lat"),
        ("what", "date", "lacks the attribute date"),
        ("dataset1/what", "quantity", "lacks the attribute quantity"),
    ],
)
def test_a_missing_attribute_is_a_source_error_naming_it(refl20, tmp_path, group, attr, message):
    path = _edit(
        shutil.copyfile(refl20, tmp_path / "bad.h5"), lambda f: f[group].attrs.__delitem__(attr)
    )
    with pytest.raises(SourceError, match=message):
        read_odim(path)


@pytest.mark.parametrize(
    "attr, value, message",
    [
        ("xscale", 2100.0, r"corner UR .* lies \d+ m from where"),
        ("ysize", 2300, r"corner UL .* lies 200000 m from where"),
        ("UR_lon", 57.0, r"corner UR .* lies \d+ m from where"),
        ("xsize", 200_000, r"is over 100,000,000"),
        ("projdef", np.bytes_("+proj=nonsense"), "is not a projection"),
    ],
    ids=["scale-vs-corners", "size-vs-corners", "corner", "huge", "projdef"],
)
def test_a_grid_that_lies_about_its_size_is_refused(refl20, tmp_path, attr, value, message):
    path = _edit(
        shutil.copyfile(refl20, tmp_path / "lying.h5"),
        lambda f: f["where"].attrs.__setitem__(attr, value),
    )
    with pytest.raises(SourceError, match=message):
        read_odim(path)


def test_a_raster_of_another_size_than_where_says_is_refused(refl20, tmp_path):
    def crop(f):
        raw = f["dataset1/data1/data"][:, :-1]
        del f["dataset1/data1/data"]
        f["dataset1/data1/data"] = raw

    path = _edit(shutil.copyfile(refl20, tmp_path / "cropped.h5"), crop)
    with pytest.raises(SourceError, match="data is 2200 x 1899, but where says .* 2200 x 1900"):
        read_odim(path)


def test_a_single_site_image_reads_like_a_composite(refl20, tmp_path):
    path = _edit(
        shutil.copyfile(refl20, tmp_path / "image.h5"),
        lambda f: f["what"].attrs.__setitem__("object", np.bytes_("IMAGE")),
    )
    image = read_odim(path)
    assert image.grid.name == "odim-image"
    np.testing.assert_array_equal(image.dbz, _expected_dbz(refl20))


def test_a_polar_volume_is_refused_as_not_cartesian(refl20, tmp_path):
    path = _edit(
        shutil.copyfile(refl20, tmp_path / "pvol.h5"),
        lambda f: f["what"].attrs.__setitem__("object", np.bytes_("PVOL")),
    )
    with pytest.raises(SourceError, match="object PVOL is not on a Cartesian grid"):
        read_odim(path)


def test_a_file_that_is_not_hdf5_is_a_source_error(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("not an HDF5 file\n" * 100)
    with pytest.raises(SourceError, match="cannot read as an ODIM HDF5 file"):
        read_odim(path)
    with pytest.raises(SourceError, match="no such ODIM HDF5 file"):
        read_odim(tmp_path / "absent.h5")
