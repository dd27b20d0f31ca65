"""One progress ledger and one progress bar for every pipeline.

Workers (local processes of the DirectRunner) append one tab-separated line per finished unit
(an hour) to a file of their own in a shared folder, the :class:`Ledger`; the driver's
:func:`progress_bar` counts the lines twice a second. Until the first line arrives the bar says
"starting workers", since Beam takes seconds to start its worker processes. A worker that cannot
reach the folder (another machine) only loses the bar: nothing else depends on the ledger.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm.auto import tqdm

from wxembed.pipelines.workers import owned_folder

log = logging.getLogger(__name__)

LEDGER_PREFIX = "wxembed-ledger-"
"""Name prefix of the temporary ledger folders."""


class Ledger:
    """A folder of per-process files of finished units, one tab-separated line each."""

    def __init__(self, folder: str | Path):
        self.folder = str(folder)

    def append(self, *cells: object, lines: int = 1) -> None:
        """Record ``lines`` finished units, each with ``cells`` (best effort, never raises)."""
        text = ("\t".join(str(c) for c in cells) + "\n") * lines
        try:  # one short append per call: whole lines, as O_APPEND writes them
            with open(Path(self.folder) / f"part-{os.getpid()}.tsv", "a") as fh:
                fh.write(text)
        except OSError as exc:
            log.debug("no progress ledger at %s: %s", self.folder, exc)

    def rows(self) -> list[list[str]]:
        """Every complete line so far, split into cells."""
        out: list[list[str]] = []
        for part in Path(self.folder).glob("part-*.tsv"):
            try:
                text = part.read_text()
            except OSError:
                continue
            lines = text.split("\n")[:-1]  # a line still being written has no newline yet
            out += [line.split("\t") for line in lines]
        return out

    def __len__(self) -> int:
        return len(self.rows())


@contextmanager
def temporary_ledger() -> Iterator[Ledger]:
    """A ledger in a fresh temporary folder, removed afterwards; the folders of runs that were
    killed are removed by the next one (see :func:`~wxembed.pipelines.workers.owned_folder`)."""
    with owned_folder(LEDGER_PREFIX) as folder:
        yield Ledger(folder)


@contextmanager
def progress_bar(
    ledger: Ledger | None,
    total: int,
    label: str,
    *,
    postfix: Callable[[list[list[str]], float], str] | None = None,
    count: Callable[[list[list[str]]], int] = len,
) -> Iterator[None]:
    """Show a bar of ``total`` units fed by ``ledger`` while the body runs (nothing when
    ``ledger`` is None or ``total`` is 0). ``count(rows)`` says how many units the ledger's rows
    finish (all of them by default); ``postfix(rows, seconds)`` adds a note (a rate)."""
    if ledger is None or total <= 0:
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        t0 = time.monotonic()
        with tqdm(total=total, desc=label, unit="h", dynamic_ncols=True) as bar:
            bar.set_postfix_str("starting workers")
            while True:
                finished = stop.wait(0.5)
                rows = ledger.rows()
                bar.update(min(count(rows), total) - bar.n)
                if rows and postfix is not None:
                    bar.set_postfix_str(postfix(rows, time.monotonic() - t0))
                elif rows:
                    bar.set_postfix_str("")
                if finished:
                    break

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


__all__ = ["Ledger", "progress_bar", "temporary_ledger"]
