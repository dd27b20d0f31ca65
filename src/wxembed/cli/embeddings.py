"""Using the embeddings: embed, search, interpolate, cluster, encode, decode.

Each is a few lines over :mod:`wxembed.pipelines.embed`, :mod:`wxembed.analysis` and
:mod:`wxembed.figures`; :func:`register` adds them to a Typer app. Every command here loads
PyTorch or DuckDB, so each imports the library when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wxembed.cli import console
from wxembed.cli.options import (
    CHECKPOINT_HELP,
    AsJson,
    BeamArgs,
    CheckpointOption,
    DaskAddress,
    Runner,
    Workers,
    beam_options,
    checked_time,
    parse_duration_option,
)
from wxembed.errors import WxembedError

DEFAULT_CHECKPOINT = Path("model/checkpoints/last.ckpt")
"""The checkpoint ``encode`` and ``decode`` use unless given one."""


def embed(
    archive: Annotated[Path, typer.Argument(help="Archive whose stored hours are embedded.")],
    checkpoint: CheckpointOption,
    index: Annotated[
        Path, typer.Option(help="DuckDB index to load the embeddings into (created if absent).")
    ] = Path("embeddings.duckdb"),
    shards: Annotated[
        Path | None,
        typer.Option(help="Folder for the Parquet shards (default: INDEX-shards/ beside it)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Hours per forward pass.")] = 8,
    workers: Workers = 2,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    beam_args: BeamArgs = None,
    runner: Runner = None,
    dask_address: DaskAddress = None,
) -> None:
    """Embed every stored hour of an archive (Beam pipeline) into Parquet shards and an index.

    Re-running with the same checkpoint replaces that model's rows; several models can
    share one index.
    """
    from wxembed.pipelines.embed import embed_archive  # heavy: Beam, PyTorch

    with console.beam_worker_output():
        report = embed_archive(
            archive,
            checkpoint,
            index,
            shards_dir=shards,
            batch_size=batch_size,
            beam_args=beam_options(beam_args, runner, dask_address),
            workers=workers,
            device=device,
        )
    report["shards"] = (
        f"{len(report['shards'])} files in {str(report['shards'][0]).rsplit('/', 1)[0]}"
    )
    console.echo_json(report)


def search(
    index: Annotated[Path, typer.Argument(help="Embedding index (from wxembed embed).")],
    query: Annotated[
        str,
        typer.Argument(
            help="An hour in the index (2024-07-01T18), an embedding (.json, .npy), a dBZ "
            "array (.npy) or a field file of any kind ingest reads (GRIB2, ODIM HDF5, NetCDF, "
            "PGM)."
        ),
    ],
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="How many hours.")] = 5,
    model: Annotated[
        str | None, typer.Option(help="Model id (needed when the index holds several).")
    ] = None,
    metric: Annotated[str, typer.Option(help="euclidean or cosine.")] = "euclidean",
    exclude: Annotated[
        str | None,
        typer.Option(
            help="Leave out hours this close to the query's time: 30min, 2h, 1d (default 1d; "
            "0 leaves out the query hour alone)."
        ),
    ] = None,
    exclude_hours: Annotated[
        float | None,
        typer.Option(help="The same window in hours (--exclude takes minutes too)."),
    ] = None,
    no_exclusion: Annotated[
        bool, typer.Option("--no-exclusion", help="Leave out nothing, not even the query hour.")
    ] = False,
    month: Annotated[
        list[int] | None, typer.Option(min=1, max=12, help="Only this month, repeatable.")
    ] = None,
    hour: Annotated[
        list[int] | None,
        typer.Option(min=0, max=23, help="Only this UTC hour of day, repeatable."),
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="Only hours from this time (to the minute).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Only hours before this time (to the minute).")
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help=f"{CHECKPOINT_HELP} Embeds a field query (default: the index's)."),
    ] = None,
    as_json: AsJson = False,
    png: Annotated[
        Path | None, typer.Option(help="Also draw the query and its matches into this PNG.")
    ] = None,
    archive: Annotated[
        Path | None,
        typer.Option(help="Archive to draw the matches from (default: the index's)."),
    ] = None,
    coverage_weight: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="How much the amount of echo counts (a model with coverage numbers): 0 ranks "
            "by pattern alone, 1 finds hours with as much echo first (default: as trained).",
        ),
    ] = None,
) -> None:
    """The k hours most similar to a query (Euclidean distance by default, as the original).

    A day on each side of the query's time is left out by default, to find other days; for a
    sequence of frames minutes apart, pass a shorter --exclude (e.g. --exclude 10min).
    """
    from wxembed.analysis import search_similar  # heavy: PyTorch, DuckDB
    from wxembed.figures.search import save_search_png  # heavy: matplotlib

    if exclude is not None and exclude_hours is not None:
        raise WxembedError("give --exclude or --exclude-hours, not both")
    window = parse_duration_option(
        exclude if exclude_hours is None else str(exclude_hours), "--exclude", default_unit="h"
    )
    matches = search_similar(
        index,
        query,
        k=k,
        model_id=model,
        metric=metric,
        exclude=None if no_exclusion else (86400 if window is None else window),
        exclude_hours=None,
        months=month,
        hours=hour,
        start=checked_time(start, "--start"),
        end=checked_time(end, "--end"),
        checkpoint=checkpoint,
        coverage_weight=coverage_weight,
    )
    picture = save_search_png(png, index, matches, query, archive) if png else None
    if as_json:
        rows = [
            {"rank": int(r.rank), "time": r.time.isoformat(), "distance": float(r.distance)}
            for r in matches.itertuples()
        ]
        console.echo_json({**matches.attrs, "matches": rows, "png": picture})
        return
    attrs = matches.attrs
    typer.echo(f"query: {attrs['query']}  model: {attrs['model_id']}  metric: {metric}")
    typer.echo(matches.to_string(index=False))
    if "note" in attrs:
        typer.echo(f"note: {attrs['note']}", err=True)
    if picture:
        typer.echo(f"wrote {picture}")


def interpolate(
    archive: Annotated[Path, typer.Argument(help="Archive holding the hours.")],
    checkpoint: CheckpointOption,
    start: Annotated[
        str | None, typer.Option(help="First hour, or a field file (any kind ingest reads).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Second hour, or a field file (any kind ingest reads).")
    ] = None,
    weight: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="0 = start, 1 = end; 0.5 the midpoint.")
    ] = 0.5,
    every_pair: Annotated[
        bool,
        typer.Option(
            "--every-pair", help="Score every pair of hours --gap apart instead of one pair."
        ),
    ] = False,
    gap: Annotated[
        str,
        typer.Option(help="Between a pair (--every-pair): 2h, 10min; a bare number is hours."),
    ] = "2h",
    max_pairs: Annotated[
        int | None, typer.Option(min=1, help="At most this many pairs (--every-pair).")
    ] = None,
    png: Annotated[Path | None, typer.Option(help="Picture of one pair's result.")] = None,
    as_json: AsJson = False,
) -> None:
    """Decode a mix of two hours' embeddings; score it against the real hour and the pixel average.

    The real hour is the one at --weight between --start and --end; the pixel average mixes
    the two hours' dBZ with the same weights. Scores are those of wxembed.metrics.
    """
    from wxembed.analysis import interpolate_hours, interpolation_skill  # heavy: PyTorch
    from wxembed.archive import Archive
    from wxembed.figures.plot import save_interpolation_png  # heavy: matplotlib

    if every_pair:
        seconds = parse_duration_option(gap, "--gap", default_unit="h")
        report = interpolation_skill(
            archive, checkpoint, gap=seconds, weight=weight, max_pairs=max_pairs
        )
        what = f"{report['pairs']} pairs {report['gap']} apart"
    else:
        if start is None or end is None:
            raise typer.BadParameter("give --start and --end, or --every-pair")
        start, end = (_time_or_file(v, o) for v, o in ((start, "--start"), (end, "--end")))
        report = interpolate_hours(
            archive, checkpoint, start, end, weight=weight, keep_fields=png is not None
        )
        what = f"{report['start']} .. {report['end']}, truth {report['truth_time']}"
        if png is not None:
            grid = Archive(archive).grid  # the model's: interpolate_hours checked it
            report["png"] = str(save_interpolation_png(png, report, grid))
            del report["fields"]
    if as_json:
        console.echo_json(report)
        return
    typer.echo(f"{what}, weight {weight}, model {report['model_id']}")
    typer.echo(score_table(report["scores"]))
    typer.echo("better: " + ", ".join(f"{k} {v}" for k, v in report["winner"].items()))
    if "png" in report:
        typer.echo(f"wrote {report['png']}")


def _time_or_file(value: str, option: str) -> str:
    """An option that takes a time or a field file: the file when one is there, else a time."""
    return value if Path(value).is_file() else checked_time(value, option)


def score_table(scores: dict[str, dict]) -> str:
    """The headline scores of each method, one row per method."""
    from wxembed.evaluation.metrics import HEADLINE_SCORES  # heavy: SciPy, scikit-image

    width = max(len(name) for name in scores)
    lines = [" " * width + "  " + "  ".join(f"{s:>11}" for s in HEADLINE_SCORES)]
    for name, row in scores.items():
        values = (float(row.get(s, float("nan"))) for s in HEADLINE_SCORES)
        lines.append(f"{name:>{width}}  " + "  ".join(f"{v:>11.4g}" for v in values))
    return "\n".join(lines)


def cluster(
    index: Annotated[Path, typer.Argument(help="Embedding index.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Number of clusters.")],
    model: Annotated[str | None, typer.Option(help="Model id (when several).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of k-means++.")] = 0,
    archive: Annotated[
        Path | None,
        typer.Option(help="Archive with regime labels (default: the index's, if there)."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help=f"{CHECKPOINT_HELP} Decodes the centroids (default: the index's)."),
    ] = None,
    png_dir: Annotated[
        Path | None, typer.Option(help="Write each decoded centroid as cluster_NN.png here.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """k-means (k-means++) on an index's embeddings; assignments stored in the index."""
    from wxembed.analysis import cluster_index  # heavy: PyTorch, DuckDB
    from wxembed.figures.plot import save_cluster_pngs  # heavy: matplotlib

    report = cluster_index(
        index,
        k=k,
        model_id=model,
        seed=seed,
        archive=archive,
        checkpoint=checkpoint,
        decode=png_dir is not None,
    )
    if png_dir is not None:
        report["pictures"] = [str(p) for p in save_cluster_pngs(png_dir, report)]
        del report["centroid_fields"], report["grid"]
    if as_json:
        console.echo_json(report)
        return
    typer.echo(f"model {report['model_id']}: {report['hours']} hours in {report['k']} clusters")
    for c, (size, near) in enumerate(zip(report["sizes"], report["nearest_hours"], strict=True)):
        typer.echo(f"  cluster {c}: {size} hours, nearest the centroid {near}")
    typer.echo("hours by month:\n" + _counts_table(report["by_month"], drop_empty=True))
    typer.echo("hours by UTC hour of day:\n" + _counts_table(report["by_hour"]))
    if report["adjusted_rand_index"] is not None:
        typer.echo(f"adjusted Rand index vs regime labels: {report['adjusted_rand_index']:.3f}")
    for p in report.get("pictures", []):
        typer.echo(f"wrote {p}")


def _counts_table(counts: dict, drop_empty: bool = False) -> str:
    """Cluster x month (or hour) counts as a text table, empty columns left out if asked."""
    import pandas as pd  # heavy: kept out of `wxembed --help`

    table = pd.DataFrame(counts).T
    return (table.loc[:, table.sum() > 0] if drop_empty else table).to_string()


def encode(
    source: Annotated[
        str | None,
        typer.Argument(
            help="A field file of any kind ingest reads (GRIB2, ODIM HDF5, NetCDF, PGM) or a "
            ".npy dBZ array (or use --archive and --time)."
        ),
    ] = None,
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    archive: Annotated[Path | None, typer.Option(help="Archive to take the hour from.")] = None,
    time: Annotated[str | None, typer.Option(help="Hour of --archive to encode.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the embedding here (.json or .npy).")
    ] = None,
    variable: Annotated[
        str | None, typer.Option(help="NetCDF: the variable to read (default: the one in dBZ).")
    ] = None,
) -> None:
    """A field (a file, an array or an archive hour) to its embedding; prints the compression.

    A file on the grid the model's archive was cut and coarsened from (ingest --bbox
    --coarsen) is cut and coarsened the same way.
    """
    from wxembed.analysis import encode_field  # heavy: PyTorch

    emb = encode_field(
        source,
        checkpoint=checkpoint,
        archive=archive,
        time=checked_time(time, "--time"),
        variable=variable,
    )
    doc = emb.to_dict()
    if out is None:
        console.echo_json(doc)
        return
    emb.save(out)
    typer.echo(
        f"wrote {out}: {emb.embedding_dim} numbers for {doc['pixels']} pixels "
        f"(compression {doc['compression_ratio']}x in values, {doc['bytes_ratio']}x in bytes "
        "against the uint8 archive)"
    )


def decode(
    embedding: Annotated[Path, typer.Argument(help="Embedding file (.json or .npy).")],
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    out: Annotated[Path, typer.Option(help="Field to write: .nc (NetCDF), .grib2 or .png.")] = Path(
        "decoded.nc"
    ),
    time: Annotated[
        str | None, typer.Option(help="Valid time to write (default: the embedding's).")
    ] = None,
    matched: Annotated[
        bool,
        typer.Option(
            "--matched",
            help="Restore the echo coverage the embedding records (probability matching): the "
            "right echo area and sharper cells, at a larger squared error.",
        ),
    ] = False,
) -> None:
    """An embedding back to a field on the model's grid, as NetCDF, GRIB2 or PNG."""
    from wxembed.analysis import decode_embedding, load_embedding  # heavy: PyTorch
    from wxembed.model.encoder import compression_ratio

    emb = load_embedding(embedding)
    when = checked_time(time, "--time")
    field = decode_embedding(emb, checkpoint=checkpoint, out=out, time=when, matched=matched)
    c = compression_ratio(field.grid.shape, emb.embedding_dim)
    typer.echo(
        f"wrote {out}: {c['pixels']} pixels from {c['embedding_dim']} numbers "
        f"(compression {c['compression_ratio']}x in values, {c['bytes_ratio']}x in bytes)"
    )


def register(app: typer.Typer) -> None:
    """Add embed, search, interpolate, cluster, encode and decode to ``app``."""
    console.add_commands(app, embed, search, interpolate, cluster, encode, decode)


__all__ = [
    "cluster",
    "decode",
    "embed",
    "encode",
    "interpolate",
    "register",
    "score_table",
    "search",
]
