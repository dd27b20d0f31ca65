"""wxembed: learned representations of weather-radar archives.

The flow, one folder (or module) a step::

    sources/  READ      radar files and synthetic storms -> DecodedField
    archive   STORE     the Zarr archive and its manifest
    model/    LEARN     networks, losses, checkpoints, the encoder; train.py, tune.py
    pipelines/ SCALE    Beam: ingest, fetch, embed
    index/    KEEP      DuckDB store and exact search
    analysis/ USE       encode/decode, search, interpolate, cluster
    evaluation/ SCORE   metrics, baselines, evaluate
    figures/  SHOW      maps, outlines, the report
    cli/      COMMANDS  the `wxembed` command

The public API is re-exported here lazily (PEP 562): ``import wxembed`` loads neither PyTorch
nor Apache Beam; a name imports its module when first used.
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import PackageNotFoundError, version


def _import_pyproj() -> None:
    """Import pyproj so that it uses its own PROJ library.

    eccodes' wheels load a PROJ and an SQLite of their own with ``RTLD_GLOBAL``; a pyproj
    imported after them binds to those instead of its own, and the process fails (no PROJ
    database, then a double free or a segfault at exit). wxembed imports pyproj first, here; when
    eccodes was imported before wxembed, pyproj's extension modules are loaded with
    ``RTLD_DEEPBIND``, so that they resolve PROJ's symbols in their own libraries first.
    """
    if "pyproj" in sys.modules:
        return
    deepbind = getattr(os, "RTLD_DEEPBIND", 0)
    eccodes_first = any(m in sys.modules for m in ("gribapi", "eccodes", "findlibs"))
    if not (eccodes_first and deepbind):
        import pyproj  # noqa: F401

        return
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | deepbind)
    try:
        import pyproj  # noqa: F401  (all of its extension modules load with it)
    finally:
        sys.setdlopenflags(flags)


_import_pyproj()  # before eccodes, which wxembed imports later: see the function

try:
    __version__ = version("wxembed")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

_EXPORTS = {
    # ground floor
    "WxembedError": "wxembed.errors",
    "ArchiveError": "wxembed.errors",
    "CheckpointError": "wxembed.errors",
    "EmbeddingError": "wxembed.errors",
    "EmbeddingIndexError": "wxembed.errors",
    "GridError": "wxembed.errors",
    "ModelError": "wxembed.errors",
    "SourceError": "wxembed.errors",
    "Grid": "wxembed.grid",
    "HRRR_CONUS": "wxembed.grid",
    "decode_raw": "wxembed.reflectivity",
    "encode_dbz": "wxembed.reflectivity",
    # read, store
    "DecodedField": "wxembed.sources",
    "SynthConfig": "wxembed.sources.synthetic",
    "Archive": "wxembed.archive",
    # learn
    "TrainConfig": "wxembed.train",
    "train": "wxembed.train",
    "Checkpoint": "wxembed.model.checkpoint",
    "EmbeddingModel": "wxembed.model.encoder",
    "load_embedding_model": "wxembed.model.encoder",
    # scale out
    "ingest_files": "wxembed.pipelines.ingest",
    "ingest_synthetic": "wxembed.pipelines.ingest",
    "fetch_hours": "wxembed.pipelines.fetch",
    "embed_archive": "wxembed.pipelines.embed",
    # keep, use
    "EmbeddingIndex": "wxembed.index",
    "Embedding": "wxembed.analysis.codec",
    "load_embedding": "wxembed.analysis.codec",
    "encode_field": "wxembed.analysis.codec",
    "decode_embedding": "wxembed.analysis.codec",
    "write_field": "wxembed.analysis.codec",
    "search_similar": "wxembed.analysis.search",
    "interpolate_hours": "wxembed.analysis.interpolate",
    "interpolation_skill": "wxembed.analysis.interpolate",
    "cluster_index": "wxembed.analysis.cluster",
    # score, show
    "Verification": "wxembed.evaluation.metrics",
    "evaluate": "wxembed.evaluation.evaluate",
    "build_report": "wxembed.figures.report",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # once imported, a plain attribute
        return value
    raise AttributeError(f"module 'wxembed' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["__version__", *_EXPORTS]
