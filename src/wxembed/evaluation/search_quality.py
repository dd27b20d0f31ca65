"""Search quality: does a code find the hours that really look like the query?

For each query hour, the *true* neighbours are the ``k`` candidate hours nearest to it in pixel
space (dBZ floored at 0, no data as 0, squared differences summed over the grid). A method (the
autoencoder, PCA) ranks the same candidates by Euclidean distance in its own code space. Two
scores, averaged over the queries:

- ``recall_at_10``: the share of the method's 10 nearest that are among the 10 true nearest;
- ``analog_fss``: the fractions skill score at 35 dBZ over a 27 km window between the query and
  the method's first analog (the single nearest in code space), as a forecaster would use an
  analog; NaN pairs (no 35 dBZ echo in either field) are left out of the mean.

Beside them, the ceiling (``analog_fss`` of the pixel-space nearest hour) and chance (a random
candidate hour, fixed seed). :func:`pixel_distances` streams the candidate fields in batches:
the query fields and one batch are in memory at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from wxembed.evaluation.metrics import Verification

K = 10
"""Neighbours compared by ``recall_at_10``."""


def _floored(fields: np.ndarray) -> np.ndarray:
    """(n, ny, nx) dBZ -> (n, ny*nx) float32, NaN and below-0 dBZ as 0."""
    x = np.nan_to_num(np.asarray(fields, dtype=np.float32), nan=0.0)
    return np.maximum(x, 0.0).reshape(len(x), -1)


def pixel_distances(queries: np.ndarray, candidate_batches: Iterable[np.ndarray]) -> np.ndarray:
    """Squared pixel-space distances ``(n_queries, n_candidates)`` between dBZ fields (floored
    at 0), with the candidates given in batches of ``(b, ny, nx)``."""
    q = _floored(queries).astype(np.float64)  # (m, p)
    q_sq = np.einsum("ij,ij->i", q, q)
    out = []
    for batch in candidate_batches:
        c = _floored(batch).astype(np.float64)  # (b, p)
        d = q_sq[:, None] + np.einsum("ij,ij->i", c, c)[None, :] - 2.0 * (q @ c.T)
        out.append(np.maximum(d, 0.0))
    return np.concatenate(out, axis=1) if out else np.zeros((len(q), 0))


def code_distances(query_codes: np.ndarray, candidate_codes: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``(n_queries, n_candidates)`` in a code space."""
    q = np.asarray(query_codes, dtype=np.float64)
    c = np.asarray(candidate_codes, dtype=np.float64)
    d = (q * q).sum(1)[:, None] + (c * c).sum(1)[None, :] - 2.0 * (q @ c.T)
    return np.maximum(d, 0.0)


def _nearest(d: np.ndarray, k: int) -> np.ndarray:
    """(m, k) column indices of the ``k`` smallest of each row, nearest first (ties by index)."""
    k = min(k, d.shape[1])
    idx = np.argsort(d, axis=1, kind="stable")
    return idx[:, :k]


def recall_at_k(true_nearest: np.ndarray, found: np.ndarray) -> float:
    """Mean share of each row of ``found`` that is in the same row of ``true_nearest``."""
    pairs = zip(true_nearest, found, strict=True)
    hits = [len(set(t.tolist()) & set(f.tolist())) / len(t) for t, f in pairs]
    return float(np.mean(hits)) if hits else float("nan")


def analog_fss(queries: np.ndarray, analogs: np.ndarray, cell_km: float) -> float:
    """Mean over pairs of the FSS at 35 dBZ over 27 km between each query and its analog (pairs
    with no 35 dBZ echo in either field are undefined and left out)."""
    values = []
    for q, a in zip(queries, analogs, strict=True):
        v = Verification(thresholds=(), fss_windows_km=(27.0,), cell_km=cell_km, ssim=False)
        values.append(v.accumulate(q, a).compute()["fss_35_27km"])
    values = [x for x in values if not np.isnan(x)]
    return float(np.mean(values)) if values else float("nan")


def search_quality(
    query_fields: np.ndarray,
    pixel: np.ndarray,
    read_candidates: Callable[[np.ndarray], np.ndarray],
    query_codes: Mapping[str, np.ndarray],
    candidate_codes: Mapping[str, np.ndarray],
    *,
    cell_km: float,
    k: int = K,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``{method: {"recall_at_10", "analog_fss"}}`` for each code in ``query_codes`` (with
    ``candidate_codes`` of the same method), plus ``"pixel_nearest"`` (the ceiling) and
    ``"random"`` (chance) with their ``analog_fss``.

    ``pixel`` is :func:`pixel_distances` of the queries to the candidates ``(m, n)`` (the same
    for every code); ``read_candidates(indices)`` returns the fields of some candidates (the
    analogs).
    """
    truth = _nearest(pixel, k)
    out: dict[str, dict[str, float]] = {}
    for name, codes in query_codes.items():
        found = _nearest(code_distances(codes, candidate_codes[name]), k)
        analogs = read_candidates(found[:, 0])
        out[name] = {
            "recall_at_10": recall_at_k(truth, found),
            "analog_fss": analog_fss(query_fields, analogs, cell_km),
        }
    out["pixel_nearest"] = {
        "recall_at_10": 1.0,
        "analog_fss": analog_fss(query_fields, read_candidates(truth[:, 0]), cell_km),
    }
    rng = np.random.default_rng(seed)
    random_pick = rng.integers(0, pixel.shape[1], size=len(query_fields))
    out["random"] = {
        "recall_at_10": recall_at_k(truth, rng.integers(0, pixel.shape[1], size=truth.shape)),
        "analog_fss": analog_fss(query_fields, read_candidates(random_pick), cell_km),
    }
    return out


__all__ = ["K", "analog_fss", "code_distances", "pixel_distances", "recall_at_k", "search_quality"]
