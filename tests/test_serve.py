"""The explorer's JSON API (``wxembed serve``) through FastAPI's test client, on the shared tiny
archive, model and index: every endpoint, and every kind of bad request a 4xx with one line."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from conftest import one_torch_thread

pytest.importorskip("fastapi", reason="wxembed serve needs the 'serve' extra (fastapi)")
pytest.importorskip("httpx2", reason="Starlette's test client needs httpx2 (the 'serve' extra)")
from fastapi.testclient import TestClient  # noqa: E402

from wxembed.archive import Archive  # noqa: E402
from wxembed.serve.app import create_app  # noqa: E402
from wxembed.serve.config import ServeConfig  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
HOUR = "2024-06-02T12:00:00Z"
MISSING, FAILED = "2024-06-05T00", "2024-06-05T01"


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_archive, trained_model, tiny_index):
    """What the API serves: a copy of the tiny archive with a missing and a failed hour added,
    a writable copy of the tiny index, its model and a real evaluation.json (4 held-out hours)."""
    from wxembed.evaluation.evaluate import evaluate
    from wxembed.evaluation.metrics import strict_json

    root = tmp_path_factory.mktemp("served")
    archive = shutil.copytree(tiny_archive, root / "a.zarr")
    a = Archive(archive)
    a.record(MISSING, "missing", "no REFC in the file (it holds TMP:2 m)")
    a.record(FAILED, "failed", "truncated GRIB2 message")
    index = shutil.copy(tiny_index, root / "i.duckdb")
    checkpoint = trained_model / "checkpoints" / "last.ckpt"
    with one_torch_thread():
        result = evaluate(checkpoint, tiny_archive, max_hours=4, search=False)
    (root / "evaluation.json").write_text(strict_json(result))
    return ServeConfig(
        archive=archive,
        index=index,
        checkpoint=checkpoint,
        evaluation=root / "evaluation.json",
        allow_clustering=True,
        max_upload_bytes=2**20,
    )


@pytest.fixture(scope="module")
def client(served):
    with one_torch_thread(), TestClient(create_app(served)) as c:
        yield c


@pytest.fixture(scope="module")
def read_only(tiny_archive, tiny_index, trained_model):
    """The tiny archive and index served as they are: read-only, no evaluation.json."""
    config = ServeConfig(
        archive=tiny_archive,
        index=tiny_index,
        checkpoint=trained_model / "checkpoints" / "last.ckpt",
    )
    with one_torch_thread(), TestClient(create_app(config)) as c:
        yield c


def refused(response, status: int, *words: str) -> str:
    """A 4xx with a one-line reason naming ``words``."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail
    for w in words:
        assert w in detail, detail
    return detail


# ---- the page and what is served -------------------------------------------------------------
def test_the_page_and_its_assets_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and "wxembed explorer" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert "http" not in client.get("/static/app.js").text.replace("http://www.w3.org", "")
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/hours/{time}/similar", "/api/similar", "/api/clusters", "/api/scores"} <= set(
        paths
    )


def test_info_names_the_archive_model_and_index(client, served):
    info = client.get("/api/info").json()
    assert info["archive"]["name"] == "a.zarr" and info["archive"]["shape"] == [66, 112]
    assert info["archive"]["summary"] == {"pending": 0, "stored": 96, "missing": 1, "failed": 1}
    assert info["model"]["embedding_dim"] == 50 and info["index"]["hours"] == 96
    assert info["index"]["model_id"] == info["model"]["model_id"]
    assert info["allow_clustering"] and info["evaluation"]
    assert str(served.archive.parent) not in json.dumps(info)  # names, not where files live


def test_the_manifest_shows_missing_and_failed_hours_with_their_reasons(client):
    m = client.get("/api/manifest").json()
    assert len(m["time"]) == 98 and m["time"][0] == "2024-06-01T00:00:00Z"
    i = m["time"].index("2024-06-05T00:00:00Z")
    assert m["status"][i] == "missing" and "TMP:2 m" in m["reason"][i]
    assert m["status"][i + 1] == "failed" and not m["in_index"][i + 1]
    assert all(m["in_index"][:96])
    row = client.get(f"/api/hours/{FAILED}").json()
    assert row["status"] == "failed" and row["reason"] == "truncated GRIB2 message"
    assert "images" not in row
    refused(client.get(f"/api/hours/{FAILED}/image.png"), 404, "failed", "truncated GRIB2")


# ---- hours as pictures ----------------------------------------------------------------------
def test_an_hour_is_a_png_in_every_view_and_cached(client):
    row = client.get(f"/api/hours/{HOUR}").json()
    assert row["status"] == "stored" and set(row["images"]) == {
        "original",
        "reconstruction",
        "matched",
        "difference",
    }
    for view, url in row["images"].items():
        r = client.get(url)
        assert r.status_code == 200 and r.content.startswith(PNG), view
        assert r.headers["content-type"] == "image/png"
    from PIL import Image

    full = Image.open(io.BytesIO(client.get(row["images"]["original"]).content))
    thumb = Image.open(io.BytesIO(client.get(row["images"]["original"] + "&width=40").content))
    assert full.size == (896, 528) and thumb.size == (38, 22)  # small grids are enlarged
    again = client.get(f"/api/hours/{HOUR}/image.png")
    assert again.content == client.get(row["images"]["original"]).content


def test_the_reconstruction_is_scored_against_the_original(client):
    r = client.get(f"/api/hours/{HOUR}/reconstruction").json()
    scores = {s["name"]: s for s in r["scores"]}
    assert scores["mse"]["value"] > 0 and scores["mse"]["better"] == "lower"
    assert scores["csi_35"]["label"] == "CSI ≥35 dBZ"
    # the probability-matched one has the hour's echo area at 20 dBZ (bias 1), the plain one less
    matched = {s["name"]: s for s in r["matched_scores"]}
    assert abs(matched["bias_20"]["value"] - 1) < 0.05 < abs(scores["bias_20"]["value"] - 1)


# ---- similar weather ------------------------------------------------------------------------
def test_similar_hours_come_with_distances_and_thumbnails(client):
    r = client.get(f"/api/hours/{HOUR}/similar", params={"k": 5}).json()
    matches = r["matches"]
    assert len(matches) == 5 and [m["rank"] for m in matches] == [1, 2, 3, 4, 5]
    assert all(np.diff([m["distance"] for m in matches]) >= 0)
    t = np.datetime64(HOUR.rstrip("Z"))
    assert all(
        abs(np.datetime64(m["time"].rstrip("Z")) - t) > np.timedelta64(24, "h") for m in matches
    )
    assert client.get(matches[0]["thumbnail"]).content.startswith(PNG)


def test_similar_takes_the_filters_of_the_cli(client):
    params = {"k": 4, "hours": "0,6", "metric": "cosine", "exclude_hours": 0, "end": "2024-06-03"}
    matches = client.get(f"/api/hours/{HOUR}/similar", params=params).json()["matches"]
    for m in matches:
        assert m["time"][11:13] in ("00", "06") and m["time"] < "2024-06-03"
    everything = client.get(f"/api/hours/{HOUR}/similar", params={"k": 1, "no_exclusion": True})
    assert everything.json()["matches"][0]["time"] == HOUR  # the hour itself, distance 0


def test_similar_takes_a_coverage_weight_as_the_library_does(client):
    from wxembed.analysis import search_similar

    found = {}
    for weight in (0, 50):
        got = client.get(f"/api/hours/{HOUR}/similar", params={"k": 4, "coverage_weight": weight})
        index = client.app.state.explorer.index  # the open index (DuckDB allows one config)
        expected = search_similar(index, HOUR.rstrip("Z"), k=4, coverage_weight=weight)
        times = [m["time"].rstrip("Z") for m in got.json()["matches"]]
        assert times == [str(t)[:19] for t in expected.time.values.astype("datetime64[s]")]
        found[weight] = times
    assert found[0] != found[50]  # the weight reached the search: it changes the matches


def test_a_search_by_an_uploaded_grib2_or_npy_field_or_embedding(client, tiny_grid, tmp_path):
    from wxembed.sources import DecodedField
    from wxembed.sources.grib import write_refc_file

    dbz = Archive(client.app.state.explorer.archive.path).read_dbz(HOUR)
    field = DecodedField(time=np.datetime64(HOUR.rstrip("Z"), "s"), grid=tiny_grid, dbz=dbz)
    grib = write_refc_file(tmp_path / "q.grib2", field).read_bytes()
    by_grib = client.post("/api/similar", content=grib, params={"k": 3}).json()
    assert by_grib["query"].startswith("uploaded field") and len(by_grib["matches"]) == 3
    t = np.datetime64(HOUR.rstrip("Z"))
    for m in by_grib["matches"]:  # a GRIB2 field has its time: a day each side is left out
        assert abs(np.datetime64(m["time"].rstrip("Z")) - t) > np.timedelta64(24, "h")
    buf = io.BytesIO()
    np.save(buf, np.nan_to_num(dbz, nan=-32.0))
    by_npy = client.post("/api/similar", content=buf.getvalue(), params={"k": 3}).json()
    assert by_npy["matches"][0]["time"] == HOUR  # a bare array has no time: its own hour first
    vector = client.app.state.explorer.index.vector_at(HOUR)
    buf = io.BytesIO()
    np.save(buf, vector)
    by_vector = client.post("/api/similar", content=buf.getvalue(), params={"k": 1}).json()
    assert by_vector["matches"][0]["distance"] < 1e-4  # an embedding finds its own hour


# ---- regimes and interpolation --------------------------------------------------------------
def test_clustering_runs_when_allowed_and_then_is_shown_from_the_index(client):
    run = client.post("/api/clusters", params={"k": 4, "seed": 1}).json()
    assert run["k"] == 4 and sum(c["hours"] for c in run["clusters"]) == 96
    assert run["adjusted_rand_index"] is not None
    for c in run["clusters"]:
        assert sum(c["by_month"]) == c["hours"] == sum(c["by_hour"])
        assert client.get(c["image"]).content.startswith(PNG)
    assert {"k": 4, "sizes": [c["hours"] for c in run["clusters"]]} in client.get(
        "/api/clusters"
    ).json()["stored"]
    shown = client.get("/api/clusters/4").json()
    assert shown["clusters"] == run["clusters"]


def test_interpolation_shows_truth_midpoint_and_pixel_average_with_scores(client):
    params = {"start": "2024-06-02T10", "end": "2024-06-02T12"}
    r = client.get("/api/interpolate", params=params).json()
    assert r["truth_time"] == "2024-06-02T11:00:00Z"
    assert set(r["scores"]) == {"embedding_midpoint", "pixel_average", "reconstruction"}
    assert set(r["winner"]) >= {"mse", "csi_35"}
    for url in r["images"].values():
        assert client.get(url).content.startswith(PNG)


def test_scores_are_those_of_evaluation_json_unchanged(client, served):
    written = json.loads(served.evaluation.read_text())
    s = client.get("/api/scores").json()
    assert s["methods"] == list(written["scores"]) and s["same_model"]
    assert s["methods"][:3] == ["autoencoder", "pca", "climatology"]
    mse = next(r for r in s["rows"] if r["name"] == "mse")
    assert mse["autoencoder"] == written["scores"]["autoencoder"]["mse"]
    assert mse["pca"] == written["scores"]["pca"]["mse"] and mse["label"] == "MSE (dBZ²)"


# ---- bad requests: a 4xx with one line, never a 500 -----------------------------------------
@pytest.mark.parametrize(
    "url, status, words",
    [
        ("/api/hours/yesterday", 400, ["'yesterday' is not a time"]),
        ("/api/hours/2024-02-30T00", 400, ["no such date"]),
        ("/api/hours/99999999-01-01", 400, ["not a time"]),
        ("/api/hours/2030-01-01T00", 404, ["not in the archive"]),
        ("/api/hours/" + "9" * 41, 400, ["time"]),
        (f"/api/hours/{MISSING}/image.png", 404, ["missing in the manifest", "TMP:2 m"]),
        (f"/api/hours/{HOUR}/image.png?view=x", 400, ["view"]),
        (f"/api/hours/{HOUR}/image.png?width=1e9", 400, ["width"]),
        (f"/api/hours/{HOUR}/similar?k=0", 400, ["k"]),
        (f"/api/hours/{HOUR}/similar?k=1001", 400, ["k"]),
        (f"/api/hours/{HOUR}/similar?k=999999999999999999999999", 400, ["k"]),
        (f"/api/hours/{HOUR}/similar?k=500", 400, ["larger than the index"]),
        (f"/api/hours/{HOUR}/similar?metric=manhattan", 400, ["metric"]),
        (f"/api/hours/{HOUR}/similar?coverage_weight=-1", 400, ["coverage_weight"]),
        (f"/api/hours/{HOUR}/similar?coverage_weight=nan", 400, ["coverage_weight"]),
        (f"/api/hours/{HOUR}/similar?months=13", 400, ["months must be 1 to 12"]),
        (f"/api/hours/{HOUR}/similar?hours=1;DROP", 400, ["hours"]),
        (f"/api/hours/{HOUR}/similar?exclude_hours=nan", 400, ["exclude_hours"]),
        (f"/api/hours/{HOUR}/similar?exclude_hours=-1", 400, ["exclude_hours"]),
        (f"/api/hours/{HOUR}/similar?start=soon", 400, ["start"]),
        (f"/api/hours/{MISSING}/similar", 400, ["not in the index"]),
        ("/api/clusters/1", 400, ["k must be 2 to 64"]),
        ("/api/clusters/7", 404, ["no clustering with k=7"]),
        ("/api/clusters/4/99/image.png", 404, ["no cluster 99"]),
        ("/api/interpolate?start=2024-06-02T12&end=2024-06-02T10", 400, ["must be after start"]),
        ("/api/interpolate?start=2024-06-02T10&end=2024-06-02T12&weight=2", 400, ["weight"]),
        ("/api/interpolate?start=2024-06-04T22&end=2024-06-05T01", 400, ["not stored"]),
        ("/api/interpolate?start=2024-06-02T10", 400, ["end"]),
        ("/api/nothing", 404, ["Not Found"]),
    ],
)
def test_a_bad_request_gets_a_4xx_and_a_one_line_reason(client, url, status, words):
    refused(client.get(url), status, *words)


def test_clustering_from_the_page_needs_the_option(client, read_only):
    refused(read_only.post("/api/clusters", params={"k": 3}), 403, "--allow-clustering")
    refused(read_only.get("/api/scores"), 404, "evaluation.json")
    refused(client.post("/api/clusters", params={"k": 65}), 400, "k must be 2 to 64")
    refused(client.post("/api/clusters"), 400, "k")


@pytest.mark.parametrize(
    "body, status, words",
    [
        (b"", 400, ["empty upload"]),
        (b"<html>not radar</html>", 415, ["neither GRIB2 nor a .npy"]),
        (b"GRIB\x00\x00\x00\x01" + b"\x00" * 20, 415, ["not GRIB2"]),
        (b"GRIB\x00\x00\x00\x02" + b"\x00" * 20, 400, []),
        (b"\x93NUMPY\x01\x00garbage", 400, ["damaged header"]),
        (b"x" * (2**20 + 1), 413, ["too large"]),
    ],
)
def test_a_bad_upload_is_refused_before_it_is_decoded(client, body, status, words):
    refused(client.post("/api/similar", content=body), status, *words)


def test_an_npy_upload_is_checked_from_its_header(client):
    def npy(arr) -> bytes:
        buf = io.BytesIO()
        np.save(buf, arr)
        return buf.getvalue()

    refused(client.post("/api/similar", content=npy(np.zeros((10, 10)))), 400, "66 x 112")
    refused(client.post("/api/similar", content=npy(np.array(["a", "b"]))), 400, "not numbers")
    refused(client.post("/api/similar", content=npy(np.ones(3))), 400, "3 numbers")
    nan = np.ones(50, np.float32)
    nan[3] = np.nan
    refused(client.post("/api/similar", content=npy(nan)), 400, "NaN")
    # a header declaring a huge array, with none of its bytes: refused by its shape
    big = np.lib.format.header_data_from_array_1_0(np.zeros((2, 2), np.float32))
    big["shape"] = (400000, 400000)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, big)
    refused(client.post("/api/similar", content=buf.getvalue()), 400, "400000")


def test_a_declared_body_past_the_limit_is_refused_before_it_is_read(client):
    r = client.post("/api/similar", content=b"GRIB", headers={"content-length": str(2**40)})
    refused(r, 413, "too large")


# ---- the command ---------------------------------------------------------------------------
def test_the_command_refuses_what_it_cannot_serve_in_one_line(tmp_path, tiny_archive):
    from typer.testing import CliRunner

    from wxembed.cli import app

    def serve(*args):
        r = CliRunner().invoke(app, ["serve", *map(str, args)])
        assert r.exit_code == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
        return r.stderr

    assert "no such folder" in serve(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    assert "no archive in" in serve(tmp_path / "empty")
    assert "no such index" in serve("--archive", tiny_archive, "--index", tmp_path / "x.duckdb")
    (tmp_path / "bad.duckdb").write_bytes(b"not a database" * 100)
    assert "not a readable DuckDB index" in serve(
        "--archive", tiny_archive, "--index", tmp_path / "bad.duckdb", "--port", 0
    )
