"""Apache Beam pipelines: the DirectRunner by default; other runners' options pass straight
through (:func:`pipeline_options`).

    ingest    radar files or synthetic hours -> the archive
    fetch     hours of the public HRRR archive, by byte range -> the archive (through ingest)
    embed     an archive and a checkpoint -> Parquet shards -> the DuckDB index
    progress  the one progress ledger and bar they all report to
"""

from __future__ import annotations

from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions


def pipeline_options(
    beam_args: Sequence[str] | None = None, *, workers: int = 2
) -> PipelineOptions:
    """Beam PipelineOptions from command-line style arguments.

    With no ``--runner`` (or ``--runner DirectRunner``), runs locally on ``workers`` processes;
    any other runner's options (``--runner FlinkRunner --flink_master ...``) are passed unchanged.
    """
    args = list(beam_args or [])
    runner = next((a.split("=", 1)[1] for a in args if a.startswith("--runner=")), None)
    if runner is None and "--runner" in args:
        runner = args[args.index("--runner") + 1]
    if runner in (None, "DirectRunner", "direct") and not any(
        a.startswith("--direct_") for a in args
    ):
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
