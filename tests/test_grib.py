from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import storm_field

from wxembed.errors import MissingHour, SourceError
from wxembed.grid import HRRR_CONUS
from wxembed.sources.grib import GribParam, decode_refc, encode_message, inventory, write_refc_file


def _md5_section3(path):
    import eccodes

    with open(path, "rb") as fh:
        h = eccodes.codes_grib_new_from_file(fh)
        try:
            return eccodes.codes_get(h, "md5Section3"), eccodes.codes_get(h, "packingType")
        finally:
            eccodes.codes_release(h)


@pytest.fixture(scope="module")
def hrrr_refc_file(tmp_path_factory):
    field = storm_field(HRRR_CONUS, seed=1, time="2024-07-01T05")
    path = tmp_path_factory.mktemp("grib") / "hrrr.t04z.wrfsfcf01.grib2"
    temperature = GribParam(0, 0, 0, type_of_level=103, level=2)
    write_refc_file(
        path, field, reference_time="2024-07-01T04", extra=[(temperature, field.dbz + 290)]
    )
    return path, field


def test_written_refc_carries_the_real_hrrr_grid_header(hrrr_refc_file, shared_data):
    path, _ = hrrr_refc_file
    ours, packing = _md5_section3(path)
    real, _ = _md5_section3(shared_data / "hrrr" / "hrrr.t00z.wrfsfcf00-HPBL.grib2")
    assert ours == real
    assert packing == "grid_complex_spatial_differencing"


def test_written_refc_decodes_to_the_same_values_within_packing_precision(hrrr_refc_file):
    path, field = hrrr_refc_file
    decoded = decode_refc(path)
    assert decoded.grid.same_as(HRRR_CONUS)
    assert decoded.time == np.datetime64("2024-07-01T05:00:00")
    assert np.abs(decoded.dbz - field.dbz).max() < 0.05
    assert decoded.missing_values == 0


def test_refc_is_selected_by_parameter_even_when_it_is_not_the_first_message(tmp_path):
    field = storm_field(HRRR_CONUS.coarsen(8), seed=2, time="2024-07-01T00")
    other = encode_message(
        field.dbz * 0 + 101325, field.grid, field.time, param=GribParam(0, 3, 0, 1, 0)
    )
    write_refc_file(tmp_path / "one.grib2", field)
    (tmp_path / "two.grib2").write_bytes(other + (tmp_path / "one.grib2").read_bytes())
    assert len(inventory(tmp_path / "two.grib2")) == 2
    np.testing.assert_allclose(
        decode_refc(tmp_path / "two.grib2").dbz, decode_refc(tmp_path / "one.grib2").dbz
    )


@pytest.mark.parametrize(
    "name, holds",
    [
        ("hrrr.t00z.wrfsfcf00-HPBL.grib2", "shortName=blh"),
        ("subset_20201214_hrrr.t00z.wrfsfcf12.grib2", "shortName=tp"),
        ("hrrr.t06z.wrfsfcf01-missing-zeros.grib2", "shortName=vvcsh"),
    ],
)
def test_real_hrrr_file_without_refc_is_a_missing_hour_listing_its_contents(
    shared_data, name, holds
):
    with pytest.raises(MissingHour, match=f"no REFC message.*{holds}") as err:
        decode_refc(shared_data / "hrrr" / name)
    assert name in str(err.value)


def test_truncated_file_is_a_source_error_naming_the_file(hrrr_refc_file, tmp_path):
    path, _ = hrrr_refc_file
    cut = tmp_path / "cut.grib2"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(SourceError, match=r"cut\.grib2.*(damaged|truncated)"):
        decode_refc(cut)


def test_corrupt_bytes_inside_the_data_section_are_a_source_error(hrrr_refc_file, tmp_path):
    path, _ = hrrr_refc_file
    data = bytearray(path.read_bytes())
    data[200:260] = b"\xff" * 60  # inside sections 5-7 of the first message
    bad = tmp_path / "bad.grib2"
    bad.write_bytes(bytes(data))
    with pytest.raises(SourceError, match="bad.grib2"):
        decode_refc(bad)


def test_missing_file_and_non_grib_file_are_source_errors(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        decode_refc(tmp_path / "absent.grib2")
    junk = tmp_path / "junk.grib2"
    junk.write_text("a text file, not a radar file")
    with pytest.raises(SourceError, match="junk.grib2: not a GRIB2 file"):
        decode_refc(junk)
    junk.write_text("GRIB in the text makes it look like a message start")
    with pytest.raises(SourceError, match="junk.grib2: message 1 at byte 0 is damaged"):
        decode_refc(junk)


def test_points_flagged_missing_are_counted_and_become_no_echo(tmp_path, tiny_grid):
    field = storm_field(tiny_grid, seed=3, time="2024-07-01T00")
    mask = np.zeros(tiny_grid.shape, bool)
    mask[10:15, 20:30] = True
    path = write_refc_file(tmp_path / "m.grib2", field, missing_mask=mask)
    decoded = decode_refc(path)
    assert decoded.missing_values == 50
    assert np.all(decoded.dbz[mask] == -32.0)
    assert np.abs(decoded.dbz[~mask] - field.dbz[~mask]).max() < 0.05


def test_real_file_said_to_hold_missing_values_has_no_bitmap(shared_data, tmp_path):
    """hrrr.t06z.wrfsfcf01-missing-zeros.grib2: eccodes reports no bitmap and no missing points.

    Recorded so a later reader of the file knows what it holds; the missing-value path itself is
    tested above with a bitmap our encoder writes.
    """
    import eccodes

    src = tmp_path / "f.grib2"
    shutil.copy(shared_data / "hrrr" / "hrrr.t06z.wrfsfcf01-missing-zeros.grib2", src)
    with open(src, "rb") as fh:
        h = eccodes.codes_grib_new_from_file(fh)
        assert eccodes.codes_get(h, "bitmapPresent") == 0
        assert eccodes.codes_get(h, "numberOfMissing") == 0
        eccodes.codes_release(h)


# ---- hostile messages --------------------------------------------------------------------------
def grib_sections(message: bytes) -> dict[int, int]:
    """Byte offset of each section (by number, the first of a kind) of one GRIB2 message."""
    pos, found = 16, {}
    while pos < len(message) - 4:
        length = int.from_bytes(message[pos : pos + 4], "big")
        found.setdefault(message[pos + 4], pos)
        pos += max(length, 5)
    return found


def huge_refc_message(shared_data, n: int = 40_000) -> bytes:
    """The real HRRR boundary-layer message, made REFC of one constant value (no data section)
    and then edited, byte by byte, to declare an ``n`` x ``n`` grid: 188 bytes."""
    import eccodes as ec

    with open(shared_data / "hrrr" / "hrrr.t00z.wrfsfcf00-HPBL.grib2", "rb") as fh:
        h = ec.codes_grib_new_from_file(fh)
    try:
        ec.codes_set_string(h, "packingType", "grid_simple")
        ec.codes_set_values(h, np.full(ec.codes_get(h, "numberOfDataPoints"), 5.0))
        for key, value in (("discipline", 0), ("parameterCategory", 16), ("parameterNumber", 196)):
            ec.codes_set_long(h, key, value)
        message = bytearray(ec.codes_get_message(h))
    finally:
        ec.codes_release(h)
    s3, s5 = grib_sections(message)[3], grib_sections(message)[5]
    message[s3 + 6 : s3 + 10] = (n * n).to_bytes(4, "big")  # number of data points
    message[s3 + 30 : s3 + 34] = n.to_bytes(4, "big")  # Nx
    message[s3 + 34 : s3 + 38] = n.to_bytes(4, "big")  # Ny
    message[s5 + 5 : s5 + 9] = (n * n).to_bytes(4, "big")  # number of values
    return bytes(message)


def test_a_188_byte_message_declaring_40000_by_40000_points_is_refused_before_decoding(
    tmp_path, shared_data
):
    import json
    import subprocess
    import sys

    message = huge_refc_message(shared_data)
    assert len(message) == 188
    path = tmp_path / "hrrr.t00z.wrfsfcf00.grib2"
    path.write_bytes(message)
    # in a process of its own under a 3 GiB address-space limit: decoding would need 12 GiB
    script = f"""
import json, resource
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from wxembed.sources.grib import decode_refc
from wxembed.sources.http import decode_message
out = []
for read in (lambda: decode_refc({str(path)!r}), lambda: decode_message({message!r}, source="x")):
    try:
        read()
        out.append("decoded")
    except Exception as exc:
        out.append(f"{{type(exc).__name__}}: {{exc}}")
print(json.dumps(out))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    from_file, from_bytes = json.loads(proc.stdout.splitlines()[-1])
    declares = "declares 1,600,000,000 grid points, more than the 100,000,000"
    assert from_file.startswith("SourceError: ") and declares in from_file
    assert from_bytes.startswith("SourceError: x: ") and declares in from_bytes


def test_a_folder_named_like_a_grib2_file_is_a_source_error(tmp_path):
    folder = tmp_path / "hrrr.t00z.wrfsfcf00.grib2"
    folder.mkdir()
    with pytest.raises(SourceError, match="a folder, not a file"):
        decode_refc(folder)
