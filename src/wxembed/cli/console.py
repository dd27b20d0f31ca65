"""What a person sees in the terminal: log lines, a user's mistake in one line, JSON, summaries.

Without ``--verbose`` the console shows wxembed's own lines and progress bars: the INFO chatter of
dependencies, their deprecation warnings and the start-up lines of Beam's worker processes are
held back. ``--verbose`` brings all of it back, with each line's level and logger.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from wxembed.errors import WxembedError

_state = {"verbose": False}

BEAM_WORKER_NOISE = re.compile(
    r"(?:INFO|WARNING):[\w.]+:(?:apitools not found|Logging handler created"
    r"|No semi_persistent_directory found|Discarding unparseable args)[^\n]*\n?"
)
"""What each Beam worker process prints on start-up, on the stderr it inherits from ours, before
its log level applies: the GCP extras are absent (not needed), its log handler, no staged main
session (none is needed on one machine), options meant for the driver. None asks anything of a
user."""


class _ConsoleFormatter(logging.Formatter):
    """INFO as the bare message; warnings and errors prefixed with their level."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        return text


def setup_logging(verbose: bool) -> None:
    """Log to stderr: wxembed's INFO lines and every warning; with ``verbose``, everything."""
    _state["verbose"] = verbose
    handler = logging.StreamHandler(sys.stderr)
    if verbose:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_ConsoleFormatter("%(message)s"))
        # Beam warns on import that its GCP extras are absent; they are not needed
        handler.addFilter(lambda record: not str(record.msg).startswith("apitools not found"))
        handler.addFilter(_not_a_worker_error)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler])
    logging.getLogger("wxembed").setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        logging.getLogger("apache_beam").setLevel(logging.ERROR)  # relays workers' chatter
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category)  # asks nothing of a user


def _not_a_worker_error(record: logging.LogRecord) -> bool:
    """False for Beam's own log, with a traceback, of a :class:`WxembedError` a worker raised:
    the command reports that error itself, in one line."""
    if not record.name.startswith("apache_beam"):
        return True
    exc = record.exc_info[1] if record.exc_info else None
    return not (isinstance(exc, WxembedError) or "wxembed.errors." in record.getMessage())


def is_verbose() -> bool:
    """Whether ``--verbose`` was given."""
    return _state["verbose"]


@contextmanager
def show_only(logger: str) -> Iterator[None]:
    """Unless verbose, of wxembed's INFO lines show only those of ``logger`` (a job's stages)
    while the body runs."""
    loggers = [logging.getLogger("wxembed"), logging.getLogger(logger)]
    levels = [lg.level for lg in loggers]
    if not is_verbose():
        loggers[0].setLevel(logging.WARNING)
        loggers[1].setLevel(logging.INFO)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def tame_lightning() -> None:
    """Lightning logs each line twice (through a handler of its own and through ours) and at
    INFO tells of absent GPUs and TPUs and of its cloud products: one copy, and unless verbose,
    only its warnings. Call it when Lightning is about to be used: its import resets its levels."""
    import lightning.pytorch  # noqa: F401  (heavy: PyTorch; its import sets the levels we reset)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        if logging.getLogger().handlers:  # ours (or pytest's) prints them: drop Lightning's own
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True
        logger.setLevel(logging.INFO if is_verbose() else logging.WARNING)


# ---- output ----------------------------------------------------------------------------------
def to_json(obj) -> str:
    """JSON for people and programs: indented, NaN and infinities as null (strict readers refuse
    NaN), anything else JSON does not know (times, paths) as its string."""
    from wxembed.evaluation.metrics import strict_json  # heavy: numpy, scipy, scikit-image

    return strict_json(obj)


def write_atomically(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it, renamed into place: a
    reader (or a failed run) never sees a partial or empty file, and an old one stays until
    the new one is complete."""
    import tempfile
    from pathlib import Path

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would have made it, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def echo_json(obj) -> None:
    """Print :func:`to_json` of ``obj``."""
    typer.echo(to_json(obj))


def finish_run(report, summary: str) -> None:
    """The end of a run that fills an archive: every hour that did not make it, one line each on
    stderr; the manifest summary; exit code 1 when an hour failed (missing is not a failure)."""
    for rec in report.problems():
        typer.echo(f"{rec['status']}: {rec['time'] or '?'}: {rec['reason']}", err=True)
    typer.echo(summary)
    if report.counts()["failed"]:
        raise typer.Exit(code=1)


# ---- errors ----------------------------------------------------------------------------------
def exit_on_user_error(command: Callable) -> Callable:
    """Wrap a command: a :class:`~wxembed.errors.WxembedError` (a user's mistake or bad input,
    named in its message) becomes ``error: <message>`` on stderr and exit code 2, no traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except WxembedError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None

    return run


def add_commands(app: typer.Typer, *commands: Callable) -> None:
    """Register each function as a sub-command of ``app``, behind :func:`exit_on_user_error`."""
    for command in commands:
        app.command()(exit_on_user_error(command))


# ---- Beam's worker processes -----------------------------------------------------------------
@contextmanager
def beam_worker_output() -> Iterator[None]:
    """While the body runs, pass what goes to file descriptor 2 (where Beam's local worker
    processes, which inherit it, print) through a filter that drops :data:`BEAM_WORKER_NOISE`.
    Python's own ``sys.stderr`` (log lines, progress bars) still writes to the terminal directly,
    so their order and the terminal's width are kept. Nothing is filtered when verbose."""
    if is_verbose():
        yield
        return
    try:
        sys.stderr.flush()
        terminal = os.dup(2)
    except (OSError, ValueError):  # no stderr to filter
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    swapped = _python_stderr_to(terminal)
    forward = threading.Thread(target=_forward, args=(read_end, os.dup(terminal)), daemon=True)
    forward.start()
    try:
        yield
    finally:
        if swapped:
            _python_stderr_back(*swapped)
        os.dup2(terminal, 2)  # the pipe's last writers are now the workers, which are ending
        os.close(terminal)
        forward.join(timeout=2.0)


def _forward(read_end: int, out: int) -> None:
    """Copy the pipe to ``out`` without the noise, until every writer has closed it."""
    pending = b""
    reports = WorkerErrorReports()
    try:
        while chunk := os.read(read_end, 65536):
            text = (pending + chunk).decode("utf-8", errors="replace")
            head, sep, pending_text = text.rpartition("\n")  # hold a partial last line back
            kept = reports.filter(BEAM_WORKER_NOISE.sub("", head + sep))
            pending = pending_text.encode()
            if kept:
                os.write(out, kept.encode())
        last = reports.filter(pending.decode(errors="replace"), end=True)
        if last:
            os.write(out, BEAM_WORKER_NOISE.sub("", last).encode())
    except OSError:
        pass
    finally:
        os.close(read_end)
        os.close(out)


class WorkerErrorReports:
    """Holds back, from what Beam's worker processes print, their reports of a
    :class:`~wxembed.errors.WxembedError` (an ``ERROR:apache_beam...`` line and its tracebacks):
    the command reports that error itself, in one ``error:`` line. Any other traceback is
    passed on whole."""

    _RECORD = re.compile(r"(?:ERROR|WARNING):apache_beam[\w.]*:")
    _START = re.compile(r"(?:ERROR|WARNING):apache_beam[\w.]*:|Traceback \(most recent call")
    _BODY = re.compile(r"\s|$|Traceback \(most|During handling|The above exception|[\w.]+(?::|$)")
    _OURS = re.compile(r"wxembed\.errors\.\w+: ")

    def __init__(self) -> None:
        self._held: list[str] = []
        self._ours = False

    def filter(self, text: str, *, end: bool = False) -> str:
        """The lines of ``text`` (whole lines, but with ``end`` the last) to pass on now."""
        out: list[str] = []
        for line in text.splitlines(keepends=True):
            bare = line.rstrip("\r\n")
            if self._held and (
                self._RECORD.match(bare) or not self._BODY.match(bare) or self._new_report(bare)
            ):
                out += self._close()
            if self._held or self._START.match(bare):
                self._held.append(line)
                self._ours = self._ours or bool(self._OURS.match(bare))
            else:
                out.append(line)
        if end:
            out += self._close()
        return "".join(out)

    def _new_report(self, bare: str) -> bool:
        """Whether a traceback starts a report of its own, not the next of a chain."""
        if not bare.startswith("Traceback (most recent call"):
            return False
        last = next((x.strip() for x in reversed(self._held) if x.strip()), "")
        chained = last.startswith(("During handling", "The above exception"))
        return not (chained or self._RECORD.match(last))

    def _close(self) -> list[str]:
        held, ours = self._held, self._ours
        self._held, self._ours = [], False
        return [] if ours else held


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return [
        h
        for lg in loggers
        if isinstance(lg, logging.Logger)
        for h in lg.handlers
        if isinstance(h, logging.StreamHandler)
    ]


def _python_stderr_to(terminal: int):
    """Point ``sys.stderr``, and the log handlers writing to it, at ``terminal``, when it is the
    process's descriptor 2 (not when a test runner captures it)."""
    old = sys.stderr
    try:
        if old.fileno() != 2:
            return None
    except (AttributeError, OSError, ValueError):
        return None
    new = open(os.dup(terminal), "w", buffering=1, encoding=old.encoding, errors=old.errors)
    handlers = [h for h in _stream_handlers() if h.stream is old]
    sys.stderr = new
    for h in handlers:
        h.setStream(new)
    return old, new, handlers


def _python_stderr_back(old, new, handlers: list[logging.StreamHandler]) -> None:
    new.flush()
    sys.stderr = old
    for h in handlers:
        h.setStream(old)


__all__ = [
    "BEAM_WORKER_NOISE",
    "add_commands",
    "beam_worker_output",
    "echo_json",
    "exit_on_user_error",
    "finish_run",
    "is_verbose",
    "setup_logging",
    "show_only",
    "tame_lightning",
    "to_json",
    "write_atomically",
]
