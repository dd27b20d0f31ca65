"""A search, drawn: the query beside the hours an index found most like it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from wxembed.archive import Archive
from wxembed.errors import EmbeddingError, EmbeddingIndexError, SourceError, WxembedError
from wxembed.figures.plot import plot_matches
from wxembed.index import EmbeddingIndex
from wxembed.sources.formats import is_field_file
from wxembed.times import format_time


def recorded_archive(index_path: str | Path, model_id: str) -> Path:
    """The archive whose hours ``model_id`` embedded into the index, as the index recorded it."""
    with EmbeddingIndex(index_path, read_only=True) as ix:
        recorded = ix.model(model_id).archive
    if not recorded or not Path(recorded).exists():
        raise EmbeddingIndexError(
            f"{index_path}: the archive of model {model_id}'s embeddings, {recorded or '(none)'!r},"
            " is gone; to draw the matches, give the archive (--archive)"
        )
    return Path(recorded)


def query_field(query, archive: Archive) -> tuple[np.ndarray | None, str]:
    """The query of a search as a dBZ field on ``archive``'s grid, and its title: a field file
    of any kind (cut and coarsened as the search did) or a ``.npy`` dBZ array (told apart by
    content), or an hour of the archive. ``None`` for a
    query there is nothing to draw of: an embedding file, a field on another grid, an hour the
    archive does not hold."""
    path = Path(str(query))
    if path.is_file():
        if not is_field_file(path):
            return None, "query"  # an embedding (.json)
        from wxembed.analysis.codec import field_on_grid  # the query as the search embedded it

        try:
            dbz = np.asarray(field_on_grid(path, archive.grid).dbz)
        except (SourceError, EmbeddingError):  # a .npy embedding, a field on another grid
            return None, "query"
        if dbz.shape != archive.grid.shape:
            return None, "query"
        return dbz, f"query {path.name}"
    try:
        return archive.read_dbz(query), f"query {format_time(query)}"
    except (WxembedError, ValueError):
        return None, "query"


def save_search_png(
    png: str | Path,
    index_path: str | Path,
    matches: pd.DataFrame,
    query,
    archive: str | Path | None = None,
) -> Path:
    """Draw a search into ``png``: the query (see :func:`query_field`) and each match of
    :func:`wxembed.analysis.search_similar` (``matches``), read from ``archive`` (default: the
    archive recorded in the index for the matches' model)."""
    if archive is None:
        archive = recorded_archive(index_path, matches.attrs["model_id"])
    a = Archive(archive)
    query_dbz, title = query_field(query, a)
    return plot_matches(png, a, matches, query_dbz=query_dbz, query_title=title)


__all__ = ["query_field", "recorded_archive", "save_search_png"]
