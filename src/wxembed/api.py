"""The embedding API in one place: embed an archive, then search, interpolate, cluster, encode
and decode. Importing this module loads neither PyTorch nor Apache Beam; they are imported when
a function first needs them.

    >>> from wxembed.api import embed_archive, search_similar          # doctest: +SKIP
    >>> embed_archive("hrrr.zarr", "model/checkpoints/last.ckpt", "emb.duckdb")
    >>> search_similar("emb.duckdb", "2024-07-01T18", k=5)              # rank, time, distance
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from wxembed.analysis import (
    Embedding,
    EmbeddingModel,
    cluster_index,
    decode_embedding,
    encode_field,
    interpolate_hours,
    interpolation_skill,
    load_embedding,
    load_embedding_model,
    plot_matches,
    search_similar,
    write_field,
)
from wxembed.index import EmbeddingError, EmbeddingIndex, EmbeddingIndexError, ModelInfo


def embed_archive(
    archive_path: str | Path,
    checkpoint: str | Path,
    index_path: str | Path,
    *,
    shards_dir: str | Path | None = None,
    batch_size: int = 8,
    beam_args: Sequence[str] | None = None,
    workers: int = 2,
    progress: bool = True,
    device: str = "auto",
) -> dict:
    """Embed every stored hour of an archive into Parquet shards and a DuckDB index (a Beam
    pipeline); see :func:`wxembed.pipelines.embed.embed_archive`, which this calls (importing
    Apache Beam only now)."""
    from wxembed.pipelines.embed import embed_archive as run

    return run(
        archive_path,
        checkpoint,
        index_path,
        shards_dir=shards_dir,
        batch_size=batch_size,
        beam_args=beam_args,
        workers=workers,
        progress=progress,
        device=device,
    )


__all__ = [
    "Embedding",
    "EmbeddingError",
    "EmbeddingIndex",
    "EmbeddingIndexError",
    "EmbeddingModel",
    "ModelInfo",
    "cluster_index",
    "decode_embedding",
    "embed_archive",
    "encode_field",
    "interpolate_hours",
    "interpolation_skill",
    "load_embedding",
    "load_embedding_model",
    "plot_matches",
    "search_similar",
    "write_field",
]
