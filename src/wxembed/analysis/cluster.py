"""Weather regimes: k-means on an index's embeddings, and when each regime happens.

:func:`cluster_index` stores the assignments and centroids in the index and returns a report:
sizes, the hour nearest each centroid, occurrence by month and UTC hour of day, and the adjusted
Rand index against a synthetic archive's regime labels; the decoded centroids on request.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from wxembed.analysis.codec import as_archive
from wxembed.analysis.search import model_for_index, open_index
from wxembed.archive import Archive
from wxembed.errors import ArchiveError, EmbeddingIndexError
from wxembed.index import EmbeddingIndex, check_k
from wxembed.times import format_time, from_seconds, to_seconds

log = logging.getLogger(__name__)


def _regimes(archive_path: str | Path | Archive | None, seconds: np.ndarray) -> np.ndarray | None:
    """The archive's regime label of each hour ("" where none), or None without an archive."""
    if archive_path is None:
        return None
    try:
        a = as_archive(archive_path)
    except ArchiveError as exc:
        log.warning("no regime labels: %s", exc)
        return None
    m = a.manifest()
    lookup = dict(zip(to_seconds(m.time.values).tolist(), m.regime.astype(str), strict=True))
    return np.asarray([lookup.get(int(s), "") for s in seconds], dtype=object)


def _kmeans(matrix: np.ndarray, k: int, seed: int, n_init: int):
    """``(labels (n,), centroids (k, d), row nearest each centroid (k,), inertia)``."""
    km = KMeans(n_clusters=int(k), init="k-means++", n_init=n_init, random_state=seed)
    labels = km.fit_predict(matrix).astype(np.int64)  # (n,)
    centers = km.cluster_centers_.astype(np.float32)  # (k, d)
    dist = km.transform(matrix)  # (n, k) distance of every hour to every centroid
    nearest = np.empty(k, dtype=np.int64)
    for c in range(k):
        rows = np.flatnonzero(labels == c)
        nearest[c] = rows[np.argmin(dist[rows, c])] if len(rows) else np.argmin(dist[:, c])
    return labels, centers, nearest, float(km.inertia_)


def _occurrence(labels: np.ndarray, values: np.ndarray, name: str, columns, k: int) -> dict:
    """``{cluster: {value: hours}}``: how often each cluster occurs at each month or hour."""
    table = pd.crosstab(pd.Series(labels, name="cluster"), pd.Series(values, name=name))
    table = table.reindex(index=range(k), columns=columns, fill_value=0)
    return {int(c): {int(v): int(n) for v, n in row.items()} for c, row in table.iterrows()}


def _regime_agreement(regimes: np.ndarray | None, labels: np.ndarray) -> dict:
    """The adjusted Rand index of the clusters against regime labels, and the crosstab."""
    if regimes is None:
        return {}
    labelled = regimes != ""
    if labelled.sum() < 2:
        return {}
    table = pd.crosstab(
        pd.Series(labels[labelled], name="cluster"), pd.Series(regimes[labelled], name="regime")
    )
    return {
        "adjusted_rand_index": float(adjusted_rand_score(regimes[labelled], labels[labelled])),
        "regimes": {
            int(c): {str(r): int(v) for r, v in row.items() if v} for c, row in table.iterrows()
        },
    }


def cluster_index(
    index: str | Path | EmbeddingIndex,
    *,
    k: int,
    model_id: str | None = None,
    seed: int = 0,
    n_init: int = 4,
    archive: str | Path | Archive | None = None,
    decode: bool = False,
    checkpoint: str | Path | None = None,
) -> dict:
    """k-means (k-means++ initialisation) on a model's embeddings in an index.

    Stores the assignment of every hour and the centroids in the index (replacing an earlier
    run with the same k), and returns a report: cluster sizes, the hour nearest each centroid,
    how often each cluster occurs by month and by UTC hour of day, and, when the archive
    (``archive``, default the one recorded in the index) labels its hours with regimes (a
    synthetic archive), the adjusted Rand index of the clusters against them. With ``decode``,
    each centroid is decoded (``checkpoint``, default the recorded one) into a dBZ field,
    returned under ``"centroid_fields"`` (``(k, ny, nx)``, not JSON) with the model's ``"grid"``,
    for :func:`wxembed.figures.plot.save_cluster_pngs`. Only the embeddings are held in memory,
    never the archive's images.
    """
    ix, owned = open_index(index, read_only=False)
    try:
        info = ix.model(model_id)
        vs = ix.vectors(info.model_id)
        check_k(k)
        if k > len(vs):
            raise EmbeddingIndexError(
                f"k={k} clusters is more than the {len(vs)} hours of model {info.model_id}"
            )
        labels, centers, nearest, inertia = _kmeans(vs.matrix, int(k), seed, n_init)
        ix.save_clusters(info.model_id, int(k), vs.seconds, labels, centers, vs.seconds[nearest])
    finally:
        if owned:
            ix.close()
    if archive is None and info.archive and Path(info.archive).exists():
        archive = info.archive
    report: dict = {
        "model_id": info.model_id,
        "k": int(k),
        "hours": len(vs),
        "seed": seed,
        "inertia": inertia,
        "sizes": np.bincount(labels, minlength=k).tolist(),
        "nearest_hours": [format_time(t) for t in from_seconds(vs.seconds[nearest])],
        "by_month": _occurrence(labels, vs.month, "month", range(1, 13), k),
        "by_hour": _occurrence(labels, vs.hour, "hour", range(24), k),
        "adjusted_rand_index": None,
        **_regime_agreement(_regimes(archive, vs.seconds), labels),
    }
    if decode:
        model = model_for_index(info, checkpoint)
        report["centroid_fields"] = model.decode(centers)  # (k, ny, nx) dBZ
        report["grid"] = model.grid
    return report


__all__ = ["cluster_index"]
