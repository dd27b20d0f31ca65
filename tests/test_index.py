"""The DuckDB embedding index: replace-not-duplicate loading, exact search, filters, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wxembed.errors import EmbeddingError, EmbeddingIndexError
from wxembed.grid import HRRR_CONUS
from wxembed.index import EmbeddingIndex
from wxembed.model.checkpoint import ModelInfo, model_id_for

D = 8
START = np.datetime64("2024-01-01T00", "s")


def _info(model_id: str = "fast-000000000001", dim: int = D) -> ModelInfo:
    return ModelInfo(model_id, "fast", dim, HRRR_CONUS.coarsen(16).to_json())


def _hours(n: int, start=START) -> np.ndarray:
    return start + np.arange(n) * np.timedelta64(1, "h")


def _vectors(n: int, dim: int = D, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.fixture
def index(tmp_path):
    """An index of 24 * 60 random hours (two months) for one model."""
    with EmbeddingIndex(tmp_path / "i.duckdb") as ix:
        ix.add_vectors(_info(), _hours(24 * 60), _vectors(24 * 60))
        yield ix


def _brute_force(matrix, q, metric="euclidean"):
    if metric == "cosine":
        unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        return 1 - unit @ (q / np.linalg.norm(q))
    return np.linalg.norm(matrix.astype(np.float64) - q, axis=1)


def test_loading_a_model_again_replaces_its_rows_rather_than_duplicating_them(tmp_path):
    with EmbeddingIndex(tmp_path / "i.duckdb") as ix:
        first = ix.add_vectors(_info(), _hours(100), _vectors(100, seed=1))
        again = ix.add_vectors(_info(), _hours(80, START + np.timedelta64(50, "h")), _vectors(80))
        assert first == {"replaced": 0, "inserted": 100}
        assert again == {"replaced": 100, "inserted": 80}
        assert ix.count() == 80
        vs = ix.vectors()
        np.testing.assert_array_equal(vs.times, _hours(80, START + np.timedelta64(50, "h")))
        np.testing.assert_array_equal(vs.matrix, _vectors(80))


def test_several_models_live_in_one_index_and_a_search_must_say_which(tmp_path):
    with EmbeddingIndex(tmp_path / "i.duckdb") as ix:
        ix.add_vectors(_info("fast-aaaaaaaaaaaa"), _hours(50), _vectors(50))
        ix.add_vectors(_info("seed-bbbbbbbbbbbb", dim=4), _hours(30), _vectors(30, dim=4))
        assert ix.count("fast-aaaaaaaaaaaa") == 50 and ix.count("seed-bbbbbbbbbbbb") == 30
        assert set(ix.models().model_id) == {"fast-aaaaaaaaaaaa", "seed-bbbbbbbbbbbb"}
        with pytest.raises(EmbeddingIndexError, match="holds 2 models .* say which"):
            ix.search(str(START), k=3)
        assert len(ix.search(str(START), k=3, model_id="seed-bbbbbbbbbbbb")) == 3


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_search_returns_the_same_hours_as_brute_force(index, metric):
    vs = index.vectors()
    rng = np.random.default_rng(5)
    for row in rng.integers(0, len(vs), 10):
        found = index.search(vs.times[row], k=7, metric=metric, exclude_hours=0)
        d = _brute_force(vs.matrix, vs.matrix[row], metric)
        d[row] = np.inf
        expected = np.argsort(d, kind="stable")[:7]
        np.testing.assert_array_equal(found.time.values.astype("datetime64[s]"), vs.times[expected])
        np.testing.assert_allclose(found.distance, d[expected], rtol=1e-4, atol=1e-5)
        assert list(found["rank"]) == list(range(1, 8))


def test_the_default_search_leaves_out_a_day_on_each_side_of_the_query(index):
    t = START + np.timedelta64(24 * 30, "h")
    found = index.search(t, k=50)
    gaps = np.abs((found.time.values.astype("datetime64[s]") - t) / np.timedelta64(1, "h"))
    assert gaps.min() > 24
    # 0 leaves out just the query hour; None leaves out nothing (the query matches itself)
    assert t not in index.search(t, k=50, exclude_hours=0).time.values.astype("datetime64[s]")
    top = index.search(t, k=1, exclude_hours=None)
    assert top.time.iloc[0] == pd.Timestamp(t) and top.distance.iloc[0] == pytest.approx(0.0)


def test_filters_restrict_the_matches_to_months_hours_of_day_and_a_date_range(index):
    t = START + np.timedelta64(5, "h")
    found = index.search(t, k=20, months=[2], hours=[6, 18])
    assert set(found.time.dt.month) == {2} and set(found.time.dt.hour) <= {6, 18}
    found = index.search(t, k=20, start="2024-01-20", end="2024-01-25")
    assert found.time.min() >= pd.Timestamp("2024-01-20")
    assert found.time.max() < pd.Timestamp("2024-01-25")
    # fewer candidates than k: what there is comes back
    assert len(index.search(t, k=10, start="2024-02-01T00", end="2024-02-01T03")) == 3


def test_a_vector_query_is_searched_like_an_hour(index):
    vs = index.vectors()
    found = index.search(vs.matrix[100], k=1, exclude_hours=None)
    assert found.time.iloc[0] == pd.Timestamp(vs.times[100])
    with pytest.raises(EmbeddingError, match=f"3 numbers, model .* makes {D}"):
        index.search(np.ones(3), k=1)


def test_an_hour_not_in_the_index_is_an_error_naming_the_nearest_hours(index):
    with pytest.raises(
        EmbeddingIndexError,
        match=r"2024-01-03 05:30:00Z is not in the index .* nearest: 2024-01-03 05:00:00Z and "
        r"2024-01-03 06:00:00Z",
    ):
        index.search("2024-01-03T05:30", k=3)
    with pytest.raises(EmbeddingIndexError, match=r"nearest: 2024-02-29 23:00:00Z$"):
        index.search("2025-06-01", k=3)


def test_k_larger_than_the_index_or_below_one_is_an_error(index):
    with pytest.raises(
        EmbeddingIndexError, match=r"k=1441 is larger than the index: .* 1440 hours"
    ):
        index.search(str(START), k=1441)
    with pytest.raises(EmbeddingIndexError, match="positive whole number"):
        index.search(str(START), k=0)
    with pytest.raises(EmbeddingIndexError, match="months must be in 1..12"):
        index.search(str(START), k=3, months=[13])


def test_an_empty_missing_or_corrupt_index_is_a_clear_error(tmp_path):
    with EmbeddingIndex(tmp_path / "empty.duckdb") as ix:
        with pytest.raises(EmbeddingIndexError, match="the index is empty"):
            ix.search(str(START), k=1)
    with pytest.raises(EmbeddingIndexError, match="no index here"):
        EmbeddingIndex(tmp_path / "absent.duckdb", read_only=True)
    (tmp_path / "bad.duckdb").write_bytes(b"not a database at all" * 100)
    with pytest.raises(EmbeddingIndexError, match="bad.duckdb: not a readable DuckDB index"):
        EmbeddingIndex(tmp_path / "bad.duckdb", read_only=True)


def test_bad_embeddings_are_refused_and_leave_the_index_as_it_was(index):
    before = index.vectors().matrix.copy()
    with pytest.raises(EmbeddingIndexError, match=f"not {D} numbers long; index left unchanged"):
        index.add_vectors(_info(), _hours(5), _vectors(5, dim=D + 1))
    nan = _vectors(5)
    nan[2, 3] = np.nan
    with pytest.raises(EmbeddingIndexError, match="NaN or infinite"):
        index.add_vectors(_info(), _hours(5), nan)
    assert index.count() == 24 * 60
    np.testing.assert_array_equal(index.vectors().matrix, before)


def test_names_reach_duckdb_as_bound_parameters_never_as_sql_text(tmp_path):
    evil = "x'; DROP TABLE embeddings; --"
    with EmbeddingIndex(tmp_path / "i.duckdb") as ix:
        ix.add_vectors(_info(evil), _hours(10), _vectors(10))
        ix.add_vectors(_info(), _hours(10), _vectors(10))
        with pytest.raises(EmbeddingIndexError, match="no model"):
            ix.search(str(START), k=1, model_id="nothing' OR '1'='1")
        assert ix.count(evil) == 10 and ix.count() == 20
        assert len(ix.search(str(START), k=2, model_id=evil, exclude_hours=0)) == 2


def test_clusters_are_stored_and_replaced_per_model_and_k(index):
    vs = index.vectors()
    labels = np.arange(len(vs)) % 3
    centroids = np.stack([vs.matrix[labels == c].mean(0) for c in range(3)])
    for _ in range(2):
        index.save_clusters(vs.model_id, 3, vs.seconds, labels, centroids, vs.seconds[:3])
    assigned = index.clusters(k=3)
    assert len(assigned) == len(vs) and set(assigned.cluster) == {0, 1, 2}
    cents = index.centroids(k=3)
    assert list(cents.n_hours) == [480, 480, 480]
    np.testing.assert_allclose(np.stack(cents.centroid.to_numpy()), centroids, rtol=1e-6)
    # loading the model's embeddings again drops its clusters: they describe the old rows
    index.add_vectors(_info(), vs.times, vs.matrix)
    assert len(index.clusters()) == 0


def test_the_model_id_is_the_arch_and_a_short_hash_of_the_checkpoint_file(tmp_path):
    a, b = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    a.write_bytes(b"weights one")
    b.write_bytes(b"weights two")
    assert model_id_for("fast", a).startswith("fast-") and len(model_id_for("fast", a)) == 17
    assert model_id_for("fast", a) == model_id_for("fast", a) != model_id_for("fast", b)
