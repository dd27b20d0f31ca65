"""The embed pipeline: archive + checkpoint -> Parquet shards -> DuckDB index, and its commands.

An untrained network is enough here: what is tested is the plumbing (every stored hour once,
the vectors the model makes, replace-not-duplicate, several models, refusals), not the quality
of the embeddings (tests/test_analysis.py trains one).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
from conftest import TINY_HOURS, write_untrained_checkpoint
from typer.testing import CliRunner

from wxembed.archive import Archive
from wxembed.errors import ArchiveError, CheckpointError
from wxembed.grid import HRRR_CONUS
from wxembed.index import EmbeddingIndex

HOURS = TINY_HOURS  # stored hours of the archive
HOLE = "2024-06-05T00"  # recorded missing, after the last stored hour (2024-06-04T23)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_archive, tiny_grid, untrained_checkpoint):
    """A copy of the shared archive with a hole, and two untrained networks (50 and 16 numbers)."""
    tmp = tmp_path_factory.mktemp("embed")
    shutil.copytree(tiny_archive, tmp / "a.zarr")
    archive = Archive(tmp / "a.zarr")
    archive.record(HOLE, "missing", "no such file upstream")  # a hole: not embedded
    return {
        "archive": archive,
        "ckpt": untrained_checkpoint,
        "ckpt16": write_untrained_checkpoint(tmp / "m16.ckpt", tiny_grid, seed=1, embedding_dim=16),
    }


def _embed(setup, index: Path, ckpt=None, **kw) -> dict:
    from wxembed.pipelines.embed import embed_archive

    return embed_archive(
        setup["archive"].path,
        ckpt or setup["ckpt"],
        index,
        **{"workers": 1, "progress": False, "batch_size": 5, **kw},
    )


def test_embedding_an_archive_writes_every_stored_hour_to_parquet_and_the_index(setup, tmp_path):
    from wxembed.model.encoder import load_embedding_model

    report = _embed(setup, tmp_path / "i.duckdb")
    archive = setup["archive"]
    stored = archive.stored_times()
    assert report["hours"] == len(stored) == HOURS and report["embedding_dim"] == 50
    assert report["model_id"].startswith("fast-") and report["replaced"] == 0

    table = pq.read_table(report["shards"])  # what a warehouse would load
    assert table.schema.field("time").type.tz == "UTC"
    assert sorted(table.column("time").to_numpy().astype("datetime64[s]")) == list(stored)
    assert {len(v) for v in table.column("embedding").to_pylist()} == {50}

    with EmbeddingIndex(tmp_path / "i.duckdb", read_only=True) as ix:
        vs = ix.vectors()
        info = ix.model()
    np.testing.assert_array_equal(vs.times, stored)
    assert info.embedding_dim == 50 and info.grid.same_as(archive.grid)
    model = load_embedding_model(setup["ckpt"])
    expected = model.encode_raw(archive.read_raw(stored))  # (n, 50), the model run directly
    np.testing.assert_allclose(vs.matrix, expected, rtol=1e-4, atol=1e-5)


def test_re_embedding_with_the_same_model_replaces_its_rows_instead_of_duplicating(setup, tmp_path):
    first = _embed(setup, tmp_path / "i.duckdb")
    again = _embed(setup, tmp_path / "i.duckdb", batch_size=3)
    assert again["replaced"] == first["hours"] == again["hours"]
    with EmbeddingIndex(tmp_path / "i.duckdb", read_only=True) as ix:
        assert ix.count() == HOURS
    assert len(pq.read_table(again["shards"])) == HOURS  # the old shards were swapped out


def test_several_models_share_one_index(setup, tmp_path):
    a = _embed(setup, tmp_path / "i.duckdb")
    b = _embed(setup, tmp_path / "i.duckdb", ckpt=setup["ckpt16"])
    assert a["model_id"] != b["model_id"] and b["embedding_dim"] == 16
    with EmbeddingIndex(tmp_path / "i.duckdb", read_only=True) as ix:
        assert ix.count(a["model_id"]) == ix.count(b["model_id"]) == HOURS
        assert ix.vectors(b["model_id"]).matrix.shape == (HOURS, 16)


def test_two_worker_processes_give_the_same_embeddings_as_one(setup, tmp_path):
    one = _embed(setup, tmp_path / "one.duckdb")
    two = _embed(setup, tmp_path / "two.duckdb", workers=2, batch_size=2)
    assert two["hours"] == one["hours"]
    with (
        EmbeddingIndex(tmp_path / "one.duckdb", read_only=True) as a,
        EmbeddingIndex(tmp_path / "two.duckdb", read_only=True) as b,
    ):
        np.testing.assert_array_equal(a.vectors().times, b.vectors().times)
        np.testing.assert_allclose(a.vectors().matrix, b.vectors().matrix, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_for_another_grid_is_refused_and_the_index_left_intact(setup, tmp_path):
    _embed(setup, tmp_path / "i.duckdb")
    other = write_untrained_checkpoint(tmp_path / "other.ckpt", HRRR_CONUS.coarsen(8))
    with pytest.raises(CheckpointError, match=r"trained on grid 'hrrr-conus/8'.*'hrrr-conus/16'"):
        _embed(setup, tmp_path / "i.duckdb", ckpt=other)
    with EmbeddingIndex(tmp_path / "i.duckdb", read_only=True) as ix:
        assert ix.count() == HOURS and len(ix.models()) == 1


def test_an_archive_without_stored_hours_is_refused(setup, tiny_grid, tmp_path):
    from wxembed.pipelines.embed import embed_archive

    Archive.create(tmp_path / "empty.zarr", tiny_grid)
    with pytest.raises(ArchiveError, match="no stored hours to embed"):
        embed_archive(
            tmp_path / "empty.zarr", setup["ckpt"], tmp_path / "i.duckdb", workers=1, progress=False
        )


@pytest.fixture
def cli():
    from wxembed.cli.embeddings import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_the_commands_print_results_and_fail_in_one_line_with_a_non_zero_exit(setup, tmp_path, cli):
    index = tmp_path / "i.duckdb"
    done = cli(
        "embed",
        setup["archive"].path,
        "--checkpoint",
        setup["ckpt"],
        "--index",
        index,
        "--workers",
        1,
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["hours"] == HOURS

    found = cli("search", index, "2024-06-01T05", "-k", 2, "--exclude-hours", 0, "--json")
    assert found.exit_code == 0, found.output
    stored = {str(t) for t in setup["archive"].stored_times()}
    assert {m["time"] for m in json.loads(found.stdout)["matches"]} <= stored

    absent = cli("search", index, HOLE, "-k", 2)  # the missing hour
    assert absent.exit_code == 2
    assert absent.stderr.strip().count("\n") == 0
    assert "not in the index" in absent.stderr and "2024-06-04 23:00:00Z" in absent.stderr

    too_many = cli("search", index, "2024-06-01T05", "-k", 500)
    assert too_many.exit_code == 2 and "larger than the index" in too_many.stderr

    (tmp_path / "bad.json").write_text('{"embedding": [1, 2, 3')
    bad = cli(
        "decode", tmp_path / "bad.json", "--checkpoint", setup["ckpt"], "--out", tmp_path / "x.nc"
    )
    assert bad.exit_code == 2 and "bad.json: not valid JSON" in bad.stderr
    with EmbeddingIndex(index, read_only=True) as ix:
        assert ix.count() == HOURS


# ---- killed runs and a busy index ----------------------------------------------------------------
@pytest.fixture
def small(tmp_path, tiny_grid, untrained_checkpoint, monkeypatch):
    """Four hours of their own, the untrained network, and a temporary folder of this test's
    own (where runs put their progress ledgers)."""
    import tempfile

    from conftest import storm_archive

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("TMPDIR", str(scratch))
    archive = storm_archive(tmp_path / "small.zarr", tiny_grid, 4)
    return {"archive": archive, "ckpt": untrained_checkpoint, "tmp": scratch}


def _run_until(script: str, done, timeout: float = 60.0):
    """Start ``script`` in a process of its own and return it once ``done()`` holds."""
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while not done():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the helper process ended or stalled before it got there ({proc.poll()})")
        time.sleep(0.02)
    return proc


def test_scratch_folders_of_a_killed_process_are_swept_and_live_ones_kept(small, tmp_path):
    import os
    import signal

    from wxembed.pipelines.embed import _staging
    from wxembed.pipelines.progress import temporary_ledger
    from wxembed.pipelines.workers import owned_folder

    shards, ready = tmp_path / "shards", tmp_path / "ready"
    shards.mkdir()
    script = (
        "import time; from wxembed.pipelines.workers import owned_folder\n"
        f"with owned_folder('wxembed-ledger-', {str(small['tmp'])!r}), "
        f"owned_folder('.m.partial-', {str(shards)!r}):\n"
        f"    open({str(ready)!r}, 'w').close(); time.sleep(60)\n"
    )
    proc = _run_until(script, ready.exists)
    killed = [*small["tmp"].glob("wxembed-ledger-*"), *shards.glob(".m.partial-*")]
    assert len(killed) == 2
    with owned_folder(".m.partial-", shards) as live:  # a run still going: never swept
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        with temporary_ledger() as ledger, _staging(shards, "other") as staging:
            assert Path(ledger.folder).parent == small["tmp"] and staging.parent == shards
            assert not any(p.exists() for p in killed)
            assert live.is_dir()
    assert not any(shards.iterdir()) and not any(small["tmp"].iterdir())


@pytest.mark.slow
def test_the_folders_a_killed_embed_leaves_are_removed_by_the_next_run(small, tmp_path):
    import os
    import signal

    shards = tmp_path / "i-shards"
    script = (
        "import wxembed; from wxembed.pipelines.embed import embed_archive; "
        f"embed_archive({str(small['archive'].path)!r}, {str(small['ckpt'])!r}, "
        f"{str(tmp_path / 'i.duckdb')!r}, workers=2, progress=True)"
    )
    proc = _run_until(
        script,
        lambda: any(shards.glob(".*.partial-*")) and any(small["tmp"].glob("wxembed-ledger-*")),
    )
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    left = [*shards.glob(".*.partial-*"), *small["tmp"].glob("wxembed-ledger-*")]
    assert len(left) == 2  # what the kill leaves: its staging folder and its progress ledger

    report = _embed(small, tmp_path / "i.duckdb", progress=True)
    assert report["hours"] == 4 and not any(p.exists() for p in left)
    assert not any(shards.glob(".*.partial-*")) and not any(small["tmp"].glob("wxembed-*"))
    assert [p.name for p in (shards / report["model_id"]).iterdir()] == [
        Path(s).name for s in report["shards"]
    ]  # no lock file among the shards


def test_an_index_opened_by_another_process_during_the_run_keeps_its_shards_and_rows(
    small, tmp_path
):
    from wxembed.errors import EmbeddingIndexError

    index = tmp_path / "i.duckdb"
    first = _embed(small, index)
    model_dir = Path(first["shards"][0]).parent
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    # a reader (a search, a web server) that opens the index once this run has begun its work
    script = (
        "import duckdb, glob, time\n"
        f"while not glob.glob({str(model_dir.parent / '.*.partial-*')!r}): time.sleep(0.005)\n"
        f"con = duckdb.connect({str(index)!r}, read_only=True)\n"
        f"open({str(tmp_path / 'reading')!r}, 'w').close()\n"
        "time.sleep(60)\n"
    )
    import subprocess
    import sys

    reader = subprocess.Popen([sys.executable, "-c", script])
    try:
        with pytest.raises(EmbeddingIndexError, match=r"in use by another process \(PID \d+\)"):
            _embed(small, index, batch_size=1)
        assert (tmp_path / "reading").exists()
    finally:
        reader.kill()
        reader.wait()
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before
    assert not any(model_dir.parent.glob(".*.partial-*"))
    with EmbeddingIndex(index, read_only=True) as idx:
        assert idx.count(first["model_id"]) == 4
