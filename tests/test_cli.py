"""The ``wxembed`` command: every sub-command run as a user runs it, on the tiny shared data.

Each test checks what a user relies on: the files a command writes, what it prints (text or
JSON), its exit code, and the one line (``error: ...``, exit code 2) a mistake earns.
"""

from __future__ import annotations

import functools
import http.server
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_HOURS, TINY_START, one_torch_thread
from typer.testing import CliRunner

from wxembed.archive import Archive
from wxembed.cli import app, console

SMALL_HP = [
    "--hp=widths=[16,32]",
    "--hp=enc_blocks=[0,1]",
    "--hp=dec_blocks=[1,1]",
    "--hp=code_channels=4",
    "--hp=embedding_dim=8",
]
"""A small fast network for the training tests: a few steps take a second or two."""
PNG_MAGIC = b"\x89PNG"


@pytest.fixture(autouse=True)
def _log_levels_restored():
    """The command sets log levels for its console; other tests' logs keep theirs."""
    loggers = [logging.getLogger(n) for n in ("wxembed", "wxembed.demo", "apache_beam")]
    levels = [lg.level for lg in loggers]
    yield
    console.setup_logging(verbose=False)  # the console's state: not verbose
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)


def wxembed(*args):
    """Run ``wxembed ARGS...`` in this process (one PyTorch thread: the data is tiny)."""
    with one_torch_thread():
        return CliRunner().invoke(app, [str(a) for a in args])


def ok(result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception}"
    return result.stdout


def one_line_error(result, *expected: str) -> str:
    """A user's mistake: exit code 2 and one line on stderr naming it, no traceback."""
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in result.output
    for text in expected:
        assert text in err, err
    return err


def strict_json(text: str):
    """JSON as strict readers read it: NaN or Infinity is an error."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON output"))


# ---- the command and its console ---------------------------------------------------------------
def test_help_lists_every_command_without_loading_pytorch_or_beam():
    code = (
        "import sys; from wxembed.cli import app; "
        "print(sorted(m for m in ('torch', 'apache_beam', 'matplotlib') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.stdout.strip() == "[]", loaded.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "wxembed.cli", "--help"], capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    for command in (
        "synth fetch ingest info plot train tune embed search interpolate cluster encode "
        "decode evaluate report demo serve"
    ).split():
        assert f" {command} " in shown.stdout, command


def test_beam_workers_start_up_lines_are_held_back_and_other_lines_pass(capfd):
    console.setup_logging(verbose=False)
    worker = (
        "import sys; sys.stderr.write('WARNING:root:apitools not found, and bigquery client "
        "libraries are not available\\nINFO:__main__:Logging handler created.\\n"
        "WARNING:__main__:No semi_persistent_directory found: x\\n"
        "WARNING:apache_beam.options.pipeline_options:Discarding unparseable args: []\\n"
        "worker: a real problem\\n')"
    )
    with console.beam_worker_output():
        subprocess.run([sys.executable, "-c", worker], check=True)
    err = capfd.readouterr().err
    assert "worker: a real problem" in err
    for noise in ("apitools", "Logging handler", "semi_persistent", "unparseable"):
        assert noise not in err


def test_verbose_lets_every_worker_line_through(capfd):
    worker = "import sys; sys.stderr.write('INFO:__main__:Logging handler created.\\n')"
    console.setup_logging(verbose=True)
    try:
        with console.beam_worker_output():
            subprocess.run([sys.executable, "-c", worker], check=True)
    finally:
        console.setup_logging(verbose=False)
    assert "Logging handler created." in capfd.readouterr().err


def test_json_output_writes_nan_and_infinity_as_null():
    doc = strict_json(
        console.to_json({"a": float("nan"), "b": [1.5, float("inf")], "t": Path("x")})
    )
    assert doc == {"a": None, "b": [1.5, None], "t": "x"}


# ---- data: synth, fetch, ingest, info, plot ----------------------------------------------------
def test_synth_fills_an_archive_and_a_second_run_reuses_it(tmp_path):
    target = tmp_path / "s.zarr"
    args = ("synth", "--archive", target, "--hours", 4, "--coarsen", 16, "--workers", 1)
    assert "4 stored, 0 missing, 0 failed, 0 already there" in ok(wxembed(*args))
    assert Archive(target).summary()["stored"] == 4
    assert "0 stored, 0 missing, 0 failed, 4 already there" in ok(wxembed(*args))


def test_synth_grib2_files_in_the_noaa_layout_ingest_into_an_archive(tmp_path):
    noaa = tmp_path / "noaa"
    out = ok(wxembed("synth", "--grib-dir", noaa, "--hours", 2, "--coarsen", 16))
    assert out.strip() == f"wrote 2 GRIB2 files below {noaa}"
    assert len(list(noaa.rglob("*.grib2"))) == 2
    target = tmp_path / "hrrr.zarr"
    out = ok(wxembed("ingest", noaa, "--archive", target, "--workers", 1))
    assert "2 stored, 0 missing, 0 failed" in out
    assert Archive(target).grid.shape == (66, 112)


def test_ingest_of_nothing_is_a_one_line_error(tmp_path):
    one_line_error(wxembed("ingest", tmp_path / "nothing-here", "--archive", tmp_path / "a.zarr"))


def test_synth_refuses_an_unknown_grid_name(tmp_path):
    result = wxembed("synth", "--archive", tmp_path / "a.zarr", "--grid", "mars")
    assert result.exit_code == 2 and "unknown grid 'mars'" in result.output


@pytest.fixture
def empty_mirror(tmp_path):
    """A local HTTP server with no files: every hour asked for is missing (HTTP 404)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    (tmp_path / "mirror").mkdir()
    handler = functools.partial(Quiet, directory=str(tmp_path / "mirror"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_records_hours_the_mirror_lacks_as_missing(empty_mirror, tmp_path):
    target = tmp_path / "hrrr.zarr"
    result = wxembed(
        "fetch",
        "--start",
        "2019-01-01T00",
        "--end",
        "2019-01-01T02",
        "--archive",
        target,
        "--base-url",
        empty_mirror,
        "--workers",
        1,
    )
    assert "0 stored, 2 missing, 0 failed" in ok(result)
    assert result.stderr.count("missing: 2019-01-01") == 2  # one line per hour, with the reason
    assert Archive(target).summary()["missing"] == 2


def test_fetch_of_an_empty_period_is_a_one_line_error(tmp_path):
    result = wxembed(
        "fetch", "--start", "2019-01-02", "--end", "2019-01-01", "--archive", tmp_path / "a.zarr"
    )
    one_line_error(result, "must be after start")


def test_info_prints_the_archive_and_its_manifest(tiny_archive):
    text = ok(wxembed("info", tiny_archive))
    assert f"  stored: {TINY_HOURS}" in text and "hrrr-conus/16" in text
    doc = strict_json(ok(wxembed("info", tiny_archive, "--manifest", "--json")))
    assert doc["stored"] == TINY_HOURS and doc["failed"] == 0
    assert doc["first"].startswith("2024-06-01 00:00") and len(doc["hours"]) == TINY_HOURS
    assert {h["status"] for h in doc["hours"]} == {"stored"}


def test_info_of_a_folder_without_an_archive_is_a_one_line_error(tmp_path):
    one_line_error(wxembed("info", tmp_path), str(tmp_path))


def test_plot_draws_an_hour_and_refuses_one_not_stored(tiny_archive, tmp_path):
    out = ok(wxembed("plot", tiny_archive, "--time", "2024-06-02T12", "--out", tmp_path / "h.png"))
    assert out.strip() == f"wrote {tmp_path / 'h.png'}"
    assert (tmp_path / "h.png").read_bytes()[:4] == PNG_MAGIC
    one_line_error(wxembed("plot", tiny_archive, "--time", "2030-01-01T00"), "not stored")
    bad = wxembed("plot", tiny_archive, "--time", "teatime")
    assert bad.exit_code == 2 and "is not a time" in bad.output


# ---- learn: train, tune ------------------------------------------------------------------------
def test_train_writes_checkpoints_and_refuses_to_overwrite_them(tiny_archive, tmp_path):
    out = tmp_path / "m"
    args = ("train", tiny_archive, "--out", out, "--steps", 2, "--checkpoints", 1, *SMALL_HP)
    report = strict_json(ok(wxembed(*args)))
    assert report["global_step"] == 2 and report["parameters"] > 0
    assert Path(report["last_checkpoint"]).is_file() and (out / "checkpoints/last.ckpt").is_file()
    one_line_error(wxembed(*args), "already holds checkpoints")
    bad = wxembed("train", tiny_archive, "--out", tmp_path / "n", "--hp", "widths")
    assert bad.exit_code == 2 and "NAME=VALUE" in bad.output


def test_tune_runs_its_trials_and_a_second_call_resumes_the_study(tiny_archive, tmp_path):
    space = '{"num_layers": [2], "pool_size": [2], "num_filters": [4], "num_dense": [0]}'
    args = (
        "tune",
        tiny_archive,
        "--storage",
        f"sqlite:///{tmp_path / 't.db'}",
        "--arch",
        "seed",
        "--images",
        2,
        "--steps",
        2,
        "--space",
        space,
    )
    summary = strict_json(ok(wxembed(*args)))
    assert summary["study"] == "wxembed-tune" and len(summary["trials"]) == 1
    assert summary["trials"][0]["params"] == {k: v[0] for k, v in json.loads(space).items()}
    again = strict_json(ok(wxembed(*args)))  # the grid is done: nothing new to try
    assert len(again["trials"]) == 1
    bad = wxembed("tune", tiny_archive, "--space", "{num_layers: 2")
    assert bad.exit_code == 2 and "not valid JSON" in bad.output


# ---- the embeddings: embed, search, interpolate, cluster, encode, decode ----------------------
def test_embed_from_a_model_folder_fills_an_index(tiny_archive, trained_model, tmp_path):
    index = tmp_path / "i.duckdb"
    args = ("embed", tiny_archive, "--checkpoint", trained_model, "--index", index)
    report = strict_json(ok(wxembed(*args, "--workers", 1)))
    assert report["hours"] == TINY_HOURS and report["index"] == str(index)
    files, _, folder = report["shards"].partition(" files in ")  # "N files in FOLDER"
    assert len(list(Path(folder).glob("*.parquet"))) == int(files) >= 1
    one_line_error(wxembed("embed", tiny_archive, "--checkpoint", tmp_path / "none.ckpt"))


def test_search_prints_and_draws_the_hours_nearest_an_hour(tiny_index, tmp_path):
    png = tmp_path / "s.png"
    text = ok(wxembed("search", tiny_index, "2024-06-02T12", "-k", 3, "--png", png))
    assert text.startswith("query: 2024-06-02 12:00:00Z") and text.count("2024-06-") >= 4
    assert text.strip().endswith(f"wrote {png}") and png.read_bytes()[:4] == PNG_MAGIC
    doc = strict_json(ok(wxembed("search", tiny_index, "2024-06-02T12", "-k", 3, "--json")))
    times = [np.datetime64(m["time"]) for m in doc["matches"]]
    assert len(times) == 3 and doc["png"] is None
    assert all(abs(t - np.datetime64("2024-06-02T12")) > np.timedelta64(24, "h") for t in times)
    distances = [m["distance"] for m in doc["matches"]]
    assert distances == sorted(distances)
    weighed = ("search", tiny_index, "2024-06-02T12", "-k", 3, "--json", "--coverage-weight", 2)
    doc = strict_json(ok(wxembed(*weighed)))
    assert doc["coverage_weight"] == 2 and len(doc["matches"]) == 3
    bad = wxembed("search", tiny_index, "2024-06-02T12", "--coverage-weight", -1)
    assert bad.exit_code == 2 and "coverage-weight" in bad.output


def test_search_with_a_dbz_array_finds_its_own_hour_first(tiny_index, tiny_archive, tmp_path):
    field = tmp_path / "q.npy"
    np.save(field, Archive(tiny_archive).read_dbz("2024-06-03T06"))
    png = tmp_path / "q.png"
    doc = strict_json(ok(wxembed("search", tiny_index, field, "-k", 2, "--json", "--png", png)))
    assert doc["matches"][0]["time"] == "2024-06-03T06:00:00"
    assert doc["png"] == str(png) and png.read_bytes()[:4] == PNG_MAGIC


def test_search_for_an_hour_the_index_lacks_is_a_one_line_error(tiny_index):
    one_line_error(wxembed("search", tiny_index, "2030-01-01T00"), "not in the index")
    bad = wxembed("search", tiny_index, "2024-06-02T12", "--start", "someday")
    assert bad.exit_code == 2 and "is not a time" in bad.output


def test_interpolate_scores_and_draws_one_pair_or_every_pair(tiny_archive, trained_model, tmp_path):
    png = tmp_path / "i.png"
    text = ok(
        wxembed(
            "interpolate",
            tiny_archive,
            "--checkpoint",
            trained_model,
            "--start",
            "2024-06-02T00",
            "--end",
            "2024-06-02T02",
            "--png",
            png,
        )
    )
    assert "truth 2024-06-02 01:00:00Z" in text and "pixel_average" in text
    assert "better: mse " in text and png.read_bytes()[:4] == PNG_MAGIC
    doc = strict_json(
        ok(
            wxembed(
                "interpolate",
                tiny_archive,
                "--checkpoint",
                trained_model,
                "--every-pair",
                "--max-pairs",
                3,
                "--json",
            )
        )
    )
    assert doc["pairs"] == 3 and set(doc["scores"]) >= {"embedding_midpoint", "pixel_average"}
    bad = wxembed("interpolate", tiny_archive, "--checkpoint", trained_model)
    assert bad.exit_code == 2 and "give --start and --end" in bad.output


def test_cluster_groups_every_hour_and_draws_the_centroids(tiny_index, tmp_path):
    doc = strict_json(ok(wxembed("cluster", tiny_index, "-k", 3, "--json")))
    assert doc["k"] == 3 and sum(doc["sizes"]) == TINY_HOURS
    text = ok(wxembed("cluster", tiny_index, "-k", 3, "--png-dir", tmp_path / "c"))
    assert "3 clusters" in text and "hours by UTC hour of day" in text
    pictures = sorted((tmp_path / "c").glob("cluster_*.png"))
    assert [p.name for p in pictures] == ["cluster_00.png", "cluster_01.png", "cluster_02.png"]


def test_encode_and_decode_go_there_and_back_with_a_model_folder(
    tiny_archive, trained_model, tmp_path
):
    z = tmp_path / "z.json"
    hour = ("--archive", tiny_archive, "--time", "2024-06-02T12", "--checkpoint", trained_model)
    text = ok(wxembed("encode", *hour, "--out", z))
    assert text.startswith(f"wrote {z}: 50 numbers for 7392 pixels")
    assert strict_json(z.read_text())["time"] == "2024-06-02T12:00:00"
    assert strict_json(ok(wxembed("encode", *hour)))["embedding_dim"] == 50
    back = tmp_path / "back.nc"
    text = ok(wxembed("decode", z, "--checkpoint", trained_model, "--out", back))
    assert text.startswith(f"wrote {back}: 7392 pixels from 50 numbers") and back.is_file()
    one_line_error(wxembed("decode", tmp_path / "none.json", "--checkpoint", trained_model))
    # --matched restores the hour's echo area at 20 dBZ (one of the coverage thresholds)
    import xarray as xr

    from wxembed.archive import Archive

    truth = Archive(tiny_archive).read_dbz(np.datetime64("2024-06-02T12"))
    sharp = tmp_path / "sharp.nc"
    ok(wxembed("decode", z, "--checkpoint", trained_model, "--out", sharp, "--matched"))
    area = {
        name: int((np.nan_to_num(xr.open_dataset(f)["reflectivity"].values) >= 20).sum())
        for name, f in (("plain", back), ("matched", sharp))
    }
    want = int((np.nan_to_num(truth) >= 20).sum())
    assert want > 20 and abs(area["matched"] - want) <= 1 < abs(area["plain"] - want), (area, want)


# ---- score: evaluate, report, demo -------------------------------------------------------------
def test_evaluate_writes_strict_json_and_a_failed_run_leaves_no_file(
    tiny_archive, trained_model, tmp_path
):
    out = tmp_path / "e.json"
    text = ok(wxembed("evaluate", trained_model, tiny_archive, "--out", out, "--max-hours", 4))
    assert text.strip().endswith(f"wrote {out}")
    doc = strict_json(out.read_text())
    assert {"autoencoder", "pca", "climatology"} <= set(doc["scores"])
    missing = tmp_path / "gone.json"
    one_line_error(wxembed("evaluate", tmp_path / "no-model", tiny_archive, "--out", missing))
    assert not missing.exists()


def test_report_writes_one_self_contained_html_file(tiny_archive, trained_model, tmp_path):
    out = tmp_path / "r.html"
    assert ok(wxembed("report", trained_model, tiny_archive, "--out", out)).strip() == (
        f"wrote {out}"
    )
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page


def test_check_writable_creates_the_folder_but_not_the_file(tmp_path):
    from wxembed.errors import WxembedError
    from wxembed.figures.report import check_writable

    target = tmp_path / "new" / "report.html"
    assert check_writable(target) == target
    assert target.parent.is_dir() and list(target.parent.iterdir()) == []
    with pytest.raises(WxembedError, match="cannot write"):
        check_writable(target.parent)  # a folder is in the way


def test_demo_runs_the_main_job_and_ends_with_the_report(tmp_path, caplog):
    out = tmp_path / "demo"
    args = ("demo", "--out", out, "--coarsen", 16, "--hours", 24, "--steps", 4, "--workers", 1)
    with caplog.at_level("INFO", logger="wxembed"):
        text = ok(wxembed(*args, "--start", TINY_START))
    lines = text.strip().splitlines()
    assert lines[0].startswith("done in ") and lines[-2] == f"report: {out / 'report.html'}"
    assert lines[-1] == f"explore: wxembed serve {out}"  # the command that opens the explorer
    assert len(lines) <= 12  # a summary, not a dump
    stages = [m for m in caplog.messages if m.startswith("stage ")]
    assert [s[:9] for s in stages] == [f"stage {n}/8" for n in range(1, 9)]
    for made in (
        "synthetic.zarr",
        "model/checkpoints/last.ckpt",
        "embeddings.duckdb",
        "search.png",
        "interpolation.png",
        "evaluation.json",
        "report.html",
    ):
        assert (out / made).exists(), made
    doc = strict_json(ok(wxembed(*args, "--start", TINY_START, "--json")))  # again: reuses all
    assert "24 already there" in doc["archive"] and doc["report"] == str(out / "report.html")


# ---- radar composites from anywhere, frames minutes apart ----------------------------------------
def test_ingest_cuts_and_coarsens_opera_odim_and_records_rain_rate_as_missing(
    shared_data, tmp_path
):
    from test_odim import V20, V24, reflectivity_copy

    folder = tmp_path / "opera"
    folder.mkdir()
    for src in (V20, V20.with_name("T_PAAH21_C_EUOC_20180824181500.hdf")):
        reflectivity_copy(src, folder / src.with_suffix(".h5").name)
    (folder / V24.name).symlink_to(V24)  # the real H5rad 2.4 file: rain rate
    target = tmp_path / "opera.zarr"
    args = ("ingest", folder, "--archive", target, "--bbox=-5,42,20,58", "--coarsen", 4)
    out = ok(wxembed(*args, "--workers", 1))
    assert "2 stored, 1 missing, 0 failed" in out
    archive = Archive(target)
    assert archive.grid.shape == (234, 259) and archive.grid.dx == 8000.0
    m = archive.manifest()
    stored = m[m.status == "stored"].time.dt.strftime("%H:%M").tolist()
    assert stored == ["18:00", "18:15"]  # 15 minutes apart
    (reason,) = m[m.status == "missing"].reason
    assert "holds RATE (rain rate, mm/h), not reflectivity" in reason
    source = archive.dataset().attrs["source"]
    assert "cut to lon -5..20, lat 42..58, coarsened 4x (block mean in linear Z)" in source
    one_line_error(wxembed(*args[:4], "--bbox=-5,42,20"), "--bbox", "four numbers")


def test_ingest_takes_every_time_of_a_netcdf_file_and_refuses_another_quantity(
    shared_data, tmp_path
):
    import xarray as xr
    from test_netcdf import FMI_FRAMES, write_cf_netcdf

    from wxembed.sources.fmi import read_fmi

    fields = [read_fmi(p) for p in FMI_FRAMES]
    rate = xr.DataArray(
        np.zeros((3, *fields[0].grid.shape), np.float32),
        dims=("time", "y", "x"),
        attrs={"units": "mm/h", "grid_mapping": "crs"},
    )
    nc = write_cf_netcdf(tmp_path / "fmi.nc", fields, extra={"RATE": rate})
    target = tmp_path / "nc.zarr"
    out = ok(wxembed("ingest", nc, "--archive", target, "--variable", "DBZH", "--workers", 1))
    assert "3 stored, 0 missing, 0 failed" in out
    times = Archive(target).stored_times()
    assert list(np.diff(times)) == [np.timedelta64(300, "s")] * 2
    np.testing.assert_array_equal(Archive(target).read_dbz(times[1]), fields[1].dbz)
    bad = wxembed("ingest", nc, "--archive", tmp_path / "r.zarr", "--variable", "RATE")
    one_line_error(bad, "variable RATE has units 'mm/h', not dBZ")


@pytest.fixture(scope="module")
def sequence(tmp_path_factory, tiny_grid, untrained_checkpoint):
    """14 frames 5 minutes apart (70 minutes) on the tiny grid, their embeddings in an index
    (encoded here in one batch: the Beam route is test_embed's)."""
    from conftest import storm_field

    from wxembed.index import EmbeddingIndex
    from wxembed.model.encoder import load_embedding_model

    root = tmp_path_factory.mktemp("sequence")
    archive = Archive.create(root / "seq.zarr", tiny_grid)
    first = np.datetime64("2024-07-01T00:00", "s")
    for i in range(14):
        archive.write(storm_field(tiny_grid, i, str(first + np.timedelta64(5 * i, "m"))))
    times = archive.stored_times()
    with one_torch_thread():
        model = load_embedding_model(untrained_checkpoint)
        z = model.encode_raw(archive.read_raw(times))  # (14, d)
    with EmbeddingIndex(root / "i.duckdb") as ix:
        ix.add_vectors(model.info, times, z)
    return {"archive": archive.path, "index": root / "i.duckdb", "ckpt": untrained_checkpoint}


def test_search_of_a_short_sequence_says_why_it_is_empty_and_what_to_pass(sequence):
    index, query = sequence["index"], "2024-07-01T00:30"
    err = one_line_error(wxembed("search", index, query, "-k", 3), "no hours to return")
    assert "14 lie within 1d of the query's time" in err and "--exclude 5min" in err
    doc = strict_json(ok(wxembed("search", index, query, "-k", 3, "--exclude", "10min", "--json")))
    times = [np.datetime64(m["time"]) for m in doc["matches"]]
    assert len(times) == 3
    assert all(abs(t - np.datetime64(query)) > np.timedelta64(10, "m") for t in times)
    late = ("search", index, query, "-k", 3, "--exclude", "0", "--start", "2024-07-01T00:50")
    doc = strict_json(ok(wxembed(*late, "--json")))
    found = [m["time"] for m in doc["matches"]]
    assert len(found) == 3 and min(found) >= "2024-07-01T00:50:00"  # --start to the minute
    one_line_error(wxembed("search", index, query, "--exclude-hours", "inf"), "finite")
    one_line_error(wxembed("search", index, query, "--exclude", "soon"), "not a duration")


def test_interpolate_every_pair_takes_a_gap_in_minutes(sequence):
    args = ("interpolate", sequence["archive"], "--checkpoint", sequence["ckpt"], "--every-pair")
    doc = strict_json(ok(wxembed(*args, "--gap", "10min", "--json")))
    assert doc["pairs"] == 12 and doc["gap"] == "10min"  # 14 frames: 12 spans of 10 minutes
    one_line_error(wxembed(*args, "--gap", "7min"), "typically 5min apart", "--gap 10min")
