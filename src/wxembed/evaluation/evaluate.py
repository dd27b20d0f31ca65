"""Score a trained autoencoder on held-out hours against same-size baselines.

For every held-out hour (the hours from the checkpoint's ``val_start`` on, or the latest share
of an archive the model was not trained on), the autoencoder's reconstruction, a PCA/EOF
reconstruction with as many components as the embedding has numbers (fit on the training hours
only) and the climatological mean image are scored against the truth with
:class:`wxembed.evaluation.metrics.Verification`, overall, by regime (where the archive has
labels) and by
season. Hours are streamed in batches: nothing holds the archive in memory.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from wxembed.archive import Archive
from wxembed.errors import ArchiveError, CheckpointError
from wxembed.evaluation.baselines import ClimatologyBaseline, PCABaseline
from wxembed.evaluation.metrics import Verification, beats
from wxembed.evaluation.search_quality import pixel_distances, search_quality
from wxembed.model.checkpoint import Checkpoint
from wxembed.model.coverage import match_fields
from wxembed.model.encoder import EmbeddingModel, compression_ratio
from wxembed.reflectivity import decode_raw
from wxembed.times import format_time

log = logging.getLogger(__name__)

SEASONS = {
    m: s
    for s, months in {
        "DJF": (12, 1, 2),
        "MAM": (3, 4, 5),
        "JJA": (6, 7, 8),
        "SON": (9, 10, 11),
    }.items()
    for m in months
}
"""Meteorological season of each month."""
MEMORISE_RATIO = 10
"""Below this many training hours per code number, PCA of the code's size nearly memorises the
training hours, and the comparison says little; evaluation warns."""


HELD_OUT_RULES = ("auto", "checkpoint", "latest")
"""How :func:`held_out_split` chooses the held-out hours (see there)."""


def held_out_split(
    archive: Archive, val_start: str, val_fraction: float = 0.2, rule: str = "auto"
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(training hours, held-out hours, how)`` of ``archive`` for a model whose held-out period
    starts at ``val_start``; ``how`` says in words which rule chose them.

    ``rule`` "checkpoint": the hours from ``val_start`` on, which must split the archive into
    two non-empty parts, else :class:`CheckpointError`. "latest": the latest ``val_fraction``,
    whatever the checkpoint says. "auto" (the default): the checkpoint's split when it splits the
    archive; the latest ``val_fraction`` when every hour is at or after ``val_start`` (an archive
    from after the model's training period: none of its hours can be one the model was trained
    on), with a warning; and :class:`CheckpointError` when every hour is before ``val_start``
    (each may be one the model was trained on: scoring them would flatter it)."""
    if rule not in HELD_OUT_RULES:
        raise ValueError(f"held-out rule {rule!r}: expected one of {', '.join(HELD_OUT_RULES)}")
    times = archive.stored_times()
    if rule == "checkpoint" and not val_start:
        raise CheckpointError("the checkpoint names no held-out start; choose the rule 'latest'")
    if rule != "latest" and val_start:
        start = np.datetime64(val_start, "s")
        train, held = times[times < start], times[times >= start]
        if len(held) and len(train):
            return train, held, f"the checkpoint's held-out start, {format_time(start)}"
        if len(times) and (rule == "checkpoint" or not len(held)):
            where = "after every" if not len(held) else "before every"
            raise CheckpointError(
                f"{archive.path}: the checkpoint's held-out hours start at {format_time(start)}, "
                f"{where} hour of this archive ({format_time(times[0])} to "
                f"{format_time(times[-1])}), so it does not split it"
                + (": every hour may be one the model was trained on" if not len(held) else "")
                + f"; to score its latest {val_fraction:.0%} anyway, choose the held-out rule "
                "'latest'"
            )
    n_val = int(round(len(times) * val_fraction))
    if len(times) < 2 or n_val < 1 or n_val >= len(times):
        raise ArchiveError(
            f"{archive.path}: {len(times)} stored hour(s) cannot be split into training and "
            "held-out hours; evaluation needs at least 2 (and 5 for a 20 % held-out share)"
        )
    how = f"the latest {val_fraction:.0%} of the archive's hours"
    if rule == "latest":
        how += " (chosen: the held-out rule 'latest')"
    elif val_start:
        how += f" (the archive starts after the checkpoint's held-out start {val_start})"
    else:
        how += " (the checkpoint names no held-out start)"
    if rule != "latest":
        log.warning("held out %s", how)
    return times[:-n_val], times[-n_val:], how


def _fit_baselines(
    archive: Archive, train_times: np.ndarray, dim: int, pca_coarsen: int
) -> tuple[PCABaseline, ClimatologyBaseline]:
    """PCA with as many components as the code (fewer when the training hours are fewer) and
    climatology, both fit on the training hours only."""
    n_components = min(dim, len(train_times))
    if n_components < dim:
        log.warning(
            "PCA gets %d components, not %d: only %d training hours",
            n_components,
            dim,
            len(train_times),
        )
    if len(train_times) < MEMORISE_RATIO * dim:
        log.warning(
            "only %d training hours for a %d-number code (fewer than %dx): PCA of that size "
            "nearly memorises them; judge the comparison on a larger archive",
            len(train_times),
            dim,
            MEMORISE_RATIO,
        )
    log.info("fitting PCA-%d and climatology on %d training hours", n_components, len(train_times))
    pca = PCABaseline(n_components=n_components, coarsen=pca_coarsen)
    pca.fit_archive(archive, train_times, batch=32)
    clim = ClimatologyBaseline().fit_archive(archive, train_times, batch=32)
    return pca, clim


class _Scores:
    """Verification accumulators by group ("all", "regime:...", "season:...") and method."""

    def __init__(self, cell_km: float):
        self.cell_km = cell_km
        self.groups: dict[str, dict[str, Verification]] = defaultdict(dict)

    def add(self, groups: list[str], method: str, truth: np.ndarray, field: np.ndarray) -> None:
        """Score one hour once and add its sums to each of ``groups``."""
        hour = Verification(cell_km=self.cell_km).accumulate(truth, field)
        for group in groups:
            if method not in self.groups[group]:
                self.groups[group][method] = Verification(cell_km=self.cell_km)
            self.groups[group][method].merge(hour)

    def compute(self, group: str) -> dict:
        return {name: v.compute() for name, v in self.groups[group].items()}

    def by(self, prefix: str) -> dict:
        return {
            g.split(":", 1)[1]: self.compute(g) for g in sorted(self.groups) if g.startswith(prefix)
        }


def _score_held_out(
    archive: Archive,
    held: np.ndarray,
    model: EmbeddingModel,
    pca: PCABaseline,
    clim: ClimatologyBaseline,
    batch: int,
    keep: int,
) -> tuple[_Scores, dict[str, np.ndarray], list[dict]]:
    """Score every held-out hour, batch by batch: overall, by regime and by season. Returns the
    scores, each method's codes of the held-out hours and ``keep`` example hours."""
    labels = archive.manifest().set_index("time")["regime"]
    scores = _Scores(model.grid.cell_size_km)
    codes: dict[str, list[np.ndarray]] = {"autoencoder": [], "pca": []}
    examples: list[dict] = []
    for i in tqdm(range(0, len(held), batch), desc="evaluate", unit="batch"):
        times = held[i : i + batch]
        raw = archive.read_raw(times)
        truth = decode_raw(raw)  # (n, ny, nx) dBZ, NaN = no data
        z, recon = model.reconstruct_raw(raw)
        z_pca = pca.encode(np.nan_to_num(truth, nan=0.0))
        codes["autoencoder"].append(z)
        codes["pca"].append(z_pca)
        candidates = {
            "autoencoder": recon,
            "pca": pca.decode(z_pca),
            "climatology": clim.predict(len(times)),
        }
        if model.can_match:  # both probability-matched to the hour's coverage (exact in z)
            candidates["autoencoder_matched"] = model.decode(z, matched=True)
            candidates["pca_matched"] = match_fields(
                candidates["pca"], truth, model.coverage_thresholds_dbz
            )
        for j, t in enumerate(times):
            regime = labels.get(t, "") or ""
            groups = ["all", f"season:{SEASONS[int(str(t)[5:7])]}"]
            groups += [f"regime:{regime}"] if regime else []
            for name, fields in candidates.items():
                scores.add(groups, name, truth[j], fields[j])
            if len(examples) < keep:
                examples.append(
                    {"time": t, "truth": truth[j], **{k: v[j] for k, v in candidates.items()}}
                )
    return scores, {k: np.concatenate(v) for k, v in codes.items()}, examples


def _search_scores(
    archive: Archive,
    held: np.ndarray,
    held_codes: dict[str, np.ndarray],
    candidates: np.ndarray,
    model: EmbeddingModel,
    pca: PCABaseline,
    batch: int,
) -> dict:
    """Search quality (:mod:`wxembed.evaluation.search_quality`) of the held-out hours as
    queries among ``candidates`` (the training hours), for the autoencoder and PCA."""
    queries = decode_raw(archive.read_raw(held))  # (m, ny, nx)
    cand_codes: dict[str, list[np.ndarray]] = {"autoencoder": [], "pca": []}
    pixel = []
    for i in range(0, len(candidates), batch):  # one pass: codes and pixel distances
        raw = archive.read_raw(candidates[i : i + batch])
        dbz = decode_raw(raw)
        cand_codes["autoencoder"].append(model.encode_raw(raw))
        cand_codes["pca"].append(pca.encode(np.nan_to_num(dbz, nan=0.0)))
        pixel.append(pixel_distances(queries, [dbz]))

    def read(indices: np.ndarray) -> np.ndarray:
        return decode_raw(archive.read_raw(candidates[np.asarray(indices)]))

    return search_quality(
        queries,
        np.concatenate(pixel, axis=1),
        read,
        held_codes,
        {k: np.concatenate(v) for k, v in cand_codes.items()},
        cell_km=model.grid.cell_size_km,
    )


def evaluate(
    checkpoint: str | Path,
    archive_path: str | Path,
    *,
    max_hours: int | None = None,
    pca_coarsen: int = 1,
    batch: int = 8,
    keep: int = 0,
    search: bool = True,
    held_out: str = "auto",
) -> dict:
    """Every metric for the autoencoder, PCA with as many components, and climatology, on the
    held-out hours of ``archive_path``; with ``search``, also how well each code finds the
    training hours most like each held-out hour (``"search"``).

    ``checkpoint`` is a checkpoint file or a model folder (its best checkpoint). ``keep`` > 0
    also returns that many held-out hours' truth and reconstructions (for figures) under the key
    ``"examples"`` (not JSON). ``held_out`` is the rule that picks the held-out hours
    (:func:`held_out_split`); the result says which rule applied (``"split"``) and how many hours
    each baseline was fit on.
    """
    ckpt = Checkpoint(checkpoint)
    archive = Archive(archive_path)
    ckpt.check_grid(archive)  # before any long computation
    model = EmbeddingModel(ckpt, batch_size=batch)
    train_times, held, split = held_out_split(archive, ckpt.val_start, rule=held_out)
    if max_hours:
        held = held[:max_hours]
    dim = model.embedding_dim
    pca, clim = _fit_baselines(archive, train_times, dim, pca_coarsen)
    scores, held_codes, examples = _score_held_out(archive, held, model, pca, clim, batch, keep)
    result = {
        "checkpoint": str(ckpt.path),
        "archive": str(archive.path),
        "arch": ckpt.arch,
        "model_id": model.model_id,
        "embedding_dim": dim,
        "pca_components": pca.n_components,
        "train_hours": len(train_times),
        "train_first": str(train_times[0]),
        "train_last": str(train_times[-1]),
        "held_out_hours": len(held),
        "held_out_first": str(held[0]),
        "held_out_last": str(held[-1]),
        "split": split,
        "held_out_rule": held_out,
        "baseline_fit_hours": {"pca": pca.n_samples_seen_, "climatology": clim.n_samples_seen_},
        "train_hours_per_code_number": round(len(train_times) / dim, 2),
        "scores": scores.compute("all"),
        "by_regime": scores.by("regime:"),
        "by_season": scores.by("season:"),
        "grid": model.grid.to_json(),
        "compression": compression_ratio(model.grid.shape, dim),
    }
    if search:
        result["search"] = _search_scores(archive, held, held_codes, train_times, model, pca, batch)
        for method in ("autoencoder", "pca"):
            result["scores"][method].update(result["search"][method])
    result["autoencoder_beats_pca"] = beats(result["scores"], "autoencoder", "pca")
    if "autoencoder_matched" in result["scores"]:
        scores_all = result["scores"]
        result["matched_autoencoder_beats_pca"] = beats(scores_all, "autoencoder_matched", "pca")
        result["matched_autoencoder_beats_matched_pca"] = beats(
            scores_all, "autoencoder_matched", "pca_matched"
        )
    if keep:
        result["examples"] = examples
    return result
