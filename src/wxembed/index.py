"""The embedding index: one DuckDB file holding the embeddings of one or more models.

Tables::

    models      model_id PRIMARY KEY, arch, embedding_dim, grid_json, checkpoint, archive, created
    embeddings  model_id, time (TIMESTAMP, UTC), embedding FLOAT[]      one row per model and hour
    clusters    model_id, k, time, cluster                               k-means assignments
    centroids   model_id, k, cluster, n_hours, nearest_time, centroid FLOAT[]

``model_id`` is the architecture and the first 12 hex digits of the checkpoint file's SHA-256
(``fast-1a2b3c4d5e6f``): the same file always gets the same id, a retrained model another. Loading
a model's embeddings replaces its rows in one transaction (and drops its clusters, which no longer
describe them), so re-embedding never duplicates a row and a failure leaves the index as it was.

Search is exact, in numpy: a model's ``(times, matrix)`` is read once with a bound-parameter
query and kept; a query costs one matrix-vector product (``|x|^2 - 2 x.q + |q|^2`` with the
norms precomputed) and a partial sort. Filters (month, hour of day, date range, the window
excluded around the query) are masks and slices over the sorted times; no user value is ever
pasted into SQL text. The :class:`Searcher` protocol is the seam where an approximate index
(FAISS, say) would go for archives far beyond a million hours.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from wxembed.archive import format_time, from_seconds, to_seconds
from wxembed.errors import WxembedError

log = logging.getLogger(__name__)

METRICS = ("euclidean", "cosine")
"""Distances a search can rank by."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS models (
        model_id VARCHAR PRIMARY KEY,
        arch VARCHAR NOT NULL,
        embedding_dim INTEGER NOT NULL,
        grid_json VARCHAR NOT NULL,
        checkpoint VARCHAR,
        archive VARCHAR,
        created TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS embeddings (
        model_id VARCHAR NOT NULL,
        time TIMESTAMP NOT NULL,
        embedding FLOAT[] NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS clusters (
        model_id VARCHAR NOT NULL,
        k INTEGER NOT NULL,
        time TIMESTAMP NOT NULL,
        cluster INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS centroids (
        model_id VARCHAR NOT NULL,
        k INTEGER NOT NULL,
        cluster INTEGER NOT NULL,
        n_hours BIGINT NOT NULL,
        nearest_time TIMESTAMP,
        centroid FLOAT[] NOT NULL)""",
)
_TABLES = ("models", "embeddings", "clusters", "centroids")


class EmbeddingIndexError(WxembedError):
    """An index is missing, malformed or empty, or does not hold what a query asks for."""


class EmbeddingError(WxembedError):
    """An embedding (file, array or vector) is malformed, or does not fit the model or index."""


# ---- model identity ------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelInfo:
    """What the index records about the model that made a set of embeddings."""

    model_id: str
    """``arch-<12 hex digits of the checkpoint's SHA-256>``."""
    arch: str
    """Network architecture ("fast" or "seed")."""
    embedding_dim: int
    """Numbers per embedding."""
    grid_json: str
    """The grid the model was trained on (:meth:`wxembed.grid.Grid.to_json`)."""
    checkpoint: str = ""
    """Path of the checkpoint file, as given when embedding."""
    archive: str = ""
    """Path of the archive whose hours were embedded."""

    @property
    def grid(self):
        from wxembed.grid import Grid

        return Grid.from_json(self.grid_json)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_id_for(arch: str, checkpoint: str | Path) -> str:
    """The id of the model in ``checkpoint``: ``arch`` and a short hash of the file."""
    return f"{arch}-{file_sha256(checkpoint)[:12]}"


# ---- exact search ----------------------------------------------------------------------------
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

    :class:`ExactSearcher` is the only implementation; an approximate one (FAISS with an ID
    selector for the candidates) would implement the same method.
    """

    metric: str

    def search(
        self, query: np.ndarray, k: int, candidates: Candidates
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the ``k`` nearest candidates and their distances, nearest first (fewer
        when fewer rows are candidates)."""
        ...


def _one_blas_thread():
    """One BLAS thread for a matrix-vector product: OpenBLAS's threads cost a fixed 8 ms a call
    on a busy 2-core machine (waking the second thread), more than the product itself up to
    10^5 rows, and no faster at 10^6 (memory-bound)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


class ExactSearcher:
    """Exact search in numpy: one matrix-vector product and a partial sort per query.

    The rows are kept transposed, ``(d, n)`` C-ordered, so the product streams memory in
    order (about 1.7 times faster than ``(n, d) @ q`` on one million rows here), on one BLAS
    thread. Euclidean
    distances are ranked by ``|x|^2 - 2 x.q`` (norms precomputed) and recomputed exactly for the
    k returned; cosine distance is ``1 - x.q / (|x| |q|)``.
    """

    def __init__(self, matrix: np.ndarray, metric: str = "euclidean"):
        if metric not in METRICS:
            raise EmbeddingIndexError(f"unknown metric {metric!r}; choose one of {METRICS}")
        self.metric = metric
        self.matrix = np.asarray(matrix, dtype=np.float32)  # (n, d), for the exact re-ranking
        cols = np.ascontiguousarray(self.matrix.T)  # (n, d) -> (d, n)
        sq = np.einsum("ij,ij->j", cols, cols)  # (n,) squared norms
        if metric == "cosine":
            norms = np.sqrt(sq)
            norms[norms == 0] = 1.0
            cols /= norms[None, :]  # unit columns
            self._sq = None
        else:
            self._sq = sq
        self._cols = cols

    def _scores(self, q: np.ndarray, start: int, stop: int) -> np.ndarray:
        with _one_blas_thread():
            return self._scores_unlimited(q, start, stop)

    def _scores_unlimited(self, q: np.ndarray, start: int, stop: int) -> np.ndarray:
        cols = self._cols[:, start:stop]  # (d, m)
        if self.metric == "cosine":
            qn = q / (float(np.linalg.norm(q)) or 1.0)
            s = qn @ cols  # (m,) cosine similarity
            np.subtract(1.0, s, out=s)  # -> cosine distance
            return s
        s = q @ cols  # (m,) dot products
        s *= -2.0
        s += self._sq[start:stop]  # |x|^2 - 2 x.q; + |q|^2 is the same for every row
        return s

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
        k = min(k, len(s))
        top = np.argpartition(s, k - 1)[:k] if k < len(s) else np.arange(len(s))
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
    _searchers: dict = field(default_factory=dict, repr=False)

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

    def searcher(self, metric: str) -> Searcher:
        if metric not in self._searchers:
            self._searchers[metric] = ExactSearcher(self.matrix, metric)
        return self._searchers[metric]

    def row_of(self, time) -> int:
        """Row of an hour; :class:`EmbeddingIndexError` naming the nearest hours when absent."""
        t = int(to_seconds(time)[0])
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


# ---- the index -------------------------------------------------------------------------------
class EmbeddingIndex:
    """An embedded DuckDB file of embeddings (see the module docstring).

    ``EmbeddingIndex(path)`` opens the file for writing, creating it and its tables when absent;
    ``read_only=True`` opens an existing index for queries only (several processes may then
    read it at once). Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False):
        import duckdb

        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.is_file():
            raise EmbeddingIndexError(f"{self.path}: no index here (run `wxembed embed` first)")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            raise EmbeddingIndexError(
                f"{self.path}: not a readable DuckDB index ({first})"
            ) from None
        try:
            self._con.execute("SET enable_progress_bar = false")
            self._con.execute("SET TimeZone = 'UTC'")  # TIMESTAMPTZ -> TIMESTAMP stays UTC
            if read_only:
                have = {
                    r[0]
                    for r in self._con.execute(
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
                    ).fetchall()
                }
                missing = [t for t in _TABLES if t not in have]
                if missing:
                    raise EmbeddingIndexError(
                        f"{self.path}: not a wxembed index (no tables {', '.join(missing)})"
                    )
            else:
                for statement in _SCHEMA:
                    self._con.execute(statement)
        except BaseException:
            self._con.close()
            raise
        self._sets: dict[str, EmbeddingSet] = {}
        self._models: list[tuple] | None = None  # the models table, read once per write

    # ---- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> EmbeddingIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _sql(self, query: str, params: Sequence | dict | None = None):
        return self._con.execute(query, params if params is not None else [])

    def _writable(self) -> None:
        if self.read_only:
            raise EmbeddingIndexError(f"{self.path}: opened read-only")

    # ---- models -----------------------------------------------------------------------------
    def models(self) -> pd.DataFrame:
        """One row per model: its record and how many hours it has, oldest model first."""
        return self._sql(
            """SELECT m.*, coalesce(e.n_hours, 0) AS n_hours, e.first, e.last
               FROM models m LEFT JOIN (
                   SELECT model_id, count(*) AS n_hours, min(time) AS first, max(time) AS last
                   FROM embeddings GROUP BY model_id) e USING (model_id)
               ORDER BY m.created, m.model_id"""
        ).df()

    def model(self, model_id: str | None = None) -> ModelInfo:
        """The record of ``model_id``; with None, of the only model in the index."""
        if self._models is None:
            self._models = self._sql(
                "SELECT model_id, arch, embedding_dim, grid_json, checkpoint, archive FROM models "
                "ORDER BY created, model_id"
            ).fetchall()
        rows = self._models
        if not rows:
            raise EmbeddingIndexError(f"{self.path}: the index is empty (no models embedded yet)")
        ids = [r[0] for r in rows]
        if model_id is None:
            if len(rows) > 1:
                raise EmbeddingIndexError(
                    f"{self.path}: holds {len(rows)} models ({', '.join(ids)}); say which one"
                )
            row = rows[0]
        else:
            matches = [r for r in rows if r[0] == model_id]
            if not matches:
                raise EmbeddingIndexError(
                    f"{self.path}: no model {model_id!r}; it holds {', '.join(ids)}"
                )
            row = matches[0]
        return ModelInfo(
            model_id=row[0],
            arch=row[1],
            embedding_dim=int(row[2]),
            grid_json=row[3],
            checkpoint=row[4] or "",
            archive=row[5] or "",
        )

    def count(self, model_id: str | None = None) -> int:
        """Rows of ``model_id`` (of every model with None)."""
        if model_id is None:
            return int(self._sql("SELECT count(*) FROM embeddings").fetchall()[0][0])
        return int(
            self._sql("SELECT count(*) FROM embeddings WHERE model_id = ?", [model_id]).fetchall()[
                0
            ][0]
        )

    # ---- writing ----------------------------------------------------------------------------
    def replace_model(
        self,
        info: ModelInfo,
        *,
        parquet_files: Sequence[str | Path] | None = None,
        table=None,
        expected_rows: int | None = None,
    ) -> dict[str, int]:
        """Replace every row of ``info.model_id`` with new embeddings, in one transaction.

        The rows come from Parquet files (columns ``time``, ``embedding``; other columns are
        ignored) or a pyarrow table with the same columns. Each hour is kept once. The model's
        record is written (or updated) and its clusters dropped. Nothing is changed when the
        new rows have another length than ``info.embedding_dim``, NaNs, or (with
        ``expected_rows``) another count. Returns ``{"replaced": old rows, "inserted": new rows}``.
        """
        self._writable()
        if (parquet_files is None) == (table is None):
            raise ValueError("give either parquet_files or table")
        con = self._con
        if table is not None:
            con.register("_wxembed_new_rows", table)
            source, params = "_wxembed_new_rows", []
        else:
            files = [str(f) for f in parquet_files]
            if not files:
                raise EmbeddingIndexError(f"no Parquet shards to load for model {info.model_id}")
            source, params = "read_parquet(?)", [files]
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE _wxembed_staged AS "
                    "SELECT CAST(time AS TIMESTAMP) AS time, "
                    "CAST(embedding AS FLOAT[]) AS embedding "
                    f"FROM {source} QUALIFY row_number() OVER (PARTITION BY time) = 1",  # noqa: S608 - a fixed name, not user text
                    params,
                )
                n, bad_len, bad_val = con.execute(
                    "SELECT count(*), count(*) FILTER (len(embedding) != ?), "
                    "count(*) FILTER (list_count(list_filter(embedding, lambda x: isnan(x) OR isinf(x))) > 0) "
                    "FROM _wxembed_staged",
                    [info.embedding_dim],
                ).fetchall()[0]
                if bad_len:
                    raise EmbeddingIndexError(
                        f"{bad_len} of {n} new embeddings of {info.model_id} are not "
                        f"{info.embedding_dim} numbers long; index left unchanged"
                    )
                if bad_val:
                    raise EmbeddingIndexError(
                        f"{bad_val} of {n} new embeddings of {info.model_id} hold NaN or "
                        "infinite values; index left unchanged"
                    )
                if expected_rows is not None and n != expected_rows:
                    raise EmbeddingIndexError(
                        f"expected {expected_rows} embeddings of {info.model_id}, the shards hold "
                        f"{n} distinct hours; index left unchanged"
                    )
                replaced = self.count(info.model_id)
                for t in ("embeddings", "clusters", "centroids"):
                    con.execute(f"DELETE FROM {t} WHERE model_id = ?", [info.model_id])  # noqa: S608
                con.execute(
                    "INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        info.model_id,
                        info.arch,
                        info.embedding_dim,
                        info.grid_json,
                        info.checkpoint,
                        info.archive,
                        datetime.now(UTC).replace(tzinfo=None),
                    ],
                )
                con.execute(
                    "INSERT INTO embeddings SELECT ?, time, embedding FROM _wxembed_staged "
                    "ORDER BY time",
                    [info.model_id],
                )
                con.execute("DROP TABLE _wxembed_staged")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except EmbeddingIndexError:
            raise
        except Exception as exc:  # noqa: BLE001 - duckdb's many error types: one line, index intact
            first = str(exc).splitlines()[0]
            raise EmbeddingIndexError(
                f"{self.path}: could not load the embeddings of {info.model_id} ({first}); "
                "index left unchanged"
            ) from None
        finally:
            if table is not None:
                con.unregister("_wxembed_new_rows")
        self._sets.pop(info.model_id, None)
        self._models = None
        log.info("%s: %s now has %d hours (%d replaced)", self.path, info.model_id, n, replaced)
        return {"replaced": replaced, "inserted": int(n)}

    def add_vectors(self, info: ModelInfo, times, matrix: np.ndarray) -> dict[str, int]:
        """:meth:`replace_model` from numpy: ``times`` (n,) and ``matrix`` (n, d)."""
        import pyarrow as pa

        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if matrix.ndim != 2:
            raise EmbeddingError(f"embeddings must be a (n, d) matrix, got shape {matrix.shape}")
        seconds = to_seconds(times)
        if len(seconds) != matrix.shape[0]:
            raise EmbeddingError(f"{len(seconds)} times for {matrix.shape[0]} embeddings")
        d = matrix.shape[1]
        table = pa.table(
            {
                "time": pa.array(seconds, pa.int64()).cast(pa.timestamp("s")),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), d),
            }
        )
        return self.replace_model(info, table=table)

    # ---- reading ----------------------------------------------------------------------------
    def vectors(self, model_id: str | None = None) -> EmbeddingSet:
        """The model's embeddings as numpy arrays, read once and cached."""
        info = self.model(model_id)
        cached = self._sets.get(info.model_id)
        if cached is not None:
            return cached
        d = info.embedding_dim
        arrow = self._con.sql(
            f"SELECT epoch(time)::BIGINT AS seconds, embedding::FLOAT[{d}] AS embedding "  # d: an int from the models table
            "FROM embeddings WHERE model_id = $model ORDER BY time",
            params={"model": info.model_id},
        ).to_arrow_table()
        if arrow.num_rows == 0:
            raise EmbeddingIndexError(f"{self.path}: model {info.model_id} has no embeddings")
        col = arrow.column("embedding")
        matrix = np.concatenate(
            [c.flatten().to_numpy(zero_copy_only=False).reshape(-1, d) for c in col.chunks]
        ).astype(np.float32, copy=False)  # (n, d)
        seconds = arrow.column("seconds").to_numpy().astype(np.int64)
        found = EmbeddingSet(info.model_id, seconds, np.ascontiguousarray(matrix))
        self._sets[info.model_id] = found
        return found

    def vector_at(self, time, model_id: str | None = None) -> np.ndarray:
        """(d,) embedding of one hour; the error names the nearest hours when it is absent."""
        vs = self.vectors(model_id)
        return vs.matrix[vs.row_of(time)]

    # ---- search -----------------------------------------------------------------------------
    def search(
        self,
        query,
        *,
        model_id: str | None = None,
        k: int = 5,
        metric: str = "euclidean",
        exclude_hours: float | None = 24.0,
        around=None,
        months: Sequence[int] | None = None,
        hours: Sequence[int] | None = None,
        start=None,
        end=None,
    ) -> pd.DataFrame:
        """The ``k`` hours nearest to ``query``: columns ``rank``, ``time``, ``distance``.

        ``query`` is an hour in the index (a time) or a vector of the model's length. Hours
        within ``exclude_hours`` of ``around`` (the query's time by default) are left out, so
        that the matches are other days (24 h by default, as the original; 0 leaves out only
        the query hour itself; None leaves out nothing). ``months`` (1..12), ``hours`` (UTC hour
        of day, 0..23), ``start`` (inclusive) and ``end`` (exclusive) restrict the candidates.
        Fewer than ``k`` rows come back only when the filters leave fewer candidates.
        """
        if metric not in METRICS:
            raise EmbeddingIndexError(f"unknown metric {metric!r}; choose one of {METRICS}")
        vs = self.vectors(model_id)
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
        cand = self._candidates(vs, exclude_hours, around, months, hours, start, end)
        rows, dist = vs.searcher(metric).search(q, int(k), cand)
        if len(rows) < k:
            log.info("only %d hours pass the filters (asked for %d)", len(rows), k)
        return pd.DataFrame(
            {
                "rank": np.arange(1, len(rows) + 1),
                "time": pd.to_datetime(from_seconds(vs.seconds[rows])),
                "distance": dist,
            }
        )

    @staticmethod
    def _candidates(
        vs: EmbeddingSet, exclude_hours, around, months, hours, start, end
    ) -> Candidates:
        lo, hi = 0, len(vs)
        if start is not None:
            lo = int(np.searchsorted(vs.seconds, to_seconds(start)[0], side="left"))
        if end is not None:
            hi = int(np.searchsorted(vs.seconds, to_seconds(end)[0], side="left"))
        exclude = None
        if around is not None and exclude_hours is not None:
            if exclude_hours < 0:
                raise EmbeddingIndexError(f"exclude_hours must be >= 0, got {exclude_hours}")
            t = int(to_seconds(around)[0])
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

    # ---- clusters ---------------------------------------------------------------------------
    def save_clusters(
        self,
        model_id: str,
        k: int,
        seconds: np.ndarray,
        labels: np.ndarray,
        centroids: np.ndarray,
        nearest_seconds: np.ndarray,
    ) -> None:
        """Store a k-means result of ``model_id`` (replacing an earlier one with the same k)."""
        import pyarrow as pa

        self._writable()
        centroids = np.ascontiguousarray(centroids, dtype=np.float32)  # (k, d)
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=k)
        assign = pa.table(
            {
                "time": pa.array(np.asarray(seconds, np.int64)).cast(pa.timestamp("s")),
                "cluster": pa.array(np.asarray(labels, dtype=np.int32)),
            }
        )
        cents = pa.table(
            {
                "cluster": pa.array(np.arange(k, dtype=np.int32)),
                "n_hours": pa.array(counts.astype(np.int64)),
                "nearest_time": pa.array(np.asarray(nearest_seconds, np.int64)).cast(
                    pa.timestamp("s")
                ),
                "centroid": pa.FixedSizeListArray.from_arrays(
                    pa.array(centroids.ravel()), centroids.shape[1]
                ),
            }
        )
        con = self._con
        con.register("_wxembed_assign", assign)
        con.register("_wxembed_cents", cents)
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute("DELETE FROM clusters WHERE model_id = ? AND k = ?", [model_id, k])
                con.execute("DELETE FROM centroids WHERE model_id = ? AND k = ?", [model_id, k])
                con.execute(
                    "INSERT INTO clusters SELECT ?, ?, time, cluster FROM _wxembed_assign",
                    [model_id, k],
                )
                con.execute(
                    "INSERT INTO centroids SELECT ?, ?, cluster, n_hours, nearest_time, "
                    "CAST(centroid AS FLOAT[]) FROM _wxembed_cents",
                    [model_id, k],
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            con.unregister("_wxembed_assign")
            con.unregister("_wxembed_cents")

    def clusters(self, model_id: str | None = None, k: int | None = None) -> pd.DataFrame:
        """Stored k-means assignments: ``model_id``, ``k``, ``time``, ``cluster``."""
        info = self.model(model_id)
        if k is None:
            return self._sql(
                "SELECT * FROM clusters WHERE model_id = ? ORDER BY k, time", [info.model_id]
            ).df()
        return self._sql(
            "SELECT * FROM clusters WHERE model_id = ? AND k = ? ORDER BY time", [info.model_id, k]
        ).df()

    def centroids(self, model_id: str | None = None, k: int | None = None) -> pd.DataFrame:
        """Stored centroids: ``model_id``, ``k``, ``cluster``, ``n_hours``, ``nearest_time``,
        ``centroid``."""
        info = self.model(model_id)
        if k is None:
            return self._sql(
                "SELECT * FROM centroids WHERE model_id = ? ORDER BY k, cluster", [info.model_id]
            ).df()
        return self._sql(
            "SELECT * FROM centroids WHERE model_id = ? AND k = ? ORDER BY cluster",
            [info.model_id, k],
        ).df()


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


__all__ = [
    "METRICS",
    "Candidates",
    "EmbeddingError",
    "EmbeddingIndex",
    "EmbeddingIndexError",
    "EmbeddingSet",
    "ExactSearcher",
    "ModelInfo",
    "Searcher",
    "file_sha256",
    "model_id_for",
]
