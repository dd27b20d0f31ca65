from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import storm_field

from wxembed.archive import Archive
from wxembed.errors import ArchiveError
from wxembed.evaluation.evaluate import evaluate
from wxembed.evaluation.metrics import beats
from wxembed.figures.report import write_report
from wxembed.grid import HRRR_CONUS
from wxembed.pipelines.ingest import ingest_synthetic
from wxembed.sources.synthetic import SynthConfig
from wxembed.errors import CheckpointError
from wxembed.train import TrainConfig, train

GRID = HRRR_CONUS.coarsen(8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    ingest_synthetic(
        SynthConfig(seed=1, grid=GRID),
        "2024-07-01T00",
        30,
        root / "a.zarr",
        workers=1,
        progress=False,
    )
    report = train(TrainConfig(archive=str(root / "a.zarr"), out=str(root / "m"), arch="fast", num_steps=30,
                               batch_size=4, num_checkpoints=1, progress=False))  # fmt: skip
    return root, Archive(root / "a.zarr"), report["last_checkpoint"]


def test_evaluation_scores_the_autoencoder_and_both_baselines_on_the_held_out_hours(trained):
    root, archive, ckpt = trained
    result = evaluate(ckpt, archive.path)
    assert result["train_hours"] == 24 and result["held_out_hours"] == 6
    assert result["held_out_first"] == "2024-07-02T00:00:00"  # hours 24..29
    assert result["pca_components"] == 24  # no more components than training hours
    assert set(result["scores"]) == {"autoencoder", "pca", "climatology"}
    for scores in result["scores"].values():
        assert scores["n_hours"] == 6 and scores["mse"] >= 0
        assert {"csi_20", "csi_35", "csi_45", "fss_35_81km", "ssim"} <= set(scores)
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


def test_comparison_knows_which_metrics_are_better_when_lower():
    scores = {"a": {"mse": 1.0, "csi_35": 0.2, "far_35": 0.1, "n_hours": 3},
              "b": {"mse": 2.0, "csi_35": 0.3, "far_35": 0.2, "n_hours": 3}}  # fmt: skip
    assert beats(scores, "a", "b") == {"mse": True, "csi_35": False, "far_35": True}


def test_an_archive_too_short_for_a_held_out_split_is_refused_before_scoring(trained, tmp_path):
    _, _, ckpt = trained
    short = Archive.create(tmp_path / "short.zarr", GRID)
    short.write(storm_field(GRID, 0, "2025-01-01T00"))
    with pytest.raises(ArchiveError, match="1 stored hour"):
        evaluate(ckpt, short.path)


def test_a_checkpoint_on_another_grid_is_refused_before_scoring(trained, tmp_path):
    _, _, ckpt = trained
    other = Archive.create(tmp_path / "other.zarr", HRRR_CONUS.coarsen(16))
    with pytest.raises(CheckpointError, match="trained on grid"):
        evaluate(ckpt, other.path)


def test_the_report_is_one_self_contained_html_file(trained, tmp_path):
    from wxembed.figures.plot import save_field_png

    root, archive, ckpt = trained
    result = evaluate(ckpt, archive.path)
    png = save_field_png(tmp_path / "f.png", archive.read_dbz(archive.stored_times()[0]), GRID)
    page = write_report(
        tmp_path / "r.html", title="test", evaluation=result, figures=[("a field", png)]
    ).read_text()
    assert page.count("<table>") >= 3  # facts, overall, at least one breakdown
    assert "data:image/png;base64," in page
    assert not re.search(r'src="(?!data:)', page)  # nothing to fetch
    mse_row = re.search(r"<tr><th>MSE \(dBZ²\)</th>(.*?)</tr>", page).group(1)
    values = [float(v) for v in re.findall(r">([0-9.e+-]+)</td>", mse_row)]
    assert len(values) == 3 and np.isclose(
        min(values), min(s["mse"] for s in result["scores"].values()), rtol=1e-3
    )
