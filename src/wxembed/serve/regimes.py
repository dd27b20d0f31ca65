"""Regimes and interpolation for the page, over :func:`wxembed.analysis.cluster_index` and
:func:`wxembed.analysis.interpolate_hours`.

- A clustering stored in the index (by ``wxembed cluster``, the main job, or the page when the
  server runs with ``--allow-clustering``): each cluster's size, the hour nearest its centroid,
  how often it occurs by month and by UTC hour of day, and its centroid decoded into a picture.
- The decoded mix of two hours' embeddings beside the real hour between them and the plain pixel
  average, with their scores.
"""

from __future__ import annotations

import numpy as np

from wxembed.analysis import cluster_index, interpolate_hours
from wxembed.errors import ServeError
from wxembed.serve import render
from wxembed.serve.config import iso
from wxembed.serve.explorer import Explorer, headline, no_model, seconds_of

MAX_CLUSTERS = 64
"""The most clusters the page may ask k-means for."""
PANELS = ("truth", "embedding_midpoint", "pixel_average")
"""The pictures of an interpolation."""


def _index(ex: Explorer):
    if ex.index is None:
        raise ServeError("no index: start wxembed serve with --index", 404)
    return ex.index


def clusterings(ex: Explorer) -> dict:
    """The clusterings stored for the served model: k and the cluster sizes of each."""
    cents = _index(ex).centroids(ex.model_id)
    stored = [
        {"k": int(k), "sizes": [int(n) for n in group.sort_values("cluster").n_hours]}
        for k, group in cents.groupby("k")
    ]
    return {
        "model_id": ex.model_id,
        "stored": stored,
        "allow_clustering": ex.config.allow_clustering,
        "max_clusters": MAX_CLUSTERS,
    }


def _check_k(k: int) -> None:
    if not 2 <= k <= MAX_CLUSTERS:
        raise ServeError(f"k must be 2 to {MAX_CLUSTERS} clusters, got {k}")


def _occurrence(labels: np.ndarray, values: np.ndarray, k: int, size: int) -> np.ndarray:
    """(k, size) hours of each cluster at each value (month 0..11, hour 0..23)."""
    table = np.zeros((k, size), dtype=np.int64)
    np.add.at(table, (labels, values), 1)
    return table


def clustering(ex: Explorer, k: int) -> dict:
    """A stored clustering with k clusters: each cluster's size, nearest hour, occurrence by
    month and hour of day, and its decoded centroid's picture."""
    _check_k(k)
    ix = _index(ex)
    cents = ix.centroids(ex.model_id, k)
    if cents.empty:
        hint = "run one" if ex.config.allow_clustering else "run wxembed cluster"
        raise ServeError(f"no clustering with k={k} is stored for {ex.model_id}; {hint}", 404)
    version = np.stack(cents.centroid.to_numpy()).astype(np.float32).tobytes()
    return ex.cache.memo(("clustering", k, version), lambda: _describe(ex, k, cents), size=_size)


def _size(_) -> int:
    return 4096


def _describe(ex: Explorer, k: int, cents) -> dict:
    assign = ex.index.clusters(ex.model_id, k)
    seconds = assign.time.values.astype("datetime64[s]").astype(np.int64)
    labels = assign.cluster.to_numpy().astype(np.int64)
    months = seconds.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64) % 12
    by_month = _occurrence(labels, months, k, 12)
    by_hour = _occurrence(labels, (seconds // 3600) % 24, k, 24)
    total = max(int(len(labels)), 1)
    clusters = []
    for row in cents.itertuples():
        c = int(row.cluster)
        entry = {
            "cluster": c,
            "hours": int(row.n_hours),
            "share": int(row.n_hours) / total,
            "nearest_time": iso(np.datetime64(row.nearest_time, "s")),
            "by_month": by_month[c].tolist(),
            "by_hour": by_hour[c].tolist(),
        }
        if ex.model is not None:
            entry["image"] = f"/api/clusters/{k}/{c}/image.png"
        clusters.append(entry)
    return {"model_id": ex.model_id, "k": k, "hours": int(len(labels)), "clusters": clusters}


def run_clustering(ex: Explorer, k: int, seed: int = 0) -> dict:
    """k-means on the served model's embeddings, stored in the index (only with
    ``--allow-clustering``; one at a time)."""
    if not ex.config.allow_clustering:
        raise ServeError(
            "this server is read-only: start wxembed serve with --allow-clustering to run k-means "
            "from the page (it writes the clusters into the index)",
            403,
        )
    _check_k(k)
    ix = _index(ex)
    if k > len(ix.vectors(ex.model_id)):
        raise ServeError(f"k={k} is more clusters than the index has hours")
    if not ex.clustering.acquire(blocking=False):
        raise ServeError("a clustering is already running; try again when it has finished", 409)
    try:
        report = cluster_index(ix, k=k, model_id=ex.model_id, seed=seed, archive=ex.archive)
    finally:
        ex.clustering.release()
    return {**clustering(ex, k), "adjusted_rand_index": report.get("adjusted_rand_index")}


def centroid_png(ex: Explorer, k: int, c: int, width: int | None = None) -> bytes:
    """A stored cluster's centroid, decoded by the model, as a PNG."""
    if ex.model is None:
        raise no_model("decode a centroid")
    _check_k(k)
    cents = _index(ex).centroids(ex.model_id, k)
    row = cents[cents.cluster == c]
    if row.empty:
        raise ServeError(f"no cluster {c} in the clustering with k={k}", 404)
    vector = np.asarray(row.centroid.iloc[0], dtype=np.float32)
    key = ("centroid", vector.tobytes(), render.layout(ex.grid, width))
    return ex.cache.memo(
        key,
        lambda: render.png(render.dbz_indices(ex.model.decode(vector)[0]), ex.grid, width=width),
    )


# ---- interpolation -------------------------------------------------------------------------
def _interpolated(ex: Explorer, start, end, weight: float) -> dict:
    if ex.model is None:
        raise no_model("interpolate")
    if not 0.0 <= weight <= 1.0:
        raise ServeError(f"weight must be 0 to 1, got {weight}")
    key = ("interpolation", seconds_of(start), seconds_of(end), float(weight))
    return ex.cache.memo(
        key,
        lambda: interpolate_hours(
            ex.archive, ex.model.checkpoint, start, end, weight=weight, keep_fields=True
        ),
        size=lambda r: sum(f.nbytes for f in r["fields"].values()),
    )


def interpolation(ex: Explorer, start, end, weight: float = 0.5) -> dict:
    """The decoded mix of the embeddings of ``start`` and ``end``, the real hour between them
    and the pixel average: their headline scores, which wins each, and their pictures."""
    report = _interpolated(ex, start, end, weight)
    query = f"start={iso(start)}&end={iso(end)}&weight={weight}"
    return {
        "start": iso(start),
        "end": iso(end),
        "truth_time": iso(np.datetime64(report["truth_time"].rstrip("Z"), "s")),
        "weight": weight,
        "model_id": report["model_id"],
        "scores": {name: headline(s) for name, s in report["scores"].items()},
        "winner": report["winner"],
        "images": {p: f"/api/interpolate/image.png?{query}&panel={p}" for p in PANELS},
    }


def interpolation_png(
    ex: Explorer, start, end, weight: float, panel: str, width: int | None = None
) -> bytes:
    """One picture of an interpolation: the real hour, the decoded mix or the pixel average."""
    if panel not in PANELS:
        raise ServeError(f"panel must be one of {', '.join(PANELS)}, got {panel!r}")
    report = _interpolated(ex, start, end, weight)
    key = ("interpolation-png", seconds_of(start), seconds_of(end), weight, panel)
    return ex.cache.memo(
        (*key, render.layout(ex.grid, width)),
        lambda: render.png(render.dbz_indices(report["fields"][panel]), ex.grid, width=width),
    )


__all__ = [
    "MAX_CLUSTERS",
    "PANELS",
    "centroid_png",
    "clustering",
    "clusterings",
    "interpolation",
    "interpolation_png",
    "run_clustering",
]
