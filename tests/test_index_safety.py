"""The index under hostile files and concurrent load (issue 12, items 11, 12 and 18): a crafted
file runs nothing and is refused in one line, a damaged one answers no search rather than a
wrong one, and one index object serves many threads at once."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import duckdb
import numpy as np
import pandas as pd
import pytest

from wxembed.errors import EmbeddingError, EmbeddingIndexError
from wxembed.grid import HRRR_CONUS
from wxembed.index import EmbeddingIndex
from wxembed.index.search import Candidates, ExactSearcher
from wxembed.model.checkpoint import ModelInfo

D, N = 8, 24 * 10
START = np.datetime64("2024-01-01T00", "s")
MODEL = "fast-000000000001"


def _hours(n: int) -> np.ndarray:
    return START + np.arange(n) * np.timedelta64(1, "h")


@pytest.fixture(scope="module")
def good_index(tmp_path_factory):
    """A real index of ``N`` random 8-number embeddings, one an hour."""
    path = tmp_path_factory.mktemp("safety") / "good.duckdb"
    info = ModelInfo(MODEL, "fast", D, HRRR_CONUS.coarsen(16).to_json())
    matrix = np.random.default_rng(0).standard_normal((N, D)).astype(np.float32)
    with EmbeddingIndex(path) as ix:
        ix.add_vectors(info, _hours(N), matrix)
    return path


def _crafted(good_index, tmp_path, *statements: str, params=None):
    """A copy of the good index with ``statements`` run on it by plain DuckDB."""
    path = tmp_path / "crafted.duckdb"
    shutil.copy(good_index, path)
    con = duckdb.connect(str(path))
    for sql in statements:
        con.execute(sql, params or [])
    con.close()
    return path


# ---- item 11: a crafted file runs nothing ----------------------------------------------------
def test_a_view_reading_a_local_file_is_refused_before_it_runs(good_index, tmp_path):
    path = _crafted(
        good_index,
        tmp_path,
        "DROP TABLE models",
        "CREATE VIEW models AS SELECT column0 AS model_id, 'fast' AS arch, 8 AS embedding_dim, "
        "'{}' AS grid_json, NULL::VARCHAR AS checkpoint, NULL::VARCHAR AS archive, "
        "NULL::TIMESTAMP AS created FROM read_csv('/etc/passwd', header=false, sep='\\t')",
    )
    for read_only in (True, False):
        with pytest.raises(EmbeddingIndexError, match=r"holds view main\.models") as err:
            with EmbeddingIndex(path, read_only=read_only) as ix:
                ix.search(str(START), k=1)
        assert "root:" not in str(err.value) and "\n" not in str(err.value)


def test_a_macro_shadowing_a_builtin_function_is_refused(good_index, tmp_path):
    # epoch() is what reading the times calls: this one would move every hour to 1970
    path = _crafted(good_index, tmp_path, "CREATE MACRO epoch(x) AS 0")
    with pytest.raises(EmbeddingIndexError, match=r"holds macro main\.epoch"):
        with EmbeddingIndex(path, read_only=True) as ix:
            ix.search(str(START), k=1)


@pytest.mark.parametrize(
    "statements, reason",
    [
        (
            [
                "ALTER TABLE embeddings ADD COLUMN note VARCHAR",
            ],
            r"table embeddings has columns \(model_id VARCHAR, time TIMESTAMP, embedding "
            r"FLOAT\[\], note VARCHAR\), expected",
        ),
        (
            ["DROP TABLE clusters", "CREATE TABLE clusters (model_id VARCHAR, k INTEGER)"],
            "table clusters has columns",
        ),
        (
            [
                "DROP TABLE centroids",
                "CREATE TABLE centroids (model_id VARCHAR, k INTEGER, cluster INTEGER, "
                "n_hours BIGINT, nearest_time TIMESTAMP, "
                "centroid FLOAT[] GENERATED ALWAYS AS ([k::FLOAT]))",
            ],
            r"centroid FLOAT\[\] = ",
        ),
    ],
)
def test_tables_must_be_plain_tables_of_the_expected_columns(
    good_index, tmp_path, statements, reason
):
    path = _crafted(good_index, tmp_path, *statements)
    with pytest.raises(EmbeddingIndexError, match=reason):
        EmbeddingIndex(path, read_only=True)


def test_an_index_connection_reaches_no_file_and_loads_no_extension(good_index):
    with EmbeddingIndex(good_index, read_only=True) as ix:
        settings = dict(
            ix._fetch(
                "SELECT name, value FROM system.main.duckdb_settings() WHERE name IN "
                "('enable_external_access', 'autoload_known_extensions', "
                "'autoinstall_known_extensions')"
            )
        )
        with pytest.raises(duckdb.Error, match="disabled"):
            ix._fetch("SELECT * FROM read_csv('/etc/passwd')")
    assert settings == dict.fromkeys(settings, "false") and len(settings) == 3


def test_shards_still_load_with_external_access_off(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    info = ModelInfo(MODEL, "fast", D, HRRR_CONUS.coarsen(16).to_json())
    matrix = np.random.default_rng(1).standard_normal((20, D)).astype(np.float32)
    shards = []
    for i in range(2):
        part = slice(10 * i, 10 * i + 10)
        table = pa.table(
            {
                "time": pa.array(_hours(20)[part]),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(matrix[part].ravel()), D),
                "extra": pa.array(np.arange(10)),
            }
        )
        pq.write_table(table, tmp_path / f"s{i}.parquet")
        shards.append(tmp_path / f"s{i}.parquet")
    with EmbeddingIndex(tmp_path / "i.duckdb") as ix:
        assert ix.replace_model(info, parquet_files=shards, expected_rows=20)["inserted"] == 20
        np.testing.assert_array_equal(ix.vectors().matrix, matrix)
        (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
        with pytest.raises(EmbeddingIndexError, match=r"bad\.parquet: not a readable shard"):
            ix.replace_model(info, parquet_files=[tmp_path / "bad.parquet"])
        assert ix.count() == 20


# ---- item 12: a damaged index answers no search ----------------------------------------------
@pytest.mark.parametrize("dim", [0, -3, 10**6])
def test_an_impossible_embedding_dim_is_a_clear_error(good_index, tmp_path, dim):
    path = _crafted(good_index, tmp_path, "UPDATE models SET embedding_dim = ?", params=[dim])
    with EmbeddingIndex(path, read_only=True) as ix:
        with pytest.raises(
            EmbeddingIndexError,
            match=rf"model {MODEL}: embedding_dim is {dim}; an embedding holds 1 to 100000",
        ):
            ix.search(str(START), k=3)


def test_rows_of_another_length_are_a_clear_error(good_index, tmp_path):
    path = _crafted(
        good_index,
        tmp_path,
        "UPDATE embeddings SET embedding = [1, 2, 3] WHERE time = TIMESTAMP '2024-01-02 00:00'",
    )
    with EmbeddingIndex(path, read_only=True) as ix:
        with pytest.raises(EmbeddingIndexError, match=f"1 of {N} rows are not .* 8 numbers"):
            ix.search(str(START), k=3)


def test_nan_embeddings_are_an_error_not_rows_silently_left_out(good_index, tmp_path):
    from wxembed.analysis import cluster_index

    path = _crafted(
        good_index,
        tmp_path,
        "UPDATE embeddings SET embedding = [0, 0, 'nan'::FLOAT, 0, 0, 0, 0, 0] "
        "WHERE time = TIMESTAMP '2024-01-03 00:00'",
    )
    nan_hours = rf"1 of {N} embeddings hold NaN or infinite values \(at 2024-01-03 00:00:00Z"
    with EmbeddingIndex(path, read_only=True) as ix:
        with pytest.raises(EmbeddingIndexError, match=nan_hours):
            ix.search("2024-01-03T00", k=3)  # the NaN hour itself: once, an empty answer
        with pytest.raises(EmbeddingIndexError, match=nan_hours):
            ix.search("2024-01-05T00", k=N - 1, exclude_hours=None)  # once, N - 1 hours
    with pytest.raises(EmbeddingIndexError, match=nan_hours):
        cluster_index(path, k=3)  # once, scikit-learn's ValueError


def test_a_nan_query_vector_is_a_clear_error(good_index):
    with EmbeddingIndex(good_index, read_only=True) as ix:
        q = ix.vectors().matrix[5].copy()
        q[2] = np.nan
        with pytest.raises(EmbeddingError, match="NaN or infinite"):
            ix.search(q, k=3)


# ---- item 18: one index, many threads ---------------------------------------------------------
QUERIES = [
    (str(START + np.timedelta64(h, "h")), kw)
    for h in range(0, N, 20)
    for kw in ({}, {"metric": "cosine"}, {"hours": [3, 4, 5], "exclude_hours": 0})
]


def _answers(ix: EmbeddingIndex) -> list[pd.DataFrame]:
    return [ix.search(t, k=5, **kw) for t, kw in QUERIES]


def test_eight_threads_share_one_cold_index(good_index):
    with EmbeddingIndex(good_index, read_only=True) as ix:
        expected = _answers(ix)
    with EmbeddingIndex(good_index, read_only=True) as shared:  # cold: nothing read yet
        barrier = threading.Barrier(8)

        def client(_):
            barrier.wait()
            out = _answers(shared)
            shared.models(), shared.count(), shared.clusters()
            return out

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(client, range(8)))
    for answers in results:
        for got, want in zip(answers, expected, strict=True):
            pd.testing.assert_frame_equal(got, want)


def test_readers_and_a_writer_share_one_writable_index(good_index, tmp_path):
    path = tmp_path / "w.duckdb"
    shutil.copy(good_index, path)
    with EmbeddingIndex(path) as ix:
        vs = ix.vectors()
        labels = np.arange(N) % 3
        cents = np.stack([vs.matrix[labels == c].mean(0) for c in range(3)])
        stop = threading.Event()

        def writer():
            while not stop.is_set():
                ix.save_clusters(MODEL, 3, vs.seconds, labels, cents, vs.seconds[:3])

        def reader(_):
            for _ in range(10):
                assert len(ix.search(str(START), k=4)) == 4
                assert len(ix.clusters(k=3)) in (0, N)
                assert int(ix.models().n_hours.iloc[0]) == N

        w = threading.Thread(target=writer)
        w.start()
        try:
            with ThreadPoolExecutor(6) as pool:
                list(pool.map(reader, range(6)))
        finally:
            stop.set()
            w.join()
        assert list(ix.centroids(k=3).n_hours) == [80, 80, 80]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_queries_that_share_a_pass_get_the_answers_they_would_alone(metric, monkeypatch):
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((5000, 16)).astype(np.float32)
    searcher = ExactSearcher(matrix, metric)
    jobs = [
        (matrix[i], Candidates(i // 2, 5000 - i, (i, i + 50), rng.random(5000) > 0.3))
        for i in range(0, 2400, 100)
    ]
    alone = [searcher.search(q, 7, c) for q, c in jobs]
    passes = []
    product = searcher._pass._product

    def slow_product(queries, start, stop):  # hold each pass long enough for a queue to form
        passes.append(len(queries))
        time.sleep(0.02)
        return product(queries, start, stop)

    monkeypatch.setattr(searcher._pass, "_product", slow_product)
    with ThreadPoolExecutor(8) as pool:
        shared = list(pool.map(lambda job: searcher.search(job[0], 7, job[1]), jobs))
    assert max(passes) > 1 and sum(passes) == len(jobs)  # queries did share passes
    for (rows_a, dist_a), (rows_s, dist_s) in zip(alone, shared, strict=True):
        np.testing.assert_array_equal(rows_s, rows_a)
        np.testing.assert_allclose(dist_s, dist_a, rtol=1e-5, atol=1e-6)
