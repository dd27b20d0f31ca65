"""The archive, the shards and training on object storage, against a real S3 server on loopback
(moto's ``ThreadedMotoServer``, started here) and fsspec's ``memory://``.

The S3 endpoint and credentials reach every process the usual way, through ``AWS_*``
environment variables (Beam's worker processes inherit them; the Dask workers get them with
``Client.run``): wxembed has no option for them.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import storm_field, train_model

from wxembed import locations as loc
from wxembed.archive import Archive, encode_dbz
from wxembed.grid import HRRR_CONUS
from wxembed.model.checkpoint import Checkpoint
from wxembed.sources.grib import decode_refc, write_refc_file
from wxembed.sources.hrrr import path_for_valid_time

pytest.importorskip("s3fs", reason="the distributed extra is not installed")

START = np.datetime64("2024-07-01T00", "s")


def _hour(h: int) -> np.datetime64:
    return START + np.timedelta64(h, "h")


@pytest.fixture(scope="module")
def s3() -> dict[str, str]:
    """A moto S3 server on 127.0.0.1 with a bucket ``bucket``; the ``AWS_*`` variables that
    reach it are set in this process for the module (and returned, for other processes)."""
    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3").create_bucket(Bucket="bucket")
    try:
        yield env
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _layout(root: Path, grid, hours: range, shared_data: Path | None = None) -> Path:
    """REFC GRIB2 files in the NOAA layout for ``hours`` (storm fields on ``grid``), plus, with
    ``shared_data``, a real HRRR GRIB2 file (no REFC) at the hour after them."""
    for h in hours:
        write_refc_file(root / path_for_valid_time(_hour(h)), storm_field(grid, h, str(_hour(h))))
    if shared_data is not None:
        real = shared_data / "hrrr" / "hrrr.t00z.wrfsfcf00-HPBL.grib2"
        shutil.copy(real, root / path_for_valid_time(_hour(max(hours) + 1)))
    return root


# ---- locations and memory:// (no server) ---------------------------------------------------
def test_a_url_that_went_through_pathlib_is_still_a_url():
    assert loc.location(Path("s3://bucket/hrrr.zarr")) == "s3://bucket/hrrr.zarr"
    assert loc.location("s3://bucket/hrrr.zarr/") == "s3://bucket/hrrr.zarr"
    assert loc.location("file:///tmp/a.zarr") == Path("/tmp/a.zarr")
    assert loc.location("a/b.zarr") == Path("a/b.zarr")
    assert loc.join("memory://x", "a", "b") == "memory://x/a/b"


def test_an_archive_in_memory_stores_reads_and_opens_with_xarray(tiny_grid):
    url = "memory://wxembed-test/a.zarr"
    loc.remove_tree(url)
    archive = Archive.create(url, tiny_grid)
    assert isinstance(archive.path, str)
    fields = [storm_field(tiny_grid, h, str(_hour(h))) for h in (2, 0, 1)]
    for f in fields:
        assert archive.write(f).status == "stored"
    archive.record(_hour(3), "missing", "no such file", "/x")
    again = Archive(url)
    assert again.summary() == {"pending": 0, "stored": 3, "missing": 1, "failed": 0}
    np.testing.assert_array_equal(again.read_raw([_hour(1)])[0], encode_dbz(fields[2].dbz))
    ds = again.dataset()
    assert ds.reflectivity.shape == (3, *tiny_grid.shape)
    assert list(ds.time.values) == [_hour(h) for h in range(3)]
    with pytest.raises(Exception, match="already exists"):
        Archive.create(url, tiny_grid)
    assert not loc.put_if_absent(loc.join(url, "zarr.json"), b"{}")  # create-if-absent holds


# ---- S3 on loopback ------------------------------------------------------------------------
def test_real_grib2_into_s3_then_train_embed_into_shards_on_s3_and_search(
    s3, shared_data, tmp_path, tiny_grid
):
    from wxembed.analysis.search import search_similar
    from wxembed.index import EmbeddingIndex
    from wxembed.pipelines.embed import embed_archive
    from wxembed.pipelines.ingest import ingest_files

    root = _layout(tmp_path / "noaa", tiny_grid, range(12), shared_data)
    url = "s3://bucket/flow/hrrr.zarr"
    report = ingest_files(root, url, workers=1, progress=False)
    assert report.counts() == {"stored": 12, "missing": 1, "failed": 0, "skipped": 0}
    (problem,) = report.problems()
    assert "no REFC" in problem["reason"] and problem["time"] == str(_hour(12))
    archive = Archive(url)
    assert archive.summary()["stored"] == 12
    for h in (0, 11):
        expected = decode_refc(root / path_for_valid_time(_hour(h))).dbz
        assert np.abs(archive.read_dbz(_hour(h)) - expected).max() <= 0.25

    # training streams hours from the store (nothing held in memory, nothing downloaded whole)
    trained = train_model(url, tmp_path / "model", num_steps=4, in_memory_limit_gb=0)
    assert trained["config"]["archive"] == url and trained["global_step"] == 4

    # the model folder on the store too: embed takes its URL (workers keep a local copy)
    fs, _ = loc.filesystem("s3://bucket")
    best = tmp_path / "model" / "checkpoints" / "best.ckpt"
    fs.put_file(str(best), "bucket/flow/model/checkpoints/best.ckpt")
    index = tmp_path / "i.duckdb"
    shards = "s3://bucket/flow/shards"
    done = embed_archive(
        url, "s3://bucket/flow/model", index, shards_dir=shards, workers=1, progress=False
    )
    assert done["hours"] == 12 and all(s.startswith(f"{shards}/") for s in done["shards"])
    assert done["model_id"] == Checkpoint(best).model_id
    assert loc.list_files(loc.join(shards, done["model_id"]), ".parquet") == done["shards"]
    assert not [p for p in loc.list_files(shards) if ".partial-" in str(p)]  # staging gone
    with EmbeddingIndex(index) as ix:
        assert ix.count(done["model_id"]) == 12
    hits = search_similar(index, str(_hour(5)), k=3, exclude_hours=0)
    assert len(hits) == 3 and _hour(5) not in set(hits.time.values.astype("datetime64[s]"))


def test_dask_workers_ingest_and_embed_into_s3_as_the_direct_runner_does(
    s3, dask_cluster, tmp_path, tiny_grid, untrained_checkpoint
):
    from dask.distributed import Client

    from wxembed.index import EmbeddingIndex
    from wxembed.pipelines import runner_args
    from wxembed.pipelines.embed import embed_archive
    from wxembed.pipelines.ingest import ingest_files

    with Client(dask_cluster) as client:  # the workers started before the server: tell them
        client.run(lambda: os.environ.update(s3))
    root = _layout(tmp_path / "noaa", tiny_grid, range(8))
    dask = runner_args("dask", dask_cluster)
    report = ingest_files(root, "s3://bucket/dask/a.zarr", beam_args=dask, progress=False)
    local = ingest_files(root, tmp_path / "a.zarr", workers=1, progress=False)
    assert (
        report.counts()
        == local.counts()
        == {
            "stored": 8,
            "missing": 0,
            "failed": 0,
            "skipped": 0,
        }
    )
    remote = Archive("s3://bucket/dask/a.zarr")
    times = remote.stored_times()
    np.testing.assert_array_equal(
        remote.read_raw(times), Archive(tmp_path / "a.zarr").read_raw(times)
    )

    on_s3 = embed_archive(
        "s3://bucket/dask/a.zarr",
        untrained_checkpoint,
        tmp_path / "k.duckdb",
        shards_dir="s3://bucket/dask/shards",
        beam_args=dask,
        progress=False,
    )
    direct = embed_archive(
        tmp_path / "a.zarr", untrained_checkpoint, tmp_path / "d.duckdb", workers=1, progress=False
    )
    assert on_s3["hours"] == direct["hours"] == 8
    with EmbeddingIndex(tmp_path / "k.duckdb") as k, EmbeddingIndex(tmp_path / "d.duckdb") as d:
        np.testing.assert_array_equal(k.vectors().matrix, d.vectors().matrix)


@pytest.mark.slow
def test_an_ingest_into_s3_killed_part_way_completes_each_hour_once_when_run_again(s3, tmp_path):
    grid = HRRR_CONUS.coarsen(2)
    hours = range(24)
    root = _layout(tmp_path / "noaa", grid, hours)
    url = "s3://bucket/killed/a.zarr"
    cmd = [sys.executable, "-m", "wxembed.cli", "ingest", str(root), "--archive", url]
    env = {**os.environ, **s3}
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    stored, deadline = 0, time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                stored = len(Archive(url))
            except Exception:  # noqa: BLE001 - not created yet, or being created this instant
                stored = 0
            if stored >= 3:
                break
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert 3 <= stored < len(hours), f"could not catch the ingest part-way (stored {stored})"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    archive = Archive(url)
    slots = archive.slot_times.tolist()
    assert len(slots) == len(set(slots)) == len(hours)
    assert archive.summary() == {"pending": 0, "stored": 24, "missing": 0, "failed": 0}
    assert "already there" in rerun.stdout + rerun.stderr
    for h in (0, 23):
        expected = decode_refc(root / path_for_valid_time(_hour(h))).dbz
        assert np.abs(archive.read_dbz(_hour(h)) - expected).max() <= 0.25
