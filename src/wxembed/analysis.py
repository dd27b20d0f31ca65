"""What embeddings are for: search, interpolation, clustering, and encoding to and from fields.

Every function takes paths or opened objects and returns plain values (DataFrames, dicts,
:class:`Embedding`, :class:`~wxembed.sources.DecodedField`), so the ``wxembed`` sub-commands are
thin wrappers around them:

- :func:`search_similar`: the k hours of an index nearest to a query hour, embedding, field or
  GRIB2 file, leaving out a window around the query and optionally filtered by month, hour of
  day and date range; :func:`plot_matches` draws them.
- :func:`interpolate_hours` (one pair) and :func:`interpolation_skill` (every pair of an
  archive): decode a convex combination of two hours' embeddings and score it, with
  :mod:`wxembed.metrics`, against the real hour between them and against the plain pixel
  average of the two.
- :func:`cluster_index`: k-means (k-means++) on an index's embeddings; assignments and
  centroids stored in the index, centroids decoded into pictures, how often each cluster occurs
  by month and hour of day, and the adjusted Rand index against a synthetic archive's regimes.
- :func:`encode_field` / :func:`decode_embedding`: a GRIB2 file, an archive hour or an array to
  its embedding and back to a field (NetCDF, GRIB2 or PNG via :func:`write_field`).

Models are loaded from their checkpoints alone (:func:`load_embedding_model`, cached).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from wxembed.archive import Archive, decode_raw, format_time, from_seconds, to_seconds
from wxembed.errors import ArchiveError, WxembedError
from wxembed.grid import Grid
from wxembed.index import (
    METRICS,
    EmbeddingError,
    EmbeddingIndex,
    EmbeddingIndexError,
    ModelInfo,
    check_k,
    model_id_for,
)
from wxembed.sources import DecodedField

log = logging.getLogger(__name__)

GRIB_SUFFIXES = (".grib2", ".grb2", ".grib", ".grb")
"""File name endings read (and written) as GRIB2."""
FIELD_FORMATS = {".nc": "netcdf", ".png": "png", **dict.fromkeys(GRIB_SUFFIXES, "grib2")}
"""Output file endings of :func:`write_field` and the format each selects."""
EMBEDDING_FORMAT = "wxembed-embedding"
"""The ``format`` member of an embedding JSON file."""

_LOWER_IS_BETTER = ("mse", "rmse", "mae", "far_")
_HIGHER_IS_BETTER = ("csi_", "pod_", "fss_", "ssim")
HEADLINE_SCORES = ("mse", "mae", "csi_20", "csi_35", "csi_45", "fss_35_27km", "ssim")
"""Scores compared, one by one, to say which interpolation wins."""


# ---- the model -------------------------------------------------------------------------------
def resolve_device(device: str = "auto") -> str:
    """The torch device for ``device``: "auto" is "cuda" when a GPU is visible, else "cpu"."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class EmbeddingModel:
    """A trained autoencoder from a checkpoint: uint8 or dBZ fields to embeddings and back.

    Inputs go through the device in batches of ``batch_size``; outputs are numpy.
    """

    def __init__(self, checkpoint: str | Path, *, device: str = "auto", batch_size: int = 8):
        from wxembed.train import load_model

        module, grid = load_model(checkpoint)
        import torch

        self.checkpoint = Path(checkpoint)
        self.grid: Grid = grid
        self.device = torch.device(resolve_device(device))
        self.net = module.net.to(self.device).eval()
        self.batch_size = batch_size
        arch = str(module.hparams.arch)
        self.info = ModelInfo(
            model_id=model_id_for(arch, checkpoint),
            arch=arch,
            embedding_dim=int(module.net.embedding_dim),
            grid_json=grid.to_json(),
            checkpoint=str(self.checkpoint.resolve()),
            archive=str(module.hparams.get("archive", "")),
        )

    @property
    def model_id(self) -> str:
        return self.info.model_id

    @property
    def embedding_dim(self) -> int:
        return self.info.embedding_dim

    def _check_shape(self, fields: np.ndarray, what: str) -> np.ndarray:
        if fields.ndim == 2:
            fields = fields[None]  # (ny, nx) -> (1, ny, nx)
        if fields.ndim != 3 or tuple(fields.shape[1:]) != self.grid.shape:
            raise EmbeddingError(
                f"{what} of shape {tuple(fields.shape)} does not fit model {self.model_id}, "
                f"trained on {self.grid.describe()} (shape {self.grid.shape})"
            )
        return fields

    def _encode(self, fields: np.ndarray, normalise) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(fields), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(fields[i : i + self.batch_size]))
                x = normalise(x[:, None].to(self.device))  # (b, ny, nx) -> (b, 1, ny, nx) in [0, 1]
                out.append(self.net.encode(x).float().cpu().numpy())  # -> (b, d)
        return np.concatenate(out) if out else np.zeros((0, self.embedding_dim), np.float32)

    def encode_raw(self, raw: np.ndarray) -> np.ndarray:
        """Archive uint8 codes ``(n, ny, nx)`` (or one ``(ny, nx)``) -> embeddings ``(n, d)``."""
        from wxembed.model.common import normalise_raw

        raw = self._check_shape(np.asarray(raw), "raw field")
        if raw.dtype != np.uint8:
            raise EmbeddingError(f"raw archive codes must be uint8, got {raw.dtype}")
        return self._encode(raw, normalise_raw)

    def encode_dbz(self, dbz: np.ndarray) -> np.ndarray:
        """dBZ fields ``(n, ny, nx)`` (NaN = no data) -> embeddings ``(n, d)``."""
        from wxembed.model.common import normalise_dbz

        dbz = self._check_shape(np.asarray(dbz, dtype=np.float32), "field")
        return self._encode(dbz, normalise_dbz)

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Embeddings ``(n, d)`` (or one ``(d,)``) -> dBZ fields ``(n, ny, nx)``, 0..60 dBZ."""
        import torch

        from wxembed.model.common import to_dbz

        z = np.asarray(z, dtype=np.float32)
        if z.ndim == 1:
            z = z[None]  # (d,) -> (1, d)
        if z.ndim != 2 or z.shape[1] != self.embedding_dim:
            raise EmbeddingError(
                f"embedding of shape {tuple(z.shape)} does not fit model {self.model_id}, "
                f"which makes {self.embedding_dim} numbers"
            )
        if not np.all(np.isfinite(z)):
            raise EmbeddingError("embedding holds NaN or infinite values")
        out = []
        with torch.inference_mode():
            for i in range(0, len(z), self.batch_size):
                zz = torch.from_numpy(np.ascontiguousarray(z[i : i + self.batch_size]))
                y = self.net.decode(zz.to(self.device))  # (b, d) -> (b, 1, ny, nx) in [0, 1]
                out.append(to_dbz(y.float())[:, 0].cpu().numpy())  # -> (b, ny, nx) dBZ
        return np.concatenate(out)

    def compression(self) -> dict[str, float | int]:
        """How much smaller an embedding is than the image it stands for."""
        return compression_ratio(self.grid.shape, self.embedding_dim)


def compression_ratio(shape: tuple[int, int], embedding_dim: int) -> dict[str, float | int]:
    """Pixels per embedding number, and archive bytes (uint8) per embedding bytes (float32)."""
    pixels = int(shape[0]) * int(shape[1])
    return {
        "pixels": pixels,
        "embedding_dim": int(embedding_dim),
        "compression_ratio": round(pixels / embedding_dim, 1),
        "bytes_ratio": round(pixels / (4 * embedding_dim), 1),
    }


@lru_cache(maxsize=4)
def _cached_model(path: str, mtime_ns: int, size: int, device: str) -> EmbeddingModel:
    return EmbeddingModel(path, device=device)


def load_embedding_model(checkpoint: str | Path, *, device: str = "auto") -> EmbeddingModel:
    """The model of a checkpoint, loaded once per file version (cached)."""
    from wxembed.train import CheckpointError

    p = Path(checkpoint)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint")
    st = p.stat()
    return _cached_model(str(p.resolve()), st.st_mtime_ns, st.st_size, device)


def _check_archive_grid(model: EmbeddingModel, archive: Archive) -> None:
    from wxembed.train import check_grid

    check_grid(model.grid, archive, f"model {model.model_id} ({model.checkpoint})")


def _as_archive(archive: str | Path | Archive) -> Archive:
    return archive if isinstance(archive, Archive) else Archive(archive)


# ---- embeddings as values and files ----------------------------------------------------------
@dataclass(frozen=True)
class Embedding:
    """One hour's embedding and where it came from."""

    vector: np.ndarray
    """(d,) float32."""
    model_id: str = ""
    """The model that made it ("" when unknown, e.g. read from a bare .npy file)."""
    time: np.datetime64 | None = None
    """Valid time of the field it encodes, when known."""
    source: str = ""
    """The file or archive hour it was made from."""
    grid_shape: tuple[int, int] | None = None
    """Shape of the field it encodes."""

    @property
    def embedding_dim(self) -> int:
        return int(self.vector.shape[0])

    def compression(self) -> dict[str, float | int] | None:
        if self.grid_shape is None:
            return None
        return compression_ratio(self.grid_shape, self.embedding_dim)

    def to_dict(self) -> dict:
        out = {
            "format": EMBEDDING_FORMAT,
            "version": 1,
            "model_id": self.model_id,
            "embedding_dim": self.embedding_dim,
            "time": None if self.time is None else str(np.datetime64(self.time, "s")),
            "source": self.source,
            "embedding": [float(v) for v in self.vector],
        }
        if self.grid_shape is not None:
            out["grid_shape"] = list(self.grid_shape)
            out.update({k: v for k, v in self.compression().items() if k != "embedding_dim"})
        return out

    def save(self, path: str | Path) -> Path:
        """Write as JSON (``.json``, with its provenance) or a bare vector (``.npy``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".npy":
            np.save(path, self.vector.astype(np.float32))
        elif path.suffix == ".json":
            path.write_text(json.dumps(self.to_dict(), indent=1))
        else:
            raise EmbeddingError(f"{path}: write an embedding as .json or .npy")
        return path


def load_embedding(path: str | Path) -> Embedding:
    """Read an embedding file (``.json`` as :meth:`Embedding.save` writes it, or ``.npy``);
    :class:`EmbeddingError` names the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise EmbeddingError(f"{path}: no such embedding file")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise EmbeddingError(f"{path}: not a readable .npy file ({exc})") from None
        return Embedding(_vector(arr, str(path)), source=str(path))
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EmbeddingError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(doc, list):
        doc = {"embedding": doc}
    if not isinstance(doc, dict) or "embedding" not in doc:
        raise EmbeddingError(f"{path}: no 'embedding' member (expected a {EMBEDDING_FORMAT} file)")
    values = doc["embedding"]
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise EmbeddingError(f"{path}: 'embedding' must be a list of numbers")
    vector = _vector(np.asarray(values, dtype=np.float64), str(path))
    dim = doc.get("embedding_dim")
    if dim is not None and dim != len(vector):
        raise EmbeddingError(f"{path}: says embedding_dim {dim} but holds {len(vector)} numbers")
    t = doc.get("time")
    try:
        time = None if t in (None, "") else from_seconds(to_seconds(t))[0]
    except (ValueError, TypeError):
        raise EmbeddingError(f"{path}: 'time' {t!r} is not a time") from None
    shape = doc.get("grid_shape")
    return Embedding(
        vector,
        model_id=str(doc.get("model_id") or ""),
        time=time,
        source=str(doc.get("source") or path),
        grid_shape=tuple(int(n) for n in shape)
        if isinstance(shape, list) and len(shape) == 2
        else None,
    )


def _vector(arr: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fiu":
        raise EmbeddingError(f"{what}: an embedding must hold numbers, got {arr.dtype}")
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]  # (1, d) -> (d,)
    if arr.ndim != 1 or arr.size == 0:
        raise EmbeddingError(f"{what}: an embedding is one vector, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise EmbeddingError(f"{what}: the embedding holds NaN or infinite values")
    return arr.astype(np.float32)


# ---- encode / decode -------------------------------------------------------------------------
def read_field(path: str | Path) -> DecodedField:
    """A field to encode from a file: GRIB2 (REFC) or ``.npy`` (a dBZ array, NaN = no data)."""
    path = Path(path)
    if path.suffix == ".npy":
        try:
            dbz = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise EmbeddingError(f"{path}: not a readable .npy file ({exc})") from None
        if dbz.dtype.kind not in "fiu" or dbz.ndim != 2:
            raise EmbeddingError(
                f"{path}: expected a 2-D dBZ array, got {dbz.dtype} of shape {dbz.shape}"
            )
        return DecodedField(
            time=np.datetime64("NaT", "s"),
            grid=None,
            dbz=dbz.astype(np.float32),  # type: ignore[arg-type]
            source=str(path),
        )
    from wxembed.sources.grib import decode_refc

    return decode_refc(path)


def encode_field(
    source: str | Path | np.ndarray | DecodedField | None = None,
    *,
    checkpoint: str | Path,
    archive: str | Path | Archive | None = None,
    time=None,
) -> Embedding:
    """The embedding of one field: a GRIB2 file, a ``.npy`` dBZ array, an array or
    :class:`DecodedField` in memory, or (``source=None``) the hour ``time`` of ``archive``.

    The field must be on the grid the model was trained on.
    """
    model = load_embedding_model(checkpoint)
    if source is None:
        if archive is None or time is None:
            raise EmbeddingError("give a field to encode, or an archive and a time")
        a = _as_archive(archive)
        _check_archive_grid(model, a)
        raw = a.read_raw([time])  # (1, ny, nx) uint8
        t = from_seconds(to_seconds(time))[0]
        return Embedding(
            model.encode_raw(raw)[0],
            model.model_id,
            t,
            f"{a.path} {format_time(t)}",
            model.grid.shape,
        )
    if isinstance(source, str | Path):
        field = read_field(source)
    elif isinstance(source, DecodedField):
        field = source
    else:
        field = DecodedField(
            time=np.datetime64("NaT", "s"),
            grid=None,
            dbz=np.asarray(source, np.float32),  # type: ignore[arg-type]
            source="array",
        )
    if field.grid is not None and not field.grid.same_as(model.grid):
        raise EmbeddingError(
            f"{field.source}: the field is on {field.grid.describe()}, but model "
            f"{model.model_id} was trained on {model.grid.describe()}"
        )
    t = None if np.isnat(field.time) else np.datetime64(field.time, "s")
    z = model.encode_dbz(np.asarray(field.dbz))[0]
    return Embedding(z, model.model_id, t, field.source, model.grid.shape)


def _embedding_from(value, what: str = "embedding") -> Embedding:
    if isinstance(value, Embedding):
        return value
    if isinstance(value, str | Path):
        return load_embedding(value)
    return Embedding(_vector(np.asarray(value), what))


def decode_embedding(
    embedding: Embedding | np.ndarray | Sequence[float] | str | Path,
    *,
    checkpoint: str | Path,
    out: str | Path | None = None,
    time=None,
) -> DecodedField:
    """Decode an embedding (an :class:`Embedding`, a vector, or a ``.json``/``.npy`` file) into a
    dBZ field on the model's grid; with ``out``, also write it (see :func:`write_field`).

    An embedding that names its model must come from the checkpoint's model.
    """
    emb = _embedding_from(embedding)
    model = load_embedding_model(checkpoint)
    if emb.model_id and emb.model_id != model.model_id:
        raise EmbeddingError(
            f"{emb.source or 'the embedding'} was made by model {emb.model_id}, but the "
            f"checkpoint is model {model.model_id}; embeddings of different models are not "
            "interchangeable"
        )
    if emb.embedding_dim != model.embedding_dim:
        raise EmbeddingError(
            f"{emb.source or 'the embedding'} has {emb.embedding_dim} numbers, model "
            f"{model.model_id} makes {model.embedding_dim}"
        )
    t = emb.time if time is None else from_seconds(to_seconds(time))[0]
    field = DecodedField(
        time=np.datetime64("NaT", "s") if t is None else np.datetime64(t, "s"),
        grid=model.grid,
        dbz=model.decode(emb.vector)[0],
        source=f"decoded by wxembed model {model.model_id} from a {model.embedding_dim}-number "
        "embedding",
    )
    if out is not None:
        write_field(out, field)
    return field


def write_field(path: str | Path, field: DecodedField, *, title: str | None = None) -> Path:
    """Write a field as NetCDF (``.nc``, CF), GRIB2 (``.grib2``, REFC on the field's grid) or
    PNG (``.png``, NWS colours), chosen by the file name's ending."""
    path = Path(path)
    kind = FIELD_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise WxembedError(f"{path}: unknown output format; name it .nc, .grib2 or .png")
    has_time = not np.isnat(np.datetime64(field.time, "s"))
    if kind == "png":
        from wxembed.plot import save_field_png

        if title is None:
            title = "Decoded reflectivity" + (f" {format_time(field.time)}" if has_time else "")
        return save_field_png(path, field.dbz, field.grid, title=title)
    if kind == "grib2":
        if not has_time:
            raise WxembedError(f"{path}: GRIB2 needs a valid time; give one (--time)")
        from wxembed.sources.grib import write_refc_file

        return write_refc_file(path, field)
    return _write_netcdf(path, field, has_time)


def _write_netcdf(path: Path, field: DecodedField, has_time: bool) -> Path:
    import xarray as xr

    grid = field.grid
    lat, lon = grid.latlon()
    refl = xr.DataArray(
        np.asarray(field.dbz, dtype=np.float32),
        dims=("y", "x"),
        attrs={
            "long_name": "composite radar reflectivity",
            "units": "dBZ",
            "standard_name": "equivalent_reflectivity_factor",
            "grid_mapping": "crs",
            "coordinates": "lat lon",
        },
    )
    crs_attrs = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in grid.cf_grid_mapping().items()
        if isinstance(v, str | int | float | tuple)
    }
    ds = xr.Dataset(
        {"reflectivity": refl, "crs": xr.DataArray(np.int32(0), attrs=crs_attrs)},
        coords={
            "y": ("y", grid.y),
            "x": ("x", grid.x),
            "lat": (("y", "x"), lat.astype(np.float32), {"units": "degrees_north"}),
            "lon": (("y", "x"), lon.astype(np.float32), {"units": "degrees_east"}),
        },
        attrs={
            "Conventions": "CF-1.10",
            "title": "Reflectivity decoded from an embedding",
            "source": field.source,
            "institution": "made with wxembed",
        },
    )
    if has_time:
        ds = ds.assign_coords(time=np.datetime64(field.time, "ns"))
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, engine="scipy")
    return path


# ---- search ----------------------------------------------------------------------------------
def _open_index(index: str | Path | EmbeddingIndex, read_only: bool = True):
    if isinstance(index, EmbeddingIndex):
        return index, False
    return EmbeddingIndex(index, read_only=read_only), True


def _model_for_index(info: ModelInfo, checkpoint: str | Path | None) -> EmbeddingModel:
    """The model that made an index's embeddings, to embed a query or decode a centroid."""
    path = checkpoint or info.checkpoint
    if not path or not Path(path).is_file():
        raise EmbeddingIndexError(
            f"model {info.model_id} is needed to embed or decode, but its checkpoint "
            f"{info.checkpoint or '(none recorded)'} is gone; pass the checkpoint"
        )
    model = load_embedding_model(path)
    if model.model_id != info.model_id:
        raise EmbeddingIndexError(
            f"checkpoint {path} is model {model.model_id} ({model.embedding_dim} numbers on "
            f"{model.grid.describe()}), but the index's embeddings are from {info.model_id} "
            f"({info.embedding_dim} numbers on {info.grid.describe()}); embeddings of different "
            "models are not comparable"
        )
    return model


def _looks_like_file(query) -> bool:
    if isinstance(query, Path):
        return True
    if not isinstance(query, str):
        return False
    return Path(query).suffix.lower() in (".json", ".npy", *GRIB_SUFFIXES) or Path(query).is_file()


def _resolve_query(index: EmbeddingIndex, info: ModelInfo, query, checkpoint):
    """A query as ``(vector or time, the time to exclude around or None, a description)``."""
    if isinstance(query, Embedding):
        emb = query
    elif _looks_like_file(query):
        path = Path(query)
        if not path.is_file():
            raise EmbeddingError(f"{path}: no such file")
        if path.suffix.lower() == ".json":
            emb = load_embedding(path)
        elif path.suffix.lower() == ".npy":
            try:
                arr = np.load(path, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise EmbeddingError(f"{path}: not a readable .npy file ({exc})") from None
            if arr.ndim == 2 and arr.shape[0] > 1:  # a dBZ field
                model = _model_for_index(info, checkpoint)
                emb = encode_field(path, checkpoint=model.checkpoint)
            else:
                emb = Embedding(_vector(arr, str(path)), source=str(path))
        else:  # GRIB2
            model = _model_for_index(info, checkpoint)
            emb = encode_field(path, checkpoint=model.checkpoint)
    elif isinstance(query, np.ndarray | list | tuple) and not isinstance(query, str):
        arr = np.asarray(query)
        if arr.ndim == 2 and arr.shape[0] > 1:  # a dBZ field
            model = _model_for_index(info, checkpoint)
            emb = encode_field(arr, checkpoint=model.checkpoint)
        else:
            emb = Embedding(_vector(arr, "query"), source="array")
    else:
        try:
            t = from_seconds(to_seconds(query))[0]
        except (ValueError, TypeError):
            raise EmbeddingIndexError(
                f"query {query!r} is neither a time nor a file (.json, .npy, .grib2)"
            ) from None
        return t, t, format_time(t)
    if emb.model_id and emb.model_id != info.model_id:
        raise EmbeddingError(
            f"{emb.source or 'the query'} was embedded by model {emb.model_id}, the index's "
            f"embeddings are from {info.model_id}; they are not comparable"
        )
    if emb.embedding_dim != info.embedding_dim:
        raise EmbeddingError(
            f"{emb.source or 'the query'} has {emb.embedding_dim} numbers, model "
            f"{info.model_id} makes {info.embedding_dim}"
        )
    desc = emb.source or "embedding"
    if emb.time is not None:
        desc += f" ({format_time(emb.time)})"
    return emb.vector, emb.time, desc


def search_similar(
    index: str | Path | EmbeddingIndex,
    query,
    *,
    k: int = 5,
    model_id: str | None = None,
    metric: str = "euclidean",
    exclude_hours: float | None = 24.0,
    months: Sequence[int] | None = None,
    hours: Sequence[int] | None = None,
    start=None,
    end=None,
    checkpoint: str | Path | None = None,
) -> pd.DataFrame:
    """The ``k`` hours of an index most similar to ``query``: a DataFrame of ``rank``, ``time``
    and ``distance`` (Euclidean by default, as the original; ``metric="cosine"`` for cosine).

    ``query`` is an hour in the index (a time), an :class:`Embedding`, a vector, a dBZ array on
    the model's grid, or a file: ``.json``/``.npy`` embedding, ``.npy`` dBZ array or GRIB2.
    Fields are embedded on the fly with ``checkpoint`` (default: the one recorded in the
    index). Hours within ``exclude_hours`` of the query's time are left out (one day on each
    side by default, so the matches are other days; 0 leaves out just the query hour, None
    nothing). ``months``, ``hours`` (UTC hour of day), ``start`` (inclusive) and ``end``
    (exclusive) restrict the candidates. ``df.attrs["query"]`` describes the query.
    """
    if metric not in METRICS:
        raise EmbeddingIndexError(f"unknown metric {metric!r}; choose one of {METRICS}")
    ix, owned = _open_index(index)
    try:
        info = ix.model(model_id)
        q, around, desc = _resolve_query(ix, info, query, checkpoint)
        out = ix.search(
            q,
            model_id=info.model_id,
            k=k,
            metric=metric,
            exclude_hours=exclude_hours,
            around=around,
            months=months,
            hours=hours,
            start=start,
            end=end,
        )
    finally:
        if owned:
            ix.close()
    out.attrs.update({"query": desc, "model_id": info.model_id, "metric": metric})
    return out


def plot_matches(
    path: str | Path,
    archive: str | Path | Archive,
    matches: pd.DataFrame,
    *,
    query_dbz: np.ndarray | None = None,
    query_title: str = "query",
    dpi: int = 80,
) -> Path:
    """One PNG with the query (when given) and each match from ``archive``, titled with its time
    and distance."""
    a = _as_archive(archive)
    times = matches["time"].values.astype("datetime64[s]")
    fields = decode_raw(a.read_raw(times)) if len(times) else np.zeros((0, *a.grid.shape))
    panels = ([(query_dbz, query_title)] if query_dbz is not None else []) + [
        (f, f"#{r} {format_time(t)}  d={d:.3g}")
        for f, r, t, d in zip(fields, matches["rank"], times, matches["distance"], strict=True)
    ]
    if not panels:
        raise WxembedError("nothing to draw: no matches and no query field")
    return save_panels_png(path, a.grid, panels, dpi=dpi)


def save_panels_png(
    path: str | Path, grid: Grid, panels: Sequence[tuple[np.ndarray, str]], *, dpi: int = 80
) -> Path:
    """One PNG of reflectivity fields side by side (three to a row), each with its title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from wxembed.plot import plot_field

    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    ny, nx = grid.shape
    fig = Figure(figsize=(5.0 * cols, 5.0 * rows * ny / nx + 0.6), layout="constrained")
    for i, (dbz, title) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        plot_field(ax, dbz, grid, title=title, colorbar=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path


# ---- interpolation ---------------------------------------------------------------------------
def compare_scores(a: dict, b: dict, names: Sequence[str] = HEADLINE_SCORES) -> dict[str, str]:
    """For each score in ``names``: "a", "b" or "tie" (which is better), or "undefined" (NaN)."""
    out = {}
    for name in names:
        if name not in a or name not in b:
            continue
        x, y = float(a[name]), float(b[name])
        if math.isnan(x) or math.isnan(y):
            out[name] = "undefined"
            continue
        if name.startswith("bias_"):
            x, y = -abs(x - 1.0), -abs(y - 1.0)
        elif name.startswith(_LOWER_IS_BETTER):
            x, y = -x, -y
        elif not name.startswith(_HIGHER_IS_BETTER):
            continue
        out[name] = "a" if x > y else "b" if y > x else "tie"
    return out


def _winners(scores: dict[str, dict]) -> dict[str, str]:
    named = {
        "a": "embedding_midpoint",
        "b": "pixel_average",
        "tie": "tie",
        "undefined": "undefined",
    }
    return {
        k: named[v]
        for k, v in compare_scores(scores["embedding_midpoint"], scores["pixel_average"]).items()
    }


def _middle_time(start, end, weight: float) -> tuple[np.datetime64, np.datetime64, np.datetime64]:
    if not 0.0 <= weight <= 1.0:
        raise WxembedError(f"weight must be in 0..1 (a convex combination), got {weight}")
    t0, t1 = int(to_seconds(start)[0]), int(to_seconds(end)[0])
    if t1 <= t0:
        raise WxembedError(
            f"end {format_time(from_seconds([t1])[0])} must be after start "
            f"{format_time(from_seconds([t0])[0])}"
        )
    tm = t0 + weight * (t1 - t0)
    if tm != int(tm):
        raise WxembedError(f"the hour at weight {weight} between the two is not a whole second")
    return tuple(from_seconds([t0, int(tm), t1]))  # type: ignore[return-value]


def _check_stored(a: Archive, times: Sequence[np.datetime64], stored: np.ndarray) -> None:
    s = to_seconds(stored)
    have = set(s.tolist())
    for t in times:
        x = int(to_seconds(t)[0])
        if x not in have:
            i = int(np.searchsorted(s, x))
            near = [format_time(from_seconds([s[j]])[0]) for j in (i - 1, i) if 0 <= j < len(s)]
            raise ArchiveError(
                f"{a.path}: {format_time(t)} is not stored; nearest stored: "
                f"{' and '.join(near) or 'none'}"
            )


def _verifications(grid: Grid):
    from wxembed.metrics import Verification

    return {
        name: Verification(cell_km=grid.cell_size_km)
        for name in ("embedding_midpoint", "pixel_average", "reconstruction")
    }


def _score_triplet(model: EmbeddingModel, raw: np.ndarray, weight: float, acc: dict) -> np.ndarray:
    """Accumulate the three forecasts of each ``(start, middle, end)`` triplet ``raw``
    ``(n, 3, ny, nx)``; return the decoded midpoints ``(n, ny, nx)``."""
    n = raw.shape[0]
    z = model.encode_raw(raw.reshape(n * 3, *raw.shape[2:])).reshape(n, 3, -1)  # (n, 3, d)
    z_mid = (1.0 - weight) * z[:, 0] + weight * z[:, 2]  # (n, d)
    decoded = model.decode(np.concatenate([z_mid, z[:, 1]]))  # (2n, ny, nx)
    dbz = decode_raw(raw)  # (n, 3, ny, nx), NaN = no data
    truth = dbz[:, 1]
    pixel = (1.0 - weight) * dbz[:, 0] + weight * dbz[:, 2]  # plain average of the dBZ values
    acc["embedding_midpoint"].accumulate(truth, decoded[:n])
    acc["pixel_average"].accumulate(truth, pixel)
    acc["reconstruction"].accumulate(truth, decoded[n:])
    return decoded[:n]


def _mse(truth: np.ndarray, forecast: np.ndarray, floor: float = 0.0) -> float:
    """MSE of one hour as :mod:`wxembed.metrics` defines it (both floored, NaN pixels left out),
    without the scores that cost more (SSIM, FSS)."""
    valid = np.isfinite(truth) & np.isfinite(forecast)
    diff = np.maximum(forecast[valid], floor) - np.maximum(truth[valid], floor)
    return float(np.mean(diff.astype(np.float64) ** 2)) if diff.size else float("nan")


def interpolate_hours(
    archive: str | Path | Archive,
    checkpoint: str | Path,
    start,
    end,
    *,
    weight: float = 0.5,
    png: str | Path | None = None,
) -> dict:
    """Decode ``(1 - weight) * z(start) + weight * z(end)`` and score it against the real hour
    at that point between them, next to the plain pixel average of the two hours' dBZ and the
    autoencoder's own reconstruction of the real hour (its ceiling).

    Returns ``{"start", "end", "truth_time", "weight", "model_id", "scores":
    {"embedding_midpoint", "pixel_average", "reconstruction"}, "winner": {score:
    "embedding_midpoint" | "pixel_average" | "tie" | "undefined"}}``; with ``png``, also
    ``"png"``: the real hour, the decoded embedding mix and the pixel average side by side.
    """
    a = _as_archive(archive)
    model = load_embedding_model(checkpoint)
    _check_archive_grid(model, a)
    t0, tm, t1 = _middle_time(start, end, weight)
    _check_stored(a, (t0, tm, t1), a.stored_times())
    raw = a.read_raw([t0, tm, t1])  # (3, ny, nx)
    acc = _verifications(model.grid)
    decoded = _score_triplet(model, raw[None], weight, acc)[0]
    scores = {name: v.compute() for name, v in acc.items()}
    report = {
        "start": format_time(t0),
        "end": format_time(t1),
        "truth_time": format_time(tm),
        "weight": weight,
        "model_id": model.model_id,
        "scores": scores,
        "winner": _winners(scores),
    }
    if png is not None:
        dbz = decode_raw(raw)  # (3, ny, nx)
        pixel = (1.0 - weight) * dbz[0] + weight * dbz[2]
        mse = {k: v["mse"] for k, v in scores.items()}
        report["png"] = str(
            save_panels_png(
                png,
                model.grid,
                [
                    (dbz[1], f"real {format_time(tm)}"),
                    (decoded, f"decoded embedding mix (MSE {mse['embedding_midpoint']:.3g})"),
                    (pixel, f"pixel average (MSE {mse['pixel_average']:.3g})"),
                ],
            )
        )
    return report


def interpolation_skill(
    archive: str | Path | Archive,
    checkpoint: str | Path,
    *,
    gap_hours: int = 2,
    weight: float = 0.5,
    max_pairs: int | None = None,
    batch_pairs: int = 8,
) -> dict:
    """:func:`interpolate_hours` over every pair of stored hours ``gap_hours`` apart whose
    in-between hour is stored, scores accumulated over all of them (a few hours in memory at a
    time). Adds ``pairs`` and ``mse_wins`` (pairs where each method has the lower MSE)."""
    if gap_hours < 1:
        raise WxembedError(f"gap_hours must be >= 1, got {gap_hours}")
    a = _as_archive(archive)
    model = load_embedding_model(checkpoint)
    _check_archive_grid(model, a)
    stored = set(to_seconds(a.stored_times()).tolist())
    gap = int(gap_hours) * 3600
    mid = int(round(weight * gap))
    triplets = [
        (t, t + mid, t + gap) for t in sorted(stored) if t + gap in stored and t + mid in stored
    ]
    if max_pairs is not None:
        triplets = triplets[:max_pairs]
    if not triplets:
        raise ArchiveError(
            f"{a.path}: no pairs of stored hours {gap_hours} h apart with the hour between stored"
        )
    acc = _verifications(model.grid)
    wins = {"embedding_midpoint": 0, "pixel_average": 0, "tie": 0}
    for i in range(0, len(triplets), batch_pairs):
        chunk = triplets[i : i + batch_pairs]
        flat = from_seconds(np.asarray(chunk, dtype=np.int64).ravel())
        raw = a.read_raw(flat).reshape(len(chunk), 3, *a.grid.shape)  # (n, 3, ny, nx)
        decoded = _score_triplet(model, raw, weight, acc)
        dbz = decode_raw(raw)
        for j in range(len(chunk)):
            pixel = (1.0 - weight) * dbz[j, 0] + weight * dbz[j, 2]
            e, p = _mse(dbz[j, 1], decoded[j]), _mse(dbz[j, 1], pixel)
            wins["embedding_midpoint" if e < p else "pixel_average" if p < e else "tie"] += 1
    scores = {name: v.compute() for name, v in acc.items()}
    return {
        "pairs": len(triplets),
        "gap_hours": gap_hours,
        "weight": weight,
        "model_id": model.model_id,
        "scores": scores,
        "winner": _winners(scores),
        "mse_wins": wins,
    }


# ---- clustering ------------------------------------------------------------------------------
def _regimes(archive_path: str | Path | Archive | None, seconds: np.ndarray) -> np.ndarray | None:
    """The archive's regime label of each hour ("" where none), or None without an archive."""
    if archive_path is None:
        return None
    try:
        a = _as_archive(archive_path)
    except ArchiveError as exc:
        log.warning("no regime labels: %s", exc)
        return None
    m = a.manifest()
    lookup = dict(zip(to_seconds(m.time.values).tolist(), m.regime.astype(str), strict=True))
    return np.asarray([lookup.get(int(s), "") for s in seconds], dtype=object)


def cluster_index(
    index: str | Path | EmbeddingIndex,
    *,
    k: int,
    model_id: str | None = None,
    seed: int = 0,
    n_init: int = 4,
    archive: str | Path | Archive | None = None,
    checkpoint: str | Path | None = None,
    png_dir: str | Path | None = None,
) -> dict:
    """k-means (k-means++ initialisation) on a model's embeddings in an index.

    Stores the assignment of every hour and the centroids in the index (replacing an earlier
    run with the same k), and returns a report: cluster sizes, the hour nearest each centroid,
    how often each cluster occurs by month and by UTC hour of day, and, when the archive
    (``archive``, default the one recorded in the index) labels its hours with regimes (a
    synthetic archive), the adjusted Rand index of the clusters against them. With ``png_dir``,
    each centroid is decoded (``checkpoint``, default the recorded one) into
    ``cluster_NN.png``. Only the embeddings are held in memory, never the archive's images.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    ix, owned = _open_index(index, read_only=False)
    try:
        info = ix.model(model_id)
        vs = ix.vectors(info.model_id)
        n = len(vs)
        check_k(k)
        if k > n:
            raise EmbeddingIndexError(
                f"k={k} clusters is more than the {n} hours of model {info.model_id}"
            )
        km = KMeans(n_clusters=int(k), init="k-means++", n_init=n_init, random_state=seed)
        labels = km.fit_predict(vs.matrix).astype(np.int64)  # (n,)
        centers = km.cluster_centers_.astype(np.float32)  # (k, d)
        dist = km.transform(vs.matrix)  # (n, k) distance of every hour to every centroid
        nearest = np.empty(k, dtype=np.int64)
        for c in range(k):
            rows = np.flatnonzero(labels == c)
            nearest[c] = rows[np.argmin(dist[rows, c])] if len(rows) else np.argmin(dist[:, c])
        ix.save_clusters(info.model_id, int(k), vs.seconds, labels, centers, vs.seconds[nearest])
    finally:
        if owned:
            ix.close()

    sizes = np.bincount(labels, minlength=k)
    month = pd.crosstab(pd.Series(labels, name="cluster"), pd.Series(vs.month, name="month"))
    month = month.reindex(index=range(k), columns=range(1, 13), fill_value=0)
    hour = pd.crosstab(pd.Series(labels, name="cluster"), pd.Series(vs.hour, name="hour"))
    hour = hour.reindex(index=range(k), columns=range(24), fill_value=0)
    report: dict = {
        "model_id": info.model_id,
        "k": int(k),
        "hours": n,
        "seed": seed,
        "inertia": float(km.inertia_),
        "sizes": sizes.tolist(),
        "nearest_hours": [format_time(t) for t in from_seconds(vs.seconds[nearest])],
        "by_month": {
            int(c): {int(m): int(v) for m, v in row.items()} for c, row in month.iterrows()
        },
        "by_hour": {int(c): {int(h): int(v) for h, v in row.items()} for c, row in hour.iterrows()},
        "adjusted_rand_index": None,
    }
    arch_path = (
        archive
        if archive is not None
        else (info.archive if info.archive and Path(info.archive).exists() else None)
    )
    regimes = _regimes(arch_path, vs.seconds)
    if regimes is not None:
        labelled = regimes != ""
        if labelled.sum() >= 2:
            report["adjusted_rand_index"] = float(
                adjusted_rand_score(regimes[labelled], labels[labelled])
            )
            table = pd.crosstab(
                pd.Series(labels[labelled], name="cluster"),
                pd.Series(regimes[labelled], name="regime"),
            )
            report["regimes"] = {
                int(c): {str(r): int(v) for r, v in row.items() if v} for c, row in table.iterrows()
            }
    if png_dir is not None:
        from wxembed.plot import save_field_png

        model = _model_for_index(info, checkpoint)
        fields = model.decode(centers)  # (k, ny, nx)
        out = Path(png_dir)
        pictures = []
        for c in range(k):
            title = (
                f"cluster {c}: {sizes[c]} hours ({100 * sizes[c] / n:.0f}%), "
                f"nearest {report['nearest_hours'][c]}"
            )
            pictures.append(
                str(
                    save_field_png(out / f"cluster_{c:02d}.png", fields[c], model.grid, title=title)
                )
            )
        report["pictures"] = pictures
    return report


__all__ = [
    "Embedding",
    "EmbeddingModel",
    "cluster_index",
    "compare_scores",
    "compression_ratio",
    "decode_embedding",
    "encode_field",
    "interpolate_hours",
    "interpolation_skill",
    "load_embedding",
    "load_embedding_model",
    "plot_matches",
    "read_field",
    "save_panels_png",
    "search_similar",
    "write_field",
]
