"""What the explorer serves (:class:`ServeConfig`), and the checks of what a request asks for.

A server serves only the archive, index, model and ``evaluation.json`` it was started with: a
request names hours, numbers and choices, never a path. The parsers here turn a request's text
into values or a :class:`~wxembed.errors.ServeError` with a one-line reason (HTTP 400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from wxembed.errors import ServeError

DEFAULT_MAX_UPLOAD = 16 * 2**20
"""Bytes an uploaded query file may have (a HRRR REFC message is 1-2 MB)."""

_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})(?:[T ](?P<hour>\d{2})(?::(?P<min>\d{2})(?::(?P<sec>\d{2}))?)?)?"
    r"(?:Z|[+-]00:?00)?"
)


@dataclass(frozen=True)
class ServeConfig:
    """What one ``wxembed serve`` serves, and how."""

    archive: Path
    """The Zarr archive whose hours the page browses."""
    index: Path | None = None
    """The embedding index to search and cluster (None: browsing and reconstruction only)."""
    checkpoint: Path | None = None
    """A checkpoint or model folder: reconstructions, uploaded queries, decoded centroids,
    interpolation (None: the checkpoint the index recorded, when it still exists)."""
    evaluation: Path | None = None
    """An ``evaluation.json`` written by ``wxembed evaluate`` (None: no scores page)."""
    model_id: str | None = None
    """Which of the index's models (None: the checkpoint's, or the only one)."""
    allow_clustering: bool = False
    """Let the page run k-means (it writes clusters into the index, so the index is opened for
    writing). Without it the server writes nothing."""
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    """The largest query file a request may upload."""
    cache_bytes: int = 256 * 2**20
    """Memory for pictures and decoded fields kept between requests."""
    exact: bool = False
    """Search every row for every query. Without it, an index of 200,000 hours or more is
    searched approximately (:mod:`wxembed.index.ann`: FAISS, built at start, seconds per
    million hours), with the exact search for queries whose filters leave too few hours."""

    @classmethod
    def from_folder(cls, folder: str | Path | None = None, **given) -> ServeConfig:
        """The config of a folder the main job (``wxembed demo``) wrote: its archive
        (``synthetic.zarr``, or the folder's only ``*.zarr``), ``embeddings.duckdb`` (or the only
        ``*.duckdb``), ``evaluation.json`` and ``model/``; anything in ``given`` (not None)
        wins. :class:`ServeError` names what is missing."""
        given = {k: v for k, v in given.items() if v is not None}
        for name in ("archive", "index", "checkpoint", "evaluation"):
            if name in given:
                given[name] = Path(given[name])
                if not given[name].exists():
                    raise ServeError(f"{given[name]}: no such {name}")
        if folder is not None:
            folder = Path(folder)
            if not folder.is_dir():
                raise ServeError(f"{folder}: no such folder (the main job's output folder)")
            found = {
                "archive": _one(folder, "synthetic.zarr", "*.zarr"),
                "index": _one(folder, "embeddings.duckdb", "*.duckdb"),
                "evaluation": _one(folder, "evaluation.json", None),
                "checkpoint": folder / "model" if (folder / "model").is_dir() else None,
            }
            given = {**{k: v for k, v in found.items() if v is not None}, **given}
        if "archive" not in given:
            where = f" in {folder}" if folder is not None else ""
            raise ServeError(f"no archive{where}: give the main job's folder or --archive")
        return cls(**given)

    def but(self, **changes) -> ServeConfig:
        return replace(self, **changes)


def _one(folder: Path, name: str, pattern: str | None) -> Path | None:
    if (folder / name).exists():
        return folder / name
    if pattern is None:
        return None
    matches = sorted(folder.glob(pattern))
    return matches[0] if len(matches) == 1 else None


# ---- a request's values ------------------------------------------------------------------------
def parse_time(text: str | None, what: str = "time") -> np.datetime64:
    """``2024-07-01T18``, ``2024-07-01T18:00:00Z``, ``2024-07-01 18:00`` or ``2024-07-01`` as
    ``datetime64[s]`` (UTC); :class:`ServeError` otherwise."""
    if text is None or text == "":
        raise ServeError(f"{what} is missing: write it as 2024-07-01T18")
    m = _TIME.fullmatch(text.strip()) if len(text) <= 40 else None
    if m is None:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ServeError(f"{what} {shown!r} is not a time: write it as 2024-07-01T18")
    iso = m["date"] + "T" + ":".join(v or "00" for v in (m["hour"], m["min"], m["sec"]))
    try:
        return np.datetime64(iso, "s")
    except ValueError:
        raise ServeError(f"{what} {text!r} is not a time: no such date or hour") from None


def parse_ints(text: str | None, lo: int, hi: int, what: str) -> list[int] | None:
    """``"6,7,8"`` as ``[6, 7, 8]`` (each from ``lo`` to ``hi``); None for nothing."""
    if text is None or text.strip() == "":
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > hi - lo + 1 or not all(re.fullmatch(r"\d{1,3}", p) for p in parts):
        raise ServeError(f"{what} {text[:40]!r}: give whole numbers {lo} to {hi}, comma-separated")
    values = sorted({int(p) for p in parts})
    bad = [v for v in values if not lo <= v <= hi]
    if bad:
        raise ServeError(f"{what} must be {lo} to {hi}, got {bad}")
    return values


def iso(t) -> str:
    """A time as the API writes it: ``2024-07-01T18:00:00Z``."""
    return str(np.datetime64(t, "s")) + "Z"


__all__ = ["DEFAULT_MAX_UPLOAD", "ServeConfig", "iso", "parse_ints", "parse_time"]
