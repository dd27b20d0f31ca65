"""One exception type per failure family.

Each message names the file, hour or value at fault and what was expected; the CLI prints the
message on one line and exits non-zero, without a traceback.
"""

from __future__ import annotations


class WxembedError(Exception):
    """Base class of every error wxembed raises on purpose."""


class GridError(WxembedError):
    """A grid is malformed, or two grids that must agree do not."""


class SourceError(WxembedError):
    """An input file (GRIB2, PGM, ...) is missing, unreadable or lacks what was asked for."""


class MissingHour(SourceError):
    """The hour does not exist upstream (no file, or no REFC message in it)."""


class ArchiveError(WxembedError):
    """The Zarr archive is missing, malformed, or cannot take what was written to it."""
