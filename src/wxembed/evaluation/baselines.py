"""Baselines for the learned embedding, fitted on the training hours only.

* :class:`PCABaseline` -- an EOF / principal-component code with as many numbers per hour as the
  embedding (default 50), fitted incrementally (Ross et al. 2008, the algorithm behind
  scikit-learn's ``IncrementalPCA``). Written here in numpy rather than with ``IncrementalPCA``
  because the update is formed through a float64 Gram matrix in column blocks: a full-grid
  HRRR fit never holds the wide stacked matrix twice (see "Memory" below).
* :class:`ClimatologyBaseline` -- the mean training image, the same prediction for every hour.

Both read an :class:`~wxembed.archive.Archive` in batches of hours, never the whole archive, and
work on the autoencoder's input scale (:func:`wxembed.reflectivity.dbz_to_unit`): dBZ with no
data set to 0 dBZ, clipped to 0..60 dBZ and divided by 60. Their outputs are dBZ fields on the
full grid, so they score with :mod:`wxembed.evaluation.metrics` exactly like the autoencoder's
reconstructions.

Memory: a full HRRR CONUS image is 1059 x 1799 = 1.9 M pixels, so 50 components are
50 x 1.9 M float32 = 380 MB. One fitting step holds the batch (64 hours: 490 MB float32), the
old and the new components and a copy scaled by the singular values (3 x 380 MB); the stacked
matrix of the update is only ever formed in float64 column blocks of 65536 pixels. On full HRRR
images, ``batch=64`` peaked at about 2.6 GB resident and took about 13 s a batch on a shared
2-core CPU (about 30 min for a year of hours). The default is full resolution with float32
components. ``coarsen=f`` instead fits on ``f x f`` block means (the
:func:`~wxembed.grid.coarsen_field` blocks, trailing rows/columns that do not fill a block
dropped): ``f=2`` quarters the memory. Decoded fields are then brought back to the full grid by
repeating each coarse value over its block (and the last row/column over the dropped ones), so
the baseline is scored on the same pixels as everything else, with the blur it really has.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from wxembed.archive import Archive
from wxembed.grid import coarsen_field
from wxembed.reflectivity import dbz_to_unit, decode_raw, unit_to_dbz

_COLUMN_BLOCK = 1 << 16
"""Columns (pixels) per block when forming Gram matrices in float64."""


def _as_batch(fields: np.ndarray) -> np.ndarray:
    fields = np.asarray(fields)
    if fields.ndim == 2:
        fields = fields[None]
    if fields.ndim != 3:
        raise ValueError(f"expected (ny, nx) or (n, ny, nx) fields, got shape {fields.shape}")
    return fields


def _iter_archive_batches(archive: Archive, times, batch: int) -> Iterator[np.ndarray]:
    """Normalised ``(b, ny, nx)`` float32 batches of the given stored hours, in order."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    times = np.atleast_1d(np.asarray(times))
    for i in range(0, len(times), batch):
        yield dbz_to_unit(decode_raw(archive.read_raw(times[i : i + batch])))


def _upsample(coarse: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Repeat each value of ``(..., cy, cx)`` over its ``factor`` block; pad to ``shape``."""
    if factor == 1:
        return coarse
    up = np.repeat(np.repeat(coarse, factor, axis=-2), factor, axis=-1)
    pad_y, pad_x = shape[0] - up.shape[-2], shape[1] - up.shape[-1]
    if pad_y or pad_x:
        widths = [(0, 0)] * (up.ndim - 2) + [(0, pad_y), (0, pad_x)]
        up = np.pad(up, widths, mode="edge")
    return up


class PCABaseline:
    """Incremental PCA (EOF) code of the normalised radar image.

    Fit with :meth:`fit_archive` (batches from an archive) or :meth:`partial_fit` (arrays of dBZ
    fields); :meth:`encode` gives ``(n, n_components)`` codes and :meth:`decode` dBZ fields
    ``(n, ny, nx)`` on the full grid, clipped to the normalised range (0..60 dBZ).

    Each :meth:`partial_fit` merges a batch into the current decomposition with the update of
    Ross et al. (2008): the SVD of ``[S V; X_b - mean_b; sqrt(n m / (n + m)) (mean - mean_b)]``,
    keeping the leading ``n_components``. The SVD is taken through the float64 Gram matrix of
    that stack (a few hundred rows), formed in column blocks, so the wide stack is never
    duplicated. While fewer rows than ``n_components`` have been seen, fewer components exist;
    components with no variance (data of lower rank) are stored as zero rows, so codes always have
    ``n_components`` columns once enough hours are seen. Signs are fixed so the largest-magnitude
    entry of each component is positive.
    """

    def __init__(self, n_components: int = 50, coarsen: int = 1) -> None:
        if n_components < 1:
            raise ValueError(f"n_components must be at least 1, got {n_components}")
        if coarsen < 1:
            raise ValueError(f"coarsen must be at least 1, got {coarsen}")
        self.n_components = int(n_components)
        self.coarsen = int(coarsen)
        self.shape: tuple[int, int] | None = None
        """Full-grid image shape ``(ny, nx)``."""
        self.components_: np.ndarray | None = None
        """``(k, n_features)`` float32, orthonormal rows (or zero rows)."""
        self.singular_values_: np.ndarray | None = None
        self.mean_: np.ndarray | None = None
        """``(n_features,)`` float64 mean normalised (coarsened) image."""
        self.n_samples_seen_ = 0
        self._mean_code: np.ndarray | None = None

    # ---- shapes and preprocessing ------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self.components_ is not None

    @property
    def explained_variance_(self) -> np.ndarray:
        self._check_fitted()
        return self.singular_values_**2 / max(self.n_samples_seen_ - 1, 1)

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("PCABaseline is not fitted; call fit_archive or partial_fit first")

    def _features(self, normalised: np.ndarray) -> np.ndarray:
        """Normalised ``(n, ny, nx)`` -> ``(n, n_features)`` float32 (coarsened if asked)."""
        if self.shape is None:
            self.shape = (int(normalised.shape[-2]), int(normalised.shape[-1]))
        elif tuple(normalised.shape[-2:]) != self.shape:
            raise ValueError(f"fields have shape {normalised.shape[-2:]}, fitted on {self.shape}")
        x = coarsen_field(normalised, self.coarsen) if self.coarsen > 1 else normalised
        return np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)

    # ---- fitting -----------------------------------------------------------------------------
    def partial_fit(self, fields_dbz: np.ndarray) -> PCABaseline:
        """Merge a batch of dBZ fields ``(n, ny, nx)`` (NaN = no data) into the fit."""
        return self._partial_fit_normalised(dbz_to_unit(_as_batch(fields_dbz)))

    def _partial_fit_normalised(self, normalised: np.ndarray) -> PCABaseline:
        x = self._features(normalised)
        b, d = x.shape
        if b == 0:
            return self
        batch_mean = x.mean(axis=0, dtype=np.float64)
        parts: list[tuple[np.ndarray, np.ndarray | None]] = []  # (rows, column offset vector)
        if self.fitted:
            n_old = self.n_samples_seen_
            n_new = n_old + b
            weighted = self.components_ * self.singular_values_[:, None].astype(np.float32)
            correction = np.sqrt(n_old * b / n_new) * (self.mean_ - batch_mean)
            parts = [(weighted, None), (x, batch_mean), (correction[None], None)]
            mean = (n_old * self.mean_ + b * batch_mean) / n_new
        else:
            n_new = b
            parts = [(x, batch_mean)]
            mean = batch_mean
        rows = sum(len(p) for p, _ in parts)

        def block(c0: int, c1: int) -> np.ndarray:
            out = np.empty((rows, c1 - c0), dtype=np.float64)
            r = 0
            for p, offset in parts:
                out[r : r + len(p)] = p[:, c0:c1]
                if offset is not None:
                    out[r : r + len(p)] -= offset[c0:c1]
                r += len(p)
            return out

        gram = np.zeros((rows, rows), dtype=np.float64)
        for c0 in range(0, d, _COLUMN_BLOCK):
            m = block(c0, min(d, c0 + _COLUMN_BLOCK))
            gram += m @ m.T
        evals, evecs = np.linalg.eigh(gram)
        k = min(self.n_components, rows)
        order = np.argsort(evals)[::-1][:k]
        s = np.sqrt(np.clip(evals[order], 0.0, None))
        u = evecs[:, order]
        # components with (numerically) no variance become zero rows: they carry nothing
        keep = s > max(s.max(initial=0.0), 1e-300) * 1e-6 * np.sqrt(rows)
        scale = np.where(keep, 1.0 / np.where(keep, s, 1.0), 0.0)
        comps = np.empty((k, d), dtype=np.float32)
        for c0 in range(0, d, _COLUMN_BLOCK):
            c1 = min(d, c0 + _COLUMN_BLOCK)
            comps[:, c0:c1] = (u.T @ block(c0, c1)) * scale[:, None]
        s = np.where(keep, s, 0.0)
        # deterministic signs: largest |entry| of each component positive
        big = np.argmax(np.abs(comps), axis=1)
        signs = np.sign(comps[np.arange(k), big])
        signs[signs == 0] = 1.0
        comps *= signs[:, None]

        self.components_ = comps
        self.singular_values_ = s
        self.mean_ = mean
        self.n_samples_seen_ = n_new
        self._mean_code = None
        return self

    def fit_archive(
        self, archive: Archive, times: Sequence | np.ndarray, batch: int = 64
    ) -> PCABaseline:
        """Fit on the stored hours ``times`` of ``archive`` (the training split only), reading
        ``batch`` hours at a time. Needs at least ``n_components`` hours."""
        times = np.atleast_1d(np.asarray(times))
        if len(times) < self.n_components:
            raise ValueError(
                f"{len(times)} training hours cannot give {self.n_components} components"
            )
        self.shape = archive.grid.shape
        for x in _iter_archive_batches(archive, times, batch):
            self._partial_fit_normalised(x)
        return self

    # ---- encoding and decoding ---------------------------------------------------------------
    def _mean_code_vector(self) -> np.ndarray:
        if self._mean_code is None:
            self._mean_code = (self.components_ @ self.mean_.astype(np.float32)).astype(np.float32)
        return self._mean_code

    def encode(self, fields_dbz: np.ndarray) -> np.ndarray:
        """dBZ fields ``(n, ny, nx)`` or ``(ny, nx)`` (NaN = no data) -> codes ``(n, k)``."""
        self._check_fitted()
        x = self._features(dbz_to_unit(_as_batch(fields_dbz)))
        # x @ V.T - mean @ V.T: no (n, n_features) float64 temporary
        return (x @ self.components_.T - self._mean_code_vector()).astype(np.float32)

    def decode_normalised(self, codes: np.ndarray, clip: bool = True) -> np.ndarray:
        """Codes ``(n, k)`` -> normalised fields ``(n, ny, nx)`` on the full grid."""
        self._check_fitted()
        codes = np.atleast_2d(np.asarray(codes, dtype=np.float32))
        x = codes @ self.components_ + self.mean_.astype(np.float32)
        if clip:
            np.clip(x, 0.0, 1.0, out=x)
        ny, nx = self.shape
        f = self.coarsen
        x = x.reshape(len(x), ny // f, nx // f) if f > 1 else x.reshape(len(x), ny, nx)
        return _upsample(x, f, self.shape)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes ``(n, k)`` -> dBZ fields ``(n, ny, nx)`` (float32, 0..60 dBZ)."""
        return unit_to_dbz(self.decode_normalised(codes, clip=True))

    def reconstruct(self, fields_dbz: np.ndarray) -> np.ndarray:
        """``decode(encode(fields))``."""
        return self.decode(self.encode(fields_dbz))

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fit to an ``.npz`` file (plain arrays, no pickle)."""
        self._check_fitted()
        path = Path(path)
        with open(path, "wb") as fh:
            np.savez(
                fh,
                kind=np.array("pca"),
                n_components=np.int64(self.n_components),
                coarsen=np.int64(self.coarsen),
                shape=np.asarray(self.shape, dtype=np.int64),
                components=self.components_,
                singular_values=self.singular_values_,
                mean=self.mean_,
                n_samples_seen=np.int64(self.n_samples_seen_),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> PCABaseline:
        with np.load(Path(path), allow_pickle=False) as z:
            if str(z["kind"]) != "pca":
                raise ValueError(f"{path}: not a PCABaseline file (kind {z['kind']})")
            pca = cls(int(z["n_components"]), int(z["coarsen"]))
            pca.shape = tuple(int(v) for v in z["shape"])
            pca.components_ = z["components"].astype(np.float32)
            pca.singular_values_ = z["singular_values"].astype(np.float64)
            pca.mean_ = z["mean"].astype(np.float64)
            pca.n_samples_seen_ = int(z["n_samples_seen"])
        pca._mean_code = None
        return pca


class ClimatologyBaseline:
    """The mean normalised training image, predicted for every hour (in dBZ, 0..60)."""

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        """``(ny, nx)`` float32 mean of the normalised training images."""
        self.n_samples_seen_ = 0
        self._sum: np.ndarray | None = None

    @property
    def mean_dbz(self) -> np.ndarray:
        if self.mean_ is None:
            raise RuntimeError("ClimatologyBaseline is not fitted; call fit_archive first")
        return unit_to_dbz(self.mean_)

    def partial_fit(self, fields_dbz: np.ndarray) -> ClimatologyBaseline:
        return self._add(dbz_to_unit(_as_batch(fields_dbz)))

    def _add(self, normalised: np.ndarray) -> ClimatologyBaseline:
        if self._sum is None:
            self._sum = np.zeros(normalised.shape[-2:], dtype=np.float64)
            if self.mean_ is not None:  # continuing a loaded fit
                self._sum += self.mean_.astype(np.float64) * self.n_samples_seen_
        elif normalised.shape[-2:] != self._sum.shape:
            raise ValueError(
                f"fields have shape {normalised.shape[-2:]}, fitted on {self._sum.shape}"
            )
        self._sum += normalised.sum(axis=0, dtype=np.float64)
        self.n_samples_seen_ += len(normalised)
        if self.n_samples_seen_:
            self.mean_ = (self._sum / self.n_samples_seen_).astype(np.float32)
        return self

    def fit_archive(
        self, archive: Archive, times: Sequence | np.ndarray, batch: int = 64
    ) -> ClimatologyBaseline:
        """Mean of the stored hours ``times`` of ``archive``, read ``batch`` hours at a time."""
        times = np.atleast_1d(np.asarray(times))
        if len(times) == 0:
            raise ValueError("no training hours given")
        for x in _iter_archive_batches(archive, times, batch):
            self._add(x)
        return self

    def predict(self, n: int = 1) -> np.ndarray:
        """``n`` copies of the mean image in dBZ, ``(n, ny, nx)`` float32."""
        return np.repeat(self.mean_dbz[None], n, axis=0)

    def save(self, path: str | Path) -> Path:
        """Write the mean image to an ``.npz`` file (plain arrays, no pickle)."""
        if self.mean_ is None:
            raise RuntimeError("ClimatologyBaseline is not fitted; call fit_archive first")
        path = Path(path)
        with open(path, "wb") as fh:
            np.savez(
                fh,
                kind=np.array("climatology"),
                mean=self.mean_,
                n_samples_seen=np.int64(self.n_samples_seen_),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> ClimatologyBaseline:
        with np.load(Path(path), allow_pickle=False) as z:
            if str(z["kind"]) != "climatology":
                raise ValueError(f"{path}: not a ClimatologyBaseline file (kind {z['kind']})")
            clim = cls()
            clim.mean_ = z["mean"].astype(np.float32)
            clim.n_samples_seen_ = int(z["n_samples_seen"])
        return clim
