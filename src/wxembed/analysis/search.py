"""Similar weather: the hours of an index nearest to a query hour, embedding, field or file.

:func:`search_similar` resolves the query (an hour in the index, an :class:`Embedding`, a vector,
a dBZ array on the model's grid, or a file: a ``.json``/``.npy`` embedding or a field of any
kind wxembed reads, embedded on the fly with the index's model) and asks the index for its
nearest hours, with the filters of :func:`wxembed.index.search.search_set`. The window left out
around the query's time is a duration (``exclude="30min"``), so sequences of frames minutes
apart search as well as hourly archives; when the filters leave fewer hours than asked for,
the result says why (``df.attrs["note"]``), and when they leave none it is an error that says
which filter emptied it and what to pass instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from wxembed.analysis.codec import Embedding, encode_field, load_embedding, vector_from
from wxembed.errors import EmbeddingError, EmbeddingIndexError, SourceError, WxembedError
from wxembed.index import METRICS, EmbeddingIndex
from wxembed.model.checkpoint import ModelInfo
from wxembed.model.encoder import EmbeddingModel, load_embedding_model
from wxembed.sources.formats import GRIB_SUFFIXES, INPUT_PATTERNS, is_npy, read_npy
from wxembed.times import (
    as_time,
    format_duration,
    format_time,
    from_seconds,
    parse_duration,
    to_seconds,
)

FILE_SUFFIXES = (".json", ".npy", *GRIB_SUFFIXES, *{p.rsplit("*", 1)[1] for p in INPUT_PATTERNS})
"""Endings that make a query a file, even one that does not exist (so the error says so)."""


def open_index(index: str | Path | EmbeddingIndex, read_only: bool = True):
    if isinstance(index, EmbeddingIndex):
        return index, False
    return EmbeddingIndex(index, read_only=read_only), True


def model_for_index(info: ModelInfo, checkpoint: str | Path | None) -> EmbeddingModel:
    """The model that made an index's embeddings, to embed a query or decode a centroid."""
    path = checkpoint or info.checkpoint
    if not path or not Path(path).exists():
        raise EmbeddingIndexError(
            f"model {info.model_id} is needed to embed or decode, but its checkpoint "
            f"{info.checkpoint or '(none recorded)'} is gone; pass the checkpoint"
        )
    model = load_embedding_model(path)
    if model.model_id != info.model_id:
        raise EmbeddingIndexError(
            f"checkpoint {path} is model {model.model_id} ({model.embedding_dim} numbers on "
            f"{model.grid.describe()}), but the index's embeddings are from {info.model_id} "
            f"({info.embedding_dim} numbers on {info.grid.describe()}); embeddings of different "
            "models are not comparable"
        )
    return model


def _looks_like_file(query) -> bool:
    if isinstance(query, Path):
        return True
    if not isinstance(query, str):
        return False
    return query.lower().endswith(FILE_SUFFIXES) or Path(query).is_file()


def _query_file(path: Path, info: ModelInfo, checkpoint) -> Embedding:
    """A query file as an embedding: a ``.json``/``.npy`` embedding, or a field (``.npy`` dBZ
    array, or a file of any kind wxembed reads) embedded with the index's model."""
    if not path.is_file():
        raise EmbeddingError(f"{path}: no such file")
    if path.suffix.lower() == ".json":
        return load_embedding(path)
    if is_npy(path):
        try:
            arr = read_npy(path)
        except SourceError as exc:
            raise EmbeddingError(str(exc)) from None
        if not (arr.ndim == 2 and arr.shape[0] > 1):  # not a dBZ field: an embedding
            return Embedding(vector_from(arr, str(path)), source=str(path))
    model = model_for_index(info, checkpoint)
    return encode_field(path, checkpoint=model.checkpoint)


def _resolve_query(info: ModelInfo, query, checkpoint):
    """A query as ``(vector or time, the time to exclude around or None, a description)``."""
    if isinstance(query, Embedding):
        emb = query
    elif _looks_like_file(query):
        emb = _query_file(Path(query), info, checkpoint)
    elif isinstance(query, np.ndarray | list | tuple) and not isinstance(query, str):
        arr = np.asarray(query)
        if arr.ndim == 2 and arr.shape[0] > 1:  # a dBZ field
            model = model_for_index(info, checkpoint)
            emb = encode_field(arr, checkpoint=model.checkpoint)
        else:
            emb = Embedding(vector_from(arr, "query"), source="array")
    else:
        try:
            t = as_time(query)
        except (ValueError, TypeError):
            raise EmbeddingIndexError(
                f"query {query!r} is neither a time nor a file (an embedding .json or .npy, "
                "or a field: GRIB2, ODIM HDF5, NetCDF, PGM, .npy)"
            ) from None
        return t, t, format_time(t)
    if emb.model_id and emb.model_id != info.model_id:
        raise EmbeddingError(
            f"{emb.source or 'the query'} was embedded by model {emb.model_id}, the index's "
            f"embeddings are from {info.model_id}; they are not comparable"
        )
    if emb.embedding_dim != info.embedding_dim:
        raise EmbeddingError(
            f"{emb.source or 'the query'} has {emb.embedding_dim} numbers, model "
            f"{info.model_id} makes {info.embedding_dim}"
        )
    desc = emb.source or "embedding"
    if emb.time is not None:
        desc += f" ({format_time(emb.time)})"
    return emb.vector, emb.time, desc


def search_similar(
    index: str | Path | EmbeddingIndex,
    query,
    *,
    k: int = 5,
    model_id: str | None = None,
    metric: str = "euclidean",
    exclude_hours: float | None = 24.0,
    exclude: str | int | None = None,
    months: Sequence[int] | None = None,
    hours: Sequence[int] | None = None,
    start=None,
    end=None,
    checkpoint: str | Path | None = None,
    exact: bool = False,
    coverage_weight: float | None = None,
) -> pd.DataFrame:
    """The ``k`` hours of an index most similar to ``query``: a DataFrame of ``rank``, ``time``
    and ``distance`` (Euclidean by default, as the original; ``metric="cosine"`` for cosine).

    ``query`` is an hour in the index (a time), an :class:`Embedding`, a vector, a dBZ array on
    the model's grid, or a file: ``.json``/``.npy`` embedding, ``.npy`` dBZ array, or a field of
    any kind wxembed reads (GRIB2, ODIM HDF5, NetCDF, FMI PGM; on the model's grid or the one
    it was cut and coarsened from). Fields are embedded on the fly with ``checkpoint``
    (default: the one recorded in the index). Hours within ``exclude`` of the query's time
    (a duration: ``"30min"``, ``"2h"``, or seconds) are left out; without it, within
    ``exclude_hours`` (one day on each side by default, so the matches are other days; 0 leaves
    out just the query hour, None nothing). ``months``, ``hours`` (UTC hour of day),
    ``start`` (inclusive) and ``end`` (exclusive) restrict the candidates.
    ``df.attrs["query"]`` describes the query; ``df.attrs["note"]`` says why fewer than ``k``
    hours came back, and :class:`EmbeddingIndexError` says why none did. A big index is
    searched approximately once a long-running process has built its structure
    (:mod:`wxembed.index.ann`); ``exact`` searches every row.

    ``coverage_weight`` (a model whose embedding records echo coverage, the fast network's
    default) re-weighs the coverage numbers for this search, exactly: 0 ranks by the learned
    numbers alone (hours near in pixel distance, often calmer hours), 1 or more finds hours
    with as much echo first; None keeps the weight the model was trained with.
    """
    if metric not in METRICS:
        raise EmbeddingIndexError(f"unknown metric {metric!r}; choose one of {METRICS}")
    check_coverage_weight(coverage_weight)
    window = _window_seconds(exclude, exclude_hours)
    filters = dict(months=months, hours=hours, start=start, end=end)
    ix, owned = open_index(index)
    try:
        info = ix.model(model_id)
        q, around, desc = _resolve_query(info, query, checkpoint)
        weights = None
        if coverage_weight is not None:
            weights = coverage_weights(model_for_index(info, checkpoint), coverage_weight)
        out = ix.search(
            q,
            model_id=info.model_id,
            k=k,
            metric=metric,
            exclude_hours=None if window is None else window / 3600,
            around=around,
            exact=exact,
            weights=weights,
            **filters,
        )
        note = "" if len(out) >= k else _why_short(ix, info.model_id, around, window, k, filters)
    finally:
        if owned:
            ix.close()
    if not len(out):
        raise EmbeddingIndexError(f"no hours to return for {desc}: {note}")
    out.attrs.update({"query": desc, "model_id": info.model_id, "metric": metric})
    if coverage_weight is not None:
        out.attrs["coverage_weight"] = coverage_weight
    if note:
        out.attrs["note"] = f"{len(out)} of the {k} hours asked for: {note}"
    return out


def check_coverage_weight(value) -> None:
    """:class:`EmbeddingIndexError` unless ``value`` is None or a finite number >= 0."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < np.inf:
        raise EmbeddingIndexError(f"coverage_weight must be a number >= 0, got {value!r}")


def coverage_weights(model: EmbeddingModel, coverage_weight: float) -> np.ndarray:
    """Column weights that make the embedding's coverage numbers count ``coverage_weight``
    (:attr:`wxembed.model.fast.FastConfig.coverage_weight`: 0 ignores how much echo an hour has,
    about 1 finds hours with as much echo before hours near in pixel distance) and leave the
    learned numbers as they are. :class:`EmbeddingIndexError` for a model without them."""
    config = getattr(model.net, "config", None)
    n = len(getattr(config, "coverage", ()))
    if not n:
        raise EmbeddingIndexError(
            f"model {model.model_id} records no echo coverage in its embeddings, so "
            "coverage_weight cannot apply; search without it"
        )
    weights = np.ones(model.embedding_dim, dtype=np.float32)
    weights[-n:] = coverage_weight / config.coverage_weight  # learned numbers: at least 1
    return weights


def _window_seconds(exclude, exclude_hours) -> int | None:
    """The exclusion window in whole seconds (None: no window)."""
    if exclude is not None:
        return parse_duration(exclude, default_unit="s", what="exclude")
    if exclude_hours is None:
        return None
    try:
        return parse_duration(float(exclude_hours), default_unit="h", what="exclude_hours")
    except WxembedError as exc:
        raise EmbeddingIndexError(str(exc)) from None


def _why_short(ix, model_id: str, around, window: int | None, k: int, filters: dict) -> str:
    """Why a search found fewer than ``k`` hours: what the index holds and what each filter
    left out, with the window that would leave only the query's neighbouring frames out."""
    t = np.asarray(ix.vectors(model_id).seconds, dtype=np.int64)  # (n,) sorted
    n = len(t)
    span = f"{format_time(from_seconds(t[0]))} to {format_time(from_seconds(t[-1]))}"
    parts = [f"model {model_id} has {n} hours in the index ({span})"]
    keep = np.ones(n, dtype=bool)
    if filters["start"] is not None or filters["end"] is not None:
        lo = -np.inf if filters["start"] is None else to_seconds(filters["start"])[0]
        hi = np.inf if filters["end"] is None else to_seconds(filters["end"])[0]
        inside = (t >= lo) & (t < hi)
        parts.append(f"{int((~inside).sum())} lie outside the start/end asked for")
        keep &= inside
    when = from_seconds(t)
    for name, values, of in (
        ("months", filters["months"], when.astype("datetime64[M]").astype(int) % 12 + 1),
        ("hours of day", filters["hours"], (t // 3600) % 24),
    ):
        if values:
            inside = np.isin(of, np.asarray(values))
            more = " more" if len(parts) > 1 else ""
            parts.append(f"{int((keep & ~inside).sum())}{more} are outside the {name} asked for")
            keep &= inside
    if around is not None and window is not None:
        near = np.abs(t - to_seconds(around)[0]) <= window
        more = " more" if len(parts) > 1 else ""
        parts.append(
            f"{int((keep & near).sum())}{more} lie within {format_duration(window)} of the "
            f"query's time {format_time(around)} and are left out (a day each side by default, "
            "to find other days)"
        )
        if (keep & near).any():
            step = int(np.median(np.diff(t))) if n > 1 else 3600
            parts.append(
                f"to search a sequence this short, leave out less: --exclude "
                f"{format_duration(step)} (exclude={format_duration(step)!r} in Python) or "
                "--no-exclusion"
            )
    return "; ".join(parts)


__all__ = [
    "check_coverage_weight",
    "coverage_weights",
    "model_for_index",
    "open_index",
    "search_similar",
]
