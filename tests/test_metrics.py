from __future__ import annotations

import json
import math

import numpy as np
import pytest

from wxembed.evaluation.metrics import Verification, score, window_pixels

WINDOWS = (1.0, 5.0, 21.0, 61.0)  # km; with cell_km=1 these are the window sizes in pixels


def square_storm(shape=(64, 64), top=20, left=20, size=10, dbz=50.0, background=-10.0):
    field = np.full(shape, background, dtype=np.float32)
    field[top : top + size, left : left + size] = dbz
    return field


def storm_hours(n=6, seed=0, shape=(48, 48)):
    """Random smooth storms: truth and a noisy, displaced forecast, (n, ny, nx) each."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    truth = np.stack([gaussian_filter(rng.normal(0, 1, shape), 3) for _ in range(n)])
    truth = (truth / truth.std() * 20.0 + 10.0).astype(np.float32)
    forecast = np.roll(truth, 2, axis=-1) + rng.normal(0, 3, truth.shape).astype(np.float32)
    return truth, forecast


def kw():
    return {"cell_km": 1.0, "fss_windows_km": WINDOWS}


def test_perfect_forecast_has_zero_error_and_unit_csi_fss_ssim():
    truth = square_storm()
    r = score(truth, truth.copy(), **kw())
    assert r["mse"] == 0.0 and r["mae"] == 0.0
    for t in ("20", "35", "45"):
        assert r[f"csi_{t}"] == 1.0 and r[f"pod_{t}"] == 1.0 and r[f"far_{t}"] == 0.0
        assert r[f"hits_{t}"] == 100 and r[f"bias_{t}"] == 1.0
    for w in WINDOWS:
        assert r[f"fss_35_{w:g}km"] == 1.0
    assert r["ssim"] == pytest.approx(1.0)
    assert r["n_hours"] == 1 and r["n_pixels"] == 64 * 64


def test_storm_shifted_5_pixels_gives_hand_computed_contingency_scores():
    truth = square_storm(dbz=42.0)
    forecast = np.roll(truth, 5, axis=1)
    r = score(truth, forecast, **kw())
    for t in ("20", "35"):
        assert (r[f"hits_{t}"], r[f"misses_{t}"], r[f"false_alarms_{t}"]) == (50, 50, 50)
        assert r[f"csi_{t}"] == pytest.approx(1 / 3)
        assert r[f"pod_{t}"] == 0.5 and r[f"far_{t}"] == 0.5 and r[f"bias_{t}"] == 1.0
        assert r[f"correct_negatives_{t}"] == 64 * 64 - 150
    # 42 dBZ is below 45: no events, no forecasts -> undefined, not 0 or 1
    assert math.isnan(r["csi_45"]) and math.isnan(r["pod_45"]) and math.isnan(r["far_45"])
    # floored at 0 dBZ: 100 pixels differ by 42 dBZ, the -10 clear air counts as 0
    assert r["mse"] == pytest.approx(100 * 42.0**2 / 64**2)
    assert r["mae"] == pytest.approx(100 * 42.0 / 64**2)


def test_fss_of_shifted_storm_is_half_at_one_pixel_and_rises_with_window_towards_one():
    truth = square_storm(shape=(128, 128), top=59, left=59)
    forecast = np.roll(truth, 5, axis=1)
    r = score(truth, forecast, **kw())
    fss = [r[f"fss_35_{w:g}km"] for w in WINDOWS]
    # 1 pixel: sum (f-o)^2 = 100 differing pixels, sum f^2 + o^2 = 200 -> 1 - 100/200
    assert fss[0] == pytest.approx(0.5)
    assert all(a < b for a, b in zip(fss, fss[1:], strict=False))
    assert fss[-1] > 0.95  # 61-pixel window, 12 x the shift


def test_all_dry_field_scores_zero_error_and_undefined_categorical_scores():
    truth = np.full((40, 40), -32.0, dtype=np.float32)
    forecast = np.full((40, 40), -10.0, dtype=np.float32)  # clear air vs no echo: both below floor
    r = score(truth, forecast, **kw())
    assert r["mse"] == 0.0 and r["mae"] == 0.0
    for t in ("20", "35", "45"):
        assert math.isnan(r[f"csi_{t}"]) and math.isnan(r[f"pod_{t}"])
        assert math.isnan(r[f"far_{t}"]) and math.isnan(r[f"bias_{t}"])
        assert r[f"hits_{t}"] == r[f"misses_{t}"] == r[f"false_alarms_{t}"] == 0
    assert all(math.isnan(r[f"fss_35_{w:g}km"]) for w in WINDOWS)
    assert r["ssim"] == pytest.approx(1.0)


def test_no_floor_scores_clear_air_differences():
    truth = np.full((40, 40), -32.0, dtype=np.float32)
    forecast = np.full((40, 40), -10.0, dtype=np.float32)
    assert score(truth, forecast, floor_dbz=None, **kw())["mse"] == pytest.approx(22.0**2)


def test_false_alarms_only_give_zero_csi_and_undefined_pod():
    truth = np.zeros((32, 32), dtype=np.float32)
    forecast = square_storm(shape=(32, 32), top=5, left=5, size=4, dbz=50.0)
    r = score(truth, forecast, **kw())
    assert r["csi_35"] == 0.0 and r["far_35"] == 1.0 and math.isnan(r["pod_35"])
    assert r["false_alarms_35"] == 16


def test_nan_in_truth_is_excluded_from_every_score():
    truth = square_storm()
    forecast = np.roll(truth, 5, axis=1)
    cut_truth, cut_forecast = truth.copy(), forecast.copy()
    cut_truth[:, 40:] = np.nan
    cut_forecast[:, 40:] = 99.0  # would be a huge error and false alarms if it were scored
    a = score(cut_truth, cut_forecast, **kw())
    b = score(truth[:, :40], forecast[:, :40], **kw())
    assert a["n_pixels"] == 64 * 40
    for key in ("mse", "mae", "hits_35", "misses_35", "false_alarms_35", "correct_negatives_35"):
        assert a[key] == pytest.approx(b[key])
    assert all(a[f"false_alarms_{t}"] == b[f"false_alarms_{t}"] for t in ("20", "35", "45"))
    assert a["fss_35_1km"] == pytest.approx(b["fss_35_1km"])
    assert np.isfinite(a["ssim"])


def test_accumulating_two_halves_equals_scoring_the_whole_batch():
    truth, forecast = storm_hours(n=6)
    whole = score(truth, forecast, **kw())
    v = Verification(**kw())
    v.accumulate(truth[:3], forecast[:3]).accumulate(truth[3:], forecast[3:])
    halves = v.compute()
    assert halves["n_hours"] == whole["n_hours"] == 6
    assert 0.0 < whole["csi_35"] < 1.0 and 0.0 < whole["fss_35_5km"] < 1.0
    for key, value in whole.items():
        assert halves[key] == pytest.approx(value, rel=1e-12), key


def test_hourly_images_accumulate_like_a_batch():
    truth, forecast = storm_hours(n=3, seed=1)
    v = Verification(**kw())
    for obs, fct in zip(truth, forecast, strict=True):
        v.accumulate(obs, fct)
    batch = score(truth, forecast, **kw())
    assert v.compute()["mse"] == pytest.approx(batch["mse"])
    assert v.compute()["ssim"] == pytest.approx(batch["ssim"])


def test_fss_pools_sums_over_hours_rather_than_averaging_hourly_fss():
    truth, forecast = storm_hours(n=4, seed=2)
    hourly = [Verification(**kw()).accumulate(truth[i], forecast[i]) for i in range(4)]
    pooled = 1 - sum(h.fss_num[5.0] for h in hourly) / sum(h.fss_den[5.0] for h in hourly)
    mean_of_hours = float(np.mean([h.compute()["fss_35_5km"] for h in hourly]))
    accumulated = score(truth, forecast, **kw())["fss_35_5km"]
    assert accumulated == pytest.approx(pooled, rel=1e-12)
    assert accumulated != pytest.approx(mean_of_hours, rel=1e-6)


def test_merge_equals_sequential_accumulation():
    truth, forecast = storm_hours(n=6, seed=3)
    sequential = Verification(**kw()).accumulate(truth, forecast).compute()
    a = Verification(**kw()).accumulate(truth[:2], forecast[:2])
    b = Verification(**kw()).accumulate(truth[2:], forecast[2:])
    merged = a.merge(b).compute()
    for key, value in sequential.items():
        assert merged[key] == pytest.approx(value, rel=1e-12), key


def test_merge_refuses_differently_configured_accumulators():
    with pytest.raises(ValueError, match="configured differently"):
        Verification(thresholds=(20,)).merge(Verification(thresholds=(35,)))


def test_windows_in_km_become_odd_pixel_counts_of_at_least_one():
    assert [window_pixels(w, 3.0) for w in (3, 9, 27, 81)] == [1, 3, 9, 27]
    assert window_pixels(1.0, 3.0) == 1
    assert window_pixels(12.0, 3.0) == 5  # 4 pixels, made odd
    assert Verification().fss_window_px == {3.0: 1, 9.0: 3, 27.0: 9, 81.0: 27}


def test_compute_gives_flat_json_ready_keys():
    truth, forecast = storm_hours(n=2)
    r = Verification().accumulate(truth, forecast).compute()
    for key in ("mse", "mae", "csi_35", "pod_20", "far_45", "fss_35_9km", "fss_35_81km", "ssim"):
        assert isinstance(r[key], float), key
    assert isinstance(r["n_hours"], int) and isinstance(r["hits_35"], int)
    assert json.loads(json.dumps(r))["n_hours"] == 2


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        score(np.zeros((10, 10)), np.zeros((10, 11)))


# ---- conventions checked against independent computations -------------------------------------


def _count_by_hand(truth: np.ndarray, forecast: np.ndarray, t: float) -> dict[str, int]:
    """Contingency counts pixel by pixel in plain Python, an event being ``value >= t``."""
    counts = dict.fromkeys(("hits", "misses", "false_alarms", "correct_negatives"), 0)
    for o, f in zip(truth.ravel().tolist(), forecast.ravel().tolist(), strict=True):
        key = {(True, True): "hits", (True, False): "misses", (False, True): "false_alarms"}
        counts[key.get((o >= t, f >= t), "correct_negatives")] += 1
    return counts


def test_a_value_exactly_at_a_threshold_is_an_event():
    truth = np.array([[35.0, 35.0, 34.5, 20.0, 19.5, 45.0]], dtype=np.float32)
    forecast = np.array([[35.0, 34.5, 35.0, 19.5, 20.0, 45.0]], dtype=np.float32)
    r = score(truth, forecast, **kw())
    # at 35: pixel 0 a hit (both exactly 35), 1 a miss, 2 a false alarm, 5 (45) a hit
    assert (r["hits_35"], r["misses_35"], r["false_alarms_35"]) == (2, 1, 1)
    assert (r["hits_20"], r["misses_20"], r["false_alarms_20"]) == (4, 1, 1)
    assert (r["hits_45"], r["misses_45"], r["false_alarms_45"]) == (1, 0, 0)
    # and on a random field of half-dBZ steps (the archive's), every threshold hit often
    rng = np.random.default_rng(4)
    truth = rng.integers(30, 100, (40, 50)).astype(np.float32) / 2  # 15.0 .. 49.5
    forecast = rng.integers(30, 100, (40, 50)).astype(np.float32) / 2
    assert (truth == 35.0).sum() > 20 and (forecast == 45.0).sum() > 20
    r = score(truth, forecast, **kw())
    for t in (20.0, 35.0, 45.0):
        assert {k: r[f"{k}_{t:g}"] for k in _count_by_hand(truth, forecast, t)} == _count_by_hand(
            truth, forecast, t
        )


def _fss_by_hand(truth, forecast, threshold: float, n: int, pad_mode: str = "constant") -> float:
    """FSS with windows summed explicitly over the image padded by ``pad_mode`` (zeros: events
    never seen beyond the edge)."""
    half = n // 2
    sums = {"num": 0.0, "den": 0.0}
    for obs, fct in zip(truth, forecast, strict=True):
        frac = []
        for field in (obs, fct):
            padded = np.pad((field >= threshold).astype(np.float64), half, mode=pad_mode)
            ny, nx = field.shape
            windows = [[padded[i : i + n, j : j + n].sum() for j in range(nx)] for i in range(ny)]
            frac.append(np.array(windows) / n**2)
        po, pf = frac
        sums["num"] += float(((pf - po) ** 2).sum())
        sums["den"] += float((pf**2 + po**2).sum())
    return 1 - sums["num"] / sums["den"]


def test_fss_pads_the_image_with_zeros_at_its_edge():
    # storms against the edges (a corner and the right side), values exactly at 35 dBZ
    truth = np.full((2, 20, 24), -10.0, dtype=np.float32)
    forecast = truth.copy()
    truth[0, 0:6, 0:6], forecast[0, 0:6, 2:8] = 35.0, 40.0
    truth[1, 8:14, 19:24], forecast[1, 10:16, 20:24] = 50.0, 35.0
    r = score(truth, forecast, **kw())
    for n in (5, 21):
        zero = _fss_by_hand(truth, forecast, 35.0, n)
        assert r[f"fss_35_{n}km"] == pytest.approx(zero, rel=1e-9)
        # the edge matters here: mirrored or repeated edges give another score
        for mode in ("symmetric", "edge"):
            assert abs(zero - _fss_by_hand(truth, forecast, 35.0, n, mode)) > 1e-3
