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
value is ever pasted into SQL text.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from wxembed.errors import EmbeddingError, EmbeddingIndexError
from wxembed.index.search import EmbeddingSet, search_set
from wxembed.model.checkpoint import ModelInfo
from wxembed.times import to_seconds

log = logging.getLogger(__name__)

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
                        "SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = 'main'"
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

    # ---- search -----------------------------------------------------------------------------
    def search(self, query, *, model_id: str | None = None, **filters) -> pd.DataFrame:
        """:func:`wxembed.index.search.search_set` over ``model_id``'s embeddings: the ``k``
        nearest hours to ``query`` (a time in the index or a vector), with its filters."""
        return search_set(self.vectors(model_id), query, **filters)

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
                n = self._stage_rows(info, source, params, expected_rows)
                replaced = self.count(info.model_id)
                self._swap_rows(info)
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

    def _stage_rows(
        self, info: ModelInfo, source: str, params: list, expected_rows: int | None
    ) -> int:
        """Copy the new rows into a temporary table, one per hour, and check them; returns how
        many there are. :class:`EmbeddingIndexError` (nothing changed) when they do not fit."""
        con = self._con
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _wxembed_staged AS "
            "SELECT CAST(time AS TIMESTAMP) AS time, "
            "CAST(embedding AS FLOAT[]) AS embedding "
            # source: a fixed name or "read_parquet(?)", never user text
            f"FROM {source} QUALIFY row_number() OVER (PARTITION BY time) = 1",
            params,
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
        """The model's embeddings as numpy arrays, read once and cached."""
        info = self.model(model_id)
        cached = self._sets.get(info.model_id)
        if cached is not None:
            return cached
        d = info.embedding_dim
        arrow = self._con.sql(
            # d is an int from the models table, not user text
            f"SELECT epoch(time)::BIGINT AS seconds, embedding::FLOAT[{d}] AS embedding "
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


__all__ = ["EmbeddingIndex"]
