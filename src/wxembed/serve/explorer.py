"""The explorer's state: one archive, one index, one model, shared by every request.

Each public method of :class:`Explorer` is one action of the page and returns plain values
(JSON-ready dicts, or PNG bytes), over library calls: :class:`wxembed.archive.Archive` (the
manifest, the hours), :class:`wxembed.index.EmbeddingIndex` with
:func:`wxembed.analysis.search_similar` (similar hours), the
:class:`~wxembed.model.encoder.EmbeddingModel` (reconstructions, uploaded queries) and
:mod:`wxembed.evaluation.metrics` (scores). Regimes and interpolation are in :mod:`.regimes`.

Every method may be called from many threads at once (a server's): the index is thread-safe,
the model only reads its weights, and pictures and decoded fields are kept in a
:class:`ByteCache` under a lock. A mistake in a request raises :class:`ServeError` with its
HTTP status; nothing a request says becomes a path.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wxembed.analysis import encode_field, search_similar
from wxembed.analysis.codec import Embedding, vector_from
from wxembed.archive import Archive
from wxembed.errors import ServeError
from wxembed.evaluation.metrics import HEADLINE_SCORES, Verification, score_kind, score_label
from wxembed.figures.report import ROWS
from wxembed.index import METRICS, EmbeddingIndex
from wxembed.model.encoder import EmbeddingModel, load_embedding_model
from wxembed.reflectivity import decode_raw
from wxembed.serve import render
from wxembed.serve.config import ServeConfig, iso
from wxembed.serve.upload import NPY, is_vector, npy_header, upload_kind
from wxembed.sources.formats import read_field
from wxembed.times import format_time, from_seconds, to_seconds

log = logging.getLogger(__name__)

THUMB_WIDTH = 240
"""Width of the thumbnails the page shows beside a search's matches."""
VIEWS = ("original", "reconstruction", "matched", "difference")
"""What an hour's picture shows."""


class ByteCache:
    """A least-recently-used cache of values by the bytes they take, shared by threads."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def memo(self, key, make: Callable, size: Callable = len):
        """The value of ``key``, made by ``make()`` when absent (outside the lock: two threads
        may both make it, and the second keeps the first's)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
        value = make()
        n = int(size(value))
        with self._lock:
            if key not in self._items and n <= self.max_bytes:
                self._items[key] = (value, n)
                self._bytes += n
                while self._bytes > self.max_bytes:
                    _, (_, dropped) = self._items.popitem(last=False)
                    self._bytes -= dropped
        return value


@dataclass(frozen=True)
class SearchFilters:
    """A search's options, as the CLI's ``wxembed search`` takes them."""

    k: int = 5
    metric: str = "euclidean"
    exclude_hours: float | None = 24.0
    months: list[int] | None = None
    hours: list[int] | None = None
    start: np.datetime64 | None = None
    end: np.datetime64 | None = None
    coverage_weight: float | None = None


def seconds_of(t: np.datetime64) -> int:
    """A parsed request time as seconds since 1970."""
    return int(np.datetime64(t, "s").astype(np.int64))


def no_model(what: str) -> ServeError:
    return ServeError(f"no model to {what}: start wxembed serve with --checkpoint", 404)


class Explorer:
    """Everything one ``wxembed serve`` serves (see the module docstring)."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.archive = Archive(config.archive)
        self.grid = self.archive.grid
        self.index = None
        if config.index is not None:
            self.index = EmbeddingIndex(config.index, read_only=not config.allow_clustering)
        try:
            self.model_id, self.model = self._open_model()
            self.evaluation = self._read_evaluation()
        except BaseException:
            self.close()
            raise
        self.cache = ByteCache(config.cache_bytes)
        self.clustering = threading.Lock()  # one k-means at a time
        self._manifest: tuple[float, dict, dict] | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="wxembed-serve-")

    def _open_model(self) -> tuple[str | None, EmbeddingModel | None]:
        """The index's model served, and the model that made its embeddings (or None)."""
        checkpoint = self.config.checkpoint
        model_id = None
        if self.index is not None:
            ids = list(self.index.models().model_id)
            model_id = self.config.model_id or (ids[0] if len(ids) == 1 else None)
            if model_id is None and checkpoint is not None:
                model_id = load_embedding_model(checkpoint).model_id
            info = self.index.model(model_id)  # names the models when it cannot choose
            model_id = info.model_id
            if checkpoint is None and info.checkpoint and Path(info.checkpoint).is_file():
                checkpoint = Path(info.checkpoint)
        model = load_embedding_model(checkpoint) if checkpoint is not None else None
        if model is not None:
            model.check_grid(self.archive)
            if model_id is not None and model.model_id != model_id:
                raise ServeError(
                    f"checkpoint {checkpoint} is model {model.model_id}, but the index's "
                    f"embeddings are from {model_id}: pass the checkpoint that made them"
                )
        return model_id, model

    def _read_evaluation(self) -> dict | None:
        path = self.config.evaluation
        if path is None:
            return None
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ServeError(f"{path}: not a readable evaluation.json ({exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("scores"), dict):
            raise ServeError(f"{path}: no 'scores' (write it with wxembed evaluate)")
        return doc

    def warm(self) -> None:
        """Read what the first requests would otherwise wait for: the index's embeddings and
        its searcher (a big index's approximate one built now), the map outlines at full and
        thumbnail size."""
        if self.index is not None:
            vs = self.index.vectors(self.model_id)
            vs.searcher("euclidean", exact=self.config.exact, wait=True)
        for width in (None, THUMB_WIDTH):
            render.png(np.zeros(self.grid.shape, np.uint8), self.grid, width=width)

    def close(self) -> None:
        if self.index is not None:
            self.index.close()
        if hasattr(self, "_tmp"):
            self._tmp.cleanup()

    # ---- what is served ------------------------------------------------------------------------
    def info(self) -> dict:
        m, _ = self.manifest_rows()
        stored = [t for t, s in zip(m["time"], m["status"], strict=True) if s == "stored"]
        model = None
        if self.model is not None:
            model = {"model_id": self.model.model_id, "embedding_dim": self.model.embedding_dim}
            model.update(self.model.compression())
        return {
            "archive": {
                "name": self.archive.path.name,
                "grid": self.grid.describe(),
                "shape": list(self.grid.shape),
                "summary": m["summary"],
                "first": stored[0] if stored else None,
                "last": stored[-1] if stored else None,
            },
            "model": model,
            "index": None if self.index is None else self._index_info(),
            "evaluation": self.evaluation is not None,
            "allow_clustering": self.config.allow_clustering,
            "max_upload_bytes": self.config.max_upload_bytes,
            "metrics": list(METRICS),
            "views": list(VIEWS) if self.model is not None else ["original"],
            "colour_scale": render.colour_scale(),
            "difference_limit": render.DIFF_LIMIT,
        }

    def _index_info(self) -> dict:
        vs = self.index.vectors(self.model_id)
        return {
            "name": self.index.path.name,
            "model_id": self.model_id,
            "models": list(self.index.models().model_id),
            "hours": len(vs),
            "embedding_dim": int(vs.matrix.shape[1]),
            "search": vs.searcher("euclidean", exact=self.config.exact).describe(),
        }

    # ---- the manifest and the hours --------------------------------------------------------
    def manifest_rows(self) -> tuple[dict, dict]:
        """The manifest, column by column, and a lookup from seconds to its row; read again
        when older than 10 s (an ingest may be filling the archive)."""
        cached = self._manifest
        if cached is not None and time.monotonic() - cached[0] < 10.0:
            return cached[1], cached[2]
        m = self.archive.manifest()
        seconds = to_seconds(m.time.values)
        indexed = np.zeros(len(m), dtype=bool)
        if self.index is not None and len(seconds):
            have = self.index.vectors(self.model_id).seconds  # sorted
            at = np.minimum(np.searchsorted(have, seconds), len(have) - 1)
            indexed = have[at] == seconds
        cols = {
            "time": [iso(t) for t in from_seconds(seconds)],
            "status": [str(s) for s in m.status],
            "reason": [str(r) for r in m.reason],
            "missing_values": [int(v) for v in m.missing_values],
            "source": [Path(str(s)).name for s in m.source],  # a name, not where it lives
            "in_index": indexed.tolist(),
            "summary": self.archive.summary(),
        }
        lookup = {int(s): i for i, s in enumerate(seconds)}
        self._manifest = (time.monotonic(), cols, lookup)
        return cols, lookup

    def hour(self, t: np.datetime64) -> dict:
        """One hour's manifest row, and where its pictures are."""
        m, lookup = self.manifest_rows()
        i = lookup.get(seconds_of(t))
        if i is None:
            raise ServeError(self._not_in_archive(t, m), 404)
        row = {k: m[k][i] for k in ("time", "status", "reason", "missing_values", "source")}
        row["in_index"] = m["in_index"][i]
        if row["status"] == "stored":
            views = VIEWS if self.model is not None else VIEWS[:1]
            row["images"] = {v: f"/api/hours/{row['time']}/image.png?view={v}" for v in views}
        return row

    def _not_in_archive(self, t, m: dict) -> str:
        if not m["time"]:
            return f"{self.archive.path.name} holds no hours yet"
        return (
            f"{format_time(t)} is not in the archive ({len(m['time'])} hours, "
            f"{m['time'][0]} to {m['time'][-1]})"
        )

    def raw(self, t: np.datetime64) -> np.ndarray:
        """The stored hour's archive codes; 404 naming its status and reason otherwise."""
        row = self.hour(t)
        if row["status"] != "stored":
            reason = f": {row['reason']}" if row["reason"] else ""
            raise ServeError(f"{format_time(t)} is {row['status']} in the manifest{reason}", 404)
        return self.archive.read_raw([t])[0]  # (ny, nx) uint8

    def reconstructed(self, t: np.datetime64, matched: bool = False) -> np.ndarray:
        """The model's reconstruction of a stored hour, dBZ (ny, nx), kept for a while;
        ``matched``: probability-matched to the hour's echo coverage (the same as the plain one
        for a model whose embedding records none)."""
        if self.model is None:
            raise no_model("reconstruct an hour")
        raw = self.raw(t)
        return self.cache.memo(
            ("matched" if matched else "reconstruction", seconds_of(t)),
            lambda: self.model.reconstruct_raw(raw[None], matched=matched)[1][0],
            size=lambda a: a.nbytes,
        )

    def hour_png(self, t: np.datetime64, view: str = "original", width: int | None = None):
        """An hour as a PNG: the original, the reconstruction (plain or probability-matched),
        or the plain one's difference from the original."""
        if view not in VIEWS:
            raise ServeError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
        key = ("hour", seconds_of(t), view, render.layout(self.grid, width))

        def make() -> bytes:
            if view == "original":
                lookup = render.code_lookup()
                return render.png(self.raw(t), self.grid, lookup=lookup, width=width)
            recon = self.reconstructed(t, matched=view == "matched")
            if view in ("reconstruction", "matched"):
                return render.png(render.dbz_indices(recon), self.grid, width=width)
            truth = decode_raw(self.raw(t))
            return render.png(render.difference_indices(truth, recon), self.grid, width=width)

        return self.cache.memo(key, make)

    def reconstruction(self, t: np.datetime64) -> dict:
        """How well the model reconstructs a stored hour: its headline scores."""
        truth = decode_raw(self.raw(t))
        scores = {}
        for name, matched in (("scores", False), ("matched_scores", True)):
            recon = self.reconstructed(t, matched=matched)
            v = Verification(cell_km=self.grid.cell_size_km).accumulate(truth, recon).compute()
            scores[name] = headline(v, extra=("bias_20",))  # matching sets the echo area
        stamp = iso(t)
        return {
            "time": stamp,
            "model_id": self.model.model_id,
            **scores,
            "images": {v: f"/api/hours/{stamp}/image.png?view={v}" for v in VIEWS},
        }

    # ---- similar weather ---------------------------------------------------------------------
    def similar(self, query, filters: SearchFilters) -> dict:
        """The hours most like ``query`` (an hour, or an :class:`Embedding`), with the filters
        of ``wxembed search``."""
        if self.index is None:
            raise ServeError("no index to search: start wxembed serve with --index", 404)
        if filters.metric not in METRICS:
            raise ServeError(f"metric must be one of {', '.join(METRICS)}, got {filters.metric!r}")
        found = search_similar(
            self.index,
            query,
            k=filters.k,
            model_id=self.model_id,
            metric=filters.metric,
            exclude_hours=filters.exclude_hours,
            months=filters.months,
            hours=filters.hours,
            start=filters.start,
            end=filters.end,
            exact=self.config.exact,
            checkpoint=self.model.checkpoint if self.model is not None else None,
            coverage_weight=filters.coverage_weight,
        )
        times = found.time.values.astype("datetime64[s]")
        matches = [
            {
                "rank": int(r),
                "time": iso(t),
                "distance": float(d),
                "thumbnail": f"/api/hours/{iso(t)}/image.png?width={THUMB_WIDTH}",
            }
            for r, t, d in zip(found["rank"], times, found.distance, strict=True)
        ]
        out = {"query": found.attrs["query"], "model_id": self.model_id, "metric": filters.metric}
        if len(matches) < filters.k:
            out["note"] = (
                f"only {len(matches)} hours pass the filters (asked for {filters.k}); widen them "
                "or lower the excluded window"
            )
        return {**out, "matches": matches}

    def similar_to_upload(self, body: bytes, filters: SearchFilters) -> dict:
        """:meth:`similar` for an uploaded GRIB2 file or ``.npy`` array (a dBZ field on the
        model's grid, or an embedding), checked (:mod:`.upload`) before anything decodes it."""
        kind = upload_kind(body, self.config.max_upload_bytes)
        if kind == NPY:
            shape, _ = npy_header(body)
            if is_vector(shape):
                arr = np.load(io.BytesIO(body), allow_pickle=False)
                return self.similar(Embedding(vector_from(arr, "upload"), source="upload"), filters)
            if self.model is not None and shape != self.grid.shape:
                raise ServeError(
                    f"the .npy upload is an array of shape {shape}; a field must be on the "
                    f"model's grid, {self.grid.shape[0]} x {self.grid.shape[1]} (or give an "
                    f"embedding of {self.model.embedding_dim} numbers)"
                )
        return self.similar(self._embed_upload(body, f".{kind}"), filters)

    def _embed_upload(self, body: bytes, suffix: str) -> Embedding:
        if self.model is None:
            raise no_model("embed an uploaded field")
        path = Path(self._tmp.name) / f"upload-{uuid.uuid4().hex}{suffix}"  # our name, not theirs
        path.write_bytes(body)
        try:
            field = read_field(path)
            emb = encode_field(field, checkpoint=self.model.checkpoint)
        finally:
            path.unlink(missing_ok=True)
        return Embedding(emb.vector, emb.model_id, emb.time, "uploaded field", emb.grid_shape)

    # ---- scores --------------------------------------------------------------------------------
    def scores(self) -> dict:
        """The scores ``wxembed evaluate`` wrote, as a table (one row a score), unchanged."""
        doc = self.evaluation
        if doc is None:
            raise ServeError("no evaluation.json: start wxembed serve with --evaluation", 404)
        methods = list(doc["scores"])
        rows = []
        for name in ROWS:
            values = {m: doc["scores"][m].get(name) for m in methods}
            if all(v is None for v in values.values()):
                continue
            kind = score_kind(name)
            better = kind.better if kind else ""
            rows.append({"name": name, "label": score_label(name), "better": better, **values})
        keys = ("model_id", "held_out_hours", "held_out_first", "held_out_last", "train_hours")
        return {
            "methods": methods,
            "rows": rows,
            **{k: doc.get(k) for k in keys},
            "autoencoder_beats_pca": doc.get("autoencoder_beats_pca"),
            "same_model": doc.get("model_id") == (self.model_id or doc.get("model_id")),
        }


def headline(scores: dict, extra: tuple[str, ...] = ()) -> list[dict]:
    """The headline scores of a score dict (and ``extra`` ones), with their labels and which
    way is better."""
    out = []
    for name in (*HEADLINE_SCORES, *extra):
        kind = score_kind(name)
        out.append(
            {
                "name": name,
                "label": score_label(name),
                "better": kind.better if kind else "",
                "value": scores.get(name),
            }
        )
    return out


__all__ = [
    "THUMB_WIDTH",
    "VIEWS",
    "ByteCache",
    "Explorer",
    "SearchFilters",
    "headline",
    "no_model",
    "seconds_of",
]
