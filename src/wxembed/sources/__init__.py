"""Readers and writers for each kind of radar input.

Every reader turns one file into a :class:`DecodedField`: the valid time, the grid the field lies
on, and reflectivity in dBZ (float32, NaN where the source has no data at all, e.g. outside radar
coverage). The archive and everything after it only ever see DecodedFields.

    grib       GRIB2 REFC: decode it, encode it as NCEP does
    hrrr       the NOAA HRRR archive: file layout, mirrors, ``.idx`` inventories
    http       one hour of the public HRRR archive, fetched by HTTP byte range
    mrms       MRMS reflectivity composites (GRIB2 on a lat/lon grid)
    fmi        FMI composites of Finland (PGM)
    odim       ODIM HDF5 composites and images (OPERA, national radar services)
    netcdf     CF NetCDF reflectivity (NetCDF-3 or -4), one or many times a file
    formats    which reader reads a file: kinds by content, the reader registry, and the
               cutting and coarsening ingest applies (--bbox, --coarsen)
    synthetic  seeded synthetic storms on any grid
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wxembed.grid import Grid


@dataclass
class DecodedField:
    """One radar image, decoded."""

    time: np.datetime64
    """Valid time (UTC), as ``datetime64[s]``."""
    grid: Grid
    """The grid the field lies on."""
    dbz: np.ndarray
    """Reflectivity in dBZ, float32, shape ``grid.shape``; NaN = no data (outside coverage)."""
    source: str = ""
    """Where it came from: a path or URL, for provenance."""
    missing_values: int = 0
    """Points the source flagged as missing inside its coverage; already replaced by no echo."""
    labels: dict[str, str] = field(default_factory=dict)
    """Ground-truth labels of the hour (the synthetic generator's ``regime``)."""
