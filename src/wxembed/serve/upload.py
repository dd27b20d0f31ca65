"""An uploaded query file, checked before anything decodes it: its size, its kind by its first
bytes (GRIB2, or a NumPy ``.npy`` array) and, for an array, the shape and type its header
declares. Each refusal is a :class:`~wxembed.errors.ServeError` with its HTTP status."""

from __future__ import annotations

import io

import numpy as np

from wxembed.errors import ServeError

GRIB2, NPY = "grib2", "npy"


def upload_too_large(size: int | None, limit: int) -> str:
    got = "" if size is None else f"{size / 2**20:.1f} MB, "
    return f"the upload is too large ({got}at most {limit / 2**20:.1f} MB)"


def upload_kind(body: bytes, limit: int) -> str:
    """:data:`GRIB2` or :data:`NPY`, from the body's size and first bytes."""
    if not body:
        raise ServeError("empty upload: send a GRIB2 file or a .npy array as the body")
    if len(body) > limit:
        raise ServeError(upload_too_large(len(body), limit), 413)
    if body[:4] == b"GRIB":
        if len(body) < 16 or body[7] != 2:  # octet 8 of section 0: the edition
            raise ServeError("the upload is GRIB but not GRIB2 (edition 2)", 415)
        return GRIB2
    if body[:6] == b"\x93NUMPY":
        return NPY
    raise ServeError(
        f"the upload is neither GRIB2 nor a .npy array (it starts with {body[:8]!r})", 415
    )


def npy_header(body: bytes) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and type a ``.npy`` body declares (its data not read)."""
    try:
        fh = io.BytesIO(body)
        version = np.lib.format.read_magic(fh)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(fh)
    except (ValueError, SyntaxError, TypeError) as exc:
        raise ServeError(f"the .npy upload has a damaged header ({exc})") from None
    if dtype.kind not in "fiu" or dtype.hasobject:
        raise ServeError(f"the .npy upload holds {dtype}, not numbers")
    return tuple(shape), dtype


def is_vector(shape: tuple[int, ...]) -> bool:
    """An embedding's shape: ``(d,)`` or ``(1, d)``."""
    return len(shape) == 1 or (len(shape) == 2 and shape[0] == 1)


__all__ = ["GRIB2", "NPY", "is_vector", "npy_header", "upload_kind", "upload_too_large"]
