"""The index file's tables, and opening a file so that nothing in it runs.

An index is a DuckDB file of four plain tables (see :data:`TABLES`). A DuckDB file can also hold
views, macros and column expressions, which run when a query touches them: a ``models`` VIEW
reading ``/etc/passwd`` or an ``http://`` URL, or a macro named ``len`` or ``epoch`` that shadows
the built-in function a query calls. :func:`connect` therefore

- opens the file with external access off (no file, URL or ``ATTACH`` reachable from SQL, and it
  cannot be turned back on) and extension autoloading and autoinstalling off;
- refuses a file holding any view or macro, and checks that each table is a plain table with
  exactly the expected columns and types (no defaults, no generated columns), reading the
  catalog only through the qualified ``system.main`` functions, which a macro cannot shadow.

Rows reach the index from Arrow tables registered on the connection, never from a path in SQL.
"""

from __future__ import annotations

import operator
import re
from pathlib import Path

import duckdb

from wxembed.errors import EmbeddingIndexError

TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "models": (
        ("model_id", "VARCHAR"),
        ("arch", "VARCHAR"),
        ("embedding_dim", "INTEGER"),
        ("grid_json", "VARCHAR"),
        ("checkpoint", "VARCHAR"),
        ("archive", "VARCHAR"),
        ("created", "TIMESTAMP"),
    ),
    "embeddings": (("model_id", "VARCHAR"), ("time", "TIMESTAMP"), ("embedding", "FLOAT[]")),
    "clusters": (
        ("model_id", "VARCHAR"),
        ("k", "INTEGER"),
        ("time", "TIMESTAMP"),
        ("cluster", "INTEGER"),
    ),
    "centroids": (
        ("model_id", "VARCHAR"),
        ("k", "INTEGER"),
        ("cluster", "INTEGER"),
        ("n_hours", "BIGINT"),
        ("nearest_time", "TIMESTAMP"),
        ("centroid", "FLOAT[]"),
    ),
}
"""Each table's columns and their DuckDB types, in order."""

_CONSTRAINTS = {
    "models": {
        "model_id": "PRIMARY KEY",
        **dict.fromkeys(("arch", "embedding_dim", "grid_json"), "NOT NULL"),
    },
    "embeddings": dict.fromkeys(("model_id", "time", "embedding"), "NOT NULL"),
    "clusters": dict.fromkeys(("model_id", "k", "time", "cluster"), "NOT NULL"),
    "centroids": dict.fromkeys(("model_id", "k", "cluster", "n_hours", "centroid"), "NOT NULL"),
}

MAX_EMBEDDING_DIM = 100_000
"""The longest embedding an index holds (DuckDB's longest fixed-size array)."""

CONFIG = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
}
"""DuckDB settings every index connection is opened with (see the module docstring)."""


def create_statements() -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` for each table of :data:`TABLES`."""
    out = []
    for table, columns in TABLES.items():
        cols = ", ".join(
            f"{name} {kind} {_CONSTRAINTS[table].get(name, '')}".rstrip() for name, kind in columns
        )
        out.append(f"CREATE TABLE IF NOT EXISTS {table} ({cols})")  # fixed names, no user text
    return out


def connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A connection to the index file ``path`` (see the module docstring): created with its
    tables when writable and new; :class:`EmbeddingIndexError` naming the file when it is not a
    DuckDB file or not a wxembed index."""
    try:
        con = duckdb.connect(str(path), read_only=read_only, config=CONFIG)
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        if "Could not set lock" in first:  # another process has it open (DuckDB's file lock)
            holder = re.search(r"\(PID \d+\)", first)
            raise EmbeddingIndexError(
                f"{path}: the index is in use by another process{' ' + holder[0] if holder else ''}"
                "; try again when it has finished"
            ) from None
        raise EmbeddingIndexError(f"{path}: not a readable DuckDB index ({first})") from None
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("SET TimeZone = 'UTC'")  # TIMESTAMPTZ -> TIMESTAMP stays UTC
        _refuse_code(con, path)
        if not read_only:
            for statement in create_statements():
                con.execute(statement)
        _check_tables(con, path)
    except duckdb.Error as exc:
        con.close()
        first = str(exc).splitlines()[0]
        raise EmbeddingIndexError(f"{path}: not a usable wxembed index ({first})") from None
    except BaseException:
        con.close()
        raise
    return con


def _refuse_code(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """:class:`EmbeddingIndexError` when the file holds a view or a macro: an index holds data
    only, and either would run when a query touches its name."""
    views = con.execute(
        "SELECT schema_name || '.' || view_name FROM system.main.duckdb_views() "
        "WHERE NOT internal ORDER BY 1"
    ).fetchall()
    macros = con.execute(
        "SELECT DISTINCT schema_name || '.' || function_name FROM system.main.duckdb_functions() "
        "WHERE NOT internal ORDER BY 1"
    ).fetchall()
    found = [f"view {v}" for (v,) in views] + [f"macro {m}" for (m,) in macros]
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise EmbeddingIndexError(
            f"{path}: not a wxembed index: it holds {shown}; an index holds plain tables only, "
            "and this file was not written by wxembed"
        )


def _check_tables(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """:class:`EmbeddingIndexError` unless each table of :data:`TABLES` is a plain table of
    ``main`` with exactly its columns and types, without defaults or generated columns."""
    rows = con.execute(
        "SELECT table_name, column_name, data_type, column_default "
        "FROM system.main.duckdb_columns() "
        "WHERE NOT internal AND schema_name = 'main' "
        "AND database_name = system.main.current_database() "
        "ORDER BY table_name, column_index"
    ).fetchall()
    found: dict[str, list] = {}
    for table, column, kind, default in rows:
        found.setdefault(table, []).append((column, kind, default))
    missing = [t for t in TABLES if t not in found]
    if missing:
        raise EmbeddingIndexError(f"{path}: not a wxembed index (no tables {', '.join(missing)})")
    for table, expected in TABLES.items():
        have = found[table]
        if [(c, k) for c, k, _ in have] != list(expected) or any(d is not None for *_, d in have):
            shown = ", ".join(f"{c} {k}" + (f" = {d}" if d else "") for c, k, d in have)
            raise EmbeddingIndexError(
                f"{path}: not a wxembed index: table {table} has columns ({shown}), expected "
                f"({', '.join(f'{c} {k}' for c, k in expected)})"
            )


def check_embedding_dim(dim, where: str) -> int:
    """``dim`` as an int; :class:`EmbeddingIndexError` naming ``where`` unless it is 1 to
    :data:`MAX_EMBEDDING_DIM`."""
    try:
        ok = not isinstance(dim, bool) and 1 <= operator.index(dim) <= MAX_EMBEDDING_DIM
    except TypeError:
        ok = False
    if not ok:
        raise EmbeddingIndexError(
            f"{where}: embedding_dim is {dim!r}; an embedding holds 1 to {MAX_EMBEDDING_DIM} "
            "numbers"
        )
    return int(dim)


__all__ = ["CONFIG", "MAX_EMBEDDING_DIM", "TABLES", "check_embedding_dim", "connect"]
