"""Embeddings as values and files, and fields to embeddings and back (encode / decode).

- :class:`Embedding`: one hour's vector with its model and provenance; saved as JSON or ``.npy``
  and read back by :func:`load_embedding`.
- :func:`encode_field`: a field file of any kind wxembed reads (GRIB2, ODIM HDF5, NetCDF, FMI
  PGM), a ``.npy`` dBZ array, an array in memory or an archive hour to its embedding.
- :func:`field_on_grid`: a field file or :class:`DecodedField` on a model's grid: as it is, or
  cut and coarsened there when the model's grid was made from the file's by ``ingest --bbox
  --coarsen``.
- :func:`decode_embedding`: an embedding back to a dBZ field on the model's grid, written as
  NetCDF, GRIB2 or PNG by :func:`write_field`.

Models come from their checkpoints alone (:func:`wxembed.model.encoder.load_embedding_model`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from wxembed.archive import Archive
from wxembed.errors import EmbeddingError, SourceError, WxembedError
from wxembed.figures.plot import save_field_png
from wxembed.grid import Grid, coarsen_dbz
from wxembed.model.encoder import compression_ratio, load_embedding_model
from wxembed.sources import DecodedField
from wxembed.sources.formats import GRIB_SUFFIXES, read_field
from wxembed.sources.grib import write_refc_file
from wxembed.times import as_time, format_time

log = logging.getLogger(__name__)
FIELD_FORMATS = {".nc": "netcdf", ".png": "png", **dict.fromkeys(GRIB_SUFFIXES, "grib2")}
"""Output file endings of :func:`write_field` and the format each selects."""
EMBEDDING_FORMAT = "wxembed-embedding"
"""The ``format`` member of an embedding JSON file."""


def as_archive(archive: str | Path | Archive) -> Archive:
    """An :class:`Archive` from a path, or the one given."""
    return archive if isinstance(archive, Archive) else Archive(archive)


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
        return Embedding(vector_from(arr, str(path)), source=str(path))
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
    vector = vector_from(np.asarray(values, dtype=np.float64), str(path))
    dim = doc.get("embedding_dim")
    if dim is not None and dim != len(vector):
        raise EmbeddingError(f"{path}: says embedding_dim {dim} but holds {len(vector)} numbers")
    t = doc.get("time")
    try:
        time = None if t in (None, "") else as_time(t)
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


def vector_from(arr: np.ndarray, what: str) -> np.ndarray:
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


def field_on_grid(
    source: str | Path | DecodedField, grid: Grid, *, variable: str | None = None, what: str = ""
) -> DecodedField:
    """A field (a file of any kind :func:`~wxembed.sources.formats.read_field` reads, or a
    :class:`DecodedField`) on ``grid``: as it is when it lies there, cut and coarsened (as
    ``ingest --bbox --coarsen`` does) when ``grid`` is a block of its grid made coarser, else
    :class:`EmbeddingError` naming both grids. A field without a grid (a bare array) is
    returned as it is: the model checks its shape."""
    if isinstance(source, DecodedField):
        field = source
    else:
        try:
            field = read_field(source, variable=variable)
        except SourceError as exc:
            raise EmbeddingError(str(exc)) from None
    what = what or f"grid {grid.name!r}"
    if field.grid is None or field.grid.same_as(grid):
        return field
    fit = field.grid.derivation_of(grid)
    if fit is None:
        raise EmbeddingError(
            f"{field.source}: the field is on {field.grid.describe()}, but {what} is "
            f"{grid.describe()}, which is not a block of it, nor a coarsening of one"
        )
    rows, cols, factor = fit
    log.info("%s: cut to rows %s, columns %s and coarsened %dx", field.source, rows, cols, factor)
    dbz = coarsen_dbz(np.asarray(field.dbz)[rows, cols], factor)
    return DecodedField(field.time, grid, dbz, field.source, field.missing_values, field.labels)


def encode_field(
    source: str | Path | np.ndarray | DecodedField | None = None,
    *,
    checkpoint: str | Path,
    archive: str | Path | Archive | None = None,
    time=None,
    variable: str | None = None,
) -> Embedding:
    """The embedding of one field: a file of any kind wxembed reads (GRIB2, ODIM HDF5, NetCDF,
    FMI PGM; ``variable`` picks a NetCDF file's), a ``.npy`` dBZ array, an array or
    :class:`DecodedField` in memory, or (``source=None``) the hour ``time`` of ``archive``.

    The field must lie on the grid the model was trained on, or on the grid that grid was cut
    and coarsened from (see :func:`field_on_grid`).
    """
    model = load_embedding_model(checkpoint)
    if source is None:
        if archive is None or time is None:
            raise EmbeddingError("give a field to encode, or an archive and a time")
        a = as_archive(archive)
        model.check_grid(a)
        raw = a.read_raw([time])  # (1, ny, nx) uint8
        t = as_time(time)
        return Embedding(
            model.encode_raw(raw)[0],
            model.model_id,
            t,
            f"{a.path} {format_time(t)}",
            model.grid.shape,
        )
    if not isinstance(source, str | Path | DecodedField):
        source = DecodedField(
            time=np.datetime64("NaT", "s"),
            grid=None,  # type: ignore[arg-type]
            dbz=np.asarray(source, np.float32),
            source="array",
        )
    what = f"the grid of model {model.model_id}"
    field = field_on_grid(source, model.grid, variable=variable, what=what)
    t = None if np.isnat(field.time) else np.datetime64(field.time, "s")
    z = model.encode_dbz(np.asarray(field.dbz))[0]
    return Embedding(z, model.model_id, t, field.source, model.grid.shape)


def as_embedding(value, what: str = "embedding") -> Embedding:
    if isinstance(value, Embedding):
        return value
    if isinstance(value, str | Path):
        return load_embedding(value)
    return Embedding(vector_from(np.asarray(value), what))


def decode_embedding(
    embedding: Embedding | np.ndarray | Sequence[float] | str | Path,
    *,
    checkpoint: str | Path,
    out: str | Path | None = None,
    time=None,
    matched: bool = False,
) -> DecodedField:
    """Decode an embedding (an :class:`Embedding`, a vector, or a ``.json``/``.npy`` file) into a
    dBZ field on the model's grid; with ``out``, also write it (see :func:`write_field`).
    ``matched``: probability-matched to the echo coverage the embedding records (the right
    echo area, sharper; see :meth:`wxembed.model.encoder.EmbeddingModel.decode`).

    An embedding that names its model must come from the checkpoint's model.
    """
    emb = as_embedding(embedding)
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
    t = emb.time if time is None else as_time(time)
    field = DecodedField(
        time=np.datetime64("NaT", "s") if t is None else np.datetime64(t, "s"),
        grid=model.grid,
        dbz=model.decode(emb.vector, matched=matched)[0],
        source=f"decoded by wxembed model {model.model_id} from a {model.embedding_dim}-number "
        "embedding" + (", probability-matched to its echo coverage" if matched else ""),
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
        if title is None:
            title = "Decoded reflectivity" + (f" {format_time(field.time)}" if has_time else "")
        return save_field_png(path, field.dbz, field.grid, title=title)
    if kind == "grib2":
        if not has_time:
            raise WxembedError(f"{path}: GRIB2 needs a valid time; give one (--time)")
        return write_refc_file(path, field)
    return _write_netcdf(path, field, has_time)


def _write_netcdf(path: Path, field: DecodedField, has_time: bool) -> Path:
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


__all__ = [
    "EMBEDDING_FORMAT",
    "FIELD_FORMATS",
    "Embedding",
    "as_archive",
    "as_embedding",
    "decode_embedding",
    "encode_field",
    "field_on_grid",
    "load_embedding",
    "vector_from",
    "write_field",
]
