"""The NOAA HRRR archive layout: ``hrrr.YYYYMMDD/conus/hrrr.tHHz.wrfsfcfFF.grib2``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

LAYOUT = "hrrr.{date:%Y%m%d}/conus/hrrr.t{date:%H}z.wrfsfcf{fxx:02d}.grib2"
"""Path of one file below the archive root, from the model run (``date``) and forecast hour."""

_PATH_RE = re.compile(r"hrrr\.(\d{8})/conus/hrrr\.t(\d{2})z\.wrfsfcf(\d{2})\.grib2$")


def relative_path(run_time, fxx: int = 0) -> str:
    """Where the file of a model run and forecast hour lies below the archive root."""
    t = np.datetime64(run_time, "h").astype(object)
    return LAYOUT.format(date=t, fxx=fxx)


def path_for_valid_time(valid_time, fxx: int = 0) -> str:
    """The file whose forecast hour ``fxx`` is valid at ``valid_time``."""
    run = np.datetime64(valid_time, "h") - np.timedelta64(fxx, "h")
    return relative_path(run, fxx)


def valid_time_from_path(path: str | Path) -> np.datetime64 | None:
    """Valid time of a file laid out as in the NOAA archive, or None if the path is not."""
    m = _PATH_RE.search(Path(path).as_posix())
    if not m:
        return None
    day, hour, fxx = m.groups()
    run = np.datetime64(f"{day[:4]}-{day[4:6]}-{day[6:]}T{hour}:00:00", "s")
    return run + np.timedelta64(int(fxx), "h")


def find_layout_files(root: str | Path, fxx: int | None = 0) -> list[Path]:
    """Files below ``root`` laid out as in the NOAA archive (forecast hour ``fxx``; None = all)."""
    pattern = (
        "hrrr.*/conus/hrrr.t*z.wrfsfcf*.grib2"
        if fxx is None
        else f"hrrr.*/conus/hrrr.t*z.wrfsfcf{fxx:02d}.grib2"
    )
    return sorted(p for p in Path(root).glob(pattern) if valid_time_from_path(p) is not None)
