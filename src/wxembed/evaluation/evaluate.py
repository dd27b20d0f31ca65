"""Score a trained autoencoder on held-out hours against same-size baselines.

For every held-out hour (the hours from the checkpoint's ``val_start`` on, or the latest share
of an archive the model was not trained on), the autoencoder's reconstruction, a PCA/EOF
reconstruction with as many components as the embedding has numbers (fit on the training hours
only) and the climatological mean image are scored against the truth with
:class:`wxembed.metrics.Verification`, overall, by regime (where the archive has labels) and by
season. Hours are streamed in batches: nothing holds the archive in memory.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from wxembed.archive import Archive
from wxembed.errors import ArchiveError
from wxembed.evaluation.baselines import ClimatologyBaseline, PCABaseline
from wxembed.evaluation.metrics import Verification, beats
from wxembed.model.checkpoint import Checkpoint
from wxembed.model.encoder import EmbeddingModel, compression_ratio
from wxembed.reflectivity import decode_raw

log = logging.getLogger(__name__)

SEASONS = {12: "DJF", 1: "DJF", 2: "DJF", 3: "MAM", 4: "MAM", 5: "MAM",
           6: "JJA", 7: "JJA", 8: "JJA", 9: "SON", 10: "SON", 11: "SON"}  # fmt: skip


def held_out_split(archive: Archive, val_start: str, val_fraction: float = 0.2):
    """(training hours, held-out hours) of ``archive`` for a model whose held-out period starts at
    ``val_start``; an archive the model never saw is split by time with ``val_fraction``."""
    times = archive.stored_times()
    if val_start:
        start = np.datetime64(val_start, "s")
        train, held = times[times < start], times[times >= start]
        if len(held) and len(train):
            return train, held
    n_val = int(round(len(times) * val_fraction))
    if len(times) < 2 or n_val < 1 or n_val >= len(times):
        raise ArchiveError(
            f"{archive.path}: {len(times)} stored hour(s) cannot be split into training and held-out "
            "hours; evaluation needs at least 2 (and 5 for a 20 % held-out share)"
        )
    return times[:-n_val], times[-n_val:]


def evaluate(
    checkpoint: str | Path,
    archive_path: str | Path,
    *,
    max_hours: int | None = None,
    pca_coarsen: int = 1,
    batch: int = 8,
    keep: int = 0,
) -> dict:
    """Every metric for the autoencoder, PCA with as many components, and climatology.

    ``keep`` > 0 also returns that many held-out hours' truth and reconstructions (for figures)
    under the key ``"examples"`` (not JSON).
    """
    ckpt = Checkpoint(checkpoint)
    archive = Archive(archive_path)
    ckpt.check_grid(archive)  # before any long computation
    model = EmbeddingModel(ckpt, batch_size=batch)
    grid = model.grid
    train_times, held = held_out_split(archive, ckpt.val_start)
    if max_hours:
        held = held[:max_hours]
    dim = model.embedding_dim
    n_components = min(dim, len(train_times))
    if n_components < dim:
        log.warning("PCA gets %d components, not %d: only %d training hours", n_components, dim,
                    len(train_times))  # fmt: skip
    log.info("fitting PCA-%d and climatology on %d training hours", n_components, len(train_times))
    pca = PCABaseline(n_components=n_components, coarsen=pca_coarsen).fit_archive(
        archive, train_times, batch=32
    )
    clim = ClimatologyBaseline().fit_archive(archive, train_times, batch=32)

    labels = archive.manifest().set_index("time")["regime"]
    scorers: dict[str, dict[str, Verification]] = defaultdict(dict)

    def scorer(group: str, name: str) -> Verification:
        if name not in scorers[group]:
            scorers[group][name] = Verification(cell_km=grid.cell_size_km)
        return scorers[group][name]

    examples = []
    for i in tqdm(range(0, len(held), batch), desc="evaluate", unit="batch"):
        times = held[i : i + batch]
        raw = archive.read_raw(times)
        truth = decode_raw(raw)  # (n, ny, nx) dBZ, NaN = no data
        _, recon = model.reconstruct_raw(raw)
        candidates = {
            "autoencoder": recon,
            "pca": pca.reconstruct(np.nan_to_num(truth, nan=0.0)),
            "climatology": clim.predict(len(times)),
        }
        for j, t in enumerate(times):
            regime = labels.get(t, "") or ""
            season = SEASONS[int(str(t)[5:7])]
            for name, fields in candidates.items():
                for group in ("all", f"regime:{regime}" if regime else None, f"season:{season}"):
                    if group:
                        scorer(group, name).accumulate(truth[j], fields[j])
            if len(examples) < keep:
                examples.append(
                    {"time": t, "truth": truth[j], **{k: v[j] for k, v in candidates.items()}}
                )

    def scores(group: str) -> dict:
        return {name: v.compute() for name, v in scorers[group].items()}

    result = {
        "checkpoint": str(ckpt.path),
        "archive": str(archive.path),
        "arch": ckpt.arch,
        "model_id": model.model_id,
        "embedding_dim": dim,
        "pca_components": n_components,
        "train_hours": len(train_times),
        "held_out_hours": len(held),
        "held_out_first": str(held[0]),
        "held_out_last": str(held[-1]),
        "scores": scores("all"),
        "by_regime": {
            g.split(":", 1)[1]: scores(g) for g in sorted(scorers) if g.startswith("regime:")
        },
        "by_season": {
            g.split(":", 1)[1]: scores(g) for g in sorted(scorers) if g.startswith("season:")
        },
        "grid": grid.to_json(),
        "compression": compression_ratio(grid.shape, dim),
    }
    result["autoencoder_beats_pca"] = beats(result["scores"], "autoencoder", "pca")
    if keep:
        result["examples"] = examples
    return result
