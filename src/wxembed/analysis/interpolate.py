"""Interpolation in embedding space: decode a mix of two hours' embeddings and score it.

:func:`interpolate_hours` (one pair: two archive hours, or field files) and
:func:`interpolation_skill` (every pair of an archive ``gap`` apart: ``"2h"``, or ``"10min"``
for frames minutes apart) decode ``(1 - weight) z(start) + weight z(end)`` and score it, with
:mod:`wxembed.evaluation.metrics`, against the real hour between them, beside the plain pixel
average of the two hours and the autoencoder's own reconstruction of the real hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wxembed.analysis.codec import as_archive, field_on_grid
from wxembed.archive import Archive
from wxembed.errors import ArchiveError, WxembedError
from wxembed.evaluation.metrics import HEADLINE_SCORES, Verification, compare_scores
from wxembed.grid import Grid
from wxembed.model.encoder import EmbeddingModel, load_embedding_model
from wxembed.reflectivity import decode_raw, encode_dbz
from wxembed.sources import DecodedField
from wxembed.times import format_duration, format_time, from_seconds, parse_duration, to_seconds


def _winners(scores: dict[str, dict]) -> dict[str, str]:
    """Which of the two interpolations is better, score by score."""
    named = {
        "a": "embedding_midpoint",
        "b": "pixel_average",
        "tie": "tie",
        "undefined": "undefined",
    }
    return {
        k: named[v]
        for k, v in compare_scores(
            scores["embedding_midpoint"], scores["pixel_average"], HEADLINE_SCORES
        ).items()
    }


def _middle_time(start, end, weight: float) -> tuple[np.datetime64, np.datetime64, np.datetime64]:
    if not 0.0 <= weight <= 1.0:
        raise WxembedError(f"weight must be in 0..1 (a convex combination), got {weight}")
    t0, t1 = int(to_seconds(start)[0]), int(to_seconds(end)[0])
    if t1 <= t0:
        raise WxembedError(
            f"end {format_time(from_seconds(t1))} must be after start "
            f"{format_time(from_seconds(t0))}"
        )
    tm = t0 + weight * (t1 - t0)
    if tm != int(tm):
        raise WxembedError(f"the hour at weight {weight} between the two is not a whole second")
    return tuple(from_seconds([t0, int(tm), t1]))  # type: ignore[return-value]


def _endpoint(value, model: EmbeddingModel) -> tuple[object, np.ndarray | None]:
    """An end of a pair: a time (read from the archive later), or a field file or
    :class:`DecodedField` as ``(its valid time, its uint8 codes on the model's grid)``."""
    if not isinstance(value, DecodedField) and not (
        isinstance(value, str | Path) and Path(value).is_file()
    ):
        return value, None
    what = f"the grid of model {model.model_id}"
    field = field_on_grid(value, model.grid, what=what)
    if field.time is None or np.isnat(field.time):
        raise WxembedError(f"{field.source}: the field has no valid time to interpolate at")
    return field.time, encode_dbz(field.dbz)


def _check_stored(a: Archive, times: Sequence[np.datetime64], stored: np.ndarray) -> None:
    s = to_seconds(stored)
    have = set(s.tolist())
    for t in times:
        x = int(to_seconds(t)[0])
        if x not in have:
            i = int(np.searchsorted(s, x))
            near = [format_time(from_seconds(s[j])) for j in (i - 1, i) if 0 <= j < len(s)]
            raise ArchiveError(
                f"{a.path}: {format_time(t)} is not stored; nearest stored: "
                f"{' and '.join(near) or 'none'}"
            )


def _verifications(grid: Grid):
    return {
        name: Verification(cell_km=grid.cell_size_km)
        for name in ("embedding_midpoint", "pixel_average", "reconstruction")
    }


def _score_triplet(model: EmbeddingModel, raw: np.ndarray, weight: float, acc: dict) -> np.ndarray:
    """Accumulate the three forecasts of each ``(start, middle, end)`` triplet ``raw``
    ``(n, 3, ny, nx)``; return the decoded midpoints ``(n, ny, nx)``."""
    n = raw.shape[0]
    z = model.encode_raw(raw.reshape(n * 3, *raw.shape[2:])).reshape(n, 3, -1)  # (n, 3, d)
    z_mid = (1.0 - weight) * z[:, 0] + weight * z[:, 2]  # (n, d)
    decoded = model.decode(np.concatenate([z_mid, z[:, 1]]))  # (2n, ny, nx)
    dbz = decode_raw(raw)  # (n, 3, ny, nx), NaN = no data
    truth = dbz[:, 1]
    pixel = (1.0 - weight) * dbz[:, 0] + weight * dbz[:, 2]  # plain average of the dBZ values
    acc["embedding_midpoint"].accumulate(truth, decoded[:n])
    acc["pixel_average"].accumulate(truth, pixel)
    acc["reconstruction"].accumulate(truth, decoded[n:])
    return decoded[:n]


def _mse(truth: np.ndarray, forecast: np.ndarray, floor: float = 0.0) -> float:
    """MSE of one hour as :mod:`wxembed.evaluation.metrics` defines it (both floored, NaN
    pixels left out),
    without the scores that cost more (SSIM, FSS)."""
    valid = np.isfinite(truth) & np.isfinite(forecast)
    diff = np.maximum(forecast[valid], floor) - np.maximum(truth[valid], floor)
    return float(np.mean(diff.astype(np.float64) ** 2)) if diff.size else float("nan")


def interpolate_hours(
    archive: str | Path | Archive,
    checkpoint: str | Path,
    start,
    end,
    *,
    weight: float = 0.5,
    keep_fields: bool = False,
) -> dict:
    """Decode ``(1 - weight) * z(start) + weight * z(end)`` and score it against the real hour
    at that point between them, next to the plain pixel average of the two hours' dBZ and the
    autoencoder's own reconstruction of the real hour (its ceiling).

    ``start`` and ``end`` are times of stored hours, or field files of any kind wxembed reads
    (or :class:`DecodedField`) on the model's grid or the one it was cut and coarsened from,
    at their own valid times; the real hour between them always comes from ``archive``.

    Returns ``{"start", "end", "truth_time", "weight", "model_id", "scores":
    {"embedding_midpoint", "pixel_average", "reconstruction"}, "winner": {score:
    "embedding_midpoint" | "pixel_average" | "tie" | "undefined"}}``; with ``keep_fields``, also
    ``"fields"``: the real hour, the decoded embedding mix and the pixel average (dBZ arrays, for
    :func:`wxembed.figures.plot.save_interpolation_png`).
    """
    a = as_archive(archive)
    model = load_embedding_model(checkpoint)
    model.check_grid(a)
    (start, raw0), (end, raw1) = (_endpoint(p, model) for p in (start, end))
    t0, tm, t1 = _middle_time(start, end, weight)
    from_archive = [t for t, r in ((t0, raw0), (tm, None), (t1, raw1)) if r is None]
    _check_stored(a, from_archive, a.stored_times())
    stored = iter(a.read_raw(from_archive))
    raw = np.stack([next(stored) if r is None else r for r in (raw0, None, raw1)])  # (3, ny, nx)
    acc = _verifications(model.grid)
    decoded = _score_triplet(model, raw[None], weight, acc)[0]
    scores = {name: v.compute() for name, v in acc.items()}
    report = {
        "start": format_time(t0),
        "end": format_time(t1),
        "truth_time": format_time(tm),
        "weight": weight,
        "model_id": model.model_id,
        "scores": scores,
        "winner": _winners(scores),
    }
    if keep_fields:
        dbz = decode_raw(raw)  # (3, ny, nx)
        report["fields"] = {
            "truth": dbz[1],
            "embedding_midpoint": decoded,
            "pixel_average": (1.0 - weight) * dbz[0] + weight * dbz[2],
        }
    return report


def interpolation_skill(
    archive: str | Path | Archive,
    checkpoint: str | Path,
    *,
    gap_hours: float = 2,
    gap: str | int | None = None,
    weight: float = 0.5,
    max_pairs: int | None = None,
    batch_pairs: int = 8,
) -> dict:
    """:func:`interpolate_hours` over every pair of stored frames ``gap`` apart (a duration:
    ``"10min"``, ``"2h"``, or seconds; else ``gap_hours``) whose frame at ``weight`` between
    them is stored, scores accumulated over all of them (a few frames in memory at a time).
    Adds ``pairs``, ``gap`` and ``mse_wins`` (pairs where each method has the lower MSE)."""
    if gap is not None:
        seconds = parse_duration(gap, default_unit="s", what="gap")
    else:
        seconds = parse_duration(gap_hours, default_unit="h", what="gap_hours")
    if seconds < 1:
        raise WxembedError(f"the gap between a pair must be at least a second, got {gap!r}")
    a = as_archive(archive)
    model = load_embedding_model(checkpoint)
    model.check_grid(a)
    times = to_seconds(a.stored_times())
    stored = set(times.tolist())
    mid = int(round(weight * seconds))
    triplets = [
        (t, t + mid, t + seconds)
        for t in sorted(stored)
        if t + seconds in stored and t + mid in stored
    ]
    if max_pairs is not None:
        triplets = triplets[:max_pairs]
    if not triplets:
        step = int(np.median(np.diff(times))) if len(times) > 1 else 3600
        raise ArchiveError(
            f"{a.path}: no pairs of stored frames {format_duration(seconds)} apart with the "
            f"frame at weight {weight} between them stored ({len(times)} frames, typically "
            f"{format_duration(step)} apart); give a gap that is a multiple of that spacing, "
            f"e.g. --gap {format_duration(2 * step)}"
        )
    acc = _verifications(model.grid)
    wins = {"embedding_midpoint": 0, "pixel_average": 0, "tie": 0}
    for i in range(0, len(triplets), batch_pairs):
        chunk = triplets[i : i + batch_pairs]
        flat = from_seconds(np.asarray(chunk, dtype=np.int64).ravel())
        raw = a.read_raw(flat).reshape(len(chunk), 3, *a.grid.shape)  # (n, 3, ny, nx)
        decoded = _score_triplet(model, raw, weight, acc)
        dbz = decode_raw(raw)
        for j in range(len(chunk)):
            pixel = (1.0 - weight) * dbz[j, 0] + weight * dbz[j, 2]
            e, p = _mse(dbz[j, 1], decoded[j]), _mse(dbz[j, 1], pixel)
            wins["embedding_midpoint" if e < p else "pixel_average" if p < e else "tie"] += 1
    scores = {name: v.compute() for name, v in acc.items()}
    return {
        "pairs": len(triplets),
        "gap_hours": seconds / 3600,
        "gap": format_duration(seconds),
        "weight": weight,
        "model_id": model.model_id,
        "scores": scores,
        "winner": _winners(scores),
        "mse_wins": wins,
    }


__all__ = ["interpolate_hours", "interpolation_skill"]
