"""The archive's layout, array by array (see :mod:`wxembed.archive`): CF attributes, the
reflectivity cube, the slot table and manifest, the coordinates and the grid mapping."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from wxembed import __version__
from wxembed.grid import Grid
from wxembed.reflectivity import ADD_OFFSET, NODATA, SCALE_FACTOR

PENDING, STORED, MISSING, FAILED = 0, 1, 2, 3
STATUS_NAMES = ("pending", "stored", "missing", "failed")

MANIFEST_ARRAYS = (
    ("status", "uint8", PENDING, "manifest status of the hour"),
    ("reason", str, "", "why the hour is missing or failed"),
    ("missing_values", "int32", 0, "points flagged missing by the source, stored as no echo"),
    ("source", str, "", "file or URL the hour came from"),
    ("regime", str, "", "ground-truth weather regime label, where known"),
)
"""(name, dtype, fill value, long name) of the manifest's per-slot arrays."""
MANIFEST_VARS = tuple(name for name, *_ in MANIFEST_ARRAYS)


_ZSTD = (ZstdCodec(level=5),)


def global_attrs(grid: Grid, title: str, source: str) -> dict:
    """The root group's CF attributes, and the grid and version that made it."""
    created = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
    return {
        "Conventions": "CF-1.10",
        "title": title or f"Composite radar reflectivity on {grid.name}",
        "source": source,
        "institution": "made with wxembed",
        "history": f"{created} created by wxembed {__version__}",
        "wxembed_grid": grid.to_json(),
        "wxembed_version": __version__,
    }


def create_reflectivity(root: zarr.Group, grid: Grid) -> None:
    """``reflectivity (time, y, x)``: uint8 codes, one hour a chunk, no hours yet."""
    ny, nx = grid.shape
    refl = root.create_array(
        "reflectivity",
        shape=(0, ny, nx),
        chunks=(1, ny, nx),
        dtype="uint8",
        fill_value=NODATA,
        compressors=list(_ZSTD),
        dimension_names=["time", "y", "x"],
    )
    refl.attrs.update(
        {
            "long_name": "composite radar reflectivity",
            "standard_name": "equivalent_reflectivity_factor",
            "units": "dBZ",
            "scale_factor": SCALE_FACTOR,
            "add_offset": ADD_OFFSET,
            "_FillValue": NODATA,
            "grid_mapping": "crs",
            "coordinates": "lat lon",
            "comment": f"no echo and missing points are stored as {ADD_OFFSET} dBZ; "
            "no data (outside coverage) as the fill value",
        }
    )


def create_manifest(root: zarr.Group) -> None:
    """The slot table ``time`` and the manifest's arrays, all along ``time``, all empty."""
    time = root.create_array(
        "time", shape=(0,), chunks=(4096,), dtype="int64", fill_value=0, dimension_names=["time"]
    )
    time.attrs.update(
        {
            "standard_name": "time",
            "long_name": "valid time",
            "axis": "T",
            "units": "seconds since 1970-01-01",
            "calendar": "proleptic_gregorian",
        }
    )
    for name, dtype, fill, long_name in MANIFEST_ARRAYS:
        arr = root.create_array(
            name, shape=(0,), chunks=(1,), dtype=dtype, fill_value=fill, dimension_names=["time"]
        )
        attrs: dict = {"long_name": long_name}
        if name == "status":
            attrs |= {"flag_values": list(range(4)), "flag_meanings": " ".join(STATUS_NAMES)}
        arr.attrs.update(attrs)


def create_coordinates(root: zarr.Group, grid: Grid) -> None:
    """``y``, ``x``, 2-D ``lat`` and ``lon``, and the CF grid-mapping variable ``crs``."""
    for name, values in (("y", grid.y), ("x", grid.x)):
        arr = root.create_array(name, shape=values.shape, dtype="float64", dimension_names=[name])
        arr[:] = values
        arr.attrs.update(_axis_attrs(grid, name))
    lat, lon = grid.latlon()
    for name, values, units in [("lat", lat, "degrees_north"), ("lon", lon, "degrees_east")]:
        arr = root.create_array(
            name,
            shape=grid.shape,
            dtype="float32",
            compressors=list(_ZSTD),
            dimension_names=["y", "x"],
        )
        arr[:] = values.astype(np.float32)
        arr.attrs.update(
            {"units": units, "standard_name": "latitude" if name == "lat" else "longitude"}
        )
    crs = root.create_array("crs", shape=(), dtype="int32", fill_value=0, dimension_names=[])
    crs.attrs.update(grid.cf_grid_mapping())


def _axis_attrs(grid: Grid, axis: str) -> dict:
    if grid.is_geographic:
        if axis == "x":
            return {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}
        return {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}
    return {"standard_name": f"projection_{axis}_coordinate", "units": "m", "axis": axis.upper()}


__all__ = [
    "MANIFEST_ARRAYS",
    "MANIFEST_VARS",
    "STATUS_NAMES",
    "create_coordinates",
    "create_manifest",
    "create_reflectivity",
    "global_attrs",
]
