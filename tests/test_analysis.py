"""What embeddings are for, on a synthetic archive and a quickly trained model.

The session's shared fixtures (tests/conftest.py): four days of synthetic June storms (96 hours,
four regimes: clear, isolated cells, MCS, stratiform) on the HRRR grid coarsened 16x, a small
fast network trained for 80 steps, every hour embedded through the Beam pipeline with its last
checkpoint. What the tests show, as measured (``pytest -s`` prints these figures):

- search: the nearest neighbour of an hour (only the hour itself left out) is the hour before
  or after it for 85 of 96 hours (0.89), against 2/95 = 0.02 by chance;
- clustering with k = 4 (the regimes present): adjusted Rand index 0.28 against the generator's
  regime labels, above every one of 200 random relabellings (the largest of them 0.05);
- interpolation (every pair 2 h apart, 94 pairs): the plain pixel average beats the decoded
  midpoint embedding on every headline score (MSE 5.9 against 15.7 dBZ^2, CSI at 20 dBZ 0.52
  against 0.08, and likewise MAE, CSI 35/45, FSS, SSIM) and on MSE in 93 of the 94 pairs. The
  decoded midpoint is about as good as the autoencoder's own reconstruction of the real hour
  (15.7), so the loss is the small model's, not the interpolation's; it is far better than
  decoding the embedding of an hour two days later (MSE 32.6). The test asserts that, and
  records the winners (``record_property``) instead of asserting a win that is not there.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_HOURS as HOURS
from test_odim import V20 as OPERA_V20

from wxembed.archive import Archive
from wxembed.errors import ArchiveError, EmbeddingError, EmbeddingIndexError
from wxembed.index import EmbeddingIndex


@pytest.fixture(scope="module")
def world(tiny_archive, trained_model, tiny_index):
    """The shared archive, the last checkpoint of the model trained on it, and its index."""
    return {
        "archive": Archive(tiny_archive),
        "ckpt": trained_model / "checkpoints" / "last.ckpt",
        "index": tiny_index,
    }


def test_the_nearest_neighbour_of_an_hour_is_an_adjacent_hour_far_more_often_than_chance(world):
    from wxembed.analysis import search_similar

    times = world["archive"].stored_times()
    adjacent = 0
    for t in times:
        top = search_similar(world["index"], t, k=1, exclude_hours=0)
        gap = abs((top.time.values[0].astype("datetime64[s]") - t) / np.timedelta64(1, "h"))
        adjacent += gap == 1
    rate, chance = adjacent / len(times), 2 / (len(times) - 1)
    print(f"nearest neighbour adjacent: {adjacent}/{len(times)} = {rate:.2f}, chance {chance:.3f}")
    assert rate > 10 * chance and rate > 0.5


def test_a_grib2_file_of_an_hour_finds_that_hour_first(world, tiny_grid, tmp_path):
    from wxembed.analysis import search_similar
    from wxembed.sources import DecodedField
    from wxembed.sources.grib import write_refc_file

    t = np.datetime64("2024-06-02T15", "s")
    path = write_refc_file(
        tmp_path / "q.grib2", DecodedField(t, tiny_grid, world["archive"].read_dbz(t))
    )
    top = search_similar(world["index"], path, k=3, exclude_hours=None)
    assert top.time.iloc[0] == pd.Timestamp(t) and top.distance.iloc[0] < 1e-2
    # by default a day each side of the file's valid time is left out
    other = search_similar(world["index"], path, k=3)
    assert (abs(other.time - pd.Timestamp(t)) > pd.Timedelta(hours=24)).all()


def test_a_search_keeps_to_its_filters(world):
    from wxembed.analysis import search_similar

    found = search_similar(
        world["index"],
        "2024-06-01T18",
        k=5,
        exclude_hours=6,
        hours=[17, 18, 19],
        start="2024-06-02",
        end="2024-06-04",
        metric="cosine",
    )
    assert len(found) == 5 and set(found.time.dt.hour) <= {17, 18, 19}
    assert found.time.min() >= pd.Timestamp("2024-06-02") and found.time.max() < pd.Timestamp(
        "2024-06-04"
    )
    assert found.distance.is_monotonic_increasing


def test_clustering_recovers_the_generator_regimes_better_than_chance(world, tmp_path):
    from sklearn.metrics import adjusted_rand_score

    from wxembed.analysis import cluster_index

    m = world["archive"].manifest()
    regimes = m.loc[m.status == "stored", "regime"].to_numpy()
    k = len(set(regimes))
    from wxembed.figures.plot import save_cluster_pngs

    report = cluster_index(world["index"], k=k, decode=True)
    report["pictures"] = save_cluster_pngs(tmp_path / "c", report)
    ari = report["adjusted_rand_index"]  # against the archive recorded in the index
    with EmbeddingIndex(world["index"], read_only=True) as ix:
        labels = ix.clusters(k=k).cluster.to_numpy()  # stored, in time order
    assert ari == pytest.approx(adjusted_rand_score(regimes, labels))
    rng = np.random.default_rng(0)
    null = [adjusted_rand_score(regimes, rng.permutation(labels)) for _ in range(200)]
    print(f"ARI {ari:.3f} with k={k}; random relabellings: max {max(null):.3f}")
    assert ari > 0 and ari > max(null)

    assert sum(report["sizes"]) == HOURS and len(report["pictures"]) == k
    assert all((tmp_path / "c" / f"cluster_{c:02d}.png").stat().st_size > 0 for c in range(k))
    assert sum(report["by_month"][c][6] for c in range(k)) == HOURS
    assert sum(sum(row.values()) for row in report["by_hour"].values()) == HOURS


def test_interpolated_midpoints_are_scored_against_the_real_hour_and_the_pixel_average(
    world, record_property
):
    from wxembed.analysis import interpolation_skill
    from wxembed.evaluation.metrics import score
    from wxembed.model.encoder import load_embedding_model

    report = interpolation_skill(world["archive"], world["ckpt"], gap_hours=2)
    s = report["scores"]
    for method in ("embedding_midpoint", "pixel_average", "reconstruction"):
        assert np.isfinite(s[method]["mse"]) and np.isfinite(s[method]["csi_20"])
    record_property("interpolation_winner", json.dumps(report["winner"]))
    record_property("interpolation_mse_wins", json.dumps(report["mse_wins"]))
    headline = {m: {k: round(s[m][k], 3) for k in ("mse", "csi_20", "csi_35")} for m in s}
    print(
        "scores:", headline, "winner by score:", report["winner"], "MSE wins:", report["mse_wins"]
    )
    assert report["pairs"] == HOURS - 2
    assert set(report["winner"].values()) <= {
        "embedding_midpoint",
        "pixel_average",
        "tie",
        "undefined",
    }

    # the midpoint decodes about as well as the pixel average of the two real hours (the fast
    # network's EOF path is linear, so the midpoint's decoding is close to the average of the
    # two reconstructions; the hour's own embedding, on this small world's training hours, is
    # reconstructed far better than either) ...
    assert s["embedding_midpoint"]["mse"] < 1.5 * s["pixel_average"]["mse"]
    assert s["reconstruction"]["mse"] < s["embedding_midpoint"]["mse"]
    # ... and far better than an embedding two days away
    model = load_embedding_model(world["ckpt"])
    a = world["archive"]
    times = a.stored_times()[1:48]
    far = model.decode(model.encode_raw(a.read_raw(times + np.timedelta64(48, "h"))))
    far_mse = score(np.stack([a.read_dbz(t) for t in times]), far, fss_windows_km=())["mse"]
    print(f"MSE of the decoded embedding of the hour 48 h later: {far_mse:.3f}")
    assert s["embedding_midpoint"]["mse"] < 0.75 * far_mse


def test_an_interpolation_mixes_the_embeddings_and_pixels_of_both_ends_by_weight(world):
    """Recomputed independently: the decoded mix of both ends' embeddings, the weighted pixel
    average, and their scores against the real hour; the end hour visibly matters."""
    from wxembed.analysis import interpolate_hours
    from wxembed.evaluation.metrics import score
    from wxembed.model.encoder import load_embedding_model

    a, t0, t1 = world["archive"], "2024-06-02T10", "2024-06-02T14"
    r = interpolate_hours(a, world["ckpt"], t0, t1, weight=0.25, keep_fields=True)
    model = load_embedding_model(world["ckpt"])
    z = model.encode_raw(a.read_raw([t0, t1]))  # (2, d)
    mix = model.decode((0.75 * z[0] + 0.25 * z[1])[None])[0]
    np.testing.assert_allclose(r["fields"]["embedding_midpoint"], mix, atol=1e-3)
    assert np.abs(model.decode(z[:1])[0] - mix).max() > 1.0  # without the end: another field
    d0, d1, truth = (a.read_dbz(t) for t in (t0, t1, "2024-06-02T11"))
    assert np.nanmax(np.abs(d1 - d0)) > 10.0
    np.testing.assert_allclose(r["fields"]["pixel_average"], 0.75 * d0 + 0.25 * d1, atol=1e-4)
    for name, field in (("embedding_midpoint", mix), ("pixel_average", 0.75 * d0 + 0.25 * d1)):
        assert r["scores"][name]["mse"] == pytest.approx(score(truth, field)["mse"], rel=1e-4)


def test_interpolation_skill_scores_each_pair_from_both_of_its_ends(world):
    from wxembed.analysis import interpolation_skill
    from wxembed.evaluation.metrics import Verification
    from wxembed.model.encoder import load_embedding_model

    a = world["archive"]
    report = interpolation_skill(a, world["ckpt"], gap_hours=2, max_pairs=3)
    model = load_embedding_model(world["ckpt"])
    first = a.stored_times()[:3]
    acc = {"embedding_midpoint": Verification(), "pixel_average": Verification()}
    wins = {"embedding_midpoint": 0, "pixel_average": 0, "tie": 0}
    for t in first:
        start, middle, end = t, t + np.timedelta64(1, "h"), t + np.timedelta64(2, "h")
        z = model.encode_raw(a.read_raw([start, end]))
        fields = {
            "embedding_midpoint": model.decode((0.5 * z[0] + 0.5 * z[1])[None])[0],
            "pixel_average": 0.5 * a.read_dbz(start) + 0.5 * a.read_dbz(end),
        }
        truth = a.read_dbz(middle)
        mse = {}
        for name, field in fields.items():
            acc[name].accumulate(truth, field)
            mse[name] = Verification().accumulate(truth, field).compute()["mse"]
        e, p = mse["embedding_midpoint"], mse["pixel_average"]
        wins["embedding_midpoint" if e < p else "pixel_average" if p < e else "tie"] += 1
    assert report["pairs"] == 3 and report["mse_wins"] == wins
    for name, v in acc.items():
        assert report["scores"][name]["mse"] == pytest.approx(v.compute()["mse"], rel=1e-4)


PLANTED = (1, -1, 23, -23, 24, -24, 25, -25)
"""Hours from the query at which test_the_excluded_window_is_two_sided_and_inclusive plants
exact neighbours, nearest first."""


@pytest.mark.parametrize(
    ("exclude_hours", "expected"),
    [
        (24.0, (25, -25)),  # the default: a day each side, 24 h itself included
        (23.0, (24, -24, 25, -25)),
        (0, PLANTED),
        (None, (0, *PLANTED)),  # nothing left out: the query hour itself comes first
    ],
)
def test_the_excluded_window_is_two_sided_and_inclusive(tmp_path, exclude_hours, expected):
    from wxembed.analysis import search_similar
    from wxembed.grid import HRRR_CONUS
    from wxembed.model.checkpoint import ModelInfo

    rng = np.random.default_rng(0)
    n, q, dim = 24 * 5, 60, 8
    times = np.datetime64("2024-03-01T00", "s") + np.arange(n) * np.timedelta64(1, "h")
    vectors = rng.standard_normal((n, dim)).astype(np.float32)  # others ~4 away
    step = np.eye(dim, dtype=np.float32)[0] * np.float32(0.01)
    for rank, offset in enumerate(PLANTED, start=1):  # at 0.01, 0.02, ... from the query
        vectors[q + offset] = vectors[q] + rank * step
    info = ModelInfo("fast-0123456789ab", "fast", dim, HRRR_CONUS.coarsen(16).to_json())
    with EmbeddingIndex(tmp_path / "i.duckdb") as ix:
        ix.add_vectors(info, times, vectors)
    kw = {} if exclude_hours == 24.0 else {"exclude_hours": exclude_hours}
    found = search_similar(tmp_path / "i.duckdb", times[q], k=len(expected) + 1, **kw)
    hours = (found.time.values.astype("datetime64[s]") - times[q]) // np.timedelta64(1, "h")
    assert tuple(hours[:-1]) == expected
    assert found.distance.iloc[-1] > 0.5  # then an unplanted hour, far away


def test_one_interpolation_names_the_real_hour_and_draws_it(world, tiny_grid, tmp_path):
    from wxembed.analysis import interpolate_hours
    from wxembed.figures.plot import save_interpolation_png

    r = interpolate_hours(
        world["archive"].path,
        world["ckpt"],
        "2024-06-02T10",
        "2024-06-02T14",
        weight=0.25,
        keep_fields=True,
    )
    assert r["truth_time"] == "2024-06-02 11:00:00Z"
    np.testing.assert_array_equal(r["fields"]["truth"], world["archive"].read_dbz(r["truth_time"]))
    save_interpolation_png(tmp_path / "i.png", r, tiny_grid)
    assert (tmp_path / "i.png").stat().st_size > 0
    with pytest.raises(ArchiveError, match="2024-06-08 00:00:00Z is not stored; nearest stored: "):
        interpolate_hours(world["archive"], world["ckpt"], "2024-06-08T00", "2024-06-10T00")


def test_encode_and_decode_round_trip_through_json_npy_netcdf_grib2_and_png(
    world, tiny_grid, tmp_path
):
    import xarray as xr

    from wxembed.analysis import decode_embedding, encode_field, load_embedding
    from wxembed.sources.grib import decode_refc

    t = "2024-06-03T06"
    emb = encode_field(archive=world["archive"], time=t, checkpoint=world["ckpt"])
    assert emb.embedding_dim == 50 and emb.compression()["compression_ratio"] == round(
        tiny_grid.size / 50, 1
    )
    with EmbeddingIndex(world["index"], read_only=True) as ix:
        np.testing.assert_allclose(emb.vector, ix.vector_at(t), rtol=1e-4, atol=1e-5)
    back = load_embedding(emb.save(tmp_path / "e.json"))
    assert back.model_id == emb.model_id and back.time == np.datetime64(t, "s")
    np.testing.assert_array_equal(back.vector, emb.vector)

    field = decode_embedding(tmp_path / "e.json", checkpoint=world["ckpt"], out=tmp_path / "f.nc")
    assert (
        field.dbz.shape == tiny_grid.shape
        and 0 <= np.nanmin(field.dbz) <= np.nanmax(field.dbz) <= 60
    )
    nc = xr.open_dataset(tmp_path / "f.nc")
    np.testing.assert_allclose(nc.reflectivity.values, field.dbz)
    assert nc.crs.attrs["grid_mapping_name"] == "lambert_conformal_conic"
    decode_embedding(back, checkpoint=world["ckpt"], out=tmp_path / "f.grib2")
    grib = decode_refc(tmp_path / "f.grib2")
    assert grib.grid.same_as(tiny_grid) and grib.time == np.datetime64(t, "s")
    np.testing.assert_allclose(grib.dbz, field.dbz, atol=0.05)
    # a bare vector: no model named, so any model of its size decodes it
    emb.save(tmp_path / "e.npy")
    decode_embedding(tmp_path / "e.npy", checkpoint=world["ckpt"], out=tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"vector": [1, 2]}', "no 'embedding' member"),
        (b'{"embedding": [1, "two", 3]}', "must be a list of numbers"),
        (b'{"embedding": [1, 2], "embedding_dim": 3}', "says embedding_dim 3 but holds 2"),
        (b'{"embedding": [1, NaN]}', "NaN or infinite"),
        (b'{"embedding": [1, 2, 3]}', "has 3 numbers, model .* makes 50"),
    ],
)
def test_a_malformed_embedding_file_is_a_clear_error(world, tmp_path, content, message):
    from wxembed.analysis import decode_embedding, search_similar

    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(EmbeddingError, match=message):
        decode_embedding(path, checkpoint=world["ckpt"])
    with pytest.raises(EmbeddingError, match=message):
        search_similar(world["index"], path)


def test_embeddings_and_fields_that_do_not_fit_the_model_are_refused(world, tmp_path):
    from wxembed.analysis import Embedding, decode_embedding, encode_field, search_similar

    with pytest.raises(EmbeddingError, match=r"shape \(1, 10, 10\) does not fit model"):
        encode_field(np.zeros((10, 10)), checkpoint=world["ckpt"])
    foreign = Embedding(np.zeros(50, np.float32), model_id="seed-0123456789ab")
    with pytest.raises(EmbeddingError, match="made by model seed-0123456789ab"):
        decode_embedding(foreign, checkpoint=world["ckpt"])
    with pytest.raises(EmbeddingError, match="embedded by model seed-0123456789ab"):
        search_similar(world["index"], foreign)
    with pytest.raises(EmbeddingIndexError, match="neither a time nor a file"):
        search_similar(world["index"], "yesterday-ish")


# ---- field files of any kind, on the model's grid or the one it was cut from --------------------
def test_interpolating_between_two_field_files_scores_as_between_the_stored_hours(world, tmp_path):
    from wxembed.analysis import interpolate_hours, write_field
    from wxembed.sources import DecodedField

    a, t0, t1 = world["archive"], "2024-06-02T10", "2024-06-02T12"
    files = [
        write_field(
            tmp_path / f"{i}.nc", DecodedField(np.datetime64(t, "s"), a.grid, a.read_dbz(t))
        )
        for i, t in enumerate((t0, t1))
    ]
    from_hours = interpolate_hours(a, world["ckpt"], t0, t1)
    from_files = interpolate_hours(a, world["ckpt"], *files)
    assert from_files["truth_time"] == "2024-06-02 11:00:00Z"
    for method, scores in from_hours["scores"].items():
        assert from_files["scores"][method]["mse"] == pytest.approx(scores["mse"], rel=1e-5)


def test_a_netcdf_query_file_finds_its_own_hour_first(world, tmp_path):
    from wxembed.analysis import search_similar, write_field
    from wxembed.sources import DecodedField

    t = np.datetime64("2024-06-03T15", "s")
    a = world["archive"]
    path = write_field(tmp_path / "q.nc", DecodedField(t, a.grid, a.read_dbz(t)))
    top = search_similar(world["index"], path, k=2, exclude="0")
    assert top.time.iloc[1] != pd.Timestamp(t) and top.attrs["query"].endswith(
        "(2024-06-03 15:00:00Z)"
    )
    top = search_similar(world["index"], path, k=1, exclude_hours=None)
    assert top.time.iloc[0] == pd.Timestamp(t)


@pytest.mark.skipif(not OPERA_V20.is_file(), reason="reference ODIM files absent")
def test_an_opera_file_is_cut_and_coarsened_onto_a_model_made_from_a_piece_of_it(tmp_path):
    from conftest import write_untrained_checkpoint
    from test_netcdf import FMI_FRAMES
    from test_odim import reflectivity_copy

    from wxembed.analysis import encode_field
    from wxembed.sources.fmi import read_fmi
    from wxembed.sources.formats import Reshape, read_field

    opera = reflectivity_copy(OPERA_V20, tmp_path / "opera.h5")
    reshape = Reshape(bbox=(0.0, 45.0, 15.0, 55.0), coarsen=8)
    piece = reshape.apply(read_field(opera))
    ckpt = write_untrained_checkpoint(tmp_path / "m.ckpt", piece.grid)
    from_file = encode_field(opera, checkpoint=ckpt)
    np.testing.assert_allclose(from_file.vector, encode_field(piece, checkpoint=ckpt).vector)
    assert from_file.time == np.datetime64("2018-08-24T18:00:00")
    fmi = FMI_FRAMES[0]
    with pytest.raises(EmbeddingError, match=r"fmi-finland.* but the grid of model .* not a block"):
        encode_field(fmi, checkpoint=ckpt)
    assert read_fmi(fmi).grid.derivation_of(piece.grid) is None


def test_coverage_weight_ranks_by_the_learned_numbers_alone_at_0_and_by_echo_amount_when_high(
    world,
):
    from wxembed.analysis import search_similar
    from wxembed.reflectivity import NODATA, encode_dbz

    archive = world["archive"]
    times = archive.stored_times()
    raw = archive.read_raw(times)
    echo = ((raw >= encode_dbz(20.0)) & (raw != NODATA)).mean(axis=(1, 2))  # share at 20 dBZ
    query = times[int(np.argmax(echo))]
    with EmbeddingIndex(world["index"], read_only=True) as ix:
        vs = ix.vectors()
    rows = {t: i for i, t in enumerate(vs.seconds.astype("datetime64[s]"))}
    q = vs.matrix[rows[query]]
    # weight 0: exactly the Euclidean ranking of the learned numbers (all but the last 3)
    found = search_similar(world["index"], query, k=5, exclude_hours=6, coverage_weight=0)
    far = np.abs((vs.seconds - int(query.astype(np.int64))) / 3600) > 6
    d = np.sqrt(((vs.matrix[:, :-3] - q[:-3]) ** 2).sum(1))
    expected = vs.seconds[far][np.argsort(d[far], kind="stable")[:5]].astype("datetime64[s]")
    assert list(found.time.values.astype("datetime64[s]")) == list(expected)
    np.testing.assert_allclose(found.distance, np.sort(d[far])[:5], rtol=1e-5)
    assert found.attrs["coverage_weight"] == 0
    # weighed heavily: the hours nearest in echo coverage (the last 3 numbers), which hold
    # more of the stormiest hour's echo area than the hours nearest in pattern
    heavy = search_similar(world["index"], query, k=5, exclude_hours=6, coverage_weight=1e4)
    c = np.sqrt(((vs.matrix[:, -3:] - q[-3:]) ** 2).sum(1))
    nearest = vs.seconds[far][np.argsort(c[far], kind="stable")[:5]].astype("datetime64[s]")
    assert set(heavy.time.values.astype("datetime64[s]")) == set(nearest)
    ratio = {
        name: float(np.mean([echo[rows[t]] / echo[rows[query]] for t in df.time.values]))
        for name, df in (("plain", found), ("heavy", heavy))
    }
    print(f"stormiest hour's matches hold {ratio} of its echo area at 20 dBZ")
    assert ratio["heavy"] > ratio["plain"], ratio


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf"), True, "1"])
def test_a_bad_coverage_weight_is_one_clear_error(world, weight):
    from wxembed.analysis import search_similar

    t = world["archive"].stored_times()[0]
    with pytest.raises(EmbeddingIndexError, match="coverage_weight must be a number >= 0"):
        search_similar(world["index"], t, k=2, coverage_weight=weight)
