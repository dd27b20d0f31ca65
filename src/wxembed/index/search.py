"""Search: the k nearest hours of one model's embeddings, with filters.

A model's ``(times, matrix)`` (:class:`EmbeddingSet`) is read once from the store and kept; a
query costs one matrix-vector product (``|x|^2 - 2 x.q + |q|^2`` with the norms precomputed) and
a partial sort. Filters (month, hour of day, date range, the window excluded around the query)
are masks and slices over the sorted times. Behind the :class:`Searcher` protocol, a set of
``ann_min_rows`` rows or more is searched approximately (:mod:`wxembed.index.ann`, FAISS) once
its structure is built, unless a search asks for ``exact``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from wxembed.errors import EmbeddingError, EmbeddingIndexError
from wxembed.index.ann import ANN_MIN_ROWS, approximate
from wxembed.times import format_time, from_seconds, to_seconds

log = logging.getLogger(__name__)

METRICS = ("euclidean", "cosine")
"""Distances a search can rank by."""


@dataclass(frozen=True)
class Candidates:
    """Rows a search may return: ``start <= row < stop``, not in ``exclude`` (a half-open row
    range), and where ``keep`` (a boolean mask over all rows) is True."""

    start: int
    stop: int
    exclude: tuple[int, int] | None = None
    keep: np.ndarray | None = None


class Searcher(Protocol):
    """k-nearest-neighbour search over one model's embedding matrix (rows sorted by time).

    :class:`ExactSearcher` reads every row; :class:`wxembed.index.ann.AnnSearcher` scans a few
    lists of them (FAISS) and hands the queries it cannot answer well to an exact one.
    """

    metric: str

    def search(
        self, query: np.ndarray, k: int, candidates: Candidates
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the ``k`` nearest candidates and their distances, nearest first (fewer
        when fewer rows are candidates)."""
        ...

    def describe(self) -> dict:
        """How it searches (``{"method": "exact"}``, ...), for a client to show."""
        ...


_BLAS: list = []  # the threadpoolctl controller of numpy's BLAS, made once (costly to make)


def _one_blas_thread():
    """One BLAS thread for a matrix-vector product: OpenBLAS's threads cost a fixed 8 ms a call
    on a busy 2-core machine (waking the second thread), more than the product itself up to
    10^5 rows, and no faster at 10^6 (memory-bound)."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - scikit-learn brings it
            return contextlib.nullcontext()
        _BLAS.append(ThreadpoolController().select(user_api="blas"))
    return _BLAS[0].limit(limits=1)


_PLAIN_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}(?::\d{2}(?::\d{2})?)?)?Z?")


def _second(t) -> int:
    """One time as int seconds since 1970 (UTC): :func:`wxembed.times.to_seconds`, without its
    pandas round trip for the kinds a search is usually given (numpy times, plain ISO text)."""
    if isinstance(t, np.datetime64) and not np.isnat(t):
        return int(t.astype("datetime64[s]").astype(np.int64))
    if isinstance(t, str) and _PLAIN_TIME.fullmatch(t):
        with contextlib.suppress(ValueError):
            return int(np.datetime64(t.rstrip("Z").replace(" ", "T"), "s").astype(np.int64))
    return int(to_seconds(t)[0])


class _Job:
    """One query waiting for a pass (compared by identity)."""

    __slots__ = ("q", "start", "stop", "done", "out", "error")

    def __init__(self, q: np.ndarray, start: int, stop: int):
        self.q, self.start, self.stop = q, start, stop
        self.done, self.out, self.error = False, None, None


class _SharedPass:
    """Queries that arrive together share one pass over the matrix.

    The product of a query with every row reads the whole matrix from memory (200 MB for a
    million 50-number rows): that read, not the arithmetic, is its cost. A thread that finds a
    pass running queues its query; when the pass ends, one queued thread computes every queued
    query in one matrix-matrix product (one read for all of them) and hands each its row. A lone
    query is computed at once, as before; under load (a web server's threads) the read is shared.
    """

    MAX_BATCH = 16
    """Queries in one pass at most (the scores take ``MAX_BATCH * rows * 4`` bytes)."""

    def __init__(self, product):
        self._product = product  # (queries (b, d'), start, stop) -> scores (b, stop - start)
        self._cond = threading.Condition()
        self._queue: list[_Job] = []
        self._busy = False

    def scores(self, qrow: np.ndarray, start: int, stop: int) -> np.ndarray:
        """The scores of ``qrow`` against rows ``start:stop``, (stop - start,)."""
        job = _Job(qrow, start, stop)
        with self._cond:
            self._queue.append(job)
            while self._busy and not job.done:
                self._cond.wait()
            lead = not job.done
            if lead:  # lead the next pass: this job and those queued before it
                self._busy = True
                self._queue.remove(job)
                others = self._queue[: self.MAX_BATCH - 1]
                del self._queue[: self.MAX_BATCH - 1]
        if lead:
            self._run([job, *others])
        if job.error is not None:
            raise job.error
        return job.out

    def _run(self, batch: list[_Job]) -> None:
        try:
            lo = min(j.start for j in batch)
            hi = max(j.stop for j in batch)
            out = self._product(np.stack([j.q for j in batch]), lo, hi)  # (b, hi - lo)
            for i, j in enumerate(batch):
                j.out = out[i, j.start - lo : j.stop - lo]
        except BaseException as exc:  # every waiting query learns of it, not only this one
            for j in batch:
                j.error = exc
        finally:
            with self._cond:
                for j in batch:
                    j.done = True
                self._busy = False
                self._cond.notify_all()


def _smallest(s: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` smallest values of ``s`` (in no order; ties broken arbitrarily).

    On a long ``s``, a sample's (k+1)-th smallest value bounds the k smallest from above (at
    least k + 1 values are at or below it), so only the values at or below it are partitioned:
    one comparison pass instead of a selection over a million values."""
    m = len(s)
    if k >= m:
        return np.arange(m)
    if m >= 16384 and k <= 512:
        sample = s[:: m // 4096]  # >= 4096 values, more than k
        bound = np.partition(sample, k)[k]
        near = np.flatnonzero(s <= bound)  # >= k + 1 positions, about k * m / 4096
        return near[np.argpartition(s[near], k - 1)[:k]]
    return np.argpartition(s, k - 1)[:k]


class ExactSearcher:
    """Exact search in numpy: one matrix-vector product and a selection per query.

    The rows are kept transposed, ``(d, n)`` C-ordered, so the product streams memory in
    order (about 1.7 times faster than ``(n, d) @ q`` on one million rows here), on one BLAS
    thread; queries from several threads at once share one pass over it (:class:`_SharedPass`).
    Euclidean distances are ranked by ``|x|^2 - 2 x.q``, one product with the squared norms
    kept as an extra row (``[x; |x|^2] . [-2q; 1]``), and recomputed exactly for the k
    returned; cosine distance is ``1 - x.q / (|x| |q|)``. Safe to share between threads.
    """

    def __init__(self, matrix: np.ndarray, metric: str = "euclidean"):
        if metric not in METRICS:
            raise EmbeddingIndexError(f"unknown metric {metric!r}; choose one of {METRICS}")
        self.metric = metric
        self.matrix = np.asarray(matrix, dtype=np.float32)  # (n, d), for the exact re-ranking
        n, d = self.matrix.shape
        cols = np.empty((d + 1, n), dtype=np.float32)  # (n, d) -> (d, n) and a row of norms
        cols[:d] = self.matrix.T
        cols[d] = np.einsum("ij,ij->j", cols[:d], cols[:d])  # (n,) squared norms
        if metric == "cosine":
            norms = np.sqrt(cols[d])
            norms[norms == 0] = 1.0
            cols[:d] /= norms[None, :]  # unit columns
            cols = cols[:d]
        self._cols = cols
        self._pass = _SharedPass(self._product)

    def describe(self) -> dict:
        return {"method": "exact"}

    def _product(self, queries: np.ndarray, start: int, stop: int) -> np.ndarray:
        with _one_blas_thread():
            return queries @ self._cols[:, start:stop]  # (b, d') @ (d', m) -> (b, m)

    def _scores(self, q: np.ndarray, start: int, stop: int) -> np.ndarray:
        """(stop - start,) scores, smaller is nearer: |x|^2 - 2 x.q, or cosine distance."""
        if self.metric == "cosine":
            qrow = q / (float(np.linalg.norm(q)) or 1.0)
            s = self._pass.scores(qrow, start, stop)  # cosine similarity
            np.subtract(1.0, s, out=s)  # -> cosine distance
            return s
        qrow = np.append(-2.0 * q, np.float32(1.0)).astype(np.float32)  # (d + 1,)
        return self._pass.scores(qrow, start, stop)

    def search(
        self, query: np.ndarray, k: int, candidates: Candidates
    ) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(query, dtype=np.float32).ravel()
        start, stop = candidates.start, candidates.stop
        if stop <= start or k < 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        s = self._scores(q, start, stop)
        if candidates.keep is not None:
            np.putmask(s, ~candidates.keep[start:stop], np.inf)
        if candidates.exclude is not None:
            a = max(start, candidates.exclude[0]) - start
            b = min(stop, candidates.exclude[1]) - start
            if b > a:
                s[a:b] = np.inf
        top = _smallest(s, min(k, len(s)))
        top = top[np.isfinite(s[top])]
        rows = top + start
        if self.metric == "cosine":
            dist = np.clip(s[top].astype(np.float64), 0.0, 2.0)
        else:  # exact distances for the few returned (the expansion loses digits near 0)
            diff = self.matrix[rows].astype(np.float64) - q.astype(np.float64)  # (k, d)
            dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        order = np.lexsort((rows, dist))  # by distance, then by time
        return rows[order].astype(np.int64), dist[order]


@dataclass
class EmbeddingSet:
    """One model's embeddings, sorted by time, as numpy arrays (cached by the index)."""

    model_id: str
    seconds: np.ndarray
    """(n,) int64 valid times, seconds since 1970 (UTC), ascending."""
    matrix: np.ndarray
    """(n, d) float32 embeddings, row i valid at ``seconds[i]``."""
    _month: np.ndarray | None = field(default=None, repr=False)
    _hour: np.ndarray | None = field(default=None, repr=False)
    ann_min_rows: int = ANN_MIN_ROWS
    """Rows from which searches go approximate (:mod:`wxembed.index.ann`)."""
    _searchers: dict = field(default_factory=dict, repr=False)
    _ann: dict = field(default_factory=dict, repr=False)  # metric -> ann.AnnSlot
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __len__(self) -> int:
        return len(self.seconds)

    @property
    def times(self) -> np.ndarray:
        """(n,) ``datetime64[s]`` valid times."""
        return from_seconds(self.seconds)

    @property
    def month(self) -> np.ndarray:
        """(n,) month of each row, 1..12."""
        if self._month is None:
            m = self.times.astype("datetime64[M]").astype(np.int64) % 12 + 1
            self._month = m.astype(np.int8)
        return self._month

    @property
    def hour(self) -> np.ndarray:
        """(n,) UTC hour of day of each row, 0..23."""
        if self._hour is None:
            self._hour = ((self.seconds // 3600) % 24).astype(np.int8)
        return self._hour

    def searcher(self, metric: str, exact: bool = False, wait: bool = False) -> Searcher:
        """The searcher of ``metric``: the exact one (built once, by one thread while the others
        wait) with ``exact`` or below ``ann_min_rows`` rows; else the approximate one when it is
        built (``wait``: build it now, as a server does at start; see :mod:`wxembed.index.ann`)."""
        found = self._searchers.get(metric)
        if found is None:
            with self._lock:
                found = self._searchers.get(metric)
                if found is None:
                    found = self._searchers[metric] = ExactSearcher(self.matrix, metric)
        return found if exact else approximate(self, metric, found, wait)

    def row_of(self, time) -> int:
        """Row of an hour; :class:`EmbeddingIndexError` naming the nearest hours when absent."""
        t = _second(time)
        i = int(np.searchsorted(self.seconds, t))
        if i < len(self.seconds) and self.seconds[i] == t:
            return i
        near = [self.seconds[j] for j in (i - 1, i) if 0 <= j < len(self.seconds)]
        hint = " and ".join(format_time(from_seconds([s])[0]) for s in near)
        raise EmbeddingIndexError(
            f"{format_time(from_seconds([t])[0])} is not in the index for model {self.model_id} "
            f"({len(self)} hours, {format_time(from_seconds([self.seconds[0]])[0])} to "
            f"{format_time(from_seconds([self.seconds[-1]])[0])}); nearest: {hint}"
        )


def _int_set(values: Sequence[int] | None, lo: int, hi: int, what: str) -> np.ndarray | None:
    if values is None or len(values) == 0:
        return None
    out = np.asarray([int(v) for v in values], dtype=np.int64)
    bad = out[(out < lo) | (out > hi)]
    if len(bad):
        raise EmbeddingIndexError(f"{what} must be in {lo}..{hi}, got {bad.tolist()}")
    return out


def _lookup_mask(values: np.ndarray, allowed: np.ndarray, size: int) -> np.ndarray:
    table = np.zeros(size, dtype=bool)
    table[allowed] = True
    return table[values]  # (n,) via a lookup table: one gather, no per-value comparison


def check_k(k) -> None:
    """Raise :class:`EmbeddingIndexError` unless ``k`` (neighbours, clusters) is a whole number
    of at least 1."""
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise EmbeddingIndexError(f"k must be a positive whole number, got {k!r}")


def _is_vector(query) -> bool:
    """A query given as numbers (an embedding), not as a time."""
    if isinstance(query, np.ndarray):
        return query.dtype.kind in "fiu" and query.ndim >= 1
    return (
        isinstance(query, list | tuple)
        and len(query) > 0
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in query)
    )


def search_set(
    vs: EmbeddingSet,
    query,
    *,
    k: int = 5,
    metric: str = "euclidean",
    exclude_hours: float | None = 24.0,
    around=None,
    months: Sequence[int] | None = None,
    hours: Sequence[int] | None = None,
    start=None,
    end=None,
    exact: bool = False,
    weights: Sequence[float] | np.ndarray | None = None,
) -> pd.DataFrame:
    """The ``k`` hours of ``vs`` nearest to ``query``: columns ``rank``, ``time``, ``distance``.

    ``query`` is an hour in the index (a time) or a vector of the model's length. Hours
    within ``exclude_hours`` of ``around`` (the query's time by default) are left out, so
    that the matches are other days (24 h by default, as the original; 0 leaves out only
    the query hour itself; None leaves out nothing). ``months`` (1..12), ``hours`` (UTC hour
    of day, 0..23), ``start`` (inclusive) and ``end`` (exclusive) restrict the candidates.
    Fewer than ``k`` rows come back only when the filters leave fewer candidates. A big set is
    searched approximately once its structure is built (:mod:`wxembed.index.ann`; ``exact``:
    never). ``weights`` (one per number, >= 0) weigh the numbers: an exact search over a
    weighted copy of the matrix, made for that search.
    """
    if metric not in METRICS:
        raise EmbeddingIndexError(f"unknown metric {metric!r}; choose one of {METRICS}")
    weights = None if weights is None else np.asarray(weights, dtype=np.float32)
    if weights is not None and not (weights.shape == vs.matrix.shape[1:] and weights.min() >= 0):
        raise EmbeddingIndexError(f"weights must be {vs.matrix.shape[1]} numbers >= 0")
    n = len(vs)
    check_k(k)
    if k > n:
        raise EmbeddingIndexError(
            f"k={k} is larger than the index: model {vs.model_id} has {n} hours"
        )
    if _is_vector(query):
        q = np.asarray(query, dtype=np.float32).ravel()
        if q.shape != (vs.matrix.shape[1],):
            raise EmbeddingError(
                f"query embedding has {q.size} numbers, model {vs.model_id} makes "
                f"{vs.matrix.shape[1]}"
            )
        if not np.all(np.isfinite(q)):
            raise EmbeddingError("query embedding holds NaN or infinite values")
    else:
        row = vs.row_of(query)
        q = vs.matrix[row]
        around = query if around is None else around
    cand = select_candidates(vs, exclude_hours, around, months, hours, start, end)
    if weights is None:
        rows, dist = vs.searcher(metric, exact).search(q, int(k), cand)
    else:  # a weighted copy for this search, not cached: many weights would mean many copies
        rows, dist = ExactSearcher(vs.matrix * weights, metric).search(q * weights, int(k), cand)
    if len(rows) < k:
        log.info("only %d hours pass the filters (asked for %d)", len(rows), k)
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(rows) + 1),
            "time": pd.to_datetime(from_seconds(vs.seconds[rows])),
            "distance": dist,
        }
    )


def select_candidates(
    vs: EmbeddingSet, exclude_hours, around, months, hours, start, end
) -> Candidates:
    """The rows a search may return, from its filters (see :func:`search_set`)."""
    lo, hi = 0, len(vs)
    if start is not None:
        lo = int(np.searchsorted(vs.seconds, _second(start), side="left"))
    if end is not None:
        hi = int(np.searchsorted(vs.seconds, _second(end), side="left"))
    exclude = None
    if around is not None and exclude_hours is not None:
        if exclude_hours < 0:
            raise EmbeddingIndexError(f"exclude_hours must be >= 0, got {exclude_hours}")
        t = _second(around)
        w = int(round(float(exclude_hours) * 3600))
        exclude = (
            int(np.searchsorted(vs.seconds, t - w, side="left")),
            int(np.searchsorted(vs.seconds, t + w, side="right")),
        )
    keep = None
    m = _int_set(months, 1, 12, "months")
    if m is not None:
        keep = _lookup_mask(vs.month, m, 13)
    h = _int_set(hours, 0, 23, "hours of day")
    if h is not None:
        mask = _lookup_mask(vs.hour, h, 24)
        keep = mask if keep is None else keep & mask
    return Candidates(lo, hi, exclude, keep)


__all__ = [
    "METRICS",
    "Candidates",
    "EmbeddingSet",
    "ExactSearcher",
    "Searcher",
    "check_k",
    "search_set",
    "select_candidates",
]
