"""Apache Beam pipelines: the DirectRunner by default, Dask (``--runner dask``) as the tested
distributed engine; other runners' options pass straight through (:func:`pipeline_options`).

    ingest    radar files or synthetic hours -> the archive
    fetch     hours of the public HRRR archive, by byte range -> the archive (through ingest)
    embed     an archive and a checkpoint -> Parquet shards -> the DuckDB index
    progress  the one progress ledger and bar they all report to
    workers   their scratch folders (swept when a run was killed) and their errors

Every pipeline ends in a step whose side effect is the result (an hour committed to the archive,
a Parquet shard written), never in a Beam sink or a runner's metrics: some runners (Dask) run no
sink finalisation and return no metrics, so each driver counts what was done from the archive's
manifest and the shards themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from apache_beam.options.pipeline_options import PipelineOptions

from wxembed.errors import WxembedError

log = logging.getLogger(__name__)

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
"""Beam's DaskRunner, by the dotted path Beam needs (it is not among Beam's short names)."""

RUNNER_ALIASES = {
    "direct": "DirectRunner",
    "dask": DASK_RUNNER,
    "DaskRunner": DASK_RUNNER,
    "flink": "FlinkRunner",
    "spark": "SparkRunner",
    "dataflow": "DataflowRunner",
    "prism": "PrismRunner",
}
"""Short runner names (``--runner dask``) -> what Beam's ``--runner`` takes."""

_LOCAL = (None, "DirectRunner", "direct")
_DASK_PARTITIONS_CAP = 4096
"""Most Dask bag partitions a pipeline asks for (one task each)."""


def runner_args(runner: str | None = None, dask_address: str | None = None) -> list[str]:
    """Beam arguments for the CLI's short form: ``--runner dask --dask-address tcp://host:8786``.

    ``runner`` is a short name of :data:`RUNNER_ALIASES` or a Beam runner's own name; a Dask
    address without a runner means Dask.
    """
    args: list[str] = []
    if dask_address and runner in (None, "direct", "DirectRunner"):
        if runner is not None:
            raise WxembedError("--dask-address needs --runner dask (it was given --runner direct)")
        runner = "dask"
    if runner is not None:
        args.append(f"--runner={RUNNER_ALIASES.get(runner, runner)}")
    if dask_address:
        if RUNNER_ALIASES.get(runner, runner) != DASK_RUNNER:
            raise WxembedError(f"--dask-address needs --runner dask, not --runner {runner}")
        args.append(f"--dask_client_address={dask_address}")
    return args


def _given_runner(args: Sequence[str]) -> str | None:
    """The ``--runner`` value as written in ``args``, or None."""
    runner = next((a.split("=", 1)[1] for a in args if a.startswith("--runner=")), None)
    if runner is None and "--runner" in args and args.index("--runner") + 1 < len(args):
        runner = args[args.index("--runner") + 1]
    return runner


def runner_of(beam_args: Sequence[str] | None) -> str | None:
    """The runner ``beam_args`` name (aliases resolved), or None for the default."""
    runner = _given_runner(list(beam_args or []))
    return RUNNER_ALIASES.get(runner, runner) if runner is not None else None


def is_local_runner(beam_args: Sequence[str] | None) -> bool:
    """True when the pipeline runs on Beam's DirectRunner (this machine's processes)."""
    return runner_of(beam_args) in _LOCAL


def _with_runner(args: list[str], runner: str) -> list[str]:
    """``args`` with its ``--runner`` option replaced by ``--runner=runner``."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--runner":
            skip = True
        elif not a.startswith("--runner="):
            out.append(a)
    return [f"--runner={runner}", *out]


def pipeline_options(
    beam_args: Sequence[str] | None = None, *, workers: int = 2, items: int | None = None
) -> PipelineOptions:
    """Beam PipelineOptions from command-line style arguments.

    With no ``--runner`` (or ``--runner DirectRunner``), runs locally on ``workers`` processes.
    With the DaskRunner (``--runner dask``), the ``items`` of the pipeline's first step are
    spread over at most ``4 * workers`` bag partitions unless ``--dask_npartitions`` or
    ``--dask_partition_size`` says otherwise (Beam's default, 128 items a partition, would put
    a small job on one worker). Any other runner's options pass unchanged.
    """
    args = list(beam_args or [])
    runner = runner_of(args)
    if runner != _given_runner(args):
        args = _with_runner(args, runner)  # an alias (dask, flink...) to Beam's own name
    if (
        runner == DASK_RUNNER
        and items
        and not any(a.startswith("--dask_") and "partition" in a for a in args)
    ):
        # the DaskRunner's module registers its options (--dask_npartitions) with Beam
        import apache_beam.runners.dask.dask_runner  # noqa: F401

        parts = max(1, min(items, 4 * max(workers, 1), _DASK_PARTITIONS_CAP))
        args.append(f"--dask_npartitions={parts}")
    if runner in _LOCAL and not any(a.startswith("--direct_") for a in args):
        if workers > 1:
            args += [
                f"--direct_num_workers={workers}",
                "--direct_running_mode=multi_processing",
                "--default_sdk_harness_log_level=WARNING",
                # the workers' start-up chatter ("No semi_persistent_directory found",
                # "Discarding unparseable args") is logged at WARNING by these two loggers
                "--sdk_harness_log_level_overrides="
                '{"__main__":"ERROR","apache_beam.options.pipeline_options":"ERROR"}',
            ]
        else:
            args += ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
    return PipelineOptions(args)


def check_runner(beam_args: Sequence[str] | None) -> None:
    """:class:`WxembedError` now, before any work, when Beam does not know the runner named."""
    from apache_beam.runners.runner import create_runner

    runner = runner_of(beam_args)
    if runner is None:
        return
    try:
        create_runner(runner)
    except (ValueError, ImportError) as exc:  # Beam's word for a runner it does not know
        raise WxembedError(
            f"{str(exc).rstrip('.')}; or a short name: {', '.join(RUNNER_ALIASES)}"
        ) from None


def dask_workers(address: str) -> int:
    """Worker threads of the Dask cluster at ``address`` (a short-lived client asks)."""
    from dask.distributed import Client

    with Client(address, timeout=30) as client:
        return max(1, sum(client.nthreads().values()))


@contextmanager
def beam_pipeline(
    beam_args: Sequence[str] | None = None, *, workers: int = 2, items: int | None = None
) -> Iterator:
    """A ``beam.Pipeline`` on the runner ``beam_args`` name; it runs when the block ends.

    On the DaskRunner without ``--dask_client_address``, a ``dask.distributed.LocalCluster`` of
    ``workers`` processes is started for this one run and closed after it; with an address,
    the pipeline's partitions are sized to the cluster's worker threads. The Dask client Beam
    opens is closed when the run ends.
    """
    import apache_beam as beam

    check_runner(beam_args)
    args = list(beam_args or [])
    cluster = None
    if runner_of(args) == DASK_RUNNER:
        address = next(
            (a.split("=", 1)[1] for a in args if a.startswith("--dask_client_address=")), None
        )
        if address is None:
            cluster = _local_dask_cluster(workers)
            args.append(f"--dask_client_address={cluster.scheduler_address}")
        else:
            workers = dask_workers(address)
    try:
        root = beam.Pipeline(options=pipeline_options(args, workers=workers, items=items))
        with root:
            yield root
        client = getattr(getattr(root, "result", None), "client", None)
        if client is not None:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def _local_dask_cluster(workers: int):
    """A LocalCluster of ``workers`` single-threaded processes, for one pipeline."""
    try:
        from dask.distributed import LocalCluster
    except ImportError:
        raise WxembedError(
            "the Dask runner needs the distributed extra: pip install 'wxembed[distributed]'"
        ) from None
    log.info("starting a local Dask cluster of %d worker processes", workers)
    return LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    )


__all__ = [
    "DASK_RUNNER",
    "RUNNER_ALIASES",
    "beam_pipeline",
    "check_runner",
    "dask_workers",
    "is_local_runner",
    "pipeline_options",
    "runner_args",
    "runner_of",
]
