"""What value: reflectivity as the archive stores it, in dBZ, and on the network's scale.

Three scales, one place that defines them:

- **archive code** (uint8): ``dBZ = code * 0.5 - 32``; code 255 = no data (outside coverage).
  Storable dBZ run from -32 (also "no echo") to :data:`STORABLE_MAX_DBZ` (95).
- **dBZ** (float32): NaN = no data.
- **network scale** (float32 in [0, 1]): dBZ clipped to 0..:data:`NETWORK_MAX_DBZ` (60) and
  divided by it; no echo and no data both become 0. The autoencoders, the PCA and climatology
  baselines and every decoded field use it, so a decoded field spans 0..60 dBZ.
"""

from __future__ import annotations

import numpy as np

SCALE_FACTOR = 0.5
"""dBZ per archive code step."""
ADD_OFFSET = -32.0
"""dBZ of code 0; also the value stored for 'no echo' and for missing points inside a field."""
NODATA = 255
"""Archive code for 'no data' (outside radar coverage); decodes to NaN."""
STORABLE_MAX_DBZ = ADD_OFFSET + SCALE_FACTOR * (NODATA - 1)  # 95.0
"""The largest dBZ the archive can store (code 254); larger values are clipped to it."""
NETWORK_MAX_DBZ = 60.0
"""dBZ that maps to 1.0 on the network's scale; the top of every decoded field."""


def encode_dbz(dbz: np.ndarray) -> np.ndarray:
    """dBZ (float, NaN = no data) to the archive's uint8 code, rounding to 0.5 dBZ and clipping."""
    dbz = np.asarray(dbz, dtype=np.float32)
    raw = np.rint((np.clip(dbz, ADD_OFFSET, STORABLE_MAX_DBZ) - ADD_OFFSET) / SCALE_FACTOR)
    raw = np.where(np.isnan(dbz), NODATA, raw)
    return raw.astype(np.uint8)


def decode_raw(raw: np.ndarray) -> np.ndarray:
    """The archive's uint8 code back to dBZ (float32, NaN = no data)."""
    raw = np.asarray(raw)
    dbz = raw.astype(np.float32) * SCALE_FACTOR + ADD_OFFSET
    dbz[raw == NODATA] = np.nan
    return dbz


def dbz_to_unit(dbz: np.ndarray) -> np.ndarray:
    """dBZ (NaN = no data) to the network scale: NaN -> 0 dBZ, clip to 0..60, / 60 (float32)."""
    dbz = np.nan_to_num(np.asarray(dbz, dtype=np.float32), nan=0.0)
    return np.clip(dbz, 0.0, NETWORK_MAX_DBZ) / np.float32(NETWORK_MAX_DBZ)


def unit_to_dbz(x):
    """The network scale back to dBZ (0..60 for values in [0, 1]); numpy arrays or tensors."""
    return x * NETWORK_MAX_DBZ


def code_to_unit_table() -> np.ndarray:
    """(256,) float32: the network-scale value of every archive code (255, no data, -> 0), so
    that a batch of codes is normalised by one lookup (on any device)."""
    codes = np.arange(256, dtype=np.uint8)
    return dbz_to_unit(decode_raw(codes))


__all__ = [
    "ADD_OFFSET",
    "NETWORK_MAX_DBZ",
    "NODATA",
    "SCALE_FACTOR",
    "STORABLE_MAX_DBZ",
    "code_to_unit_table",
    "dbz_to_unit",
    "decode_raw",
    "encode_dbz",
    "unit_to_dbz",
]
