"""The representation: a network the same size on any grid, one definition of the validation
error, model folders, fine-tuning, and the search-quality scores that judge a code."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST_HP, train_model

from wxembed.errors import CheckpointError
from wxembed.evaluation.evaluate import evaluate
from wxembed.evaluation.search_quality import (
    analog_fss,
    code_distances,
    pixel_distances,
    recall_at_k,
    search_quality,
)
from wxembed.grid import HRRR_CONUS
from wxembed.model import build_model, count_parameters
from wxembed.model.checkpoint import Checkpoint, resolve_checkpoint
from wxembed.model.task import reconstruction_sums

GRIDS = {"hrrr": HRRR_CONUS.shape, "mrms": (3500, 7000), "fmi": (1226, 760)}


def test_the_fast_network_has_the_same_parameters_on_every_grid_and_at_most_5_million():
    counts = {name: count_parameters(build_model("fast", shape)) for name, shape in GRIDS.items()}
    assert len(set(counts.values())) == 1, counts
    assert counts["mrms"] <= 5_000_000


def test_the_fast_network_works_on_a_grid_of_at_most_work_pixels_points():
    net = build_model("fast", (3500, 7000))
    wy, wx = net.work_shape
    assert wy * wx <= net.config.work_pixels
    assert net.factor * wy >= 3500 and net.factor * wx >= 7000  # covers the whole grid
    x = torch.rand(2, 1, 3500, 7000)
    recon, target, _ = net.training_terms(x)
    assert recon.shape == target.shape == (2, 1, wy, wx)
    # the target is the block mean of the input (zero-padded at the far edges)
    f = net.factor
    block = x[0, 0, :f, :f].mean()
    assert target[0, 0, 0, 0] == pytest.approx(float(block), rel=1e-5)


def test_a_reconstruction_comes_back_on_the_full_grid_in_the_unit_range():
    net = build_model("fast", (131, 207), **FAST_HP, work_pixels=2000).eval()
    with torch.no_grad():
        y = net(torch.rand(3, 1, 131, 207))
    assert y.shape == (3, 1, 131, 207)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_reconstruction_sums_score_as_the_metrics_do():
    # truth 10 dBZ (code 84), one no-data pixel (255) left out, one -32 dBZ floored at 0
    raw = torch.tensor([[[[84, 255], [0, 84]]]], dtype=torch.uint8)
    recon = torch.full((1, 1, 2, 2), 20.0 / 60.0)  # 20 dBZ everywhere
    sse, n = reconstruction_sums(raw, recon).tolist()
    assert n == 3
    assert sse == pytest.approx(100.0 + 400.0 + 100.0)


def test_the_training_logs_validation_mse_is_evaluates_mse_on_the_same_hours(
    tiny_archive, tmp_path
):
    out = tmp_path / "m"
    train_model(tiny_archive, out, num_steps=12, num_checkpoints=1)
    log = pd.read_csv(out / "logs" / "version_0" / "metrics.csv")
    logged = log["val_mse_dbz"].dropna().iloc[-1]  # validated at the last step
    result = evaluate(out / "checkpoints" / "last.ckpt", tiny_archive, search=False)
    assert result["split"].startswith("the checkpoint's held-out start")
    assert result["scores"]["autoencoder"]["mse"] == pytest.approx(logged, rel=1e-4)


def test_a_model_folder_stands_for_its_best_checkpoint(trained_model, tmp_path):
    assert resolve_checkpoint(trained_model) == trained_model / "checkpoints" / "best.ckpt"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="without best.ckpt or last.ckpt"):
        resolve_checkpoint(tmp_path / "empty")


def test_fine_tuning_starts_from_the_given_weights(tiny_archive, trained_model, tmp_path):
    start = Checkpoint(trained_model / "checkpoints" / "last.ckpt")
    report = train_model(
        tiny_archive, tmp_path / "tuned", num_steps=1, lr=1e-12, init_from=str(trained_model)
    )
    tuned = Checkpoint(report["last_checkpoint"])
    source = Checkpoint(trained_model)  # best.ckpt, the one init_from took
    for name, value in source.state_dict.items():
        if name.startswith("net."):
            assert torch.allclose(tuned.state_dict[name], value, atol=1e-6), name
    assert start.model_id != tuned.model_id


def test_fine_tuning_refuses_another_network(tiny_archive, trained_model, tmp_path):
    with pytest.raises(CheckpointError, match="not the network asked for"):
        train_model(
            tiny_archive,
            tmp_path / "other",
            num_steps=1,
            hparams={**FAST_HP, "code_channels": 4},
            init_from=str(trained_model),
        )


def test_recall_counts_the_shared_neighbours_and_pixel_distances_are_exact():
    truth = np.array([[0, 1, 2], [3, 4, 5]])
    found = np.array([[2, 1, 9], [6, 7, 8]])
    assert recall_at_k(truth, found) == pytest.approx((2 / 3 + 0) / 2)
    rng = np.random.default_rng(0)
    q, c = rng.normal(10, 20, (3, 5, 6)), rng.normal(10, 20, (7, 5, 6))
    d = pixel_distances(q, [c[:4], c[4:]])
    fq, fc = np.maximum(q, 0).reshape(3, -1), np.maximum(c, 0).reshape(7, -1)
    expected = ((fq[:, None] - fc[None]) ** 2).sum(-1)
    np.testing.assert_allclose(d, expected, rtol=1e-6)  # fields as float32
    np.testing.assert_allclose(code_distances(fq, fc), expected, rtol=1e-9)


def test_a_code_that_is_the_image_finds_the_true_neighbours_and_a_random_one_does_not():
    rng = np.random.default_rng(1)
    candidates = np.zeros((40, 24, 24), np.float32)
    for i in range(40):  # one 50 dBZ cell each, at its own place
        y, x = rng.integers(2, 22, 2)
        candidates[i, y - 2 : y + 2, x - 2 : x + 2] = 50.0
    queries = candidates[:6] + rng.normal(0, 0.5, (6, 24, 24)).astype(np.float32)
    flat = np.maximum(candidates, 0).reshape(40, -1)
    codes = {"exact": np.maximum(queries, 0).reshape(6, -1), "noise": rng.normal(size=(6, 3))}
    cands = {"exact": flat, "noise": rng.normal(size=(40, 3))}
    pixel = pixel_distances(queries, [candidates])
    got = search_quality(queries, pixel, lambda i: candidates[i], codes, cands, cell_km=3.0)
    assert got["exact"]["recall_at_10"] == 1.0
    assert got["exact"]["analog_fss"] == pytest.approx(got["pixel_nearest"]["analog_fss"])
    assert got["noise"]["recall_at_10"] < 0.6
    assert analog_fss(queries, candidates[:6], 3.0) > 0.9


def test_evaluation_scores_search_and_warns_when_pca_can_memorise(
    tiny_archive, trained_model, caplog
):
    result = evaluate(trained_model, tiny_archive)
    for method in ("autoencoder", "pca"):
        assert 0.0 <= result["search"][method]["recall_at_10"] <= 1.0
        assert "recall_at_10" in result["scores"][method]
    assert result["search"]["pixel_nearest"]["recall_at_10"] == 1.0
    assert result["train_hours"] < 10 * result["embedding_dim"]
    assert "nearly memorises" in caplog.text
    assert result["checkpoint"].endswith("best.ckpt")
    json.dumps(result)
