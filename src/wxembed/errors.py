"""Every exception wxembed raises on purpose: one family per failure.

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


class TransientFetchError(SourceError):
    """A download failure worth trying again (5xx, 429, timeout, dropped connection, short
    body); ``retry_after`` is the server's Retry-After in seconds, when it sent one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ArchiveError(WxembedError):
    """The Zarr archive is missing, malformed, or cannot take what was written to it."""


class ModelError(WxembedError):
    """A network's hyperparameters do not fit the grid, or make no sense on their own."""


class CheckpointError(WxembedError):
    """A checkpoint is missing, corrupt, unsafe, or does not fit the data it is used with."""


class EmbeddingError(WxembedError):
    """An embedding (file, array or vector) is malformed, or does not fit the model or index."""


class EmbeddingIndexError(WxembedError):
    """An index is missing, malformed or empty, or does not hold what a query asks for."""


class ServeError(WxembedError):
    """The explorer (``wxembed serve``) cannot start on what it was given, or a request asks for
    something it does not serve; ``status`` is the HTTP status the request gets (4xx)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


__all__ = [
    "ArchiveError",
    "CheckpointError",
    "EmbeddingError",
    "EmbeddingIndexError",
    "GridError",
    "MissingHour",
    "ModelError",
    "ServeError",
    "SourceError",
    "TransientFetchError",
    "WxembedError",
]
