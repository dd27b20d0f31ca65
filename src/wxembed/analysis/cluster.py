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
        n = len(vs)
        check_k(k)
        if k > n:
            raise EmbeddingIndexError(
                f"k={k} clusters is more than the {n} hours of model {info.model_id}"
            )
        km = KMeans(n_clusters=int(k), init="k-means++", n_init=n_init, random_state=seed)
        labels = km.fit_predict(vs.matrix).astype(np.int64)  # (n,)
        centers = km.cluster_centers_.astype(np.float32)  # (k, d)
        dist = km.transform(vs.matrix)  # (n, k) distance of every hour to every centroid
        nearest = np.empty(k, dtype=np.int64)
        for c in range(k):
            rows = np.flatnonzero(labels == c)
            nearest[c] = rows[np.argmin(dist[rows, c])] if len(rows) else np.argmin(dist[:, c])
        ix.save_clusters(info.model_id, int(k), vs.seconds, labels, centers, vs.seconds[nearest])
    finally:
        if owned:
            ix.close()

    sizes = np.bincount(labels, minlength=k)
    month = pd.crosstab(pd.Series(labels, name="cluster"), pd.Series(vs.month, name="month"))
    month = month.reindex(index=range(k), columns=range(1, 13), fill_value=0)
    hour = pd.crosstab(pd.Series(labels, name="cluster"), pd.Series(vs.hour, name="hour"))
    hour = hour.reindex(index=range(k), columns=range(24), fill_value=0)
    report: dict = {
        "model_id": info.model_id,
        "k": int(k),
        "hours": n,
        "seed": seed,
        "inertia": float(km.inertia_),
        "sizes": sizes.tolist(),
        "nearest_hours": [format_time(t) for t in from_seconds(vs.seconds[nearest])],
        "by_month": {
            int(c): {int(m): int(v) for m, v in row.items()} for c, row in month.iterrows()
        },
        "by_hour": {int(c): {int(h): int(v) for h, v in row.items()} for c, row in hour.iterrows()},
        "adjusted_rand_index": None,
    }
    arch_path = (
        archive
        if archive is not None
        else (info.archive if info.archive and Path(info.archive).exists() else None)
    )
    regimes = _regimes(arch_path, vs.seconds)
    if regimes is not None:
        labelled = regimes != ""
        if labelled.sum() >= 2:
            report["adjusted_rand_index"] = float(
                adjusted_rand_score(regimes[labelled], labels[labelled])
            )
            table = pd.crosstab(
                pd.Series(labels[labelled], name="cluster"),
                pd.Series(regimes[labelled], name="regime"),
            )
            report["regimes"] = {
                int(c): {str(r): int(v) for r, v in row.items() if v} for c, row in table.iterrows()
            }
    if decode:
        model = model_for_index(info, checkpoint)
        report["centroid_fields"] = model.decode(centers)  # (k, ny, nx) dBZ
        report["grid"] = model.grid
    return report


__all__ = ["cluster_index"]
