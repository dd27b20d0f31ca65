"""Exploring: ``wxembed serve``, the web page and JSON API over :mod:`wxembed.serve`.

FastAPI and uvicorn come with the optional extra ``serve``; the command says so in one line
when they are absent.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from wxembed.cli import console
from wxembed.cli.options import CHECKPOINT_HELP
from wxembed.errors import ServeError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free one); :class:`ServeError` when the
    address cannot be had."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        # IPPROTO_TCP named, so that asyncio sets TCP_NODELAY on each connection (it checks the
        # protocol): without it a response waits 40 ms for the client's delayed ACK
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # connections queue from now on, before the server's loop accepts them
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def serve(
    output: Annotated[
        Path | None,
        typer.Argument(
            help="The main job's output folder (wxembed demo --out): its archive, "
            "embeddings.duckdb, model/ and evaluation.json."
        ),
    ] = None,
    archive: Annotated[Path | None, typer.Option(help="The archive to browse.")] = None,
    index: Annotated[Path | None, typer.Option(help="The embedding index to search.")] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help=f"{CHECKPOINT_HELP} Default: the one the index recorded."),
    ] = None,
    evaluation: Annotated[
        Path | None, typer.Option(help="evaluation.json from wxembed evaluate.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model id (needed when the index holds several).")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 opens it to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8000,
    allow_clustering: Annotated[
        bool,
        typer.Option(
            "--allow-clustering", help="Let the page run k-means (writes clusters to the index)."
        ),
    ] = False,
    max_upload_mb: Annotated[
        float, typer.Option(min=0.01, max=1024, help="Largest query file a page may upload.")
    ] = 16.0,
    exact: Annotated[
        bool,
        typer.Option(
            "--exact",
            help="Search every row for every query (default: an index of 200,000 hours or more "
            "is searched approximately, with a structure built at start).",
        ),
    ] = False,
) -> None:
    """A web page and a JSON API over an archive, its embeddings, model and scores.

    Browse the hours on a map, find similar weather, see reconstructions, regimes and
    interpolations, and the evaluation's scores. Read-only unless --allow-clustering.
    """
    from wxembed.serve.config import ServeConfig

    config = ServeConfig.from_folder(
        output,
        archive=archive,
        index=index,
        checkpoint=checkpoint,
        evaluation=evaluation,
        model_id=model,
        allow_clustering=allow_clustering,
        max_upload_bytes=int(max_upload_mb * 2**20),
        exact=exact,
    )
    try:
        import uvicorn  # heavy: the optional extra

        from wxembed.serve.app import create_app  # heavy: FastAPI, PyTorch, DuckDB
    except ImportError as exc:
        raise ServeError(
            f"wxembed serve needs the 'serve' extra ({exc.name} is missing): "
            "pip install 'wxembed[serve]'"
        ) from None
    sock = _listen(host, port)  # before the seconds of start-up: a port in use is said at once
    try:
        app = create_app(config)
    except BaseException:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    typer.echo(
        f"serving {config.archive} at http://{shown}:{bound}/ (the API: /docs); Ctrl-C stops"
    )
    if host not in LOOPBACK:
        typer.echo(
            f"warning: listening on {host}: anyone who reaches this machine can use it", err=True
        )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="debug" if console.is_verbose() else "warning",
            timeout_keep_alive=5,
            limit_concurrency=128,
        )
    )
    server.run(sockets=[sock])


def register(app: typer.Typer) -> None:
    """Add serve to ``app``."""
    console.add_commands(app, serve)


__all__ = ["register", "serve"]
