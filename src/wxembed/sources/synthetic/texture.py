"""The seeded textures that make echoes look like weather rather than smooth blobs.

Two periodic textures of ``TEX_N`` x ``TEX_N`` pixels of ``TEX_KM`` move with each event (the
offset and drift of an event's textures are drawn with it): *detail* roughens the inside of
echoes, *outline* warps the edge of stratiform shields. A third, at the grid's own pixel, is
added to every hour, shifted by a seeded offset per hour.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

TEX_KM = 4.0
"""Pixel of the echo textures (km)."""
TEX_N = 1024
"""The echo textures are periodic, ``TEX_N * TEX_KM`` km."""
FINE_PAD = 128
"""The fine texture is this many pixels larger than the grid, to shift it per hour."""


def _red_noise(rng: np.random.Generator, largest_km: float, smallest_km: float) -> np.ndarray:
    """(TEX_N, TEX_N) periodic unit-variance noise, TEX_KM per pixel, with power ~ k^-3.6
    between scales ``smallest_km`` and ``largest_km``."""
    k = np.fft.fftfreq(TEX_N, d=TEX_KM)  # cycles per km
    kk = np.hypot(k[:, None], k[None, :])  # (N, N)
    amp = (kk**2 + largest_km**-2) ** -0.9 * np.exp(-((kk * smallest_km) ** 2))  # (N, N)
    spectrum = amp * (rng.standard_normal(kk.shape) + 1j * rng.standard_normal(kk.shape))
    field = np.fft.ifft2(spectrum).real  # (N, N)
    return ((field - field.mean()) / field.std()).astype(np.float32)


@lru_cache(maxsize=4)
def echo_textures(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The two periodic textures of the echoes: detail (6 to 250 km, inside echoes) and
    outline (40 to 400 km, warps the shields' shape)."""
    rng = np.random.default_rng([seed, 3])
    return _red_noise(rng, 250.0, 6.0), _red_noise(rng, 400.0, 40.0)


@lru_cache(maxsize=4)
def fine_texture(seed: int, shape: tuple[int, int]) -> np.ndarray:
    """(ny + pad, nx + pad) unit-variance texture at the grid's pixel scale."""
    # scipy.ndimage takes most of a second to import; only rendering needs it
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng([seed, 4])
    noise = rng.standard_normal((shape[0] + FINE_PAD, shape[1] + FINE_PAD), dtype=np.float32)
    smooth = gaussian_filter(noise, sigma=0.8, mode="wrap")
    return smooth / smooth.std()


def texture_window(
    xc: np.ndarray, yc: np.ndarray, texture: np.ndarray, tex_x: float, tex_y: float
) -> np.ndarray:
    """(h, w) values of a periodic texture at the points of columns ``xc`` (w,) and rows
    ``yc`` (h,) (km), the texture's origin at (tex_x, tex_y) km on the grid's plane."""
    ix = np.floor((xc - tex_x) / TEX_KM).astype(np.intp) % TEX_N  # (w,)
    iy = np.floor((yc - tex_y) / TEX_KM).astype(np.intp) % TEX_N  # (h,)
    return texture[np.ix_(iy, ix)]
