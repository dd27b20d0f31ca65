"""The README's main job, end to end on the embedded default data (synthetic storms).

synth -> train -> embed -> search -> cluster -> interpolate -> evaluate -> report, each stage a
call into the library, announced by one log line ("stage N/8: ...") and shown by its progress
bar; re-running reuses what is already there (stored hours, a finished model, embeddings
replaced rather than duplicated). :func:`describe_demo` sums the result up in a few lines.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wxembed.analysis import cluster_index, interpolate_hours, search_similar
from wxembed.archive import Archive
from wxembed.evaluation.evaluate import evaluate
from wxembed.evaluation.metrics import strict_json
from wxembed.figures.plot import save_cluster_pngs, save_field_png, save_interpolation_png
from wxembed.figures.report import build_report, check_writable
from wxembed.figures.search import save_search_png
from wxembed.grid import HRRR_CONUS, Grid
from wxembed.model.checkpoint import resolve_checkpoint
from wxembed.pipelines.embed import embed_archive
from wxembed.pipelines.ingest import describe_report, ingest_synthetic
from wxembed.reflectivity import NODATA, encode_dbz
from wxembed.sources.synthetic import SynthConfig
from wxembed.times import format_time
from wxembed.train import TrainConfig, train

log = logging.getLogger(__name__)

STAGES = 8

SEARCH_COVERAGE_WEIGHT = 1.0
"""How much the amount of echo counts in the main job's search for hours like the stormiest
(:func:`wxembed.analysis.search_similar`): by pixel distance alone, the nearest hours to a
stormy hour are calmer hours (fewer misplaced cells); with the coverage numbers weighed this
much, they are hours with about as much weather. The job reports both."""


def _stormiest(archive: Archive) -> np.datetime64:
    """The hour with the most pixels at or above 35 dBZ, counted on the uint8 codes."""
    times = archive.stored_times()
    strong = [int((archive.read_raw([t])[0] >= encode_dbz(35.0)).sum()) for t in times]
    return times[int(np.argmax(strong))]


def echo_area_kept(archive: Archive, query, matches) -> dict:
    """How much of the query hour's echo area (pixels at 20 dBZ or more) its matches hold:
    each match's area over the query's, and their mean."""

    def echo(t) -> int:
        raw = archive.read_raw([t])[0]
        return int(((raw >= encode_dbz(20.0)) & (raw != NODATA)).sum())

    q = echo(query)
    ratios = [echo(t) / q if q else float("nan") for t in matches]
    return {
        "query_pixels": q,
        "ratios": [round(r, 3) for r in ratios],
        "mean_ratio": round(float(np.mean(ratios)), 3) if ratios else None,
    }


@dataclass
class _Job:
    """The main job's folder, settings and what its stages have made so far."""

    out: Path
    grid: Grid
    workers: int
    result: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    stormiest: np.datetime64 | None = None

    @property
    def archive_path(self) -> Path:
        return self.out / "synthetic.zarr"

    @property
    def model(self) -> Path:
        return self.out / "model"  # a model folder: its best checkpoint (lowest validation loss)

    @property
    def index_path(self) -> Path:
        return self.out / "embeddings.duckdb"

    def timed(self, name: str, n: int, text: str, stage, *args) -> None:
        log.info("stage %d/%d: %s", n, STAGES, text)
        t0 = time.perf_counter()
        stage(self, *args)
        self.seconds[name] = time.perf_counter() - t0


def _synth(job: _Job, hours: int, start: str, seed: int) -> None:
    config = SynthConfig(seed=seed, grid=job.grid)
    ingest = ingest_synthetic(config, start, hours, job.archive_path, workers=job.workers)
    archive = Archive(job.archive_path)
    job.result["archive"] = describe_report(ingest)
    stormiest = _stormiest(archive)
    job.stormiest = stormiest
    job.result["stormiest"] = format_time(stormiest)
    title = f"Synthetic composite reflectivity {format_time(stormiest)}"
    dbz = archive.read_dbz(stormiest)
    picture = save_field_png(job.out / "stormiest_hour.png", dbz, job.grid, title=title)
    job.result["picture"] = str(picture)
    job.figures.append((f"The stormiest hour, {format_time(stormiest)}", picture))


def _train(job: _Job, steps: int, seed: int) -> None:
    if (job.model / "checkpoints" / "last.ckpt").exists():
        log.info("a trained model is already in %s; using it", job.model)
    else:
        config = TrainConfig(
            archive=str(job.archive_path),
            out=str(job.model),
            arch="fast",
            num_steps=steps,
            num_checkpoints=2,
            batch_size=4,
            seed=seed,
        )
        train(config)
    job.result["checkpoint"] = str(resolve_checkpoint(job.model))


def _embed(job: _Job) -> None:
    embedded = embed_archive(job.archive_path, job.model, job.index_path, workers=job.workers)
    job.result["index"] = str(job.index_path)
    job.result["embedded_hours"] = embedded["hours"]


def _search(job: _Job) -> None:
    archive = Archive(job.archive_path)
    stormiest = job.stormiest
    weight = SEARCH_COVERAGE_WEIGHT
    matches = search_similar(
        job.index_path, stormiest, k=4, exclude_hours=6, coverage_weight=weight
    )
    plain = search_similar(job.index_path, stormiest, k=4, exclude_hours=6)
    png = save_search_png(
        job.out / "search.png", job.index_path, matches, stormiest, job.archive_path
    )
    caption = (
        "Nearest neighbours in embedding space (more than 6 h from the query; the amount of "
        f"echo weighed {weight:g})"
    )
    job.figures.append((caption, png))
    job.result["search"] = [
        {"time": str(r.time), "distance": round(float(r.distance), 4)} for r in matches.itertuples()
    ]
    job.result["search_echo_area"] = echo_area_kept(archive, stormiest, matches["time"].values)
    job.result["search_coverage_weight"] = weight
    job.result["search_echo_area_unweighted"] = echo_area_kept(
        archive, stormiest, plain["time"].values
    )


def _cluster(job: _Job, k: int) -> None:
    clustered = cluster_index(
        job.index_path, k=k, archive=job.archive_path, checkpoint=job.model, decode=True
    )
    pictures = save_cluster_pngs(job.out / "clusters", clustered)
    job.result["clusters"] = {n: clustered.get(n) for n in ("k", "sizes", "adjusted_rand_index")}
    for c, path in enumerate(pictures):
        job.figures.append((f"Cluster {c}: its centroid decoded into an image", path))


def _interpolate(job: _Job) -> None:
    times = Archive(job.archive_path).stored_times()
    a, b = times[len(times) // 2], times[len(times) // 2 + 2]
    interp = interpolate_hours(job.archive_path, job.model, a, b, keep_fields=True)
    png = save_interpolation_png(job.out / "interpolation.png", interp, job.grid)
    caption = f"Midpoint of {format_time(a)} and {format_time(b)}"
    job.figures.append((f"{caption}: truth, decoded midpoint, pixel average", png))
    job.result["interpolation"] = {k: interp[k] for k in ("truth_time", "winner")}


def _evaluate(job: _Job) -> None:
    evaluation = evaluate(job.model, job.archive_path, keep=2)
    kept = {k: v for k, v in evaluation.items() if k != "examples"}
    (job.out / "evaluation.json").write_text(strict_json(kept))
    job.result["evaluation"] = str(job.out / "evaluation.json")
    job.result["autoencoder_beats_pca"] = evaluation["autoencoder_beats_pca"]
    for key in ("matched_autoencoder_beats_pca", "matched_autoencoder_beats_matched_pca"):
        if key in evaluation:
            job.result[key] = evaluation[key]
    job.result["_evaluation"] = evaluation


def _report(job: _Job, report_path: Path) -> None:
    facts = {
        "search": ", ".join(f"{m['time']} ({m['distance']})" for m in job.result["search"]),
        "search echo area": f"the matches hold {job.result['search_echo_area']['ratios']} of "
        "the query's echo area (20 dBZ or more); searching by pattern alone (the coverage as "
        f"trained), {job.result['search_echo_area_unweighted']['ratios']}",
        "clusters": json.dumps(job.result["clusters"], default=str),
    }
    evaluation = job.result.pop("_evaluation")
    path, _ = build_report(
        job.model,
        job.archive_path,
        report_path,
        evaluation=evaluation,
        extra_figures=job.figures,
        facts=facts,
    )
    job.result["report"] = str(path)


def run_demo(
    out: str | Path,
    *,
    hours: int = 96,
    start: str = "2024-07-01T00",
    seed: int = 0,
    steps: int = 150,
    coarsen: int = 1,
    clusters: int = 5,
    workers: int = 2,
) -> dict:
    """Run the whole chain in ``out``; return where everything is and the headline figures.
    ``workers`` is the number of local Beam worker processes (1: in the calling process)."""
    out = Path(out)
    report_path = check_writable(out / "report.html")
    job = _Job(out, HRRR_CONUS.coarsen(coarsen), workers, result={"out": str(out)})
    grid = job.grid
    text = f"{hours} synthetic hours on the HRRR grid ({grid.ny} x {grid.nx})"
    job.timed("synth", 1, text, _synth, hours, start, seed)
    job.timed("train", 2, f"training the fast autoencoder for {steps} steps", _train, steps, seed)
    text = "embedding every hour (Beam) into Parquet shards and a DuckDB index"
    job.timed("embed", 3, text, _embed)
    job.timed("search", 4, "searching for the hours most like the stormiest one", _search)
    text = f"clustering the embeddings into {clusters} weather regimes"
    job.timed("cluster", 5, text, _cluster, clusters)
    text = "interpolating between two hours in embedding space"
    job.timed("interpolate", 6, text, _interpolate)
    text = "evaluating against PCA with as many numbers and climatology"
    job.timed("evaluate", 7, text, _evaluate)
    job.timed("report", 8, "writing the report", _report, report_path)
    job.result["seconds"] = {k: round(v, 1) for k, v in job.seconds.items()}
    job.result["seconds"]["total"] = round(sum(job.seconds.values()), 1)
    return job.result


def describe_demo(result: dict) -> str:
    """The result of :func:`run_demo` in a few lines for people, the report's path and the
    command that explores the folder (``wxembed serve``) last."""
    out = Path(result["out"])

    def short(path: str) -> str:  # a path inside out, named from there
        return str(Path(path).relative_to(out)) if Path(path).is_relative_to(out) else path

    def hour(text: str) -> str:  # "2024-07-01 13:00:00Z" -> "07-01 13:00"
        return text[5:16]

    clusters, ari = result["clusters"], result["clusters"]["adjusted_rand_index"]
    winners = list(result["interpolation"]["winner"].values())
    beats = [v for v in result["autoencoder_beats_pca"].values() if v is not None]
    counts = result["archive"].rpartition(": ")[2]
    rows = {
        "archive": f"{short(str(out / 'synthetic.zarr'))}: {counts}",
        "model": short(result["checkpoint"]),
        "index": f"{short(result['index'])}: {result['embedded_hours']} hours",
        "search": f"like the stormiest hour ({hour(result['stormiest'])}): "
        + ", ".join(hour(m["time"]) for m in result["search"])
        + f"; they hold {result['search_echo_area']['mean_ratio']:.0%} of its echo area"
        + (
            f" ({result['search_echo_area_unweighted']['mean_ratio']:.0%} by pattern alone)"
            if "search_echo_area_unweighted" in result
            else ""
        ),
        "clusters": f"{clusters['k']} regimes of {', '.join(map(str, clusters['sizes']))} hours"
        + ("" if ari is None else f"; adjusted Rand index {ari:.2f} against the true ones"),
        "interpolate": f"the decoded embedding mix beats the pixel average on "
        f"{winners.count('embedding_midpoint')} of {len(winners)} scores, loses on "
        f"{winners.count('pixel_average')}",
        "evaluate": f"the autoencoder beats PCA of as many numbers on {sum(beats)} of "
        f"{len(beats)} scores ({short(result['evaluation'])})",
    }
    matched = result.get("matched_autoencoder_beats_matched_pca")
    if matched:
        won = [v for v in matched.values() if v is not None]
        rows["evaluate"] += (
            f"; probability-matched (the hour's echo coverage restored), "
            f"{sum(won)} of {len(won)} against PCA matched the same way"
        )
    lines = [f"done in {result['seconds']['total']} s; everything is in {out}"]
    lines += [f"  {name:<12}{text}" for name, text in rows.items()]
    return "\n".join([*lines, f"report: {result['report']}", f"explore: wxembed serve {out}"])


__all__ = ["STAGES", "describe_demo", "run_demo"]
