"""Embed: an archive and a checkpoint -> Parquet shards of embeddings -> the DuckDB index.

    root | Create(hours) | BatchElements(batch_size) | ParDo(EmbedHours) | WriteToParquet(shards)

then the shards are loaded into the index (:mod:`wxembed.index`) in one transaction that
replaces the model's earlier rows. Each worker loads the model once (``DoFn.setup``) and reads
only the hours of its batches, so no step holds more than a batch of images. Parquet rows are
``model_id`` (string), ``time`` (timestamp, UTC) and ``embedding`` (list of float32), the layout
BigQuery and other warehouses load as they are (``bq load --source_format=PARQUET
--parquet_enable_list_inference``).

The shards of a model live in ``SHARDS_DIR/<model_id>/``; a run writes a fresh folder and swaps
it in only when the pipeline succeeded, so a failed run leaves the shards and the index of the
previous one. With a runner other than the DirectRunner, the archive, the checkpoint and
``shards_dir`` must be paths every worker can read and write (a shared file system).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import StandardOptions

from wxembed.analysis import resolve_device
from wxembed.archive import Archive, format_time, from_seconds, to_seconds
from wxembed.errors import ArchiveError
from wxembed.index import EmbeddingIndex, EmbeddingIndexError, ModelInfo, model_id_for
from wxembed.pipelines import pipeline_options

log = logging.getLogger(__name__)


def parquet_schema():
    """The shards' Arrow schema: model_id, time (UTC), embedding (list of float32)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("model_id", pa.string()),
            ("time", pa.timestamp("s", tz="UTC")),
            ("embedding", pa.list_(pa.float32())),
        ]
    )


def describe_model(checkpoint: str | Path, archive: str = "") -> tuple[ModelInfo, object, object]:
    """Load a checkpoint; return its :class:`ModelInfo`, the LightningModule and its grid."""
    from wxembed.train import load_model

    module, grid = load_model(checkpoint)
    arch = str(module.hparams.arch)
    info = ModelInfo(
        model_id=model_id_for(arch, checkpoint),
        arch=arch,
        embedding_dim=int(module.net.embedding_dim),
        grid_json=grid.to_json(),
        checkpoint=str(Path(checkpoint).resolve()),
        archive=archive,
    )
    return info, module, grid


class EmbedHours(beam.DoFn):
    """Batches of ``(seconds, slot)`` hours -> one row per hour: model_id, time, embedding.

    The model is loaded once per worker in :meth:`setup` (on the GPU when there is one, unless
    ``device`` says otherwise); each batch is read from the archive's ``reflectivity`` array
    (uint8, one hour a chunk), normalised on the device and encoded in one forward pass.
    """

    def __init__(
        self,
        archive_path: str,
        checkpoint: str,
        model_id: str,
        *,
        device: str = "auto",
        threads: int = 0,
        progress_dir: str | None = None,
    ):
        self.archive_path = archive_path
        self.checkpoint = checkpoint
        self.model_id = model_id
        self.device = device
        self.threads = threads
        self.progress_dir = progress_dir

    def setup(self) -> None:
        import torch
        import zarr

        from wxembed.train import load_model

        if self.threads:
            torch.set_num_threads(self.threads)
        module, _ = load_model(self.checkpoint)
        found = model_id_for(str(module.hparams.arch), self.checkpoint)
        if found != self.model_id:  # the file changed between the driver and this worker
            raise EmbeddingIndexError(
                f"{self.checkpoint}: is now model {found}, the run started with {self.model_id}"
            )
        self._device = torch.device(resolve_device(self.device))
        self._net = module.net.to(self._device).eval()
        group = zarr.open_group(self.archive_path, mode="r", zarr_format=3)
        self._refl = group["reflectivity"]
        self._slot_seconds = np.asarray(group["time"][:], dtype=np.int64)
        self._done = 0
        self._progress_file = (
            Path(self.progress_dir) / f"{uuid.uuid4().hex}.n" if self.progress_dir else None
        )

    def process(self, batch: Sequence[tuple[int, int]]) -> Iterator[dict]:
        import torch

        from wxembed.model.common import normalise_raw

        for seconds, slot in batch:
            if self._slot_seconds[slot] != seconds:
                raise ArchiveError(
                    f"{self.archive_path}: slot {slot} holds "
                    f"{format_time(from_seconds([self._slot_seconds[slot]])[0])}, "
                    f"expected {format_time(from_seconds([seconds])[0])}"
                )
        raw = np.stack([self._refl[int(slot)] for _, slot in batch])  # (b, ny, nx) uint8
        x = torch.from_numpy(raw)[:, None].to(self._device)  # -> (b, 1, ny, nx) uint8
        with torch.inference_mode():
            z = self._net.encode(normalise_raw(x)).float().cpu().numpy()  # -> (b, d)
        for (seconds, _), vector in zip(batch, z, strict=True):
            yield {
                "model_id": self.model_id,
                "time": datetime.fromtimestamp(int(seconds), tz=UTC),
                "embedding": vector.tolist(),
            }
        self._done += len(batch)
        if self._progress_file is not None:
            try:
                self._progress_file.write_text(str(self._done))
            except OSError:  # progress is a courtesy; a worker without the folder goes on
                self._progress_file = None


def default_shards_dir(index_path: str | Path) -> Path:
    """``INDEX-shards/`` beside the index file."""
    p = Path(index_path)
    return p.with_name(p.stem + "-shards")


def embed_archive(
    archive_path: str | Path,
    checkpoint: str | Path,
    index_path: str | Path,
    *,
    shards_dir: str | Path | None = None,
    batch_size: int = 8,
    beam_args: Sequence[str] | None = None,
    workers: int = 2,
    progress: bool = True,
    device: str = "auto",
) -> dict:
    """Embed every stored hour of an archive with a checkpoint's model, into an index.

    Runs the Beam pipeline (DirectRunner on ``workers`` local processes unless ``beam_args``
    name another runner), writes Parquet shards to ``shards_dir/<model_id>/`` (default
    ``INDEX-shards/`` beside the index) and loads them into the DuckDB index at ``index_path``,
    replacing the rows of the same model. Returns a report: model, hours, seconds, hours/s,
    rows replaced, shard files.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from wxembed.train import check_grid

    archive = Archive(archive_path)
    info, module, grid = describe_model(checkpoint, archive=str(archive.path.resolve()))
    check_grid(grid, archive, str(checkpoint))
    del module
    with EmbeddingIndex(index_path):  # fail before the pipeline if the index cannot be written
        pass

    manifest = archive.manifest()
    stored = manifest[manifest.status == "stored"]
    if stored.empty:
        raise ArchiveError(f"{archive.path}: no stored hours to embed")
    hours = list(
        zip(to_seconds(stored.time.values).tolist(), stored.slot.astype(int).tolist(), strict=True)
    )

    root_dir = Path(shards_dir) if shards_dir is not None else default_shards_dir(index_path)
    root_dir.mkdir(parents=True, exist_ok=True)
    final = root_dir / info.model_id
    staging = Path(tempfile.mkdtemp(prefix=f".{info.model_id}.partial-", dir=root_dir))
    n_workers = max(1, min(workers, len(hours)))
    options = pipeline_options(beam_args, workers=n_workers)
    local = options.view_as(StandardOptions).runner in (None, "DirectRunner", "direct")
    # local worker processes share the CPUs; one in-process worker keeps the caller's setting
    threads = max(1, (os.cpu_count() or 1) // n_workers) if local and n_workers > 1 else 0
    progress_dir = Path(tempfile.mkdtemp(prefix="wxembed-embed-")) if progress else None

    t0 = time.perf_counter()
    stop = threading.Event()
    watcher = threading.Thread(
        target=_show_progress, args=(progress_dir, len(hours), stop), daemon=True
    )
    try:
        if progress_dir is not None:
            watcher.start()
        embed = EmbedHours(
            str(archive.path.resolve()),
            info.checkpoint,
            info.model_id,
            device=device,
            threads=threads,
            progress_dir=None if progress_dir is None else str(progress_dir),
        )
        batches = beam.BatchElements(min_batch_size=batch_size, max_batch_size=batch_size)
        shards = beam.io.WriteToParquet(
            str(staging / "part"),
            parquet_schema(),
            codec="snappy",
            use_compliant_nested_type=True,
            file_name_suffix=".parquet",
        )
        with beam.Pipeline(options=options) as root:
            _ = (
                root
                | "Hours" >> beam.Create(hours)
                | "Batch" >> batches
                | "Embed" >> beam.ParDo(embed)
                | "Shards" >> shards
            )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        stop.set()
        if progress_dir is not None:
            watcher.join()
            shutil.rmtree(progress_dir, ignore_errors=True)
    seconds = time.perf_counter() - t0

    # swap the new shards in: the old folder goes only once the new one is complete
    old = None
    if final.exists():
        old = root_dir / f".{info.model_id}.old-{uuid.uuid4().hex[:8]}"
        final.rename(old)
    staging.rename(final)
    final.chmod(0o755)  # mkdtemp made it private
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    shards = sorted(final.glob("*.parquet"))

    with EmbeddingIndex(index_path) as index:
        loaded = index.replace_model(info, parquet_files=shards, expected_rows=len(hours))
    report = {
        "model_id": info.model_id,
        "arch": info.arch,
        "embedding_dim": info.embedding_dim,
        "archive": str(archive.path),
        "index": str(index_path),
        "hours": len(hours),
        "first": format_time(from_seconds([hours[0][0]])[0]),
        "last": format_time(from_seconds([hours[-1][0]])[0]),
        "replaced": loaded["replaced"],
        "seconds": round(seconds, 3),
        "hours_per_s": round(len(hours) / seconds, 3) if seconds > 0 else None,
        "device": resolve_device(device) if local else device,
        "shards": [str(p) for p in shards],
    }
    log.info("embedded %d hours with %s in %.1f s", len(hours), info.model_id, seconds)
    return report


def _show_progress(progress_dir: Path | None, total: int, stop: threading.Event) -> None:
    """A progress bar fed by the workers' count files (local runners share the folder)."""
    if progress_dir is None:
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="embed", unit="h") as bar:
        while True:
            finished = stop.wait(0.5)
            done = 0
            for f in progress_dir.glob("*.n"):
                try:
                    done += int(f.read_text() or 0)
                except (OSError, ValueError):  # a file being written; next tick
                    pass
            bar.update(min(done, total) - bar.n)
            if finished:
                break


__all__ = ["EmbedHours", "default_shards_dir", "describe_model", "embed_archive", "parquet_schema"]
