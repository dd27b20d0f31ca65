from __future__ import annotations

import optuna
import pytest
from conftest import storm_archive

from wxembed.tune import TuneConfig, tune

SPACE = {"num_layers": [2, 3, 4], "pool_size": [4], "num_filters": [4], "num_dense": [8, 50]}


@pytest.fixture(scope="module")
def archive(tmp_path_factory, tiny_grid):
    """Four hours of Gaussian storm cells on the tiny grid: the batch each candidate overfits.
    (On the shared archive's first four hours, 30 steps take the two-layer candidates only to
    0.52-0.54 of their first loss, short of the half the first test asks for.)"""
    return storm_archive(tmp_path_factory.mktemp("tune") / "a.zarr", tiny_grid, 4)


def _config(archive, tmp_path, **kw):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    return TuneConfig(
        archive=str(archive.path), storage=storage, steps=30, lr=1e-3, search_space=SPACE, **kw
    )


def test_a_tiny_grid_study_runs_and_rejects_a_candidate_that_does_not_fit_the_grid(
    archive, tmp_path
):
    summary = tune(_config(archive, tmp_path), progress=False)
    assert len(summary["trials"]) == 6
    rejected = [t for t in summary["trials"] if t["rejected"]]
    assert {t["params"]["num_layers"] for t in rejected} == {4}  # 4**4 = 256 > 66 rows
    assert all("66 x 112" in t["rejected"] for t in rejected)
    done = [t for t in summary["trials"] if t["state"] == "COMPLETE"]
    assert len(done) == 4
    two_layers = [t for t in done if t["params"]["num_layers"] == 2]
    assert two_layers and all(t["final_loss"] < 0.5 * t["loss_before"] for t in two_layers)


def test_an_interrupted_study_resumes_with_only_the_remaining_candidates(archive, tmp_path):
    first = tune(_config(archive, tmp_path, n_trials=2), progress=False)
    assert len(first["trials"]) == 2
    second = tune(_config(archive, tmp_path), progress=False)
    params = [tuple(sorted(t["params"].items())) for t in second["trials"]]
    assert len(params) == 6 == len(set(params))  # every grid point once, none repeated
    study = optuna.load_study(
        study_name="wxembed-tune", storage=f"sqlite:///{tmp_path / 'study.db'}"
    )
    assert len(study.trials) == 6


def test_candidates_over_the_parameter_budget_are_rejected_with_the_count(archive, tmp_path):
    summary = tune(_config(archive, tmp_path, max_params=20_000), progress=False)
    over = [t for t in summary["trials"] if t["rejected"] and "budget" in t["rejected"]]
    assert over and all(t["parameters"] > 20_000 for t in over)


def test_the_smallest_learning_embedding_is_reported(archive, tmp_path):
    summary = tune(_config(archive, tmp_path, learn_ratio=0.99), progress=False)
    best = summary["smallest_learning"]
    assert best is not None and best["learns"]
    learning = [t for t in summary["trials"] if t["state"] == "COMPLETE" and t["learns"]]
    assert best["embedding_dim"] == min(t["embedding_dim"] for t in learning)
