"""The README's main job, end to end on the embedded default data (synthetic storms).

synth -> train -> embed -> search -> cluster -> interpolate -> evaluate -> report, each stage a
call into the library, each with its progress shown; re-running reuses what is already there
(stored hours, a finished model, embeddings replaced rather than duplicated).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from wxembed.archive import Archive
from wxembed.reflectivity import encode_dbz
from wxembed.times import format_time

log = logging.getLogger(__name__)

STAGES = 8


def _stage(n: int, text: str) -> float:
    log.info("stage %d/%d: %s", n, STAGES, text)
    return time.perf_counter()


def run_demo(
    out: str | Path,
    *,
    hours: int = 96,
    start: str = "2024-07-01T00",
    seed: int = 0,
    steps: int = 150,
    coarsen: int = 1,
    clusters: int = 5,
) -> dict:
    """Run the whole chain in ``out``; return where everything is and the headline figures."""
    from wxembed.analysis import cluster_index, interpolate_hours, search_similar
    from wxembed.figures.plot import plot_matches, save_cluster_pngs, save_interpolation_png
    from wxembed.pipelines.embed import embed_archive
    from wxembed.figures.plot import save_field_png
    from wxembed.figures.report import build_report, check_writable
    from wxembed.grid import HRRR_CONUS
    from wxembed.pipelines.ingest import describe_report, ingest_synthetic
    from wxembed.sources.synthetic import SynthConfig
    from wxembed.train import TrainConfig, train

    out = Path(out)
    report_path = check_writable(out / "report.html")
    result: dict = {}
    seconds: dict[str, float] = {}

    t0 = _stage(1, f"{hours} synthetic hours on the HRRR grid")
    grid = HRRR_CONUS.coarsen(coarsen)
    archive_path = out / "synthetic.zarr"
    ingest = ingest_synthetic(SynthConfig(seed=seed, grid=grid), start, hours, archive_path)
    archive = Archive(archive_path)
    result["archive"] = describe_report(ingest)
    times = archive.stored_times()
    # the stormiest hour: the most pixels at or above 35 dBZ, counted on the uint8 codes
    strong = np.array([int((archive.read_raw([t])[0] >= encode_dbz(35.0)).sum()) for t in times])
    stormiest = times[int(np.argmax(strong))]
    result["picture"] = str(save_field_png(out / "stormiest_hour.png", archive.read_dbz(stormiest), grid,
                                           title=f"Synthetic composite reflectivity {format_time(stormiest)}"))  # fmt: skip
    seconds["synth"] = time.perf_counter() - t0

    t0 = _stage(2, f"training the fast autoencoder for {steps} steps on the CPU")
    model_dir = out / "model"
    ckpt = model_dir / "checkpoints" / "last.ckpt"
    if ckpt.exists():
        log.info("a trained model is already in %s; using it", model_dir)
    else:
        train(TrainConfig(archive=str(archive_path), out=str(model_dir), arch="fast", num_steps=steps,
                          num_checkpoints=2, batch_size=4, seed=seed))  # fmt: skip
    result["checkpoint"] = str(ckpt)
    seconds["train"] = time.perf_counter() - t0

    t0 = _stage(3, "embedding every hour (Beam) into Parquet shards and a DuckDB index")
    index_path = out / "embeddings.duckdb"
    embedded = embed_archive(archive_path, ckpt, index_path)
    result["index"] = str(index_path)
    result["embedded_hours"] = embedded["hours"]
    seconds["embed"] = time.perf_counter() - t0

    t0 = _stage(4, "searching for the hours most like the stormiest one")
    matches = search_similar(index_path, stormiest, k=4, exclude_hours=6)
    figures = [(f"The stormiest hour, {format_time(stormiest)}", result["picture"])]
    png = plot_matches(out / "search.png", archive, matches, query_dbz=archive.read_dbz(stormiest),
                       query_title=f"query {format_time(stormiest)}")  # fmt: skip
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
    save_interpolation_png(out / "interpolation.png", interp, grid)
    figures.append((f"Midpoint of {format_time(a)} and {format_time(b)}: truth, decoded midpoint, pixel average",
                    out / "interpolation.png"))  # fmt: skip
    result["interpolation"] = {k: interp[k] for k in ("truth_time", "winner")}
    seconds["interpolate"] = time.perf_counter() - t0

    t0 = _stage(7, "evaluating against PCA with as many numbers and climatology")
    from wxembed.evaluation.evaluate import evaluate

    evaluation = evaluate(ckpt, archive_path, keep=2)
    (out / "evaluation.json").write_text(json.dumps({k: v for k, v in evaluation.items() if k != "examples"},
                                                    indent=2))  # fmt: skip
    result["evaluation"] = str(out / "evaluation.json")
    result["autoencoder_beats_pca"] = evaluation["autoencoder_beats_pca"]
    seconds["evaluate"] = time.perf_counter() - t0

    t0 = _stage(8, "writing the report")
    facts = {"search": ", ".join(f"{m['time']} ({m['distance']})" for m in result["search"]),
             "clusters": json.dumps(result["clusters"], default=str)}  # fmt: skip
    path, _ = build_report(
        ckpt, archive_path, report_path, evaluation=evaluation, extra_figures=figures, facts=facts
    )
    result["report"] = str(path)
    seconds["report"] = time.perf_counter() - t0
    result["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    result["seconds"]["total"] = round(sum(seconds.values()), 1)
    return result
