"""KEEP: embeddings in an embedded DuckDB file (:mod:`.store`) and exact k-nearest search over
them (:mod:`.search`)."""

from wxembed.index.search import METRICS, EmbeddingSet, ExactSearcher, Searcher, check_k
from wxembed.index.store import EmbeddingIndex

__all__ = ["METRICS", "EmbeddingIndex", "EmbeddingSet", "ExactSearcher", "Searcher", "check_k"]
