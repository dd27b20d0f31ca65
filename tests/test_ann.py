"""Approximate search (issue 13): over a real DuckDB index with a tiny row threshold, the
approximate searcher finds the exact nearest hours, honours every filter and the exclusion
window, falls back to exact search when the filters leave too little, stays exact when asked
to or when the embeddings have no neighbourhoods, and serves many threads at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from scipy.signal import lfilter

from wxembed.grid import HRRR_CONUS
from wxembed.index import EmbeddingIndex
from wxembed.index import ann as ann_module
from wxembed.index.ann import AnnSearcher
from wxembed.index.search import Candidates, ExactSearcher, select_candidates
from wxembed.model.checkpoint import ModelInfo

pytest.importorskip("faiss", reason="approximate search needs faiss-cpu (the serve extra)")

N, D = 6000, 16
START = np.datetime64("2020-01-01T00", "s")
MODEL = "fast-0000000000a1"


def embedding_like(n: int, d: int, seed: int = 0, latent: int = 4) -> np.ndarray:
    """(n, d) rows that drift from hour to hour (an AR(1) walk in ``latent`` directions seen
    through a fixed projection, plus a little noise), as a radar archive's embeddings do."""
    rng = np.random.default_rng(seed)
    phi = 0.95
    steps = rng.standard_normal((n, latent))
    walk = lfilter([np.sqrt(1 - phi**2)], [1, -phi], steps, axis=0)  # (n, latent)
    x = walk @ rng.standard_normal((latent, d)) + 0.05 * rng.standard_normal((n, d))
    return x.astype(np.float32)


def _hours(n: int) -> np.ndarray:
    return START + np.arange(n) * np.timedelta64(1, "h")


def _index(path, matrix) -> None:
    info = ModelInfo(MODEL, "fast", matrix.shape[1], HRRR_CONUS.coarsen(16).to_json())
    with EmbeddingIndex(path) as ix:
        ix.add_vectors(info, _hours(len(matrix)), matrix)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """A read-only index of ``N`` embedding-like rows whose set searches approximately from
    1000 rows, with its euclidean structure built."""
    path = tmp_path_factory.mktemp("ann") / "walk.duckdb"
    _index(path, embedding_like(N, D))
    ix = EmbeddingIndex(path, read_only=True)
    ix.vectors().ann_min_rows = 1000
    assert isinstance(ix.vectors().searcher("euclidean", wait=True), AnnSearcher)
    yield ix
    ix.close()


def _recall(exact: pd.DataFrame, approx: pd.DataFrame) -> float:
    return len(set(exact.time) & set(approx.time)) / max(1, len(exact))


def _queries(ix, count: int, seed: int = 7) -> np.ndarray:
    times = ix.vectors().times
    return times[np.random.default_rng(seed).choice(len(times), count, replace=False)]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_approximate_search_finds_the_exact_nearest_hours(index, metric):
    index.vectors().searcher(metric, wait=True)
    recalls = []
    for t in _queries(index, 40):
        exact = index.search(t, k=10, metric=metric, exact=True)
        approx = index.search(t, k=10, metric=metric)
        recalls.append(_recall(exact, approx))
        both = exact.merge(approx, on="time", suffixes=("_exact", "_approx"))
        np.testing.assert_allclose(both.distance_exact, both.distance_approx, atol=1e-5)
        assert approx.distance.is_monotonic_increasing
    assert np.mean(recalls) >= 0.95, f"recall@10 {np.mean(recalls):.3f}"


def test_a_vector_query_is_searched_approximately_too(index):
    vs = index.vectors()
    rng = np.random.default_rng(3)
    recalls = []
    for row in rng.choice(N, 30, replace=False):
        q = vs.matrix[row] + 0.01 * rng.standard_normal(D).astype(np.float32)
        exact = index.search(q, k=10, exact=True)
        recalls.append(_recall(exact, index.search(q, k=10)))
    assert np.mean(recalls) >= 0.95


def test_filters_and_the_exclusion_window_are_honoured(index):
    vs = index.vectors()
    ann = vs.searcher("euclidean")
    start, end = np.datetime64("2020-02-01", "s"), np.datetime64("2020-08-01", "s")
    wide = {"hours": list(range(0, 18)), "start": start, "end": end}  # 3/4 of the hours of 4/5
    recalls = []
    for t in _queries(index, 25, seed=11):
        for filters, window in ((wide, 48.0), ({}, 24 * 10.0), ({"months": [3]}, 24.0)):
            approx = index.search(t, k=10, exclude_hours=window, **filters)
            exact = index.search(t, k=10, exclude_hours=window, exact=True, **filters)
            when = approx.time.to_numpy().astype("datetime64[s]")
            assert (np.abs(when - t) > np.timedelta64(int(window * 3600), "s")).all()
            if "hours" in filters:
                assert set(approx.time.dt.hour) <= set(filters["hours"])
                assert (when >= start).all() and (when < end).all()
            if "months" in filters:  # leaves a twelfth: answered exactly, the same rows
                assert set(approx.time.dt.month) == {3}
                pd.testing.assert_frame_equal(approx, exact)
            recalls.append(_recall(exact, approx))
    assert np.mean(recalls) >= 0.95
    cand = select_candidates(vs, 48.0, _queries(index, 1)[0], None, wide["hours"], start, end)
    q = vs.matrix[0]
    assert ann.approximate(q, 10, cand, ann.nprobe) is not None  # the wide filter: approximate
    narrow = select_candidates(vs, 24.0, _queries(index, 1)[0], [3], None, None, None)
    assert ann.approximate(q, 10, narrow, ann.nprobe) is None  # a twelfth left: exact


def test_when_too_few_fetched_candidates_pass_the_filters_the_search_goes_exact(index):
    vs = index.vectors()
    ann = vs.searcher("euclidean")
    assert isinstance(ann, AnnSearcher)
    q = vs.matrix[100]
    # half the rows pass, but not the half near the query: every candidate fetched is refused
    near = np.argsort(np.linalg.norm(vs.matrix - q, axis=1))[: N // 2]
    keep = np.ones(N, dtype=bool)
    keep[near] = False
    cand = Candidates(0, N, keep=keep)
    assert ann.approximate(q, 10, cand, ann.nprobe) is None
    rows, dist = ann.search(q, 10, cand)
    expected, expected_dist = ann.exact.search(q, 10, cand)
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(dist, expected_dist)
    assert keep[rows].all()


def test_exact_true_reads_every_row_even_when_the_approximate_search_would_miss(index):
    vs = index.vectors()
    ann = vs.searcher("euclidean")
    assert isinstance(ann, AnnSearcher)
    calibrated, ann.nprobe = ann.nprobe, 1  # one list per query: answers that miss hours
    try:
        missed = 0
        for t in _queries(index, 20, seed=19):
            exact = index.search(t, k=10, exact=True)
            d = np.linalg.norm(vs.matrix.astype(np.float64) - vs.matrix[vs.row_of(t)], axis=1)
            d[np.abs(vs.times - t) <= np.timedelta64(24, "h")] = np.inf  # the day each side
            brute = vs.times[np.argsort(d, kind="stable")[:10]]
            np.testing.assert_array_equal(exact.time.values.astype("datetime64[s]"), brute)
            missed += _recall(exact, index.search(t, k=10)) < 1
        assert missed > 0  # the default search was approximate, and worse, at nprobe 1
    finally:
        ann.nprobe = calibrated


def test_exact_is_forced_when_asked_and_below_the_threshold(index, tmp_path):
    assert isinstance(index.vectors().searcher("euclidean", exact=True), ExactSearcher)
    path = tmp_path / "small.duckdb"
    _index(path, embedding_like(2000, D, seed=1))
    with EmbeddingIndex(path, read_only=True) as ix:  # default threshold: 200,000 rows
        assert ix.vectors().ann_min_rows == ann_module.ANN_MIN_ROWS
        assert isinstance(ix.vectors().searcher("euclidean", wait=True), ExactSearcher)


def test_embeddings_without_neighbourhoods_stay_exact(tmp_path):
    path = tmp_path / "random.duckdb"
    matrix = np.random.default_rng(0).standard_normal((4000, 50)).astype(np.float32)
    _index(path, matrix)
    with EmbeddingIndex(path, read_only=True) as ix:
        vs = ix.vectors()
        vs.ann_min_rows = 1000
        assert isinstance(vs.searcher("euclidean", wait=True), ExactSearcher)
        tried = ann_module.status(vs, "euclidean")  # tried once, not again per query
        assert not tried["kept"] and tried["recall_at_10"] < ann_module.RECALL_TARGET


def test_concurrent_queries_get_the_serial_answers(index):
    times = _queries(index, 48, seed=5)
    serial = [index.search(t, k=8, metric="euclidean") for t in times]
    barrier = threading.Barrier(8)

    def one(i):
        if i < 8:
            barrier.wait()
        return index.search(times[i], k=8, metric="euclidean")

    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(one, range(len(times))))
    for a, b in zip(serial, parallel, strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_a_structure_is_built_once_by_many_threads_or_after_many_searches(tmp_path):
    path = tmp_path / "walk.duckdb"
    _index(path, embedding_like(3000, D, seed=2))
    with EmbeddingIndex(path, read_only=True) as ix:
        vs = ix.vectors()
        vs.ann_min_rows = 1000
        with ThreadPoolExecutor(6) as pool:
            built = list(pool.map(lambda _: vs.searcher("cosine", wait=True), range(6)))
        assert isinstance(built[0], AnnSearcher) and all(b is built[0] for b in built)
        # euclidean: searched exactly at first, built in the background after enough searches
        t = vs.times[1500]
        for _ in range(ann_module.BUILD_AFTER_SEARCHES):
            ix.search(t, k=5)
        assert vs._ann["euclidean"].builder is None  # a few searches never wait for a build
        ix.search(t, k=5)
        vs._ann["euclidean"].builder.join(timeout=60)
        assert isinstance(vs.searcher("euclidean"), AnnSearcher)


@pytest.mark.parametrize("exact", [False, True])
def test_the_explorer_searches_approximately_unless_started_exact(index, tmp_path, exact):
    pytest.importorskip("fastapi", reason="wxembed serve needs the 'serve' extra")
    from wxembed.archive import Archive
    from wxembed.serve.config import ServeConfig
    from wxembed.serve.explorer import Explorer, SearchFilters

    archive = tmp_path / "a.zarr"
    Archive.create(archive, HRRR_CONUS.coarsen(16))
    ex = Explorer(ServeConfig(archive=archive, index=index.path, exact=exact))
    try:
        ex.index.vectors().ann_min_rows = 1000  # as a 200,000-hour index is by default
        ex.warm()
        method = ex.info()["index"]["search"]
        assert method["method"] == ("exact" if exact else "approximate")
        t = _queries(index, 1, seed=13)[0]
        got = ex.similar(t, SearchFilters(k=10))
        want = index.search(t, k=10, exact=True)
        found = {m["time"] for m in got["matches"]}
        assert len(found & {str(w) + "Z" for w in want.time.values.astype("datetime64[s]")}) >= 9
    finally:
        ex.close()


def test_search_similar_passes_exact_through(index):
    from wxembed.analysis import search_similar

    t = _queries(index, 1, seed=17)[0]
    exact = search_similar(index, t, k=10, exact=True)
    pd.testing.assert_frame_equal(exact, index.search(t, k=10, exact=True), check_like=True)
    assert _recall(exact, search_similar(index, t, k=10)) >= 0.9
