from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import storm_archive

from wxembed.archive import Archive
from wxembed.errors import ArchiveError, CheckpointError, ModelError
from wxembed.grid import HRRR_CONUS
from wxembed.model.checkpoint import check_grid, load_checkpoint, load_model
from wxembed.train import TrainConfig, train

SEED_HP = {"num_layers": 3, "pool_size": 2, "num_filters": 3, "num_dense": 50}


def _config(archive, out, **kw):
    base = dict(
        archive=str(archive),
        out=str(out),
        arch="seed",
        hparams=SEED_HP,
        loss="logcosh",
        num_steps=30,
        num_checkpoints=3,
        batch_size=2,
        lr=3e-3,
        progress=False,
    )
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def storm_hours(tmp_path_factory, tiny_grid):
    """12 hours of Gaussian storm cells, where 40 steps visibly learn. (The shared archive's
    held-out hours are mostly clear air, 11 of 19; there 40 steps of the default network left
    the last checkpoint's loss above the untrained network's.)"""
    return storm_archive(tmp_path_factory.mktemp("train") / "storms.zarr", tiny_grid, 12)


def test_a_short_training_run_lowers_the_validation_loss(storm_hours, tiny_grid, tmp_path):
    from wxembed.model.common import normalise_raw
    from wxembed.model.losses import logcosh

    config = _config(storm_hours.path, tmp_path / "m", arch="fast", hparams={}, num_steps=40)
    report = train(config)
    assert report["global_step"] == 40
    module, grid = load_model(report["last_checkpoint"])
    assert grid.same_as(tiny_grid)
    val = torch.from_numpy(storm_hours.read_raw(storm_hours.stored_times()[-2:]))[:, None]
    x = normalise_raw(val)
    torch.manual_seed(0)
    fresh = type(module)(**{**module.hparams, "channels_last": False}).eval()
    with torch.no_grad():
        assert float(logcosh(module.net(x), x)) < float(logcosh(fresh.net(x), x))


def test_the_cosine_schedule_warms_up_then_decays_to_zero_by_the_last_step(tiny_archive, tmp_path):
    import pandas as pd

    report = train(_config(tiny_archive, tmp_path / "m", num_steps=40, schedule="cosine"))
    log = pd.read_csv(tmp_path / "m" / "logs" / "version_0" / "metrics.csv")
    # best.ckpt holds the lowest validation loss logged, whichever step it came at
    assert report["best_val_loss"] == pytest.approx(log["val_loss"].min())
    assert load_checkpoint(report["best_checkpoint"])["global_step"] in set(
        log.dropna(subset=["val_loss"]).step + 1
    )
    lr = log.dropna(subset=["lr-Adam"]).set_index("step")["lr-Adam"]
    assert lr.idxmax() <= 10 and lr.max() == pytest.approx(3e-3, rel=0.2)
    assert lr.iloc[-1] < 0.05 * lr.max()
    assert (lr.loc[lr.idxmax() :].diff().dropna() <= 1e-12).all()


def test_checkpoints_are_written_every_num_steps_over_num_checkpoints(tiny_archive, tmp_path):
    train(_config(tiny_archive, tmp_path / "m"))
    names = sorted(p.name for p in (tmp_path / "m" / "checkpoints").glob("*.ckpt"))
    assert names == ["best.ckpt", "last.ckpt", "step=10.ckpt", "step=20.ckpt", "step=30.ckpt"]


def test_a_checkpoint_alone_rebuilds_the_model_and_its_grid(tiny_archive, tmp_path):
    report = train(_config(tiny_archive, tmp_path / "m", num_steps=5, num_checkpoints=1))
    ckpt = load_checkpoint(report["last_checkpoint"])
    hp = ckpt["hyper_parameters"]
    assert hp["arch"] == "seed" and hp["hparams"] == SEED_HP and hp["archive"] == str(tiny_archive)
    module, grid = load_model(report["last_checkpoint"])
    z = module.net.encode(torch.zeros(1, 1, *grid.shape))
    assert z.shape == (1, 50)


def _metrics_rows(out) -> list[dict]:
    with open(out / "logs" / "version_0" / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def _logged(rows: list[dict]) -> list[tuple[int, str]]:
    """(step, column) of every value in metrics.csv rows."""
    return [(int(r["step"]), k) for r in rows for k, v in r.items() if v and k not in STEP_COLS]


STEP_COLS = ("step", "epoch")


def test_a_killed_training_resumes_from_its_last_checkpoint_with_the_same_step_count(
    tiny_archive, tmp_path
):
    out = tmp_path / "m"
    ckpts = out / "checkpoints"
    hp = [f"--hp={k}={v}" for k, v in SEED_HP.items()]
    cmd = [sys.executable, "-m", "wxembed.cli", "train", str(tiny_archive), "--out", str(out)]
    cmd += ["--arch", "seed", *hp, "--loss", "logcosh", "--steps", "60", "--checkpoints", "6"]
    cmd += ["--batch-size", "2"]
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (ckpts / "step=20.ckpt").exists():
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = load_checkpoint(ckpts / "last.ckpt")["global_step"]
    assert 10 <= killed_at < 60, proc.stderr.read().decode()[-2000:]
    adam_before = load_checkpoint(ckpts / "last.ckpt")["optimizer_states"][0]["state"]
    history = [r for r in _metrics_rows(out) if int(r["step"]) < killed_at]
    assert any(r["train_loss"] for r in history)  # the killed run logged something to keep
    written = {  # kept; a later one (killed before last.ckpt was updated) is redone
        p.name: p.read_bytes()
        for p in ckpts.glob("step=*.ckpt")
        if int(p.stem.removeprefix("step=")) <= killed_at
    }

    # the same command with --resume
    report = train(_config(tiny_archive, out, num_steps=60, num_checkpoints=6, resume=True))
    assert report["global_step"] == 60
    assert report["resumed_from_step"] == killed_at
    resumed = load_checkpoint(ckpts / "last.ckpt")
    assert resumed["global_step"] == 60
    assert float(adam_before[0]["step"]) == killed_at  # Adam's own count, saved with the weights
    assert float(resumed["optimizer_states"][0]["state"][0]["step"]) == 60
    assert resumed["lr_schedulers"][0]["last_epoch"] == 60  # the cosine went on where it stopped
    # It continued: no checkpoint was written twice (a restart from step 0 writes step=10-v1)
    # and those of the killed run are untouched.
    assert sorted(p.name for p in ckpts.glob("*.ckpt")) == sorted(
        ["best.ckpt", "last.ckpt"] + [f"step={s}.ckpt" for s in range(10, 61, 10)]
    )
    assert {n: (ckpts / n).read_bytes() for n in written} == written
    # The log kept the killed run's history and goes on from where it stopped: each value once.
    rows = _metrics_rows(out)
    assert [r for r in rows if int(r["step"]) < killed_at] == history
    logged = _logged(rows)
    assert len(logged) == len(set(logged))
    assert sorted(s for s, k in logged if k == "train_loss") == [9, 19, 29, 39, 49, 59]


def test_metrics_logged_after_the_last_checkpoint_are_dropped_on_resume(tiny_archive, tmp_path):
    out = tmp_path / "m"
    train(_config(tiny_archive, out, num_steps=20, num_checkpoints=2))
    rows = _metrics_rows(out)
    # as if killed after writing step=20.ckpt and the logs before step 20, but before
    # last.ckpt was updated: the run goes on from step 10 and writes step 20 again
    shutil.copy(out / "checkpoints" / "step=10.ckpt", out / "checkpoints" / "last.ckpt")
    report = train(_config(tiny_archive, out, num_steps=20, num_checkpoints=2, resume=True))
    assert report["resumed_from_step"] == 10
    assert sorted(p.name for p in (out / "checkpoints").glob("step=*")) == [
        "step=10.ckpt",
        "step=20.ckpt",
    ]
    after = _metrics_rows(out)
    assert [r for r in after if int(r["step"]) < 10] == [r for r in rows if int(r["step"]) < 10]
    logged = _logged(after)
    assert len(logged) == len(set(logged)) and (19, "train_loss") in logged


def test_the_latest_fifth_of_the_hours_is_held_out_and_named_in_the_checkpoint(
    tiny_archive, trained_model
):
    from wxembed.train import split_times

    times = Archive(tiny_archive).stored_times()  # 96 hours
    train_times, val_times = split_times(Archive(tiny_archive), 0.2)
    assert list(train_times) == list(times[:77]) and list(val_times) == list(times[77:])
    hp = load_checkpoint(trained_model / "checkpoints" / "last.ckpt")["hyper_parameters"]
    assert hp["val_start"] == str(times[77]) == "2024-06-04T05:00:00"


def test_training_refuses_to_overwrite_checkpoints_without_resume(tiny_archive, tmp_path):
    train(_config(tiny_archive, tmp_path / "m", num_steps=2, num_checkpoints=1))
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        train(_config(tiny_archive, tmp_path / "m", num_steps=2))


def test_a_booby_trapped_checkpoint_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"

    class Trap:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": Trap()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused"):
        load_model(path)
    assert not marker.exists()


def test_a_corrupt_checkpoint_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(b"\x00not a checkpoint at all")
    with pytest.raises(CheckpointError, match="bad.ckpt: not a readable checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.ckpt")


def test_a_checkpoint_on_another_grid_than_the_archive_is_named_as_such(tiny_grid, tmp_path):
    other = Archive.create(tmp_path / "o.zarr", HRRR_CONUS.coarsen(8))
    with pytest.raises(
        CheckpointError, match=r"trained on grid 'hrrr-conus/16'.*is on 'hrrr-conus/8'"
    ):
        check_grid(tiny_grid, other, "model.ckpt")


def test_an_archive_with_no_hours_cannot_be_trained_on(tiny_grid, tmp_path):
    empty = Archive.create(tmp_path / "e.zarr", tiny_grid)
    with pytest.raises(ArchiveError, match="0 stored hour"):
        train(_config(empty.path, tmp_path / "m"))


def test_too_deep_a_network_for_the_grid_is_a_model_error_naming_the_grid(tiny_archive, tmp_path):
    hp = {"num_layers": 6, "pool_size": 4, "num_filters": 4, "num_dense": 50}
    with pytest.raises(ModelError, match="66 x 112"):
        train(_config(tiny_archive, tmp_path / "m", hparams=hp))
