"""The NOAA HRRR archive layout: ``hrrr.YYYYMMDD/conus/hrrr.tHHz.wrfsfcfFF.grib2``.

Also the public copies of that archive as data (:data:`MIRRORS`, URL templates tried in a
configurable order) and its ``.idx`` inventories: :func:`parse_idx` and :func:`message_range`
find one message's byte range for an HTTP Range request; :func:`write_idx` writes the sidecar of
a GRIB2 file the way NCEP does, for test and demo archives.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wxembed.errors import MissingHour, SourceError
from wxembed.sources.grib import load_eccodes

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
    found = Path(root).glob(pattern)  # files only: a folder named like one is no input
    return sorted(p for p in found if valid_time_from_path(p) is not None and p.is_file())


# ---- the public archive: mirrors, URLs and .idx sidecars ----------------------------------------
@dataclass(frozen=True)
class Mirror:
    """One public copy of the NOAA HRRR archive, as a URL template."""

    name: str
    """Short name, as ``wxembed fetch --mirror NAME`` takes it."""
    base_url: str
    """Root URL the NOAA layout lies below (no trailing slash)."""
    template: str = "{base}/" + LAYOUT
    """URL of one GRIB2 file from ``base``, the model run (``date``) and the forecast hour."""
    note: str = ""
    """What this mirror holds (its period, its limits)."""

    def url(self, run_time, fxx: int = 0) -> str:
        """URL of the GRIB2 file of a model run and forecast hour on this mirror."""
        return grib_url(self.base_url, run_time, fxx, template=self.template)


MIRRORS: dict[str, Mirror] = {
    m.name: m
    for m in (
        Mirror(
            "aws",
            "https://noaa-hrrr-bdp-pds.s3.amazonaws.com",
            note="NOAA Open Data Dissemination on AWS, 2014-07-30 to now",
        ),
        Mirror(
            "google",
            "https://storage.googleapis.com/high-resolution-rapid-refresh",
            note="Google Cloud public dataset, 2014-07-30 to now",
        ),
        Mirror(
            "azure",
            "https://noaahrrr.blob.core.windows.net/hrrr",
            note="Microsoft Planetary Computer / Azure open datasets",
        ),
        Mirror(
            "nomads",
            "https://nomads.ncep.noaa.gov/pub/data/nccf/com/hrrr/prod",
            note="NCEP NOMADS: the last day or two only; rate-limited",
        ),
    )
}
"""The public mirrors of the NOAA HRRR archive, by name. None needs credentials."""

DEFAULT_MIRRORS: tuple[str, ...] = ("aws", "google", "azure", "nomads")
"""The order mirrors are tried in by default: the cloud buckets first, NOMADS (recent days) last."""

IDX_SUFFIX = ".idx"
"""The inventory sidecar of each GRIB2 file: ``<file>.grib2.idx``."""


def grib_url(base_url: str, run_time, fxx: int = 0, *, template: str = "{base}/" + LAYOUT) -> str:
    """URL of the GRIB2 file of a model run and forecast hour below ``base_url``."""
    t = np.datetime64(run_time, "h").astype(object)
    return template.format(base=base_url.rstrip("/"), date=t, fxx=fxx)


def idx_url(grib_url_: str) -> str:
    """URL (or path) of a GRIB2 file's ``.idx`` sidecar."""
    return grib_url_ + IDX_SUFFIX


def resolve_mirror(name_or_url: str) -> Mirror:
    """A mirror by name (:data:`MIRRORS`), or any base URL (a local mirror, a test server)."""
    if name_or_url in MIRRORS:
        return MIRRORS[name_or_url]
    if "://" in name_or_url:
        return Mirror(name_or_url, name_or_url.rstrip("/"))
    raise SourceError(
        f"unknown mirror {name_or_url!r}: expected one of {', '.join(MIRRORS)} or a base URL "
        "(http://... or https://...)"
    )


@dataclass(frozen=True)
class IdxEntry:
    """One line of a ``.idx`` inventory, e.g.
    ``71:45712332:d=2019010100:REFC:entire atmosphere:anl:``."""

    number: str
    """Message number, ``"71"``; ``"12.1"`` for a field inside a message holding several."""
    offset: int
    """Byte offset of the message in the GRIB2 file."""
    date: str
    """Reference time, ``YYYYMMDDHH`` (without the ``d=``)."""
    variable: str
    """wgrib2 name of the parameter, ``"REFC"``."""
    level: str
    """Level, ``"entire atmosphere"``, ``"2 m above ground"``..."""
    forecast: str
    """``"anl"``, ``"1 hour fcst"``, ``"0-1 hour acc fcst"``..."""
    extra: str = ""
    """Anything after the forecast field (ensemble or probability details), usually empty."""


def parse_idx(text: str, *, source: str = ".idx") -> list[IdxEntry]:
    """The lines of a ``.idx`` inventory; :class:`SourceError` on anything that is not one."""
    entries = []
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines(): \x85 is no line end
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        parts = line.split(":")
        if len(parts) < 6 or not parts[2].startswith("d="):
            raise SourceError(f"{source}: line {n} is not a GRIB2 inventory line: {line[:120]!r}")
        if not (parts[1].isascii() and parts[1].isdigit()):  # int() would take -5, 1_0, ٣
            raise SourceError(f"{source}: line {n} has no byte offset: {line[:120]!r}")
        offset = int(parts[1])
        extra = ":".join(parts[6:]).rstrip(":")
        entries.append(IdxEntry(parts[0], offset, parts[2][2:], *parts[3:6], extra))
    if not entries:
        raise SourceError(f"{source}: empty inventory")
    return entries


def message_range(
    entries: list[IdxEntry],
    variable: str = "REFC",
    level: str | None = "entire atmosphere",
    *,
    source: str = ".idx",
) -> tuple[int, int | None]:
    """Byte range ``(first, last)`` of the message holding ``variable`` (and ``level``).

    ``last`` is the next message's offset minus one (inclusive, as in an HTTP Range), or None
    when the message is the file's last (it runs to the end of the file). Raises
    :class:`MissingHour` when the inventory lists no such message, naming what it does list.
    """
    match = next(
        (e for e in entries if e.variable == variable and (level is None or e.level == level)),
        None,
    )
    if match is None:
        held = sorted({f"{e.variable}:{e.level}" for e in entries})
        shown = ", ".join(held[:12]) + (f" and {len(held) - 12} more" if len(held) > 12 else "")
        what = f"{variable}:{level}" if level else variable
        raise MissingHour(
            f"{source}: no {what} message in the index of {len(entries)} messages ({shown})"
        )
    later = [e.offset for e in entries if e.offset > match.offset]
    return match.offset, (min(later) - 1 if later else None)


# wgrib2's names of (discipline, category, number), for the fields HRRR files commonly hold
WGRIB2_NAMES: dict[tuple[int, int, int], str] = {
    (0, 0, 0): "TMP",
    (0, 0, 6): "DPT",
    (0, 1, 1): "RH",
    (0, 1, 0): "SPFH",
    (0, 1, 8): "APCP",
    (0, 2, 2): "UGRD",
    (0, 2, 3): "VGRD",
    (0, 2, 22): "GUST",
    (0, 3, 0): "PRES",
    (0, 3, 1): "PRMSL",
    (0, 3, 5): "HGT",
    (0, 3, 18): "HPBL",
    (0, 16, 195): "REFD",
    (0, 16, 196): "REFC",
    (0, 16, 197): "RETOP",
    (0, 19, 0): "VIS",
}


# wgrib2's names of the levels (GRIB2 code table 4.5) that carry no value
_NAMED_LEVELS = {
    1: "surface",
    2: "cloud base",
    3: "cloud top",
    4: "0C isotherm",
    10: "entire atmosphere",
    200: "entire atmosphere (considered as a single layer)",
    215: "cloud ceiling",
}


def _idx_level(level_type: int, value: float) -> str:
    if level_type in _NAMED_LEVELS:
        return _NAMED_LEVELS[level_type]
    if level_type == 103:
        return f"{value:g} m above ground"
    if level_type == 100:
        return f"{value / 100:g} mb"
    return f"level {level_type} {value:g}"


def idx_lines(grib_path: str | Path) -> list[str]:
    """The ``.idx`` inventory lines of a GRIB2 file, as NCEP (wgrib2 -s) writes them.

    Byte offsets come from eccodes; names follow wgrib2 (:data:`WGRIB2_NAMES`, else
    ``var{discipline}_{category}_{number}``).
    """
    ec = load_eccodes()
    lines = []
    with open(grib_path, "rb") as fh:
        n = 0
        while True:
            try:
                h = ec.codes_grib_new_from_file(fh)
            except Exception as exc:  # eccodes raises several types for damaged files
                raise SourceError(f"{grib_path}: message {n + 1} is damaged ({exc})") from None
            if h is None:
                break
            n += 1
            try:
                get = functools.partial(ec.codes_get, h, ktype=int)
                key = (get("discipline"), get("parameterCategory"), get("parameterNumber"))
                name = WGRIB2_NAMES.get(key, "var{}_{}_{}".format(*key))
                scale = get("scaleFactorOfFirstFixedSurface")
                scale = scale if 0 <= scale < 128 else 0  # 255 = missing: no scaling
                value = get("scaledValueOfFirstFixedSurface") / 10.0**scale
                level = _idx_level(get("typeOfFirstFixedSurface"), value)
                step = get("forecastTime")
                if get("productDefinitionTemplateNumber") == 8:  # "0-1 hour acc fcst"
                    forecast = f"{step}-{get('endStep')} hour acc fcst"
                else:
                    forecast = "anl" if step == 0 else f"{step} hour fcst"
                date, time = get("dataDate"), get("dataTime")
                offset = get("offset")
            finally:
                ec.codes_release(h)
            lines.append(f"{n}:{offset}:d={date:08d}{time // 100:02d}:{name}:{level}:{forecast}:")
    return lines


def write_idx(grib_path: str | Path, idx_path: str | Path | None = None) -> Path:
    """Write the ``.idx`` sidecar of a GRIB2 file (beside it by default), as NCEP does."""
    grib_path = Path(grib_path)
    out = grib_path.with_name(grib_path.name + IDX_SUFFIX) if idx_path is None else Path(idx_path)
    out.write_text("\n".join(idx_lines(grib_path)) + "\n")
    return out
