"""Every Beam pipeline on Beam's DaskRunner, against a real ``dask.distributed`` LocalCluster of
two worker processes (``dask_cluster`` in conftest.py): the same archive, manifest and index as
on the DirectRunner, bit for bit, and end-of-run reports counted from the manifest and shards.

The cluster starts once for the session (about 6 s on a 2-core machine); each pipeline here
runs in 1 to 6 s on it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_START, storm_field, write_untrained_checkpoint

from wxembed.archive import Archive
from wxembed.errors import WxembedError
from wxembed.pipelines import DASK_RUNNER, pipeline_options, runner_args
from wxembed.pipelines.ingest import Task, ingest_files, ingest_synthetic, run_tasks, synth_reader
from wxembed.pipelines.progress import Ledger
from wxembed.sources.grib import write_refc_file
from wxembed.sources.hrrr import path_for_valid_time
from wxembed.sources.synthetic import SynthConfig
from wxembed.times import hour_range

pytest.importorskip("dask.distributed", reason="the distributed extra is not installed")


def _same_archives(a: Path, b: Path) -> None:
    """Two archives hold the same hours, images and manifest, bit for bit."""
    x, y = Archive(a), Archive(b)
    mx, my = x.manifest().drop(columns="slot"), y.manifest().drop(columns="slot")
    assert mx.equals(my), (mx, my)
    times = x.stored_times()
    np.testing.assert_array_equal(x.read_raw(times), y.read_raw(times))


# ---- the runner options, without a cluster ---------------------------------------------------
def test_the_short_form_names_beams_dask_runner_and_its_scheduler():
    assert runner_args("dask", "tcp://10.0.0.5:8786") == [
        f"--runner={DASK_RUNNER}",
        "--dask_client_address=tcp://10.0.0.5:8786",
    ]
    assert runner_args(None, "tcp://h:8786")[0] == f"--runner={DASK_RUNNER}"  # implied
    assert runner_args("flink") == ["--runner=FlinkRunner"]
    assert runner_args() == []
    with pytest.raises(WxembedError, match="--dask-address needs --runner dask"):
        runner_args("flink", "tcp://h:8786")


def test_dask_work_is_spread_over_partitions_unless_the_user_sizes_them():
    opts = pipeline_options(["--runner=dask"], workers=2, items=30).get_all_options()
    assert opts["runner"] == DASK_RUNNER and opts["npartitions"] == 8  # 4 per worker
    assert (
        pipeline_options(["--runner=dask"], workers=2, items=3).get_all_options()["npartitions"]
        == 3
    )  # never more partitions than items (Beam's default puts 128 items in one)
    mine = ["--runner=DaskRunner", "--dask_partition_size=5"]
    opts = pipeline_options(mine, workers=2, items=30).get_all_options()
    assert opts["partition_size"] == 5 and opts["npartitions"] is None


# ---- on the cluster ------------------------------------------------------------------------
def test_synth_on_dask_writes_the_same_archive_as_the_direct_runner_using_both_workers(
    dask_cluster, tmp_path, tiny_grid
):
    config = SynthConfig(seed=3, grid=tiny_grid)
    direct = ingest_synthetic(config, TINY_START, 8, tmp_path / "d.zarr", workers=1, progress=False)
    archive = Archive.create(tmp_path / "k.zarr", tiny_grid)
    tasks = [Task(key=str(t), time=str(t)) for t in hour_range(TINY_START, 8)]
    ledger = Ledger(tmp_path / "ledger")
    (tmp_path / "ledger").mkdir()
    report = run_tasks(
        tasks,
        synth_reader(config),
        archive,
        beam_args=runner_args("dask", dask_cluster),
        progress=False,
        ledger=ledger,
    )
    assert (
        report.counts()
        == direct.counts()
        == {
            "stored": 8,
            "missing": 0,
            "failed": 0,
            "skipped": 0,
        }
    )
    assert [r["time"] for r in report.records] == [str(t) for t in hour_range(TINY_START, 8)]
    _same_archives(tmp_path / "d.zarr", tmp_path / "k.zarr")
    workers = list((tmp_path / "ledger").glob("part-*.tsv"))  # one file per worker process
    assert len(workers) == 2, workers


def test_ingesting_real_and_broken_files_on_dask_records_every_hour_as_the_direct_runner_does(
    dask_cluster, shared_data, tmp_path, tiny_grid
):
    root = tmp_path / "noaa"
    hours = [np.datetime64("2024-07-01T00", "s") + np.timedelta64(h, "h") for h in range(6)]
    for h, t in enumerate(hours[:4]):
        write_refc_file(root / path_for_valid_time(t), storm_field(tiny_grid, h, str(t)))
    shutil.copy(  # a real HRRR file without REFC: missing, with what it holds as the reason
        shared_data / "hrrr" / "hrrr.t00z.wrfsfcf00-HPBL.grib2",
        root / path_for_valid_time(hours[4]),
    )
    good = (root / path_for_valid_time(hours[0])).read_bytes()
    (root / path_for_valid_time(hours[5])).parent.mkdir(parents=True, exist_ok=True)
    (root / path_for_valid_time(hours[5])).write_bytes(good[: len(good) // 2])  # truncated

    direct = ingest_files(root, tmp_path / "d.zarr", workers=1, progress=False)
    dask = ingest_files(
        root, tmp_path / "k.zarr", beam_args=runner_args("dask", dask_cluster), progress=False
    )
    expected = {"stored": 4, "missing": 1, "failed": 1, "skipped": 0}
    assert dask.counts() == direct.counts() == expected
    assert [r["reason"] for r in dask.records] == [r["reason"] for r in direct.records]
    assert "no REFC" in dask.problems()[0]["reason"]
    _same_archives(tmp_path / "d.zarr", tmp_path / "k.zarr")
    again = ingest_files(
        root, tmp_path / "k.zarr", beam_args=runner_args("dask", dask_cluster), progress=False
    )
    assert again.counts()["skipped"] == 4 and again.counts()["stored"] == 0


def test_embed_on_dask_gives_the_direct_runners_index_bit_for_bit(
    dask_cluster, tmp_path, tiny_grid
):
    from wxembed.index import EmbeddingIndex
    from wxembed.pipelines.embed import embed_archive

    config = SynthConfig(seed=5, grid=tiny_grid)
    ingest_synthetic(config, TINY_START, 20, tmp_path / "a.zarr", workers=1, progress=False)
    ckpt = write_untrained_checkpoint(tmp_path / "u.ckpt", tiny_grid)
    direct = embed_archive(
        tmp_path / "a.zarr", ckpt, tmp_path / "d.duckdb", workers=1, progress=False
    )
    dask = embed_archive(
        tmp_path / "a.zarr",
        ckpt,
        tmp_path / "k.duckdb",
        batch_size=4,  # 5 batches over 2 workers
        beam_args=runner_args("dask", dask_cluster),
        progress=False,
    )
    assert dask["hours"] == direct["hours"] == 20
    with EmbeddingIndex(tmp_path / "d.duckdb") as d, EmbeddingIndex(tmp_path / "k.duckdb") as k:
        a, b = d.vectors(), k.vectors()
        np.testing.assert_array_equal(a.times, b.times)
        np.testing.assert_array_equal(a.matrix, b.matrix)  # batch 8 vs 4: the same numbers
    assert len(dask["shards"]) >= 2  # written by the workers themselves, no Beam sink


def test_fetch_on_dask_stores_and_counts_what_the_mirror_serves(dask_cluster, tmp_path):
    from test_fetch import FAST, GRID, START, LoopbackArchive, write_hour

    from wxembed.pipelines.fetch import fetch_hours

    server = LoopbackArchive(tmp_path / "www")
    try:
        for h in (0, 1, 3):
            write_hour(server.root / "good", h)
        report = fetch_hours(
            START,
            START + np.timedelta64(4, "h"),
            tmp_path / "a.zarr",
            base_url=f"{server.url}/good",
            grid=GRID,
            beam_args=runner_args("dask", dask_cluster),
            progress=False,
            config=FAST,
        )
    finally:
        server.close()
    assert report.counts() == {"stored": 3, "missing": 1, "failed": 0, "skipped": 0}
    assert "HTTP 404" in report.problems()[0]["reason"]
    assert report.hours_fetched == 4 and report.bytes_fetched == server.bytes_sent()


def test_the_cli_short_form_runs_on_the_cluster_and_reports_what_was_stored(dask_cluster, tmp_path):
    from test_cli import ok, wxembed

    target = tmp_path / "s.zarr"
    out = wxembed(
        "synth",
        "--archive",
        str(target),
        "--hours",
        "3",
        "--coarsen",
        "16",
        "--runner",
        "dask",
        "--dask-address",
        dask_cluster,
    )
    assert "3 stored, 0 missing, 0 failed" in ok(out)
    assert len(Archive(target)) == 3


def test_runner_mistakes_are_one_error_line(tmp_path):
    from test_cli import one_line_error, wxembed

    synth = ["synth", "--archive", tmp_path / "x.zarr", "--hours", "1", "--coarsen", "16"]
    one_line_error(wxembed(*synth, "--runner", "Nope"), "Unexpected pipeline runner: Nope", "dask")
    mixed = wxembed(*synth, "--runner", "direct", "--dask-address", "tcp://127.0.0.1:1")
    one_line_error(mixed, "--dask-address needs --runner dask")


def test_a_report_counts_the_manifest_not_the_runner(tmp_path, tiny_grid):
    """The report of hours another process stored meanwhile says so (no runner metric could)."""
    from wxembed.pipelines.ingest import records_of

    archive = Archive.create(tmp_path / "a.zarr", tiny_grid)
    t = "2024-07-01T00:00:00"
    archive.write(storm_field(tiny_grid, 0, t))
    (rec,) = records_of(archive, [Task(key="/other/file.grib2", time=t)], [])
    assert rec["status"] == "superseded" and "test-seed-0" in rec["reason"]
    lost = records_of(archive, [Task(key="/nowhere/notime.grib2")], [])
    assert lost[0]["status"] == "failed" and "no outcome" in lost[0]["reason"]
    worker = {"key": "/x/y.grib2", "time": None, "status": "failed", "reason": "unreadable"}
    row = ["hour", "failed", json.dumps({**worker, "source": "/x/y.grib2", "missing_values": 0})]
    assert records_of(archive, [Task(key="/x/y.grib2")], [row])[0]["reason"] == "unreadable"
