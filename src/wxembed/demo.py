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
from pathlib import Path

import numpy as np

from wxembed.archive import Archive
from wxembed.grid import HRRR_CONUS
from wxembed.reflectivity import encode_dbz
from wxembed.times import format_time

log = logging.getLogger(__name__)

STAGES = 8


def _stage(n: int, text: str) -> float:
    log.info("stage %d/%d: %s", n, STAGES, text)
    return time.perf_counter()


def _stormiest(archive: Archive) -> np.datetime64:
    """The hour with the most pixels at or above 35 dBZ, counted on the uint8 codes."""
    times = archive.stored_times()
    strong = [int((archive.read_raw([t])[0] >= encode_dbz(35.0)).sum()) for t in times]
    return times[int(np.argmax(strong))]


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
    # the library, imported here: PyTorch and Beam are slow to import
    from wxembed.analysis import cluster_index, interpolate_hours, search_similar
    from wxembed.evaluation.evaluate import evaluate
    from wxembed.figures.plot import save_cluster_pngs, save_field_png, save_interpolation_png
    from wxembed.figures.report import build_report, check_writable
    from wxembed.figures.search import save_search_png
    from wxembed.pipelines.embed import embed_archive
    from wxembed.pipelines.ingest import describe_report, ingest_synthetic
    from wxembed.sources.synthetic import SynthConfig
    from wxembed.train import TrainConfig, train

    out = Path(out)
    report_path = check_writable(out / "report.html")
    result: dict = {"out": str(out)}
    seconds: dict[str, float] = {}
    grid = HRRR_CONUS.coarsen(coarsen)

    t0 = _stage(1, f"{hours} synthetic hours on the HRRR grid ({grid.ny} x {grid.nx})")
    archive_path = out / "synthetic.zarr"
    config = SynthConfig(seed=seed, grid=grid)
    ingest = ingest_synthetic(config, start, hours, archive_path, workers=workers)
    archive = Archive(archive_path)
    result["archive"] = describe_report(ingest)
    times = archive.stored_times()
    stormiest = _stormiest(archive)
    result["stormiest"] = format_time(stormiest)
    title = f"Synthetic composite reflectivity {format_time(stormiest)}"
    picture = save_field_png(
        out / "stormiest_hour.png", archive.read_dbz(stormiest), grid, title=title
    )
    result["picture"] = str(picture)
    seconds["synth"] = time.perf_counter() - t0

    t0 = _stage(2, f"training the fast autoencoder for {steps} steps")
    model_dir = out / "model"
    ckpt = model_dir / "checkpoints" / "last.ckpt"
    if ckpt.exists():
        log.info("a trained model is already in %s; using it", model_dir)
    else:
        train(
            TrainConfig(
                archive=str(archive_path),
                out=str(model_dir),
                arch="fast",
                num_steps=steps,
                num_checkpoints=2,
                batch_size=4,
                seed=seed,
            )
        )
    result["checkpoint"] = str(ckpt)
    seconds["train"] = time.perf_counter() - t0

    t0 = _stage(3, "embedding every hour (Beam) into Parquet shards and a DuckDB index")
    index_path = out / "embeddings.duckdb"
    embedded = embed_archive(archive_path, ckpt, index_path, workers=workers)
    result["index"] = str(index_path)
    result["embedded_hours"] = embedded["hours"]
    seconds["embed"] = time.perf_counter() - t0

    t0 = _stage(4, "searching for the hours most like the stormiest one")
    matches = search_similar(index_path, stormiest, k=4, exclude_hours=6)
    figures = [(f"The stormiest hour, {format_time(stormiest)}", result["picture"])]
    png = save_search_png(out / "search.png", index_path, matches, stormiest, archive_path)
    figures.append(("Nearest neighbours in embedding space (more than 6 h from the query)", png))
    result["search"] = [
        {"time": str(r.time), "distance": round(float(r.distance), 4)} for r in matches.itertuples()
    ]
    seconds["search"] = time.perf_counter() - t0

    t0 = _stage(5, f"clustering the embeddings into {clusters} weather regimes")
    clustered = cluster_index(
        index_path, k=clusters, archive=archive_path, checkpoint=ckpt, decode=True
    )
    clustered["pictures"] = save_cluster_pngs(out / "clusters", clustered)
    result["clusters"] = {k: clustered.get(k) for k in ("k", "sizes", "adjusted_rand_index")}
    for c, path in enumerate(clustered.get("pictures", [])):
        figures.append((f"Cluster {c}: its centroid decoded into an image", path))
    seconds["cluster"] = time.perf_counter() - t0

    t0 = _stage(6, "interpolating between two hours in embedding space")
    a, b = times[len(times) // 2], times[len(times) // 2 + 2]
    interp = interpolate_hours(archive, ckpt, a, b, keep_fields=True)
    interp_png = save_interpolation_png(out / "interpolation.png", interp, grid)
    caption = f"Midpoint of {format_time(a)} and {format_time(b)}"
    figures.append((f"{caption}: truth, decoded midpoint, pixel average", interp_png))
    result["interpolation"] = {k: interp[k] for k in ("truth_time", "winner")}
    seconds["interpolate"] = time.perf_counter() - t0

    t0 = _stage(7, "evaluating against PCA with as many numbers and climatology")
    evaluation = evaluate(ckpt, archive_path, keep=2)
    kept = {k: v for k, v in evaluation.items() if k != "examples"}
    (out / "evaluation.json").write_text(json.dumps(kept, indent=2))
    result["evaluation"] = str(out / "evaluation.json")
    result["autoencoder_beats_pca"] = evaluation["autoencoder_beats_pca"]
    seconds["evaluate"] = time.perf_counter() - t0

    t0 = _stage(8, "writing the report")
    facts = {
        "search": ", ".join(f"{m['time']} ({m['distance']})" for m in result["search"]),
        "clusters": json.dumps(result["clusters"], default=str),
    }
    path, _ = build_report(
        ckpt, archive_path, report_path, evaluation=evaluation, extra_figures=figures, facts=facts
    )
    result["report"] = str(path)
    seconds["report"] = time.perf_counter() - t0
    result["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    result["seconds"]["total"] = round(sum(seconds.values()), 1)
    return result


def describe_demo(result: dict) -> str:
    """The result of :func:`run_demo` in a few lines for people, the report's path last."""
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
        + ", ".join(hour(m["time"]) for m in result["search"]),
        "clusters": f"{clusters['k']} regimes of {', '.join(map(str, clusters['sizes']))} hours"
        + ("" if ari is None else f"; adjusted Rand index {ari:.2f} against the true ones"),
        "interpolate": f"the decoded embedding mix beats the pixel average on "
        f"{winners.count('embedding_midpoint')} of {len(winners)} scores, loses on "
        f"{winners.count('pixel_average')}",
        "evaluate": f"the autoencoder beats PCA of as many numbers on {sum(beats)} of "
        f"{len(beats)} scores ({short(result['evaluation'])})",
    }
    lines = [f"done in {result['seconds']['total']} s; everything is in {out}"]
    lines += [f"  {name:<12}{text}" for name, text in rows.items()]
    return "\n".join([*lines, f"report: {result['report']}"])


__all__ = ["STAGES", "describe_demo", "run_demo"]
