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
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa

from wxembed import locations as loc
from wxembed.archive import Archive
from wxembed.errors import ArchiveError, CheckpointError, EmbeddingIndexError
from wxembed.index import EmbeddingIndex
from wxembed.model.checkpoint import Checkpoint, ModelInfo
from wxembed.model.encoder import EmbeddingModel, resolve_device
from wxembed.pipelines import (
    DASK_RUNNER,
    beam_pipeline,
    check_runner,
    is_local_runner,
    runner_of,
)
from wxembed.pipelines.progress import Ledger, progress_bar, temporary_ledger
from wxembed.pipelines.workers import OWNER, owned_folder, sweep, worker_errors
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


_WORKER_MODELS: dict[tuple[str, str, str], EmbeddingModel] = {}
"""The model a worker process loaded, by (checkpoint, model id, device)."""


class EmbedHours(beam.DoFn):
    """Batches of ``(seconds, slot)`` hours -> Parquet shards (model_id, time, embedding).

    The model is loaded once per worker in :meth:`setup` (on the GPU when there is one, unless
    ``device`` says otherwise) as an :class:`~wxembed.model.encoder.EmbeddingModel`; each batch
    is read from the archive's ``reflectivity`` array (uint8, one hour a chunk) and encoded in one
    forward pass. The rows are written by the worker itself, a shard of at most ``shard_rows``
    rows at a time and at the end of each bundle, into ``shards``: no Beam sink, so the shards
    are complete on every runner (Dask runs no sink finalisation). A retried bundle writes its
    rows again; the index keeps each hour once. Yields nothing.
    """

    def __init__(
        self,
        archive_path: str,
        checkpoint: str,
        model_id: str,
        shards: str,
        *,
        device: str = "auto",
        threads: int = 0,
        ledger: str | None = None,
        shard_rows: int = 4096,
    ):
        self.archive_path = archive_path
        self.checkpoint = checkpoint
        self.model_id = model_id
        self.shards = shards
        self.device = device
        self.threads = threads
        self.ledger = ledger
        self.shard_rows = shard_rows

    def setup(self) -> None:
        import torch  # the worker's threads are set before its first tensor

        if self.threads:
            torch.set_num_threads(self.threads)
        key = (self.checkpoint, self.model_id, self.device)
        if key not in _WORKER_MODELS:  # Dask sets a DoFn up for every partition: load once
            ckpt = Checkpoint(local_checkpoint(self.checkpoint))
            if ckpt.model_id != self.model_id:  # the file changed since the driver read it
                raise EmbeddingIndexError(
                    f"{self.checkpoint}: is now model {ckpt.model_id}, the run started with "
                    f"{self.model_id}"
                )
            _WORKER_MODELS.clear()  # one model a process
            _WORKER_MODELS[key] = EmbeddingModel(ckpt, device=self.device, batch_size=1 << 30)
        self._model = _WORKER_MODELS[key]
        group = Archive(self.archive_path).group
        self._refl = group["reflectivity"]
        self._slot_seconds = np.asarray(group["time"][:], dtype=np.int64)
        self._ledger = Ledger(self.ledger) if self.ledger else None
        self._rows: list[tuple[int, np.ndarray]] = []

    def start_bundle(self) -> None:
        self._rows = []

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
        self._rows += [
            (int(seconds), vector) for (seconds, _), vector in zip(batch, z, strict=True)
        ]
        if len(self._rows) >= self.shard_rows:
            self._flush()
        if self._ledger is not None:
            self._ledger.append("hour", lines=len(batch))
        return iter(())

    def finish_bundle(self) -> None:
        self._flush()

    def _flush(self) -> None:
        """Write the rows so far as one shard, named by its first hour and a random suffix."""
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        name = f"part-{rows[0][0]}-{uuid.uuid4().hex[:8]}.parquet"
        write_shard(shard_table(self.model_id, rows), loc.join(self.shards, name))


def shard_table(model_id: str, rows: Sequence[tuple[int, np.ndarray]]) -> pa.Table:
    """``(seconds, embedding)`` rows -> a table of the shards' schema."""
    return pa.table(
        {
            "model_id": [model_id] * len(rows),
            "time": pa.array([s for s, _ in rows], pa.int64()).cast(pa.timestamp("s", tz="UTC")),
            "embedding": [np.asarray(v, np.float32) for _, v in rows],
        },
        schema=parquet_schema(),
    )


def write_shard(table: pa.Table, location: str) -> None:
    """One Parquet shard (snappy, compliant nested lists), written whole or not at all: to a
    temporary name first, renamed on a file system; an object store's PUT is atomic."""
    import pyarrow.parquet as pq

    kwargs = dict(compression="snappy", use_compliant_nested_type=True)
    if loc.is_remote(location):
        fs, path = loc.filesystem(location)
        with fs.open(path, "wb") as fh:
            pq.write_table(table, fh, **kwargs)
        return
    tmp = f"{location}.tmp-{uuid.uuid4().hex[:8]}"
    pq.write_table(table, tmp, **kwargs)
    os.replace(tmp, location)


def read_shards(files: Sequence[str | Path]) -> pa.Table:
    """Every row of the given shards, as one table (any location)."""
    import pyarrow.parquet as pq

    tables = []
    for f in files:
        fs, path = loc.filesystem(f)
        with fs.open(path, "rb") as fh:
            tables.append(pq.read_table(fh))
    return pa.concat_tables(tables) if tables else parquet_schema().empty_table()


def local_checkpoint(checkpoint: str | Path) -> Path:
    """A checkpoint (or a model folder's best one) on an object store, as a local copy fetched
    once; a local one as it is. A model folder URL means its ``checkpoints/best.ckpt`` (else
    ``last.ckpt``)."""
    where = loc.location(checkpoint)
    if isinstance(where, Path):
        return where
    if not where.endswith(".ckpt"):
        candidates = [loc.join(where, "checkpoints", n) for n in ("best.ckpt", "last.ckpt")]
        found = [c for c in candidates if loc.exists(c)]
        if not found:
            raise CheckpointError(f"{where}: no checkpoint file, nor checkpoints/best.ckpt in it")
        where = found[0]
    elif not loc.exists(where):
        raise CheckpointError(f"{where}: no such checkpoint")
    return loc.local_copy(where, ".ckpt")


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
    shards_root: Path | str
    """``SHARDS_DIR`` (a folder or an object-store URL); the model's shards go to
    ``SHARDS_DIR/<model_id>/``."""
    checkpoint: str = ""
    """The checkpoint as every worker reaches it: its URL on an object store (each worker keeps
    a local copy), else the local file ``info.checkpoint`` names."""

    @property
    def archive_location(self) -> str:
        """The archive as every worker names it: an absolute path, or its URL."""
        path = self.archive.path
        return str(path.resolve()) if isinstance(path, Path) else path


def plan_embedding(
    archive_path: str | Path,
    checkpoint: str | Path,
    index_path: str | Path,
    shards_dir: str | Path | None,
) -> EmbedPlan:
    """Check everything that can be checked before the work: the checkpoint and its grid, the
    archive's stored hours, that the index can be written."""
    archive = Archive(archive_path)
    ckpt = Checkpoint(local_checkpoint(checkpoint))
    ckpt.check_grid(archive)
    embedding_dim = ckpt.module().net.embedding_dim
    where = archive.path
    info = ckpt.info(
        embedding_dim, archive=str(where.resolve()) if isinstance(where, Path) else where
    )
    with EmbeddingIndex(index_path):  # fail before the pipeline if the index cannot be written
        pass
    manifest = archive.manifest()
    stored = manifest[manifest.status == "stored"]
    if stored.empty:
        raise ArchiveError(f"{archive.path}: no stored hours to embed")
    seconds = to_seconds(stored.time.values).tolist()
    hours = list(zip(seconds, stored.slot.astype(int).tolist(), strict=True))
    root = loc.location(shards_dir) if shards_dir is not None else default_shards_dir(index_path)
    remote = loc.is_remote(checkpoint)
    return EmbedPlan(
        archive, info, hours, root, str(loc.location(checkpoint)) if remote else info.checkpoint
    )


def run_embedding(
    plan: EmbedPlan,
    staging: str,
    *,
    batch_size: int,
    beam_args: Sequence[str] | None,
    workers: int,
    device: str,
    progress: bool,
) -> bool:
    """The Beam chain: batches of hours -> embeddings -> Parquet shards in ``staging``.
    Returns whether it ran on local worker processes (the DirectRunner).

    The batches are made here, in time order, so every runner encodes the same batches and
    the embeddings are the same bit for bit.
    """
    hours = plan.hours
    batches = [hours[i : i + batch_size] for i in range(0, len(hours), batch_size)]
    n_workers = max(1, min(workers, len(batches)))
    local = is_local_runner(beam_args)
    on_this_machine = local or (
        runner_of(beam_args) == DASK_RUNNER
        and not any(a.startswith("--dask_client_address") for a in beam_args or [])
    )
    # local worker processes share the CPUs; one in-process worker keeps the caller's setting
    threads = max(1, (os.cpu_count() or 1) // n_workers) if on_this_machine and n_workers > 1 else 0
    with temporary_ledger() as ledger:
        embed = EmbedHours(
            plan.archive_location,
            plan.checkpoint or plan.info.checkpoint,
            plan.info.model_id,
            staging,
            device=device,
            threads=threads,
            ledger=ledger.folder if progress else None,
        )
        with progress_bar(ledger if progress else None, len(hours), "embed"):
            with beam_pipeline(beam_args, workers=n_workers, items=len(batches)) as root:
                _ = (
                    root
                    | "Batches" >> beam.Create(batches)
                    | "Spread" >> beam.Reshuffle()
                    | "Embed" >> beam.ParDo(embed)
                )
    return local


def swap_shards(staging: Path | str, final: Path | str) -> list[Path | str]:
    """Put the new shards in place of the old: on a file system the old folder goes only once
    the new one is complete (renames); on an object store, which cannot rename, the old shards
    are deleted and the new ones moved under ``final``. Returns the new shard files."""
    if isinstance(staging, str) or isinstance(final, str):
        loc.remove_tree(final)
        fs, _ = loc.filesystem(staging)
        for f in loc.list_files(staging, ".parquet"):
            name = str(f).rsplit("/", 1)[-1]
            fs.mv(loc.filesystem(f)[1], loc.filesystem(loc.join(final, name))[1])
        loc.remove_tree(staging)
        return loc.list_files(final, ".parquet")
    (staging / OWNER).unlink(missing_ok=True)  # the staging folder's lock file stays behind
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        final.rename(old)
    staging.rename(final)
    final.chmod(0o755)  # mkdtemp made it private
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return sorted(final.glob("*.parquet"))


@contextmanager
def _staging(root: Path | str, model_id: str) -> Iterator[Path | str]:
    """A fresh staging folder (or key prefix) for one run's shards, beside the final one, gone
    when the block ends (swapped in, or removed). On a file system it holds an owner lock, and
    the staging folders that killed runs left there are swept first (see
    :mod:`wxembed.pipelines.workers`)."""
    if isinstance(root, str):
        staging = loc.join(root, f".{model_id}.partial-{uuid.uuid4().hex[:12]}")
        try:
            yield staging
        except BaseException:
            loc.remove_tree(staging)
            raise
        return
    root.mkdir(parents=True, exist_ok=True)
    sweep(root, ".*.partial-*")
    sweep(root, ".*.old-*")  # a swap killed half-way; no owner file: removed once a day old
    with owned_folder(f".{model_id}.partial-", root) as staging:
        yield staging


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
    check_runner(beam_args)
    plan = plan_embedding(archive_path, checkpoint, index_path, shards_dir)
    with _staging(plan.shards_root, plan.info.model_id) as staging:
        t0 = time.perf_counter()
        with worker_errors():
            local = run_embedding(
                plan,
                str(staging),
                batch_size=batch_size,
                beam_args=beam_args,
                workers=workers,
                device=device,
                progress=progress,
            )
        seconds = time.perf_counter() - t0
        # The index first, then the shards: when another process holds the index, nothing is
        # swapped, and the old shards stay with the rows the index holds.
        with EmbeddingIndex(index_path) as index:
            if isinstance(plan.shards_root, str):  # the index stays local, loaded from the store
                source = {"table": read_shards(loc.list_files(staging, ".parquet"))}
            else:
                source = {"parquet_files": sorted(Path(staging).glob("*.parquet"))}
            loaded = index.replace_model(plan.info, **source, expected_rows=len(plan.hours))
            shards = swap_shards(staging, loc.join(plan.shards_root, plan.info.model_id))
    log.info("embedded %d hours with %s in %.1f s", len(plan.hours), plan.info.model_id, seconds)
    used = resolve_device(device) if local else device
    return _embed_summary(plan, index_path, loaded["replaced"], seconds, used, shards)


def _embed_summary(
    plan: EmbedPlan,
    index_path: str | Path,
    replaced: int,
    seconds: float,
    device: str,
    shards: list[Path | str],
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
