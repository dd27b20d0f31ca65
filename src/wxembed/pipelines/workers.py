"""What a run leaves of its workers: scratch folders, and the errors they raise.

Scratch folders. Each folder a run makes for itself (a progress ledger, a staging folder of
shards) holds an owner lock (``flock`` on its ``.owner`` file) while the run lives. The kernel
drops the lock when the run ends, however it ends, so the next run that sweeps (:func:`sweep`)
removes exactly the folders of runs that were killed, and never one in use. A folder without an
owner file (left by an older wxembed, or caught in the instant between its creation and its
lock) is removed only once it is a day old.

Errors. Beam's multi-process DirectRunner hands a worker's exception back to the driver as a
``RuntimeError`` holding the worker's traceback as text; :func:`worker_errors` raises a
:class:`~wxembed.errors.WxembedError` found at its end again as itself, so that a fatal problem
(the archive's disk is full or read-only) reaches the person as one ``error:`` line.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wxembed import errors

log = logging.getLogger(__name__)

OWNER = ".owner"
"""The file in a scratch folder its run holds locked."""
STALE_AFTER_S = 24 * 3600.0
"""Age, in seconds, after which a scratch folder without an owner file is removed."""


@contextmanager
def owned_folder(prefix: str, parent: str | Path | None = None) -> Iterator[Path]:
    """A fresh folder ``parent/prefixXXXX`` (the temporary folder by default), locked by this
    process while the block runs, and removed after it (unless the block moved it away; take
    :data:`OWNER` out of it first). Stale folders of the same prefix are swept first."""
    parent = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    sweep(parent, prefix + "*")
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    owner = open(folder / OWNER, "w")  # noqa: SIM115 - held open (locked) until the block ends
    try:
        fcntl.flock(owner, fcntl.LOCK_EX)
        yield folder
    finally:
        owner.close()
        shutil.rmtree(folder, ignore_errors=True)


def sweep(parent: str | Path, pattern: str) -> list[Path]:
    """Remove the folders matching ``pattern`` in ``parent`` whose run is gone (see the module
    docstring); returns those removed. Never raises: a folder that cannot be examined stays."""
    removed = []
    for folder in Path(parent).glob(pattern):
        try:
            if not folder.is_dir() or folder.is_symlink() or not _abandoned(folder):
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            log.info("removed %s, left by a run that was killed", folder)
            removed.append(folder)
    return removed


def _abandoned(folder: Path) -> bool:
    """True when no live process holds ``folder``'s owner lock (or, without an owner file, when
    the folder is older than :data:`STALE_AFTER_S`)."""
    try:
        fd = os.open(folder / OWNER, os.O_RDWR)
    except FileNotFoundError:
        return time.time() - folder.stat().st_mtime > STALE_AFTER_S
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its run is alive
    finally:
        os.close(fd)  # releases the lock taken just now
    return True


_RAISED = re.compile(r"^wxembed\.errors\.(\w+): (.+)$", re.MULTILINE)
_BEAM_STEP = re.compile(r"(?: \[while running '[^']*'\])+$")


def worker_error(exc: BaseException) -> errors.WxembedError | None:
    """The :class:`~wxembed.errors.WxembedError` a worker raised, from the exception Beam
    raised in the driver (itself, or a ``RuntimeError`` quoting the worker's traceback), with
    Beam's ``[while running '...']`` notes taken off; None when it holds none."""
    if isinstance(exc, errors.WxembedError):
        text = _BEAM_STEP.sub("", str(exc))
        return exc if text == str(exc) else type(exc)(text)
    found = _RAISED.findall(str(exc))
    if not found:
        return None
    name, text = found[-1]
    kind = getattr(errors, name, None)
    if not (isinstance(kind, type) and issubclass(kind, errors.WxembedError)):
        kind = errors.WxembedError
    try:
        return kind(_BEAM_STEP.sub("", text.strip()))
    except TypeError:  # an error type whose constructor takes more
        return errors.WxembedError(_BEAM_STEP.sub("", text.strip()))


@contextmanager
def worker_errors() -> Iterator[None]:
    """Around a pipeline run: a worker's :class:`~wxembed.errors.WxembedError` is raised again
    as itself (see :func:`worker_error`); anything else passes unchanged."""
    try:
        yield
    except Exception as exc:
        found = worker_error(exc)
        if found is None:
            raise
        if found is exc:
            raise
        raise found from None


__all__ = ["OWNER", "owned_folder", "sweep", "worker_error", "worker_errors"]
