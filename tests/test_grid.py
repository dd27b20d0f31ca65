from __future__ import annotations

import numpy as np
import pytest

from wxembed.errors import GridError
from wxembed.grid import HRRR_CONUS, Grid, coarsen_field


def _corners(a):
    return np.array([a[0, 0], a[0, -1], a[-1, 0], a[-1, -1]])


def test_hrrr_grid_corners_match_the_real_hrrr_files(shared_data):
    import eccodes

    for path in sorted((shared_data / "hrrr").glob("*.grib2")):
        with open(path, "rb") as fh:
            h = eccodes.codes_grib_new_from_file(fh)
            ny, nx = eccodes.codes_get(h, "Ny"), eccodes.codes_get(h, "Nx")
            lat = eccodes.codes_get_array(h, "latitudes").reshape(ny, nx)
            lon = eccodes.codes_get_array(h, "longitudes").reshape(ny, nx)
            eccodes.codes_release(h)
        glat, glon = HRRR_CONUS.latlon()
        assert HRRR_CONUS.shape == (ny, nx) == (1059, 1799)
        np.testing.assert_allclose(_corners(glat), _corners(lat), atol=1e-4)
        lon180 = (lon + 180) % 360 - 180
        np.testing.assert_allclose(_corners(glon), _corners(lon180), atol=1e-4)


def test_hrrr_grid_is_3km_lambert_on_a_sphere():
    cf = HRRR_CONUS.pyproj_crs.to_cf()
    assert cf["grid_mapping_name"] == "lambert_conformal_conic"
    assert cf["semi_major_axis"] == cf["semi_minor_axis"] == 6371229.0
    assert cf["longitude_of_central_meridian"] == 262.5
    assert HRRR_CONUS.cell_size == (3000.0, 3000.0)
    assert HRRR_CONUS.cell_size_km == pytest.approx(3.0)


def test_coarsened_grid_points_are_block_centres():
    coarse = HRRR_CONUS.coarsen(4)
    assert coarse.shape == (1059 // 4, 1799 // 4)
    fine_x = HRRR_CONUS.x[: coarse.nx * 4].reshape(coarse.nx, 4).mean(axis=1)
    np.testing.assert_allclose(coarse.x, fine_x)
    field = np.arange(8 * 12, dtype=float).reshape(8, 12)
    assert coarsen_field(field, 4)[0, 0] == field[:4, :4].mean()


def test_grid_round_trips_through_json_and_compares_by_geometry_not_name():
    g = Grid.from_json(HRRR_CONUS.to_json())
    assert g.same_as(HRRR_CONUS)
    renamed = Grid(**{**HRRR_CONUS.to_dict(), "name": "other"})
    assert renamed.same_as(HRRR_CONUS)
    shifted = Grid(**{**HRRR_CONUS.to_dict(), "x0": HRRR_CONUS.x0 + 3000})
    assert not shifted.same_as(HRRR_CONUS)
    with pytest.raises(GridError, match="expected 'hrrr-conus'"):
        HRRR_CONUS.check_same(shifted)


def test_malformed_grid_is_refused_with_its_name():
    with pytest.raises(GridError, match="bad"):
        Grid(name="bad", crs="EPSG:4326", nx=0, ny=3, x0=0, y0=0, dx=1, dy=1)
    with pytest.raises(GridError, match="not a grid description"):
        Grid.from_dict({"name": "x"})
