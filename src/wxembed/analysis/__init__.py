"""USE: what embeddings are for. Encode and decode fields (:mod:`.codec`), find similar weather
(:mod:`.search`), interpolate between hours (:mod:`.interpolate`), cluster into weather regimes
(:mod:`.cluster`). Every function returns plain values; drawing them is :mod:`wxembed.figures`'
job."""

from wxembed.analysis.cluster import cluster_index
from wxembed.analysis.codec import (
    Embedding,
    decode_embedding,
    encode_field,
    load_embedding,
    write_field,
)
from wxembed.analysis.interpolate import interpolate_hours, interpolation_skill
from wxembed.analysis.search import search_similar

__all__ = [
    "Embedding",
    "cluster_index",
    "decode_embedding",
    "encode_field",
    "interpolate_hours",
    "interpolation_skill",
    "load_embedding",
    "search_similar",
    "write_field",
]
