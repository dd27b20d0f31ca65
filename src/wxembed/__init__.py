"""wxembed: learned representations of weather-radar archives.

The public API is re-exported here; importing wxembed has no side effects.
"""

from __future__ import annotations

__version__ = "0.1.0"

from wxembed.archive import Archive, decode_raw, encode_dbz  # noqa: E402
from wxembed.errors import ArchiveError, GridError, SourceError, WxembedError  # noqa: E402
from wxembed.grid import HRRR_CONUS, Grid  # noqa: E402
from wxembed.sources import DecodedField  # noqa: E402

__all__ = [
    "HRRR_CONUS",
    "Archive",
    "ArchiveError",
    "DecodedField",
    "Grid",
    "GridError",
    "SourceError",
    "WxembedError",
    "decode_raw",
    "encode_dbz",
]
