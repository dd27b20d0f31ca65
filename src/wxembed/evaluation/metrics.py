"""Verification scores of a reconstructed or forecast radar field against the truth, in dBZ.

Every score is *accumulated*: :class:`Verification` keeps only running sums (the pySTEPS
``det_cat_fct_init/accum/compute`` and ``fss_init/accum/compute`` pattern), so a year of hourly
images can be scored one hour or one batch at a time, and partial results from parallel workers
combined with :meth:`Verification.merge`.

Conventions, applied to every score:

* **No data.** A pixel where the truth *or* the forecast is NaN is excluded from every sum (the
  pySTEPS convention: only pixels where both are finite are verified). For the fractions skill
  score such pixels count as "no event" when the fractions are formed, and are left out of the
  sums; for SSIM both fields are set to the floor there, so they agree at those pixels.
* **The no-echo floor.** Both fields are clipped below at ``floor_dbz`` (default 0 dBZ) before
  scoring: ``max(dBZ, floor)``. Clear-air and no-echo values (-32 dBZ in the archive, -10 dBZ in
  clear air) are all "nothing", and without a floor their differences would dominate MSE and MAE
  over the few per cent of pixels with weather. ``floor_dbz=None`` scores the raw values.
* **Events.** A pixel is an event at threshold ``T`` when ``dBZ >= T``.
* **Undefined scores are NaN.** POD = hits / (hits + misses) is NaN when the truth has no events;
  FAR = false alarms / (hits + false alarms) is NaN when the forecast has none; CSI =
  hits / (hits + misses + false alarms) is NaN when neither has any (an all-dry case is neither
  a perfect nor a failed forecast of rain); frequency bias = (hits + false alarms) /
  (hits + misses) is NaN when the truth has no events; FSS is NaN when neither field has an event
  anywhere in the scored hours. ``compute()`` returns these as ``float('nan')``; files written
  by wxembed hold them as ``null``.

Scores:

* ``mse``, ``rmse``, ``mae`` over all scored pixels of all hours (dBZ², dBZ, dBZ).
* ``hits_T``, ``misses_T``, ``false_alarms_T``, ``correct_negatives_T``, ``pod_T``, ``far_T``,
  ``csi_T``, ``bias_T`` for each threshold ``T`` (default 20, 35, 45 dBZ).
* ``fss_T_Wkm``: the fractions skill score (Roberts & Lean 2008) at ``fss_threshold`` for each
  window ``W`` in km. The window in pixels is ``round(W / cell_km)``, made odd (one added when
  even) and at least 1. Fractions are :func:`scipy.ndimage.uniform_filter` means of the event
  indicator with ``mode="constant"`` (zero outside the image). Over all hours,
  ``FSS = 1 - sum((Pf - Po)^2) / sum(Pf^2 + Po^2)``, as Roberts & Lean accumulate it (not a mean
  of per-hour FSS).
* ``ssim``: :func:`skimage.metrics.structural_similarity` of the floored fields, averaged over
  hours. ``ssim_data_range`` is a fixed dynamic range (default 60 dBZ, i.e. 0..60 dBZ above the
  floor) so that the score of an hour does not depend on how intense its strongest storm is;
  ``None`` uses each hour's ``max - floor`` of both fields instead. Images smaller than 3 x 3
  pixels get no SSIM; the window is 7 pixels or the largest odd size that fits.
* ``n_hours`` (images scored), ``n_pixels`` (pixels scored, summed over hours).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter
from skimage.metrics import structural_similarity

_COUNTS = ("hits", "misses", "false_alarms", "correct_negatives")


def _fmt(value: float) -> str:
    return f"{value:g}"


def window_pixels(window_km: float, cell_km: float) -> int:
    """A window of ``window_km`` as an odd number of pixels of ``cell_km``, at least 1."""
    if cell_km <= 0:
        raise ValueError(f"cell_km must be positive, got {cell_km}")
    n = max(1, int(round(window_km / cell_km)))
    return n if n % 2 else n + 1


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


class Verification:
    """Accumulated verification scores; see the module docstring for definitions.

    >>> v = Verification(cell_km=grid.cell_size_km)           # doctest: +SKIP
    >>> for t in hours: v.accumulate(truth(t), forecast(t))   # doctest: +SKIP
    >>> v.compute()["csi_35"]                                 # doctest: +SKIP
    """

    def __init__(
        self,
        thresholds: Sequence[float] = (20.0, 35.0, 45.0),
        fss_threshold: float = 35.0,
        fss_windows_km: Sequence[float] = (3.0, 9.0, 27.0, 81.0),
        cell_km: float = 3.0,
        floor_dbz: float | None = 0.0,
        ssim_data_range: float | None = 60.0,
        ssim: bool = True,
    ) -> None:
        self.thresholds = tuple(float(t) for t in thresholds)
        self.fss_threshold = float(fss_threshold)
        self.fss_windows_km = tuple(float(w) for w in fss_windows_km)
        self.cell_km = float(cell_km)
        self.floor_dbz = None if floor_dbz is None else float(floor_dbz)
        self.ssim_data_range = None if ssim_data_range is None else float(ssim_data_range)
        self.with_ssim = bool(ssim)
        if self.ssim_data_range is not None and self.ssim_data_range <= 0:
            raise ValueError(f"ssim_data_range must be positive, got {ssim_data_range}")
        self.fss_window_px = {w: window_pixels(w, self.cell_km) for w in self.fss_windows_km}
        # running sums
        self.n_hours = 0
        self.n_pixels = 0
        self.sum_sq = 0.0
        self.sum_abs = 0.0
        self.counts = {t: dict.fromkeys(_COUNTS, 0) for t in self.thresholds}
        self.fss_num = dict.fromkeys(self.fss_windows_km, 0.0)
        self.fss_den = dict.fromkeys(self.fss_windows_km, 0.0)
        self.ssim_sum = 0.0
        self.n_ssim = 0

    # ---- configuration -----------------------------------------------------------------------
    def _config(self) -> tuple:
        return (
            self.thresholds,
            self.fss_threshold,
            self.fss_windows_km,
            self.cell_km,
            self.floor_dbz,
            self.ssim_data_range,
            self.with_ssim,
        )

    def _floored(self, dbz: np.ndarray) -> np.ndarray:
        return dbz if self.floor_dbz is None else np.maximum(dbz, self.floor_dbz)

    # ---- accumulation ------------------------------------------------------------------------
    def accumulate(self, truth: np.ndarray, forecast: np.ndarray) -> Verification:
        """Add one image ``(ny, nx)`` or a batch ``(n, ny, nx)`` of hours (dBZ, NaN = no data)."""
        truth = np.asarray(truth, dtype=np.float64)
        forecast = np.asarray(forecast, dtype=np.float64)
        if truth.shape != forecast.shape:
            raise ValueError(f"truth {truth.shape} and forecast {forecast.shape} differ in shape")
        if truth.ndim == 2:
            truth, forecast = truth[None], forecast[None]
        if truth.ndim != 3:
            raise ValueError(f"expected (ny, nx) or (n, ny, nx) fields, got shape {truth.shape}")
        for obs, fct in zip(truth, forecast, strict=True):
            self._accumulate_hour(obs, fct)
        return self

    def _accumulate_hour(self, obs: np.ndarray, fct: np.ndarray) -> None:
        valid = np.isfinite(obs) & np.isfinite(fct)
        floor = 0.0 if self.floor_dbz is None else self.floor_dbz
        obs = np.where(valid, self._floored(obs), floor)
        fct = np.where(valid, self._floored(fct), floor)
        self.n_hours += 1
        self.n_pixels += int(valid.sum())

        diff = (fct - obs)[valid]
        self.sum_sq += float(np.dot(diff, diff))
        self.sum_abs += float(np.abs(diff).sum())

        for t in self.thresholds:
            o = (obs >= t) & valid
            f = (fct >= t) & valid
            c = self.counts[t]
            c["hits"] += int(np.count_nonzero(o & f))
            c["misses"] += int(np.count_nonzero(o & ~f))
            c["false_alarms"] += int(np.count_nonzero(~o & f))
            c["correct_negatives"] += int(np.count_nonzero(~o & ~f & valid))

        o_ev = ((obs >= self.fss_threshold) & valid).astype(np.float64)
        f_ev = ((fct >= self.fss_threshold) & valid).astype(np.float64)
        for w, n in self.fss_window_px.items():
            po = uniform_filter(o_ev, size=n, mode="constant", cval=0.0)[valid]
            pf = uniform_filter(f_ev, size=n, mode="constant", cval=0.0)[valid]
            self.fss_num[w] += float(np.sum((pf - po) ** 2))
            self.fss_den[w] += float(np.sum(pf**2) + np.sum(po**2))

        score = self._ssim(obs, fct, floor) if self.with_ssim else None
        if score is not None:
            self.ssim_sum += score
            self.n_ssim += 1

    def _ssim(self, obs: np.ndarray, fct: np.ndarray, floor: float) -> float | None:
        side = min(obs.shape)
        if side < 3:
            return None
        win = min(7, side if side % 2 else side - 1)
        if self.ssim_data_range is not None:
            data_range = self.ssim_data_range
        else:
            data_range = float(max(obs.max(), fct.max()) - floor)
            if data_range <= 0:  # both fields are the floor everywhere: identical
                return 1.0
        return float(structural_similarity(obs, fct, data_range=data_range, win_size=win))

    def merge(self, other: Verification) -> Verification:
        """Add another accumulator's sums to this one (same configuration); returns ``self``."""
        if self._config() != other._config():
            raise ValueError(
                f"cannot merge verifications configured differently: "
                f"{self._config()} vs {other._config()}"
            )
        self.n_hours += other.n_hours
        self.n_pixels += other.n_pixels
        self.sum_sq += other.sum_sq
        self.sum_abs += other.sum_abs
        for t in self.thresholds:
            for k in _COUNTS:
                self.counts[t][k] += other.counts[t][k]
        for w in self.fss_windows_km:
            self.fss_num[w] += other.fss_num[w]
            self.fss_den[w] += other.fss_den[w]
        self.ssim_sum += other.ssim_sum
        self.n_ssim += other.n_ssim
        return self

    # ---- results -----------------------------------------------------------------------------
    def compute(self) -> dict[str, float | int]:
        """The scores so far as a flat dict of Python numbers (NaN where undefined)."""
        mse = _ratio(self.sum_sq, self.n_pixels)
        out: dict[str, float | int] = {
            "n_hours": self.n_hours,
            "n_pixels": self.n_pixels,
            "mse": mse,
            "rmse": float(np.sqrt(mse)),
            "mae": _ratio(self.sum_abs, self.n_pixels),
        }
        for t in self.thresholds:
            c = self.counts[t]
            h, m, fa = c["hits"], c["misses"], c["false_alarms"]
            tag = _fmt(t)
            for k in _COUNTS:
                out[f"{k}_{tag}"] = c[k]
            out[f"pod_{tag}"] = _ratio(h, h + m)
            out[f"far_{tag}"] = _ratio(fa, h + fa)
            out[f"csi_{tag}"] = _ratio(h, h + m + fa)
            out[f"bias_{tag}"] = _ratio(h + fa, h + m)
        for w in self.fss_windows_km:
            den = self.fss_den[w]
            fss = 1.0 - self.fss_num[w] / den if den else float("nan")
            out[f"fss_{_fmt(self.fss_threshold)}_{_fmt(w)}km"] = fss
        out["ssim"] = _ratio(self.ssim_sum, self.n_ssim)
        return out


def strict_json(obj, indent: int | None = 2) -> str:
    """JSON text of ``obj`` with undefined scores (NaN, infinities) written as ``null``, which
    strict JSON readers accept (they refuse Python's bare ``NaN``); other objects as ``str``."""

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        if isinstance(v, np.generic):
            return clean(v.item())
        return v

    return json.dumps(clean(obj), indent=indent, default=str)


def score(truth: np.ndarray, forecast: np.ndarray, **kwargs) -> dict[str, float | int]:
    """Score ``forecast`` against ``truth`` in one go; keyword arguments go to
    :class:`Verification`."""
    return Verification(**kwargs).accumulate(truth, forecast).compute()


# ---- which way is better: the one table ------------------------------------------------------
@dataclass(frozen=True)
class ScoreKind:
    """How to read one family of scores."""

    prefix: str
    """The score's name, or the start of it for a family (``csi_`` covers ``csi_35``)."""
    label: str
    """How a table heads it; ``{}`` is replaced by the threshold or window."""
    better: str
    """"lower", "higher", or "one" (frequency bias: closest to 1 is best)."""


SCORE_KINDS = (
    ScoreKind("mse", "MSE (dBZ²)", "lower"),
    ScoreKind("rmse", "RMSE (dBZ)", "lower"),
    ScoreKind("mae", "MAE (dBZ)", "lower"),
    ScoreKind("csi_", "CSI ≥{} dBZ", "higher"),
    ScoreKind("pod_", "POD ≥{} dBZ", "higher"),
    ScoreKind("far_", "FAR ≥{} dBZ", "lower"),
    ScoreKind("bias_", "frequency bias ≥{} dBZ", "one"),
    ScoreKind("fss_", "FSS {}", "higher"),
    ScoreKind("ssim", "SSIM", "higher"),
    ScoreKind("recall_at_10", "search recall@10", "higher"),
    ScoreKind("analog_fss", "analog FSS 35 dBZ, 27 km", "higher"),
)
"""Every score a table shows or a comparison ranks; counts (``hits_35``, ``n_hours``) are not
scores and are absent."""

HEADLINE_SCORES = ("mse", "mae", "csi_20", "csi_35", "csi_45", "fss_35_27km", "ssim")
"""The scores a one-line summary shows."""


def score_kind(name: str) -> ScoreKind | None:
    """The :class:`ScoreKind` of a score's name, or None for a count or an unknown name."""
    for kind in SCORE_KINDS:
        if name == kind.prefix or (kind.prefix.endswith("_") and name.startswith(kind.prefix)):
            return kind
    return None


def score_label(name: str) -> str:
    """A score's table heading: ``csi_35`` -> "CSI ≥35 dBZ", ``fss_35_27km`` ->
    "FSS 35 dBZ, 27 km"."""
    kind = score_kind(name)
    if kind is None:
        return name
    rest = name[len(kind.prefix) :]
    if kind.prefix == "fss_":
        threshold, _, window = rest.partition("_")
        rest = f"{threshold} dBZ, {window.removesuffix('km')} km"
    return kind.label.format(rest) if "{}" in kind.label else kind.label


def _goodness(name: str, value: float) -> float | None:
    kind = score_kind(name)
    if kind is None:
        return None
    if kind.better == "lower":
        return -value
    if kind.better == "one":
        return -abs(value - 1.0)
    return value


def compare_scores(
    a: Mapping[str, float], b: Mapping[str, float], names: Sequence[str] | None = None
) -> dict[str, str]:
    """For each score both hold (or each of ``names``): "a" or "b" (the better one), "tie", or
    "undefined" where either is NaN or missing a value. Counts are left out."""
    out: dict[str, str] = {}
    for name in names if names is not None else [n for n in a if n in b]:
        if name not in a or name not in b or score_kind(name) is None:
            continue
        x, y = a[name], b[name]
        if x is None or y is None or math.isnan(float(x)) or math.isnan(float(y)):
            out[name] = "undefined"
            continue
        gx, gy = _goodness(name, float(x)), _goodness(name, float(y))
        out[name] = "a" if gx > gy else "b" if gy > gx else "tie"
    return out


def beats(scores: Mapping[str, Mapping[str, float]], a: str, b: str) -> dict[str, bool | None]:
    """Per score, whether ``scores[a]`` is better than ``scores[b]`` (None where undefined)."""
    return {
        name: None if who == "undefined" else who == "a"
        for name, who in compare_scores(scores[a], scores[b]).items()
    }
