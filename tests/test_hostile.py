"""Hostile and unlucky inputs (issue 12): nothing stored wrong, nothing hangs, and a person's
mistake or a failing disk ends in one ``error:`` line, not a traceback.

The parsers of untrusted bytes (``.idx`` lines, PGM headers, the GRIB2 message checks) are
fuzzed with hypothesis, bounded in examples and time. A full disk and a read-only file system are
real: a small tmpfs mounted in a private user and mount namespace (``unshare``), skipped where
the kernel allows none.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import storm_archive, storm_field
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from wxembed.archive import Archive
from wxembed.errors import SourceError
from wxembed.grid import HRRR_CONUS
from wxembed.sources.fmi import _parse_header
from wxembed.sources.hrrr import message_range, parse_idx, path_for_valid_time, write_idx
from wxembed.sources.http import check_message

FUZZ = settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
"""Hypothesis, bounded: 100 examples a property, nothing remembered between runs."""


def _cli(*args: str):
    from wxembed.cli import app

    return CliRunner().invoke(app, list(args))


# ---- the .idx parser -----------------------------------------------------------------------------
_FIELD = st.text(
    st.characters(blacklist_characters=":\n\r", blacklist_categories=("Cs",)), max_size=12
)
_LINE = st.tuples(
    st.integers(1, 999), st.integers(0, 10**12), st.integers(10**9, 9_999_999_999), _FIELD, _FIELD
)


@FUZZ
@given(st.text(max_size=300))
def test_any_text_parses_as_an_inventory_or_is_a_source_error(text):
    try:
        entries = parse_idx(text)
    except SourceError:
        return
    assert entries and all(e.offset >= 0 for e in entries)
    assert all(e.date and e.number for e in entries)


@FUZZ
@given(st.lists(_LINE, min_size=1, max_size=12))
def test_inventory_lines_round_trip_and_a_range_ends_before_the_next_message(lines):
    text = "\n".join(f"{n}:{o}:d={d}:{var or 'V'}:{lev}:anl:" for n, o, d, var, lev in lines)
    entries = parse_idx(text + "\n")
    assert [(e.offset, e.date, e.variable) for e in entries] == [
        (o, str(d), var or "V") for _, o, d, var, _ in lines
    ]
    first, last = message_range(entries, entries[0].variable, entries[0].level)
    later = [e.offset for e in entries if e.offset > first]
    assert last == (min(later) - 1 if later else None)


@pytest.mark.parametrize("offset", ["-5", "1_000", "\u0663", " 7", "0x10", ""])
def test_an_offset_that_is_not_plain_digits_is_refused(offset):
    with pytest.raises(SourceError, match="no byte offset"):
        parse_idx(f"1:{offset}:d=2019010100:REFC:entire atmosphere:anl:")


# ---- the PGM header parser --------------------------------------------------------------------
_WS = st.sampled_from([b" ", b"\n", b"\t", b"\r\n", b"  "])
_COMMENT = st.binary(max_size=40).map(lambda b: b"# " + b.replace(b"\n", b" ") + b"\n")


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_parse_as_a_pgm_header_or_are_a_source_error(data):
    for blob in (data, b"P5" + data):
        try:
            _meta, width, height, maxval, offset = _parse_header(blob, Path("x.pgm"))
        except SourceError:
            continue
        assert width >= 1 and height >= 1 and 0 < maxval < 256 and offset <= len(blob)


@FUZZ
@given(
    st.integers(1, 5000),
    st.integers(1, 5000),
    st.integers(1, 255),
    st.lists(_COMMENT, max_size=4),
    _WS,
    st.binary(max_size=20),
)
def test_a_valid_header_gives_its_numbers_and_where_the_raster_starts(
    w, h, maxval, notes, ws, raster
):
    head = b"P5\n" + b"".join(notes) + str(w).encode() + ws + str(h).encode() + b"\n"
    head += str(maxval).encode() + b"\n"
    meta, width, height, mv, offset = _parse_header(head + raster, Path("x.pgm"))
    assert (width, height, mv, offset) == (w, h, maxval, len(head))
    assert sum(len(v) for v in meta.values()) <= len(notes)


# ---- the GRIB2 message checks --------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_message(tmp_path_factory) -> bytes:
    """One REFC message on a small real-projection grid, as the project's encoder writes it."""
    from wxembed.sources.grib import encode_message

    grid = HRRR_CONUS.coarsen(32)
    return encode_message(storm_field(grid, 0, "2019-01-01T00").dbz, grid, "2019-01-01T00")


@FUZZ
@given(st.binary(max_size=120))
def test_any_bytes_are_one_whole_grib2_message_or_a_source_error(data):
    for blob in (data, b"GRIB\x00\x00\x00\x02" + data):
        try:
            msg = check_message(blob, "x")
        except SourceError:
            continue
        total = int.from_bytes(msg[8:16], "big")
        assert msg[:4] == b"GRIB" and msg[-4:] == b"7777" and len(msg) == total >= 16


@FUZZ
@given(
    padding=st.binary(max_size=64).filter(lambda b: b"GRIB" not in b),
    cut=st.integers(1, 200),
    shift=st.integers(-40, 40).filter(lambda v: v != 0),
)
def test_a_real_message_passes_padded_and_fails_cut_short_or_mislabelled(
    real_message, padding, cut, shift
):
    assert check_message(real_message + padding, "x") == real_message
    with pytest.raises(SourceError):
        check_message(real_message[:-cut], "x")
    with pytest.raises(SourceError):
        check_message(real_message + real_message, "x")  # two messages in one range
    wrong = bytearray(real_message + padding)
    wrong[8:16] = (len(real_message) + shift).to_bytes(8, "big")
    try:
        got = check_message(bytes(wrong), "x")
    except SourceError:
        return
    # only a length that lands on another "7777" within the padding can pass, and it says so
    assert got[-4:] == b"7777" and len(got) == len(real_message) + shift


# ---- synth --grib-dir into a folder of real files (item 3) ---------------------------------------
def test_synth_refuses_to_replace_real_grib2_files_and_overwrite_rewrites_their_idx(
    tmp_path, shared_data
):
    root = tmp_path / "noaa"
    real = root / path_for_valid_time("2024-07-01T01")
    real.parent.mkdir(parents=True)
    shutil.copy(shared_data / "hrrr" / "hrrr.t00z.wrfsfcf00-HPBL.grib2", real)
    write_idx(real)
    before = real.read_bytes(), real.with_name(real.name + ".idx").read_text()
    args = ["synth", "--grib-dir", str(root), "--hours", "2", "--coarsen", "32"]

    refused = _cli(*args)
    assert refused.exit_code == 2, refused.output
    assert "error: 1 of the 2 GRIB2 files to write are already there" in refused.output
    assert "--overwrite" in refused.output and "Traceback" not in refused.output
    assert (real.read_bytes(), real.with_name(real.name + ".idx").read_text()) == before
    assert not (root / path_for_valid_time("2024-07-01T00")).exists()  # nothing written

    done = _cli(*args, "--overwrite")
    assert done.exit_code == 0, done.output
    from wxembed.sources.grib import decode_refc

    for path in (real, root / path_for_valid_time("2024-07-01T00")):
        data = path.read_bytes()
        entries = parse_idx(path.with_name(path.name + ".idx").read_text())
        assert all(data[e.offset : e.offset + 4] == b"GRIB" for e in entries)
        assert [e.variable for e in entries] == ["REFC", "TMP"] and len(data) > entries[-1].offset
        assert decode_refc(path).grid.same_as(HRRR_CONUS.coarsen(32))


# ---- a person's mistakes (items 19, 20) ---------------------------------------------------------
def test_mistakes_on_the_command_line_end_in_one_line_not_a_traceback(tmp_path, tiny_grid):
    archive = storm_archive(tmp_path / "a.zarr", tiny_grid, 2).path
    cases = [
        (["tune", str(archive), "--space", '{"num_layers": 3}'], "--space"),
        (["tune", str(archive), "--space", '{"num_layers": [2,'], "not valid JSON"),
        (["train", str(archive), "--loss", "nope"], "'nope' is not one of logcosh"),
        (["train", str(archive), "--schedule", "nope"], "'nope' is not one of constant, cosine"),
        (["plot", str(archive), "--out", str(tmp_path / "x.txt")], "name it .png"),
        (
            ["synth", "--archive", str(tmp_path / "s.zarr"), "--hours", "1", "--coarsen", "32"]
            + ["--beam=--runner=NopeRunner"],
            "Unexpected pipeline runner: NopeRunner",
        ),
        (
            ["search", str(tmp_path / "i.duckdb"), "2024-07-01T00", "--exclude-hours", "inf"],
            "finite",
        ),
    ]
    for args, says in cases:
        result = _cli(*args)
        assert result.exit_code == 2, (args, result.output)
        text = " ".join(re.sub(r"[\u2500-\u257f]", " ", result.output).split())  # no box
        assert says in text, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), args
    assert not (tmp_path / "x.txt").exists()


def test_evaluate_writes_strict_json_and_leaves_no_file_when_it_refuses(
    tmp_path, tiny_grid, untrained_checkpoint
):
    out = tmp_path / "evaluation.json"
    other = storm_archive(tmp_path / "other.zarr", HRRR_CONUS.coarsen(32), 1).path
    refused = _cli("evaluate", str(untrained_checkpoint), str(other), "--out", str(out))
    assert refused.exit_code == 2 and "was trained on grid" in refused.output
    assert not out.exists() and not list(tmp_path.glob(".evaluation.json*"))

    archive = Archive.create(tmp_path / "calm.zarr", tiny_grid)
    for h in range(6):  # no echo anywhere: the threshold scores are undefined (NaN)
        field = storm_field(tiny_grid, h, f"2024-07-01T{h:02d}")
        field.dbz[:] = -32.0
        archive.write(field)
    done = _cli("evaluate", str(untrained_checkpoint), str(archive.path), "--out", str(out))
    assert done.exit_code == 0, done.output

    def refuse(constant):
        raise ValueError(f"bare {constant} in JSON")

    text = out.read_text()
    json.loads(text, parse_constant=refuse)  # strict: no NaN, no Infinity
    assert "null" in text and not list(tmp_path.glob(".evaluation.json*"))
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---- eccodes before pyproj (item 21) -------------------------------------------------------------
@pytest.mark.parametrize("first", ["import eccodes, wxembed", "import wxembed, eccodes"])
def test_either_import_order_reads_grib2_and_projects_and_exits_cleanly(first, shared_data):
    script = f"""{first}
from wxembed.grid import HRRR_CONUS
from wxembed.sources.grib import inventory
held = inventory({str(shared_data / "hrrr" / "hrrr.t00z.wrfsfcf00-HPBL.grib2")!r})
lat, lon = HRRR_CONUS.latlon()
print(len(held), round(float(lat[0, 0]), 3), round(float(lon[0, 0]), 3))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]  # no double free, no segfault at exit
    assert proc.stdout.split() == ["1", "21.138", "-122.72"]
    assert "unable to set PROJ database path" not in proc.stderr


# ---- a full disk, a read-only file system (item 13) ----------------------------------------------
def _namespace_ok() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = "mkdir -p /tmp/.wxns && mount -t tmpfs -o size=1m tmpfs /tmp/.wxns && umount /tmp/.wxns"
    ran = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", probe],
        capture_output=True,
        timeout=30,
    )
    return ran.returncode == 0


@pytest.mark.slow  # three processes of wxembed: 14 s alone, 30 s on a busy machine
@pytest.mark.skipif(not _namespace_ok(), reason="no user and mount namespaces (unshare) here")
def test_a_full_disk_and_a_read_only_one_end_in_one_line_and_lose_nothing(tmp_path, shared_data):
    from wxembed.pipelines.ingest import ingest_files

    frames = sorted((shared_data / "fmi" / "20160928").glob("*.pgm.gz"))[:4]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for f in frames:
        shutil.copy(f, inputs / f.name)
    seed = tmp_path / "seed.zarr"  # the first hour stored already, made outside the tmpfs
    ingest_files([inputs / frames[0].name], seed, workers=1, progress=False)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    wx = f"{sys.executable} -m wxembed ingest {inputs} --archive {mnt}/a.zarr"
    script = f"""
set -u
mount -t tmpfs -o size=24m tmpfs {mnt}
cp -r {seed} {mnt}/a.zarr
head -c 100000000 /dev/zero > {mnt}/filler 2>/dev/null
truncate -s -64K {mnt}/filler  # room for the slot table, none for an image
echo FULL; {wx} --workers 2 2>&1; echo "RC=$?"
rm {mnt}/filler
mount -o remount,ro {mnt}
echo RO; {wx} --workers 1 2>&1; echo "RC=$?"
{sys.executable} -c "import wxembed; print('STORED', wxembed.Archive('{mnt}/a.zarr').summary())"
"""
    ran = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    full, read_only = ran.stdout.split("\nRO\n")
    for part, cause in ((full, "No space left on device"), (read_only, "Read-only file system")):
        errors = [line for line in part.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and cause in errors[0], ran.stdout + ran.stderr
        assert "cannot write to the archive" in errors[0]
        assert "RC=2" in part and "Traceback" not in part and "ERROR:" not in part, part
    # the hour stored before both runs is still there; the others wait, pending, for a rerun
    assert "STORED {'pending': 3, 'stored': 1, 'missing': 0, 'failed': 0}" in read_only


def test_a_disk_full_while_loading_an_index_says_so(tmp_path):
    if not _namespace_ok():
        pytest.skip("no user and mount namespaces (unshare) here")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = f"""
import numpy as np, pyarrow as pa
from wxembed.errors import EmbeddingIndexError
from wxembed.index import EmbeddingIndex
from wxembed.model.checkpoint import ModelInfo
info = ModelInfo(model_id="m", arch="fast", embedding_dim=512, grid_json="{{}}")
n = 20000
table = pa.table({{"time": pa.array(np.arange(n) * 3600, pa.int64()).cast(pa.timestamp("s")),
                   "embedding": list(np.random.default_rng(0).normal(size=(n, 512)).astype("f4"))}})
with EmbeddingIndex("{mnt}/i.duckdb") as index:
    try:
        index.replace_model(info, table=table)
        print("LOADED")
    except EmbeddingIndexError as exc:
        print("ERROR", exc)
"""
    ran = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "bash",
            "-c",
            f"mount -t tmpfs -o size=8m tmpfs {mnt} && {sys.executable} -c '{script}'",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "ERROR" in ran.stdout, ran.stdout + ran.stderr[-2000:]
    assert "No space left on device" in ran.stdout, ran.stdout  # not DuckDB's failed rollback
    assert "rollback" not in ran.stdout.lower(), ran.stdout


def test_a_workers_report_of_our_error_is_held_back_and_any_other_passed_on():
    from wxembed.cli.console import WorkerErrorReports
    from wxembed.errors import ArchiveError
    from wxembed.pipelines.workers import worker_error

    ours = (
        "ERROR:apache_beam.runners.worker.sdk_worker:Error processing instruction bundle_6.\n"
        "Traceback (most recent call last):\n"
        '  File "ingest.py", line 120, in store_hour\n'
        "    raise ArchiveError(\n"
        "wxembed.errors.ArchiveError: a.zarr: cannot write (No space left on device)\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "sdk_worker.py", line 310, in _execute\n'
        "wxembed.errors.ArchiveError: a.zarr: cannot write (No space left on device) "
        "[while running 'Store']\n"
    )
    theirs = "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'slot'\n"
    reports = WorkerErrorReports()
    shown = reports.filter("a line of output\n" + ours + theirs + "a last line\n", end=True)
    assert shown == "a line of output\n" + theirs + "a last line\n"
    # the driver's exception (Beam's RuntimeError quoting the worker) becomes the error itself
    found = worker_error(RuntimeError("Pipeline failed:\n" + ours))
    assert isinstance(found, ArchiveError)
    assert str(found) == "a.zarr: cannot write (No space left on device)"
    assert worker_error(RuntimeError(theirs)) is None
