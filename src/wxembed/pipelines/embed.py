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
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import zarr
from apache_beam.options.pipeline_options import StandardOptions

from wxembed.archive import Archive
from wxembed.errors import ArchiveError, EmbeddingIndexError
from wxembed.index import EmbeddingIndex
from wxembed.model.checkpoint import Checkpoint, ModelInfo
from wxembed.model.encoder import EmbeddingModel, resolve_device
from wxembed.pipelines import pipeline_options
from wxembed.pipelines.progress import Ledger, progress_bar, temporary_ledger
from wxembed.times import format_time, from_seconds, to_seconds

log = logging.getLogger(__name__)


def parquet_schema() -> pa.Schema:
    """The shards' Arrow schema: model_id, time (UTC), embedding (list of float32)."""
    return pa.schema(
        [
            ("model_id", pa.string()),
            ("time", pa.timestamp("s", tz="UTC")),
            ("embedding", pa.list_(pa.float32())),
        ]
    )


class EmbedHours(beam.DoFn):
    """Batches of ``(seconds, slot)`` hours -> one row per hour: model_id, time, embedding.

    The model is loaded once per worker in :meth:`setup` (on the GPU when there is one, unless
    ``device`` says otherwise) as an :class:`~wxembed.model.encoder.EmbeddingModel`; each batch
    is read from the archive's ``reflectivity`` array (uint8, one hour a chunk) and encoded in one
    forward pass.
    """

    def __init__(
        self,
        archive_path: str,
        checkpoint: str,
        model_id: str,
        *,
        device: str = "auto",
        threads: int = 0,
        ledger: str | None = None,
    ):
        self.archive_path = archive_path
        self.checkpoint = checkpoint
        self.model_id = model_id
        self.device = device
        self.threads = threads
        self.ledger = ledger

    def setup(self) -> None:
        import torch  # the worker's threads are set before its first tensor

        if self.threads:
            torch.set_num_threads(self.threads)
        ckpt = Checkpoint(self.checkpoint)
        if ckpt.model_id != self.model_id:  # the file changed between the driver and this worker
            raise EmbeddingIndexError(
                f"{self.checkpoint}: is now model {ckpt.model_id}, the run started with "
                f"{self.model_id}"
            )
        self._model = EmbeddingModel(ckpt, device=self.device, batch_size=1 << 30)
        group = zarr.open_group(self.archive_path, mode="r", zarr_format=3)
        self._refl = group["reflectivity"]
        self._slot_seconds = np.asarray(group["time"][:], dtype=np.int64)
        self._ledger = Ledger(self.ledger) if self.ledger else None

    def process(self, batch: Sequence[tuple[int, int]]) -> Iterator[dict]:
        for seconds, slot in batch:
            if self._slot_seconds[slot] != seconds:
                raise ArchiveError(
                    f"{self.archive_path}: slot {slot} holds "
                    f"{format_time(from_seconds(self._slot_seconds[slot]))}, "
                    f"expected {format_time(from_seconds(seconds))}"
                )
        raw = np.stack([self._refl[int(slot)] for _, slot in batch])  # (b, ny, nx) uint8
        z = self._model.encode_raw(raw)  # -> (b, d)
        for (seconds, _), vector in zip(batch, z, strict=True):
            yield {
                "model_id": self.model_id,
                "time": datetime.fromtimestamp(int(seconds), tz=UTC),
                "embedding": vector.tolist(),
            }
        if self._ledger is not None:
            self._ledger.append("hour", lines=len(batch))


def default_shards_dir(index_path: str | Path) -> Path:
    """``INDEX-shards/`` beside the index file."""
    p = Path(index_path)
    return p.with_name(p.stem + "-shards")


@dataclass(frozen=True)
class EmbedPlan:
    """What one embed run will do, decided before the pipeline starts."""

    archive: Archive
    info: ModelInfo
    hours: list[tuple[int, int]]
    """``(seconds, slot)`` of every stored hour, in time order."""
    shards_root: Path
    """``SHARDS_DIR``; the model's shards go to ``SHARDS_DIR/<model_id>/``."""


def plan_embedding(
    archive_path: str | Path,
    checkpoint: str | Path,
    index_path: str | Path,
    shards_dir: str | Path | None,
) -> EmbedPlan:
    """Check everything that can be checked before the work: the checkpoint and its grid, the
    archive's stored hours, that the index can be written."""
    archive = Archive(archive_path)
    ckpt = Checkpoint(checkpoint)
    ckpt.check_grid(archive)
    embedding_dim = ckpt.module().net.embedding_dim
    info = ckpt.info(embedding_dim, archive=str(archive.path.resolve()))
    with EmbeddingIndex(index_path):  # fail before the pipeline if the index cannot be written
        pass
    manifest = archive.manifest()
    stored = manifest[manifest.status == "stored"]
    if stored.empty:
        raise ArchiveError(f"{archive.path}: no stored hours to embed")
    seconds = to_seconds(stored.time.values).tolist()
    hours = list(zip(seconds, stored.slot.astype(int).tolist(), strict=True))
    root = Path(shards_dir) if shards_dir is not None else default_shards_dir(index_path)
    return EmbedPlan(archive, info, hours, root)


def run_embedding(
    plan: EmbedPlan,
    staging: Path,
    *,
    batch_size: int,
    beam_args: Sequence[str] | None,
    workers: int,
    device: str,
    progress: bool,
) -> bool:
    """The Beam chain: hours -> batches -> embeddings -> Parquet shards in ``staging``.
    Returns whether it ran on local worker processes (the DirectRunner)."""
    n_workers = max(1, min(workers, len(plan.hours)))
    options = pipeline_options(beam_args, workers=n_workers)
    local = options.view_as(StandardOptions).runner in (None, "DirectRunner", "direct")
    # local worker processes share the CPUs; one in-process worker keeps the caller's setting
    threads = max(1, (os.cpu_count() or 1) // n_workers) if local and n_workers > 1 else 0
    with temporary_ledger() as ledger:
        embed = EmbedHours(
            str(plan.archive.path.resolve()),
            plan.info.checkpoint,
            plan.info.model_id,
            device=device,
            threads=threads,
            ledger=ledger.folder if progress else None,
        )
        batches = beam.BatchElements(min_batch_size=batch_size, max_batch_size=batch_size)
        shards = beam.io.WriteToParquet(
            str(staging / "part"),
            parquet_schema(),
            codec="snappy",
            use_compliant_nested_type=True,
            file_name_suffix=".parquet",
        )
        with progress_bar(ledger if progress else None, len(plan.hours), "embed"):
            with beam.Pipeline(options=options) as root:
                _ = (
                    root
                    | "Hours" >> beam.Create(plan.hours)
                    | "Batch" >> batches
                    | "Embed" >> beam.ParDo(embed)
                    | "Shards" >> shards
                )
    return local


def swap_shards(staging: Path, final: Path) -> list[Path]:
    """Put the new shards in place of the old: the old folder goes only once the new one is
    complete. Returns the new shard files."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        final.rename(old)
    staging.rename(final)
    final.chmod(0o755)  # mkdtemp made it private
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return sorted(final.glob("*.parquet"))


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

    Plan (check the checkpoint, archive and index), run the Beam chain (DirectRunner on
    ``workers`` local processes unless ``beam_args`` name another runner) into a staging folder,
    swap the Parquet shards in at ``shards_dir/<model_id>/`` (default ``INDEX-shards/`` beside
    the index), and load them into the DuckDB index at ``index_path``, replacing the rows of the
    same model. ``checkpoint`` may be a model folder (its best checkpoint is used). Returns a
    report: model, hours, seconds, hours/s, rows replaced, shard files.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    plan = plan_embedding(archive_path, checkpoint, index_path, shards_dir)
    plan.shards_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{plan.info.model_id}.partial-", dir=plan.shards_root))
    t0 = time.perf_counter()
    try:
        local = run_embedding(
            plan,
            staging,
            batch_size=batch_size,
            beam_args=beam_args,
            workers=workers,
            device=device,
            progress=progress,
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    shards = swap_shards(staging, plan.shards_root / plan.info.model_id)
    with EmbeddingIndex(index_path) as index:
        loaded = index.replace_model(plan.info, parquet_files=shards, expected_rows=len(plan.hours))
    log.info("embedded %d hours with %s in %.1f s", len(plan.hours), plan.info.model_id, seconds)
    used = resolve_device(device) if local else device
    return _embed_summary(plan, index_path, loaded["replaced"], seconds, used, shards)


def _embed_summary(
    plan: EmbedPlan,
    index_path: str | Path,
    replaced: int,
    seconds: float,
    device: str,
    shards: list[Path],
) -> dict:
    """What :func:`embed_archive` reports: model, hours, timing, rows replaced, shard files."""
    return {
        "model_id": plan.info.model_id,
        "arch": plan.info.arch,
        "embedding_dim": plan.info.embedding_dim,
        "archive": str(plan.archive.path),
        "index": str(index_path),
        "hours": len(plan.hours),
        "first": format_time(from_seconds(plan.hours[0][0])),
        "last": format_time(from_seconds(plan.hours[-1][0])),
        "replaced": replaced,
        "seconds": round(seconds, 3),
        "hours_per_s": round(len(plan.hours) / seconds, 3) if seconds > 0 else None,
        "device": device,
        "shards": [str(p) for p in shards],
    }


__all__ = [
    "EmbedHours",
    "EmbedPlan",
    "default_shards_dir",
    "embed_archive",
    "parquet_schema",
    "plan_embedding",
]
