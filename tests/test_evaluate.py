"""Evaluation against the baselines, on the shared archive and model (tests/conftest.py).

``trained_model`` was trained on ``tiny_archive``'s first 77 hours; its checkpoint names the
first held-out hour (2024-06-04T05), so evaluation scores the last 19.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import TINY_HOURS, storm_archive

from wxembed.archive import Archive
from wxembed.errors import ArchiveError, CheckpointError
from wxembed.evaluation.evaluate import evaluate, held_out_split
from wxembed.evaluation.metrics import beats
from wxembed.figures.report import write_report
from wxembed.grid import HRRR_CONUS

HELD_OUT = 19  # round(0.2 * 96): the latest fifth of the archive


@pytest.fixture(scope="module")
def evaluation(tiny_archive, trained_model):
    """The model folder (its best checkpoint) evaluated on the archive it was trained on."""
    return evaluate(trained_model, tiny_archive)


def test_evaluation_scores_the_autoencoder_and_both_baselines_on_the_held_out_hours(evaluation):
    result = evaluation
    assert result["train_hours"] == TINY_HOURS - HELD_OUT and result["held_out_hours"] == HELD_OUT
    assert result["held_out_first"] == "2024-06-04T05:00:00"  # hours 77..95
    assert result["split"].startswith("the checkpoint's held-out start")
    assert result["pca_components"] == result["embedding_dim"] == 50  # PCA of the code's size
    assert set(result["scores"]) == {
        *("autoencoder", "pca", "climatology"),
        *("autoencoder_matched", "pca_matched"),  # both given the hour's echo coverage
    }
    for scores in result["scores"].values():
        assert scores["n_hours"] == HELD_OUT and scores["mse"] >= 0
        assert {"csi_20", "csi_35", "csi_45", "fss_35_81km", "ssim"} <= set(scores)
    # probability matching restores the echo area at 20 dBZ (a coverage threshold) to the
    # truth's, which the plain reconstructions paint too little of
    scores = result["scores"]
    for name in ("autoencoder_matched", "pca_matched"):
        assert abs(scores[name]["bias_20"] - 1) < 0.05, (name, scores[name]["bias_20"])
    assert scores["autoencoder"]["bias_20"] < 0.9 and scores["pca"]["bias_20"] < 0.9
    assert set(result["matched_autoencoder_beats_matched_pca"]) >= {"mse", "fss_35_27km"}
    assert result["by_season"].keys() == {"JJA"}
    assert set(result["by_regime"]) <= {
        "clear",
        "isolated_cells",
        "squall_line",
        "mcs",
        "stratiform",
    }
    assert set(result["autoencoder_beats_pca"]) >= {"mse", "csi_35"}
    json.dumps(result)  # JSON-ready


def test_baselines_are_fit_on_the_training_hours_only_and_the_latest_hours_are_scored(
    evaluation, tiny_archive, trained_model
):
    """Recomputed here, independently: climatology in numpy, PCA refit on the first 77 hours,
    the autoencoder's MSE over the last 19. A leak (baselines fit on held-out hours too) or the
    earliest hours held out gives other numbers."""
    from wxembed.evaluation.baselines import PCABaseline
    from wxembed.model.encoder import load_embedding_model

    archive = Archive(tiny_archive)
    times = archive.stored_times()
    train, held = times[: TINY_HOURS - HELD_OUT], times[TINY_HOURS - HELD_OUT :]
    assert evaluation["baseline_fit_hours"] == {"pca": len(train), "climatology": len(train)}
    assert evaluation["held_out_rule"] == "auto"
    assert (evaluation["train_first"], evaluation["train_last"]) == (str(train[0]), str(train[-1]))
    assert evaluation["held_out_last"] == str(held[-1])

    def mse(forecast: np.ndarray, truth: np.ndarray) -> float:  # floored at 0 dBZ, NaN left out
        valid = np.isfinite(truth)
        return float(np.mean((np.maximum(forecast, 0) - np.maximum(truth, 0))[valid] ** 2))

    truth = np.stack([archive.read_dbz(t) for t in held])
    mean_image = np.mean([np.clip(np.nan_to_num(archive.read_dbz(t)), 0, 60) for t in train], 0)
    scores = evaluation["scores"]
    assert scores["climatology"]["mse"] == pytest.approx(mse(mean_image[None], truth), rel=1e-4)
    pca = PCABaseline(50).fit_archive(archive, train, batch=32)
    assert scores["pca"]["mse"] == pytest.approx(mse(pca.reconstruct(truth), truth), rel=1e-4)
    model = load_embedding_model(evaluation["checkpoint"])
    recon = model.decode(model.encode_raw(archive.read_raw(held)))
    assert scores["autoencoder"]["mse"] == pytest.approx(mse(recon, truth), rel=1e-3)


def test_pca_gets_no_more_components_than_training_hours_on_an_archive_the_model_never_saw(
    trained_model, tiny_grid, tmp_path, caplog
):
    july = storm_archive(tmp_path / "july.zarr", tiny_grid, 10)  # after the held-out start
    result = evaluate(trained_model, july.path, search=False)
    assert result["split"] == (
        "the latest 20% of the archive's hours (the archive starts after the checkpoint's "
        "held-out start 2024-06-04T05:00:00)"
    )
    assert any("held out the latest 20%" in r.message for r in caplog.records)  # said aloud
    assert result["train_hours"] == 8 and result["held_out_hours"] == 2
    assert result["held_out_first"] == "2024-07-01T08:00:00"
    assert result["baseline_fit_hours"] == {"pca": 8, "climatology": 8}
    assert result["pca_components"] == 8  # not 50: no more components than training hours


def test_an_archive_of_hours_before_the_held_out_start_is_refused_unless_latest_is_chosen(
    trained_model, tiny_grid, tmp_path
):
    # every hour lies in the model's training period: any of them may have been trained on
    may = storm_archive(tmp_path / "may.zarr", tiny_grid, 10, start="2024-05-01T00")
    with pytest.raises(CheckpointError, match=r"start at 2024-06-04 05:00:00Z, after every hour"):
        evaluate(trained_model, may.path, search=False)
    result = evaluate(trained_model, may.path, search=False, held_out="latest")
    assert result["held_out_rule"] == "latest"
    assert result["split"] == (
        "the latest 20% of the archive's hours (chosen: the held-out rule 'latest')"
    )
    assert result["held_out_first"] == "2024-05-01T08:00:00" and result["held_out_hours"] == 2


def test_the_checkpoint_rule_refuses_an_archive_its_held_out_start_does_not_split(
    trained_model, tiny_grid, tmp_path
):
    july = storm_archive(tmp_path / "july.zarr", tiny_grid, 10)
    with pytest.raises(CheckpointError, match="before every hour of this archive"):
        evaluate(trained_model, july.path, search=False, held_out="checkpoint")
    with pytest.raises(ValueError, match="held-out rule 'newest'"):
        evaluate(trained_model, july.path, search=False, held_out="newest")


def test_comparison_knows_which_metrics_are_better_when_lower():
    scores = {
        "a": {"mse": 1.0, "csi_35": 0.2, "far_35": 0.1, "n_hours": 3},
        "b": {"mse": 2.0, "csi_35": 0.3, "far_35": 0.2, "n_hours": 3},
    }
    assert beats(scores, "a", "b") == {"mse": True, "csi_35": False, "far_35": True}
    scores["a"]["csi_45"], scores["b"]["csi_45"] = float("nan"), 0.1  # undefined: neither
    assert beats(scores, "a", "b")["csi_45"] is None


def test_an_archive_too_short_for_a_held_out_split_is_refused_before_scoring(
    trained_model, tiny_grid, tmp_path
):
    short = storm_archive(tmp_path / "short.zarr", tiny_grid, 1, start="2025-01-01T00")
    with pytest.raises(ArchiveError, match="1 stored hour"):
        evaluate(trained_model, short.path)


def test_a_checkpoint_on_another_grid_is_refused_before_scoring(trained_model, tmp_path):
    other = Archive.create(tmp_path / "other.zarr", HRRR_CONUS.coarsen(8))
    with pytest.raises(CheckpointError, match="trained on grid"):
        evaluate(trained_model, other.path)


def test_the_report_is_one_self_contained_html_file(evaluation, tiny_archive, tmp_path):
    from wxembed.figures.plot import save_field_png

    archive = Archive(tiny_archive)
    first = archive.read_dbz(archive.stored_times()[0])
    png = save_field_png(tmp_path / "f.png", first, archive.grid)
    page = write_report(
        tmp_path / "r.html", title="test", evaluation=evaluation, figures=[("a field", png)]
    ).read_text()
    assert page.count("<table>") >= 3  # facts, overall, at least one breakdown
    assert "data:image/png;base64," in page
    assert not re.search(r'src="(?!data:)', page)  # nothing to fetch
    mse_row = re.search(r"<tr><th>MSE \(dBZ²\)</th>(.*?)</tr>", page).group(1)
    values = [float(v) for v in re.findall(r">([0-9.e+-]+)</td>", mse_row)]
    assert len(values) == len(evaluation["scores"]) == 5 and np.isclose(
        min(values), min(s["mse"] for s in evaluation["scores"].values()), rtol=1e-3
    )
    assert "<b>Probability-matched</b>" in page  # the verdict on the matched reconstructions


def test_a_checkpoint_naming_no_held_out_start_gets_the_latest_hours_or_a_refusal(
    tiny_archive, tiny_grid, tmp_path
):
    five = storm_archive(tmp_path / "five.zarr", tiny_grid, 5)  # the fewest with one held out
    train, held, _ = held_out_split(five, "")
    assert (len(train), len(held)) == (4, 1)
    archive = Archive(tiny_archive)
    times = archive.stored_times()
    with pytest.raises(CheckpointError, match="names no held-out start"):
        held_out_split(archive, "", rule="checkpoint")
    train, held, how = held_out_split(archive, "")
    assert how == "the latest 20% of the archive's hours (the checkpoint names no held-out start)"
    assert list(train) == list(times[:-HELD_OUT]) and list(held) == list(times[-HELD_OUT:])
