"""Similar weather: the hours of an index nearest to a query hour, embedding, field or file.

:func:`search_similar` resolves the query (an hour in the index, an :class:`Embedding`, a vector,
a dBZ array on the model's grid, or a ``.json``/``.npy``/GRIB2 file, fields embedded on the fly
with the index's model) and asks the index for its nearest hours, with the filters of
:func:`wxembed.index.search.search_set`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from wxembed.analysis.codec import Embedding, encode_field, load_embedding, vector_from
from wxembed.errors import EmbeddingError, EmbeddingIndexError, SourceError
from wxembed.index import METRICS, EmbeddingIndex
from wxembed.model.checkpoint import ModelInfo
from wxembed.model.encoder import EmbeddingModel, load_embedding_model
from wxembed.sources.formats import GRIB_SUFFIXES, is_npy, read_npy
from wxembed.times import as_time, format_time


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
    return Path(query).suffix.lower() in (".json", ".npy", *GRIB_SUFFIXES) or Path(query).is_file()


def _query_file(path: Path, info: ModelInfo, checkpoint) -> Embedding:
    """A query file as an embedding: a ``.json``/``.npy`` embedding, or a field (``.npy`` dBZ
    array, GRIB2) embedded with the index's model."""
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
                f"query {query!r} is neither a time nor a file (.json, .npy, .grib2)"
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
    months: Sequence[int] | None = None,
    hours: Sequence[int] | None = None,
    start=None,
    end=None,
    checkpoint: str | Path | None = None,
) -> pd.DataFrame:
    """The ``k`` hours of an index most similar to ``query``: a DataFrame of ``rank``, ``time``
    and ``distance`` (Euclidean by default, as the original; ``metric="cosine"`` for cosine).

    ``query`` is an hour in the index (a time), an :class:`Embedding`, a vector, a dBZ array on
    the model's grid, or a file: ``.json``/``.npy`` embedding, ``.npy`` dBZ array or GRIB2.
    Fields are embedded on the fly with ``checkpoint`` (default: the one recorded in the
    index). Hours within ``exclude_hours`` of the query's time are left out (one day on each
    side by default, so the matches are other days; 0 leaves out just the query hour, None
    nothing). ``months``, ``hours`` (UTC hour of day), ``start`` (inclusive) and ``end``
    (exclusive) restrict the candidates. ``df.attrs["query"]`` describes the query.
    """
    if metric not in METRICS:
        raise EmbeddingIndexError(f"unknown metric {metric!r}; choose one of {METRICS}")
    ix, owned = open_index(index)
    try:
        info = ix.model(model_id)
        q, around, desc = _resolve_query(info, query, checkpoint)
        out = ix.search(
            q,
            model_id=info.model_id,
            k=k,
            metric=metric,
            exclude_hours=exclude_hours,
            around=around,
            months=months,
            hours=hours,
            start=start,
            end=end,
        )
    finally:
        if owned:
            ix.close()
    out.attrs.update({"query": desc, "model_id": info.model_id, "metric": metric})
    return out


__all__ = ["model_for_index", "open_index", "search_similar"]
