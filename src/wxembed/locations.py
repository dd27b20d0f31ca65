"""Where things are: a local path, or an object-store URL (``s3://``, ``gs://``, ``az://``,
``memory://``) reached through fsspec.

Archives, Parquet shards and checkpoints may live on either; everything that names one takes a
*location*: a :class:`~pathlib.Path` for a local file or folder, a ``str`` URL otherwise
(:func:`location`). Credentials and endpoints come from each file system's usual settings
(for S3: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``~/.aws``), so
no command needs an option for them. Object stores have no locks and no rename: what must not
be done twice is done with a create-if-absent write (:func:`put_if_absent`), which S3
(``If-None-Match``), local files (``O_EXCL``) and memory support.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

log = logging.getLogger(__name__)

Location = Path | str
"""A local path, or a URL of an object store."""

_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_PATHLIB_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+):/(?!/)")  # "s3:/b/k": a URL pathlib ate


def location(value: str | Path) -> Location:
    """A :class:`Path` for a local path (``file://`` included), the URL string otherwise.

    A URL that went through :class:`pathlib.Path` (``s3:/bucket/key``, as a command-line
    option typed as a path gives it, or ``str`` of one) gets its second slash back.
    """
    text = str(value)
    broken = _PATHLIB_URL.match(text)
    if broken and broken.group(1) in _protocols():
        text = _PATHLIB_URL.sub(r"\1://", text, count=1)
    m = _URL.match(text)
    if not m:
        return Path(text)
    if m.group(1) == "file":
        return Path(text[len("file://") :])
    return text.rstrip("/")


def _protocols() -> set[str]:
    """The URL schemes fsspec knows (s3, gs, az, memory, ...)."""
    from fsspec.registry import known_implementations

    return set(known_implementations)


def is_remote(value: str | Path) -> bool:
    """True for an object-store URL, False for a local path."""
    return isinstance(location(value), str)


def join(base: str | Path, *names: str) -> Location:
    """``base/name/...``: a path under a local folder, a key under a URL."""
    loc = location(base)
    if isinstance(loc, Path):
        return loc.joinpath(*names)
    return "/".join([loc, *names])


def sibling(value: str | Path, suffix: str) -> Location:
    """``value`` with ``suffix`` appended to its last part (``hrrr.zarr`` -> ``hrrr.zarr.lock``)."""
    loc = location(value)
    return loc.with_name(loc.name + suffix) if isinstance(loc, Path) else loc + suffix


def filesystem(value: str | Path):
    """``(fsspec file system, path within it)`` of a location."""
    import fsspec

    loc = location(value)
    if isinstance(loc, Path):
        return fsspec.filesystem("file"), str(loc.absolute())
    return fsspec.core.url_to_fs(loc)


def exists(value: str | Path) -> bool:
    """Whether a file or object (or a folder) is there."""
    loc = location(value)
    if isinstance(loc, Path):
        return loc.exists()
    fs, path = filesystem(loc)
    fs.invalidate_cache(path)  # another process may have written it since a listing was cached
    return fs.exists(path)


def read_bytes(value: str | Path) -> bytes:
    """The whole content of a file or object."""
    loc = location(value)
    if isinstance(loc, Path):
        return loc.read_bytes()
    fs, path = filesystem(loc)
    return fs.cat_file(path)


def put_if_absent(value: str | Path, data: bytes) -> bool:
    """Write ``data`` only if nothing is there yet, in one atomic step; False if something was.

    Local files are written whole under a temporary name and then hard-linked to ``value``
    (``link`` fails if the name exists, and a reader never sees a half-written file, as it could
    between an ``O_EXCL`` create and its write); S3 uses a conditional PUT (``If-None-Match: *``);
    a store without conditional writes would answer as if the write won, so use one that has them.
    """
    loc = location(value)
    if isinstance(loc, Path):
        loc.parent.mkdir(parents=True, exist_ok=True)
        # beside the folder, not in it: a folder's contents may be checked (e.g. "is it empty")
        tmp = loc.parent.with_name(
            f".{loc.parent.name}.{loc.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        )
        tmp.write_bytes(data)
        try:
            os.link(tmp, loc)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        return True
    fs, path = filesystem(loc)
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    except OSError as exc:  # S3's 412 Precondition Failed reaches us as a plain OSError
        if "PreconditionFailed" in str(exc) or "412" in str(exc):
            return False
        raise
    return True


def remove(value: str | Path) -> None:
    """Remove a file or object (nothing if it is not there)."""
    loc = location(value)
    if isinstance(loc, Path):
        loc.unlink(missing_ok=True)
        return
    fs, path = filesystem(loc)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


def remove_tree(value: str | Path) -> None:
    """Remove a folder or a key prefix and all below it (nothing if absent)."""
    import shutil

    loc = location(value)
    if isinstance(loc, Path):
        shutil.rmtree(loc, ignore_errors=True)
        return
    fs, path = filesystem(loc)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def list_files(value: str | Path, suffix: str = "") -> list[Location]:
    """Files (objects) directly in a folder (under a prefix) whose names end with ``suffix``,
    sorted; an empty list when there is no such folder."""
    loc = location(value)
    if isinstance(loc, Path):
        return sorted(p for p in loc.glob(f"*{suffix}") if p.is_file()) if loc.is_dir() else []
    fs, path = filesystem(loc)
    try:
        names = fs.ls(path, detail=False, refresh=True)
    except FileNotFoundError:
        return []
    protocol = loc.split("://", 1)[0]
    out = [n if "://" in n else f"{protocol}://{n.lstrip('/')}" for n in names]
    return sorted(n for n in out if n.endswith(suffix) and n.rstrip("/") != loc)


def local_copy(value: str | Path, suffix: str = "") -> Path:
    """A local file with the content of ``value``: itself when local; for an object, a copy in
    the temporary folder's ``wxembed-cache/``, fetched once per object version (URL, size and
    ETag name the copy), whole or not at all."""
    import hashlib
    import os
    import tempfile

    loc = location(value)
    if isinstance(loc, Path):
        return loc
    fs, path = filesystem(loc)
    fs.invalidate_cache(path)
    info = fs.info(path)
    version = f"{loc}|{info.get('size')}|{info.get('ETag') or info.get('etag') or ''}"
    name = hashlib.sha1(version.encode()).hexdigest()[:20] + suffix
    cache = Path(tempfile.gettempdir()) / "wxembed-cache"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / name
    if not target.exists():
        part = cache / f".{name}.{os.getpid()}.part"
        fs.get_file(path, str(part))
        os.replace(part, target)
    return target


def zarr_store(value: str | Path, *, read_only: bool = False):
    """The Zarr v3 store of a location: Zarr's own local store, or its fsspec store."""
    from zarr.storage import FsspecStore, LocalStore

    loc = location(value)
    if isinstance(loc, Path):
        return LocalStore(str(loc), read_only=read_only)
    return FsspecStore.from_url(loc, read_only=read_only)


__all__ = [
    "Location",
    "exists",
    "filesystem",
    "is_remote",
    "join",
    "list_files",
    "local_copy",
    "location",
    "put_if_absent",
    "read_bytes",
    "remove",
    "remove_tree",
    "sibling",
    "zarr_store",
]
