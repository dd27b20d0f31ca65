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

A model's ``(times, matrix)`` is read once with a bound-parameter query and kept as an
:class:`~wxembed.index.search.EmbeddingSet`, which :mod:`wxembed.index.search` searches; no user
value is ever pasted into SQL text. The file is opened so that nothing stored in it runs
(:mod:`wxembed.index.schema`), and one :class:`EmbeddingIndex` may be shared by threads (a web
server's): a lock guards the connection, and searches run on the cached arrays.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from wxembed.errors import EmbeddingError, EmbeddingIndexError
from wxembed.index.schema import check_embedding_dim, connect
from wxembed.index.search import EmbeddingSet, search_set
from wxembed.model.checkpoint import ModelInfo
from wxembed.times import format_time, from_seconds, to_seconds

log = logging.getLogger(__name__)


def _read_shards(files: Sequence[str | Path], model_id: str) -> pa.Table:
    """The ``time`` and ``embedding`` columns of Parquet shards as one Arrow table (read here,
    not by DuckDB, whose connection reaches no file: see :mod:`wxembed.index.schema`)."""
    import pyarrow.parquet as pq

    files = [Path(f) for f in files]
    if not files:
        raise EmbeddingIndexError(f"no Parquet shards to load for model {model_id}")
    parts = []
    for f in files:
        try:
            parts.append(pq.read_table(f, columns=["time", "embedding"]))
        except (OSError, pa.ArrowException, KeyError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EmbeddingIndexError(
                f"{f}: not a readable shard of model {model_id} ({first}); index left unchanged"
            ) from None
    try:
        return pa.concat_tables(parts, promote_options="permissive")
    except pa.ArrowException as exc:
        raise EmbeddingIndexError(
            f"the shards of model {model_id} disagree on their columns ({exc}); "
            "index left unchanged"
        ) from None


# ---- the index -------------------------------------------------------------------------------
class EmbeddingIndex:
    """An embedded DuckDB file of embeddings (see the module docstring).

    ``EmbeddingIndex(path)`` opens the file for writing, creating it and its tables when absent;
    ``read_only=True`` opens an existing index for queries only (several processes may then
    read it at once). Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.is_file():
            raise EmbeddingIndexError(f"{self.path}: no index here (run `wxembed embed` first)")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = connect(self.path, read_only)  # see wxembed.index.schema
        # One connection, used by one thread at a time: DuckDB refuses a second call on a busy
        # connection ("connection is busy"), so every use holds this lock. The searches
        # themselves run outside it, on the numpy arrays read once (cached below).
        self._lock = threading.RLock()
        self._sets: dict[str, EmbeddingSet] = {}
        self._models: list[tuple] | None = None  # the models table, read once per write

    # ---- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> EmbeddingIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- search -----------------------------------------------------------------------------
    def search(self, query, *, model_id: str | None = None, **filters) -> pd.DataFrame:
        """:func:`wxembed.index.search.search_set` over ``model_id``'s embeddings: the ``k``
        nearest hours to ``query`` (a time in the index or a vector), with its filters. Safe to
        call from several threads at once (see :class:`~wxembed.index.search.ExactSearcher`)."""
        return search_set(self.vectors(model_id), query, **filters)

    def _sql(self, query: str, params: Sequence | dict | None = None):
        """Run ``query`` on the connection, holding the lock; the cursor's rows must be fetched
        inside it, so callers use :meth:`_fetch` or :meth:`_df`."""
        return self._con.execute(query, params if params is not None else [])

    def _fetch(self, query: str, params: Sequence | dict | None = None) -> list[tuple]:
        with self._lock:
            return self._sql(query, params).fetchall()

    def _df(self, query: str, params: Sequence | dict | None = None) -> pd.DataFrame:
        with self._lock:
            return self._sql(query, params).df()

    def _writable(self) -> None:
        if self.read_only:
            raise EmbeddingIndexError(f"{self.path}: opened read-only")

    # ---- models -----------------------------------------------------------------------------
    def models(self) -> pd.DataFrame:
        """One row per model: its record and how many hours it has, oldest model first."""
        return self._df(
            """SELECT m.*, coalesce(e.n_hours, 0) AS n_hours, e.first, e.last
               FROM models m LEFT JOIN (
                   SELECT model_id, count(*) AS n_hours, min(time) AS first, max(time) AS last
                   FROM embeddings GROUP BY model_id) e USING (model_id)
               ORDER BY m.created, m.model_id"""
        )

    def model(self, model_id: str | None = None) -> ModelInfo:
        """The record of ``model_id``; with None, of the only model in the index."""
        rows = self._models
        if rows is None:
            rows = self._models = self._fetch(
                "SELECT model_id, arch, embedding_dim, grid_json, checkpoint, archive FROM models "
                "ORDER BY created, model_id"
            )
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
            embedding_dim=check_embedding_dim(row[2], f"{self.path}: model {row[0]}"),
            grid_json=row[3],
            checkpoint=row[4] or "",
            archive=row[5] or "",
        )

    def count(self, model_id: str | None = None) -> int:
        """Rows of ``model_id`` (of every model with None)."""
        if model_id is None:
            return int(self._fetch("SELECT count(*) FROM embeddings")[0][0])
        return int(
            self._fetch("SELECT count(*) FROM embeddings WHERE model_id = ?", [model_id])[0][0]
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
        check_embedding_dim(info.embedding_dim, f"model {info.model_id}")
        if table is None:
            table = _read_shards(parquet_files, info.model_id)
        with self._lock:
            n, replaced = self._replace_rows(info, table, expected_rows)
            self._sets.pop(info.model_id, None)
            self._models = None
        log.info("%s: %s now has %d hours (%d replaced)", self.path, info.model_id, n, replaced)
        return {"replaced": replaced, "inserted": int(n)}

    def _replace_rows(self, info: ModelInfo, table, expected_rows: int | None) -> tuple[int, int]:
        """:meth:`replace_model`'s transaction, the lock held: ``(new rows, old rows)``."""
        con = self._con
        con.register("_wxembed_new_rows", table)
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                n = self._stage_rows(info, expected_rows)
                replaced = self.count(info.model_id)
                self._swap_rows(info)
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):  # a failed COMMIT ends the transaction
                    con.execute("ROLLBACK")  # itself: its error, not this one, says why
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
            con.unregister("_wxembed_new_rows")
        return n, replaced

    def _stage_rows(self, info: ModelInfo, expected_rows: int | None) -> int:
        """Copy the new rows into a temporary table, one per hour, and check them; returns how
        many there are. :class:`EmbeddingIndexError` (nothing changed) when they do not fit."""
        con = self._con
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _wxembed_staged AS "
            "SELECT CAST(time AS TIMESTAMP) AS time, "
            "CAST(embedding AS FLOAT[]) AS embedding "
            "FROM _wxembed_new_rows QUALIFY row_number() OVER (PARTITION BY time) = 1"
        )
        n, bad_len, bad_val = con.execute(
            "SELECT count(*), count(*) FILTER (len(embedding) != ?), "
            "count(*) FILTER (list_count(list_filter(embedding, "
            "lambda x: isnan(x) OR isinf(x))) > 0) "
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
        return int(n)

    def _swap_rows(self, info: ModelInfo) -> None:
        """Inside the caller's transaction: the model's old rows and clusters out, its record
        written, the staged rows in."""
        con = self._con
        for t in ("embeddings", "clusters", "centroids"):  # fixed names
            con.execute(f"DELETE FROM {t} WHERE model_id = ?", [info.model_id])
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
            "INSERT INTO embeddings SELECT ?, time, embedding FROM _wxembed_staged ORDER BY time",
            [info.model_id],
        )
        con.execute("DROP TABLE _wxembed_staged")

    def add_vectors(self, info: ModelInfo, times, matrix: np.ndarray) -> dict[str, int]:
        """:meth:`replace_model` from numpy: ``times`` (n,) and ``matrix`` (n, d)."""
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
        """The model's embeddings as numpy arrays, read once and cached (one thread reads them
        while the others wait). :class:`EmbeddingIndexError` when a row is not a whole
        embedding of the model's length (NULL, too long or short, NaN or infinite values): a
        damaged index answers no search rather than leaving rows out silently."""
        info = self.model(model_id)
        cached = self._sets.get(info.model_id)
        if cached is None:
            with self._lock:
                cached = self._sets.get(info.model_id)  # read by another thread meanwhile?
                if cached is None:
                    cached = self._sets[info.model_id] = self._read_set(info)
        return cached

    def _read_set(self, info: ModelInfo) -> EmbeddingSet:
        d = info.embedding_dim
        where = f"{self.path}: model {info.model_id}"
        n, bad = self._sql(
            "SELECT count(*), count(*) FILTER (time IS NULL OR embedding IS NULL "
            "OR len(embedding) != ?) FROM embeddings WHERE model_id = ?",
            [d, info.model_id],
        ).fetchall()[0]
        if n == 0:
            raise EmbeddingIndexError(f"{where} has no embeddings")
        if bad:
            raise EmbeddingIndexError(
                f"{where}: {bad} of {n} rows are not a time and an embedding of {d} numbers, as "
                "the model's record says; the index is damaged: embed again (wxembed embed)"
            )
        arrow = self._con.sql(
            # d is an int of 1..MAX_EMBEDDING_DIM from the models table, not user text
            f"SELECT epoch(time)::BIGINT AS seconds, embedding::FLOAT[{d}] AS embedding "
            "FROM embeddings WHERE model_id = $model ORDER BY time",
            params={"model": info.model_id},
        ).to_arrow_table()
        col = arrow.column("embedding")
        matrix = np.concatenate(
            [c.flatten().to_numpy(zero_copy_only=False).reshape(-1, d) for c in col.chunks]
        ).astype(np.float32, copy=False)  # (n, d); a NULL element reads as NaN
        seconds = arrow.column("seconds").to_numpy().astype(np.int64)
        finite = np.isfinite(matrix).all(axis=1)  # (n,)
        if not finite.all():
            first = ", ".join(format_time(t) for t in from_seconds(seconds[~finite][:3]))
            raise EmbeddingIndexError(
                f"{where}: {int((~finite).sum())} of {n} embeddings hold NaN or infinite values "
                f"(at {first}...); the index is damaged: embed again (wxembed embed)"
            )
        return EmbeddingSet(info.model_id, seconds, np.ascontiguousarray(matrix))

    def vector_at(self, time, model_id: str | None = None) -> np.ndarray:
        """(d,) embedding of one hour; the error names the nearest hours when it is absent."""
        vs = self.vectors(model_id)
        return vs.matrix[vs.row_of(time)]

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
        with self._lock:
            self._write_clusters(model_id, k, assign, cents)

    def _write_clusters(self, model_id: str, k: int, assign: pa.Table, cents: pa.Table) -> None:
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
                with contextlib.suppress(Exception):  # a failed COMMIT ends the transaction
                    con.execute("ROLLBACK")  # itself: its error, not this one, says why
                raise
        finally:
            con.unregister("_wxembed_assign")
            con.unregister("_wxembed_cents")

    def clusters(self, model_id: str | None = None, k: int | None = None) -> pd.DataFrame:
        """Stored k-means assignments: ``model_id``, ``k``, ``time``, ``cluster``."""
        info = self.model(model_id)
        if k is None:
            return self._df(
                "SELECT * FROM clusters WHERE model_id = ? ORDER BY k, time", [info.model_id]
            )
        return self._df(
            "SELECT * FROM clusters WHERE model_id = ? AND k = ? ORDER BY time", [info.model_id, k]
        )

    def centroids(self, model_id: str | None = None, k: int | None = None) -> pd.DataFrame:
        """Stored centroids: ``model_id``, ``k``, ``cluster``, ``n_hours``, ``nearest_time``,
        ``centroid``."""
        info = self.model(model_id)
        if k is None:
            return self._df(
                "SELECT * FROM centroids WHERE model_id = ? ORDER BY k, cluster", [info.model_id]
            )
        return self._df(
            "SELECT * FROM centroids WHERE model_id = ? AND k = ? ORDER BY cluster",
            [info.model_id, k],
        )


__all__ = ["EmbeddingIndex"]
