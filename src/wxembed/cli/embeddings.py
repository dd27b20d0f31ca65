"""The embedding sub-commands of ``wxembed``: embed, search, interpolate, cluster, encode, decode.

Each is a thin wrapper around :mod:`wxembed.pipelines.embed` and :mod:`wxembed.analysis`;
:func:`register` adds them to the Typer app of :mod:`wxembed.cli`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from wxembed.errors import WxembedError

_SCORES = ("mse", "mae", "csi_20", "csi_35", "csi_45", "fss_35_27km", "ssim")


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2)


def _time(value: str | None, option: str) -> str | None:
    """Check that a time option parses; the library gets the string."""
    if value is None:
        return None
    from wxembed.times import to_seconds

    try:
        to_seconds(value)
    except (ValueError, TypeError):
        raise typer.BadParameter(
            f"{value!r} is not a time (e.g. 2024-07-01T18)", param_hint=option
        ) from None
    return value


def _json_default(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _dumps(obj) -> str:
    """JSON with NaN as null (strict JSON readers refuse NaN)."""

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(obj), indent=2, default=_json_default)


def _score_table(scores: dict[str, dict]) -> str:
    names = list(scores)
    width = max(len(n) for n in names)
    lines = [f"{'':>{width}}  " + "  ".join(f"{s:>11}" for s in _SCORES)]
    for name in names:
        row = scores[name]
        lines.append(
            f"{name:>{width}}  "
            + "  ".join(f"{float(row.get(s, float('nan'))):>11.4g}" for s in _SCORES)
        )
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add the embedding commands to ``app``."""

    @app.command()
    def embed(
        archive: Annotated[Path, typer.Argument(help="Archive whose stored hours are embedded.")],
        checkpoint: Annotated[Path, typer.Option(help="Model checkpoint (from wxembed train).")],
        index: Annotated[
            Path, typer.Option(help="DuckDB index to load the embeddings into (created if absent).")
        ] = Path("embeddings.duckdb"),
        shards: Annotated[
            Path | None,
            typer.Option(help="Folder for the Parquet shards (default: INDEX-shards/ beside it)."),
        ] = None,
        batch_size: Annotated[int, typer.Option(min=1, help="Hours per forward pass.")] = 8,
        workers: Annotated[
            int, typer.Option(min=1, help="Local worker processes (DirectRunner).")
        ] = 2,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
        beam_args: Annotated[
            list[str] | None,
            typer.Option(
                "--beam",
                help="An Apache Beam pipeline option, repeatable: --beam=--runner=FlinkRunner",
            ),
        ] = None,
    ) -> None:
        """Embed every stored hour of an archive (Beam pipeline) into Parquet shards and an index.

        Re-running with the same checkpoint replaces that model's rows; several models can
        share one index.
        """
        from wxembed.pipelines.embed import embed_archive

        try:
            report = embed_archive(
                archive,
                checkpoint,
                index,
                shards_dir=shards,
                batch_size=batch_size,
                beam_args=beam_args,
                workers=workers,
                device=device,
            )
        except WxembedError as exc:
            raise _fail(exc) from None
        report["shards"] = f"{len(report['shards'])} files in {Path(report['shards'][0]).parent}"
        typer.echo(_dumps(report))

    @app.command()
    def search(
        index: Annotated[Path, typer.Argument(help="Embedding index (from wxembed embed).")],
        query: Annotated[
            str,
            typer.Argument(
                help="An hour in the index (2024-07-01T18), an embedding (.json, .npy), a dBZ "
                "array (.npy) or a GRIB2 file."
            ),
        ],
        k: Annotated[int, typer.Option("--k", "-k", min=1, help="How many hours.")] = 5,
        model: Annotated[
            str | None, typer.Option(help="Model id (needed when the index holds several).")
        ] = None,
        metric: Annotated[str, typer.Option(help="euclidean or cosine.")] = "euclidean",
        exclude_hours: Annotated[
            float,
            typer.Option(min=0, help="Leave out hours this close to the query's time (0: itself)."),
        ] = 24.0,
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
        start: Annotated[str | None, typer.Option(help="Only hours from this time.")] = None,
        end: Annotated[str | None, typer.Option(help="Only hours before this time.")] = None,
        checkpoint: Annotated[
            Path | None,
            typer.Option(help="Checkpoint to embed a field query (default: the index's)."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
        png: Annotated[
            Path | None, typer.Option(help="Also draw the query and its matches into this PNG.")
        ] = None,
        archive: Annotated[
            Path | None,
            typer.Option(help="Archive to draw the matches from (default: the index's)."),
        ] = None,
    ) -> None:
        """The k hours most similar to a query (Euclidean distance by default, as the original)."""
        from wxembed.analysis import search_similar

        start, end = _time(start, "--start"), _time(end, "--end")
        try:
            matches = search_similar(
                index,
                query,
                k=k,
                model_id=model,
                metric=metric,
                exclude_hours=None if no_exclusion else exclude_hours,
                months=month,
                hours=hour,
                start=start,
                end=end,
                checkpoint=checkpoint,
            )
            picture = _draw_matches(png, index, matches, query, archive) if png else None
        except WxembedError as exc:
            raise _fail(exc) from None
        if as_json:
            rows = [
                {
                    "rank": int(r.rank),
                    "time": str(r.time.isoformat()),
                    "distance": float(r.distance),
                }
                for r in matches.itertuples()
            ]
            typer.echo(_dumps({**matches.attrs, "matches": rows, "png": picture}))
            return
        typer.echo(
            f"query: {matches.attrs['query']}  model: {matches.attrs['model_id']}  metric: {metric}"
        )
        typer.echo(matches.to_string(index=False))
        if picture:
            typer.echo(f"wrote {picture}")

    @app.command()
    def interpolate(
        archive: Annotated[Path, typer.Argument(help="Archive holding the hours.")],
        checkpoint: Annotated[Path, typer.Option(help="Model checkpoint.")],
        start: Annotated[str | None, typer.Option(help="First hour.")] = None,
        end: Annotated[str | None, typer.Option(help="Second hour.")] = None,
        weight: Annotated[
            float, typer.Option(min=0.0, max=1.0, help="0 = start, 1 = end; 0.5 the midpoint.")
        ] = 0.5,
        every_pair: Annotated[
            bool,
            typer.Option(
                "--every-pair", help="Score every pair of hours --gap apart instead of one pair."
            ),
        ] = False,
        gap: Annotated[int, typer.Option(min=1, help="Hours between a pair (--every-pair).")] = 2,
        max_pairs: Annotated[
            int | None, typer.Option(min=1, help="At most this many pairs (--every-pair).")
        ] = None,
        png: Annotated[Path | None, typer.Option(help="Picture of one pair's result.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Decode a mix of two hours' embeddings; score it against the real hour and the pixel average.

        The real hour is the one at --weight between --start and --end; the pixel average mixes
        the two hours' dBZ with the same weights. Scores are those of wxembed.metrics.
        """
        from wxembed.analysis import interpolate_hours, interpolation_skill

        try:
            if every_pair:
                report = interpolation_skill(
                    archive, checkpoint, gap_hours=gap, weight=weight, max_pairs=max_pairs
                )
            else:
                if start is None or end is None:
                    raise typer.BadParameter("give --start and --end, or --every-pair")
                report = interpolate_hours(
                    archive,
                    checkpoint,
                    _time(start, "--start"),
                    _time(end, "--end"),
                    weight=weight,
                    keep_fields=png is not None,
                )
                if png is not None:
                    from wxembed.figures.plot import save_interpolation_png
                    from wxembed.model.encoder import load_embedding_model

                    grid = load_embedding_model(checkpoint).grid
                    report["png"] = str(save_interpolation_png(png, report, grid))
                    del report["fields"]
        except WxembedError as exc:
            raise _fail(exc) from None
        if as_json:
            typer.echo(_dumps(report))
            return
        what = (
            f"{report['pairs']} pairs {gap} h apart"
            if every_pair
            else f"{report['start']} .. {report['end']}, truth {report['truth_time']}"
        )
        typer.echo(f"{what}, weight {weight}, model {report['model_id']}")
        typer.echo(_score_table(report["scores"]))
        typer.echo("better: " + ", ".join(f"{k} {v}" for k, v in report["winner"].items()))
        if "png" in report:
            typer.echo(f"wrote {report['png']}")

    @app.command()
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
            Path | None, typer.Option(help="Checkpoint to decode centroids (default: the index's).")
        ] = None,
        png_dir: Annotated[
            Path | None, typer.Option(help="Write each decoded centroid as cluster_NN.png here.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """k-means (k-means++) on an index's embeddings; assignments stored in the index."""
        from wxembed.analysis import cluster_index

        try:
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
                from wxembed.figures.plot import save_cluster_pngs

                report["pictures"] = [str(p) for p in save_cluster_pngs(png_dir, report)]
                del report["centroid_fields"], report["grid"]
        except WxembedError as exc:
            raise _fail(exc) from None
        if as_json:
            typer.echo(_dumps(report))
            return
        import pandas as pd

        typer.echo(f"model {report['model_id']}: {report['hours']} hours in {report['k']} clusters")
        for c, (size, near) in enumerate(
            zip(report["sizes"], report["nearest_hours"], strict=True)
        ):
            typer.echo(f"  cluster {c}: {size} hours, nearest the centroid {near}")
        by_month = pd.DataFrame(report["by_month"]).T
        typer.echo("hours by month:\n" + by_month.loc[:, by_month.sum() > 0].to_string())
        typer.echo("hours by UTC hour of day:\n" + pd.DataFrame(report["by_hour"]).T.to_string())
        if report["adjusted_rand_index"] is not None:
            typer.echo(f"adjusted Rand index vs regime labels: {report['adjusted_rand_index']:.3f}")
        for p in report.get("pictures", []):
            typer.echo(f"wrote {p}")

    @app.command()
    def encode(
        source: Annotated[
            str | None,
            typer.Argument(help="GRIB2 file or .npy dBZ array (or use --archive and --time)."),
        ] = None,
        checkpoint: Annotated[Path, typer.Option(help="Model checkpoint.")] = Path(
            "model/checkpoints/last.ckpt"
        ),
        archive: Annotated[Path | None, typer.Option(help="Archive to take the hour from.")] = None,
        time: Annotated[str | None, typer.Option(help="Hour of --archive to encode.")] = None,
        out: Annotated[
            Path | None, typer.Option(help="Write the embedding here (.json or .npy).")
        ] = None,
    ) -> None:
        """A field (GRIB2, array or archive hour) to its embedding; prints the compression."""
        from wxembed.analysis import encode_field

        try:
            emb = encode_field(
                source, checkpoint=checkpoint, archive=archive, time=_time(time, "--time")
            )
            if out is not None:
                emb.save(out)
        except WxembedError as exc:
            raise _fail(exc) from None
        doc = emb.to_dict()
        if out is None:
            typer.echo(json.dumps(doc))
            return
        typer.echo(
            f"wrote {out}: {emb.embedding_dim} numbers for {doc['pixels']} pixels "
            f"(compression {doc['compression_ratio']}x in values, {doc['bytes_ratio']}x in bytes "
            "against the uint8 archive)"
        )

    @app.command()
    def decode(
        embedding: Annotated[Path, typer.Argument(help="Embedding file (.json or .npy).")],
        checkpoint: Annotated[Path, typer.Option(help="Model checkpoint.")] = Path(
            "model/checkpoints/last.ckpt"
        ),
        out: Annotated[
            Path, typer.Option(help="Field to write: .nc (NetCDF), .grib2 or .png.")
        ] = Path("decoded.nc"),
        time: Annotated[
            str | None, typer.Option(help="Valid time to write (default: the embedding's).")
        ] = None,
    ) -> None:
        """An embedding back to a field on the model's grid, as NetCDF, GRIB2 or PNG."""
        from wxembed.analysis import decode_embedding
        from wxembed.model.encoder import compression_ratio

        try:
            field = decode_embedding(
                embedding, checkpoint=checkpoint, out=out, time=_time(time, "--time")
            )
        except WxembedError as exc:
            raise _fail(exc) from None
        c = compression_ratio(field.grid.shape, _dim(embedding))
        typer.echo(
            f"wrote {out}: {c['pixels']} pixels from {c['embedding_dim']} numbers "
            f"(compression {c['compression_ratio']}x in values, {c['bytes_ratio']}x in bytes)"
        )


def _dim(path: Path) -> int:
    from wxembed.analysis import load_embedding

    return load_embedding(path).embedding_dim


def _draw_matches(png: Path, index: Path, matches, query, archive: Path | None) -> str:
    """Draw the query (an archive hour or a field file) and the matches."""
    import numpy as np

    from wxembed.archive import Archive
    from wxembed.errors import EmbeddingIndexError
    from wxembed.figures.plot import plot_matches
    from wxembed.index import EmbeddingIndex
    from wxembed.sources.formats import GRIB_SUFFIXES, read_field
    from wxembed.times import format_time

    if archive is None:
        with EmbeddingIndex(index, read_only=True) as ix:
            recorded = ix.model(matches.attrs["model_id"]).archive
        if not recorded or not Path(recorded).exists():
            raise EmbeddingIndexError(
                f"to draw the matches, pass --archive (the index's archive {recorded!r} is gone)"
            )
        archive = Path(recorded)
    a = Archive(archive)
    query_dbz, title = None, "query"
    q = Path(query)
    if q.suffix.lower() in GRIB_SUFFIXES or (q.suffix.lower() == ".npy" and q.is_file()):
        field = read_field(q)
        if np.asarray(field.dbz).ndim == 2 and field.dbz.shape == a.grid.shape:
            query_dbz, title = field.dbz, f"query {q.name}"
    elif q.suffix.lower() != ".json":
        try:
            query_dbz, title = a.read_dbz(query), f"query {format_time(query)}"
        except WxembedError:
            query_dbz = None
    return str(plot_matches(png, a, matches, query_dbz=query_dbz, query_title=title))


__all__ = ["register"]
