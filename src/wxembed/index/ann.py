"""Approximate search: a FAISS inverted-file index over one model's embeddings, for big indexes.

The exact search (:class:`~wxembed.index.search.ExactSearcher`) reads the whole matrix for every
query: 200 MB at a million hours, tens of milliseconds on this machine. :class:`AnnSearcher`
keeps the rows in ``nlist`` lists around k-means centres (FAISS ``IndexIVFFlat``, about
``sqrt(n)`` lists) and scans only the ``nprobe`` lists nearest to the query, a few percent of
the rows. It implements the same :class:`~wxembed.index.search.Searcher` protocol:

- the filters (months, hours of day, date range, the window excluded around the query) are
  applied to ``k * OVERFETCH`` candidates and more (the window's rows and the share the filters
  leave out are fetched in addition); when the filters leave fewer than ``MIN_KEEP`` of the rows,
  or fewer than ``k`` of the candidates pass, the query goes to the exact searcher instead;
- the distances returned are exact (recomputed for the few rows returned), ranked as the exact
  searcher ranks them, so an approximate answer differs from the exact one only by a missed row;
- ``nprobe`` is calibrated when the structure is built: the smallest that finds at least
  ``RECALL_TARGET`` of the exact 10 nearest (a day excluded each side, as a search does by
  default) for ``CALIBRATION_QUERIES`` hours of the index. Embeddings without neighbourhoods
  (independent random numbers, say) reach it only by scanning most rows: then no approximate
  structure is kept and every query is exact.

When: an :class:`~wxembed.index.search.EmbeddingSet` of at least ``ann_min_rows`` rows
(``ANN_MIN_ROWS`` by default) builds it at once when asked to (``searcher(metric, wait=True)``,
as ``wxembed serve`` does at start) or, in the background, once it has answered
``BUILD_AFTER_SEARCHES`` exact searches of a metric (a long-running loop); a single search never
waits for it (one exact query costs less than building). It is built in memory at load, not
cached in a file: see :func:`build_ann`. Needs ``faiss-cpu`` (the ``serve`` extra); without it
every search is exact.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

ANN_MIN_ROWS = 200_000
"""Rows from which an index is searched approximately (below, exact search is a few ms)."""
MIN_KEEP = 0.5
"""Share of the rows the filters must leave for an approximate search (else exact)."""
OVERFETCH = 2
"""Candidates fetched per row wanted (after the filters' share and the window are added)."""
MAX_FETCH = 4096
"""Most candidates one approximate query fetches; a query that needs more is exact."""
RECALL_TARGET = 0.97
"""Share of the exact 10 nearest that the calibrated ``nprobe`` must find."""
CALIBRATION_QUERIES = 64
"""Hours of the index searched both ways to choose ``nprobe``."""
BUILD_AFTER_SEARCHES = 32
"""Exact searches of a metric after which a big enough set builds its structure itself."""


@functools.cache
def available() -> bool:
    """Whether FAISS is installed (the ``serve`` extra); asked once per process."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        log.info("faiss is not installed (pip install 'wxembed[serve]'): every search is exact")
        return False
    return True


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    norms[norms == 0] = 1.0
    return (x / norms).astype(np.float32)


class AnnSearcher:
    """Approximate k-nearest search over one matrix (see the module docstring); queries it
    cannot answer well go to ``exact``. Safe to share between threads: a FAISS search only
    reads the structure, and ``nprobe`` travels with each call."""

    def __init__(self, index, matrix: np.ndarray, metric: str, exact, nprobe: int = 1):
        self._index = index  # faiss.IndexIVFFlat over the rows (unit rows for cosine)
        self.matrix = matrix  # (n, d) float32, the set's own rows (not copied)
        self.metric = metric
        self.exact = exact  # the Searcher a query falls back to
        self.nlist = int(index.nlist)
        self.nprobe = nprobe
        self.recall = float("nan")
        """Share of the exact 10 nearest found at ``nprobe`` when calibrated."""
        self.build_seconds = float("nan")

    def _params(self, nprobe: int):
        import faiss

        params = faiss.SearchParametersIVF()
        params.nprobe = int(nprobe)
        return params

    def search(self, query: np.ndarray, k: int, candidates) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(query, dtype=np.float32).ravel()
        found = self.approximate(q, k, candidates, self.nprobe)
        return self.exact.search(q, k, candidates) if found is None else found

    def approximate(self, q: np.ndarray, k: int, cand, nprobe: int):
        """``(rows, distances)`` from the ``nprobe`` nearest lists, or None when the filters
        leave too few rows for it (the caller searches exactly)."""
        n = len(self.matrix)
        start, stop = max(0, cand.start), min(n, cand.stop)
        if stop <= start or k < 1:
            return None
        a, b = (0, 0) if cand.exclude is None else cand.exclude
        a, b = max(a, start), min(b, stop)
        window = max(0, b - a)
        if cand.keep is None:
            kept = stop - start - window
        else:
            kept = int(np.count_nonzero(cand.keep[start:stop]))
            kept -= int(np.count_nonzero(cand.keep[a:b])) if b > a else 0
        share = kept / n
        fetch = math.ceil(OVERFETCH * (k + window) / max(share, 1e-9))
        if kept < k or share < MIN_KEEP or fetch > MAX_FETCH:
            return None
        x = _unit(q[None, :]) if self.metric == "cosine" else q[None, :]  # (1, d)
        _, ids = self._index.search(x, min(fetch, n), params=self._params(nprobe))
        rows = ids[0][ids[0] >= 0]  # (fetched,) nearest first; -1 pads a short answer
        ok = (rows >= start) & (rows < stop)
        if b > a:
            ok &= (rows < a) | (rows >= b)
        if cand.keep is not None:
            ok &= cand.keep[rows]
        rows = rows[ok]
        if len(rows) < k:
            return None
        return self._exact_top(q, rows, k)

    def _exact_top(self, q: np.ndarray, rows: np.ndarray, k: int):
        """The ``k`` of ``rows`` nearest to ``q`` by their exact distances, ranked as the exact
        searcher ranks (distance, then time)."""
        x = self.matrix[rows].astype(np.float64)  # (m, d)
        q64 = q.astype(np.float64)
        if self.metric == "cosine":
            norms = np.linalg.norm(x, axis=1)
            norms[norms == 0] = 1.0
            dist = np.clip(1.0 - (x @ q64) / (norms * (np.linalg.norm(q64) or 1.0)), 0.0, 2.0)
        else:
            diff = x - q64
            dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        order = np.lexsort((rows, dist))[:k]
        return rows[order].astype(np.int64), dist[order]

    def describe(self) -> dict:
        """What a client may want to know: the method and its calibration."""
        return {
            "method": "approximate",
            "library": "faiss IndexIVFFlat",
            "lists": self.nlist,
            "nprobe": self.nprobe,
            "recall_at_10": round(self.recall, 3),
            "build_seconds": round(self.build_seconds, 1),
        }


def _train(matrix: np.ndarray, metric: str, seed: int):
    """A FAISS IVF-Flat index over ``matrix``: k-means centres from a sample, every row added."""
    import faiss

    n, d = matrix.shape
    nlist = 2 ** round(math.log2(math.sqrt(n)))  # 10^6 rows -> 1024 lists of ~1000
    nlist = int(max(1, min(nlist, n // 40, 8192)))  # k-means wants ~40 points a centre
    x = _unit(matrix) if metric == "cosine" else matrix
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    quantizer = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss_metric)
    index.cp.niter = 10  # centres good enough to route queries; the lists are scanned exactly
    index.cp.seed = seed
    rng = np.random.default_rng(seed)
    sample = x[np.sort(rng.choice(n, min(n, 40 * nlist), replace=False))]  # (s, d)
    index.train(sample)
    index.add(x)
    return index


def calibrate(ann: AnnSearcher, seconds: np.ndarray, seed: int = 0) -> None:
    """Set ``ann.nprobe`` to the smallest power of two whose answers hold ``RECALL_TARGET`` of
    the exact 10 nearest (a day excluded each side) for ``CALIBRATION_QUERIES`` hours, trying up
    to a quarter of the lists; ``ann.recall`` to what it found (below the target: not reached)."""
    from wxembed.index.search import Candidates

    n, k = len(ann.matrix), 10
    rng = np.random.default_rng(seed + 1)
    picks = rng.choice(n, min(n, CALIBRATION_QUERIES), replace=False)
    cases = []
    for row in picks:
        t = seconds[row]
        window = (
            int(np.searchsorted(seconds, t - 86400, side="left")),
            int(np.searchsorted(seconds, t + 86400, side="right")),
        )
        cand = Candidates(0, n, window)
        truth, _ = ann.exact.search(ann.matrix[row], k, cand)
        if len(truth):
            cases.append((ann.matrix[row], cand, set(truth.tolist())))
    nprobe, recall = 1, 0.0
    while cases:
        found = 0
        for q, cand, truth in cases:
            got = ann.approximate(q, k, cand, nprobe)
            rows = ann.exact.search(q, k, cand)[0] if got is None else got[0]
            found += len(truth & set(rows.tolist()))
        recall = found / sum(len(t) for _, _, t in cases)
        if recall >= RECALL_TARGET or 2 * nprobe > max(1, ann.nlist // 4):
            break
        nprobe *= 2
    ann.nprobe, ann.recall = nprobe, recall


def build_ann(matrix: np.ndarray, seconds: np.ndarray, metric: str, exact, seed: int = 0):
    """An :class:`AnnSearcher` over ``matrix`` (rows valid at ``seconds``, ascending) with its
    ``nprobe`` calibrated; its ``recall`` below ``RECALL_TARGET`` says that no ``nprobe`` up to
    a quarter of the lists reached it (the embeddings have no neighbourhoods to exploit: the
    caller searches exactly).

    Built in memory, not cached beside the index: at a million 50-number rows it takes seconds
    (bench/bench_search.py prints ``ann_build_seconds``), once per process, and a server builds
    it before it listens; a file would have to be written next to an index that ``wxembed
    serve`` promises not to write to, could go stale, and would be read by FAISS's C++ reader,
    which is not made to read files from strangers (the index file itself is treated as one)."""
    t0 = time.perf_counter()
    index = _train(matrix, metric, seed)
    ann = AnnSearcher(index, matrix, metric, exact)
    calibrate(ann, seconds, seed)
    ann.build_seconds = time.perf_counter() - t0
    log.info(
        "%s: %d rows in %d lists, nprobe %d finds %.3f of the 10 nearest (%.1f s)%s",
        metric,
        len(matrix),
        ann.nlist,
        ann.nprobe,
        ann.recall,
        ann.build_seconds,
        "" if ann.recall >= RECALL_TARGET else f"; below {RECALL_TARGET}: searching exactly",
    )
    return ann


@dataclass
class AnnSlot:
    """One metric's approximate structure in an :class:`~wxembed.index.search.EmbeddingSet`:
    built, being built, found not worth it, or not yet asked for."""

    searches: int = 0
    searcher: AnnSearcher | None = None
    """The structure searched (None: not built, or not worth it)."""
    tried: dict | None = None
    """:meth:`AnnSearcher.describe` of the structure built, kept or not."""
    done: threading.Event = field(default_factory=threading.Event)
    builder: threading.Thread | None = None


def _slot(vs, metric: str) -> AnnSlot:
    with vs._lock:
        return vs._ann.setdefault(metric, AnnSlot())


def _build_into(vs, metric: str, slot: AnnSlot, exact) -> None:
    try:
        ann = build_ann(vs.matrix, vs.seconds, metric, exact)
        slot.tried = {**ann.describe(), "kept": ann.recall >= RECALL_TARGET}
        slot.searcher = ann if ann.recall >= RECALL_TARGET else None
    except Exception:  # noqa: BLE001 - a failed build leaves exact search, which answers
        log.warning("approximate search of %s not built; searching exactly", metric, exc_info=True)
    finally:
        slot.done.set()


def approximate(vs, metric: str, exact, wait: bool = False):
    """The searcher a search of ``vs`` should use: its :class:`AnnSearcher` when built (or,
    with ``wait``, once built now), else ``exact``. Counts the searches that went exact and
    starts a background build after ``BUILD_AFTER_SEARCHES`` of them (see module docstring)."""
    if len(vs) < vs.ann_min_rows or not available():
        return exact
    slot = _slot(vs, metric)
    if slot.done.is_set():
        return slot.searcher or exact
    with vs._lock:
        slot.searches += 1
        start = slot.builder is None and (wait or slot.searches > BUILD_AFTER_SEARCHES)
        if start:
            slot.builder = threading.Thread(
                target=_build_into, args=(vs, metric, slot, exact), daemon=True
            )
            slot.builder.start()
    if wait:
        slot.done.wait()
        return slot.searcher or exact
    return exact


def status(vs, metric: str) -> dict | None:
    """What building ``vs``'s structure for ``metric`` found (:meth:`AnnSearcher.describe` and
    ``kept``), or None when none was built."""
    slot = vs._ann.get(metric)
    return None if slot is None or not slot.done.is_set() else slot.tried


__all__ = [
    "ANN_MIN_ROWS",
    "AnnSearcher",
    "approximate",
    "available",
    "build_ann",
    "calibrate",
    "status",
]
