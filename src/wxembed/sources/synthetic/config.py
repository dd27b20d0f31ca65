"""What to generate: :class:`SynthConfig`, the regimes and the kinds of storm events."""

from __future__ import annotations

from dataclasses import dataclass

from wxembed.grid import HRRR_CONUS, Grid

REGIMES: tuple[str, ...] = ("clear", "isolated_cells", "squall_line", "mcs", "stratiform")
"""Regime labels, in this order; event kinds are indices 1..4 into it."""

CELL, SQUALL, MCS, STRATIFORM = 1, 2, 3, 4
KINDS = (CELL, SQUALL, MCS, STRATIFORM)
"""The kinds of storm events, in the order their catalogues are drawn."""


@dataclass(frozen=True)
class SynthConfig:
    """What to generate: the grid, the seed and the climatology knobs."""

    seed: int = 0
    """Seed of everything random; the same seed always gives the same fields."""
    grid: Grid = HRRR_CONUS
    """Grid of the output fields (any CRS; projected CRS units are read from the CRS)."""
    render_km: float = 6.0
    """Pixel of the internal rendering grid (km); a grid finer than this gets an integer
    upsampling factor, a coarser one is rendered directly."""
    cell_rate: float = 410.0
    """Isolated-cell births per day per 10^6 km^2 where and when they are most favoured
    (late afternoon local time, mid-July, a warm latitude). The three convective rates are
    calibrated so that sixteen seeds' first week of July average the MRMS composite of
    2022-07-04 (2.75 / 0.46 / 0.07 % of covered pixels above 20 / 35 / 45 dBZ)."""
    squall_rate: float = 2.75
    """Squall-line births per day per 10^6 km^2 at their seasonal peak (June)."""
    mcs_rate: float = 5.0
    """MCS births per day per 10^6 km^2 at their seasonal peak (July), in the evening."""
    stratiform_rate: float = 1.2
    """Stratiform-shield births per day per 10^6 km^2 at their seasonal peak (January)."""
    activity_spread: float = 0.6
    """Log-normal spread of the day-to-day activity (persists over about three days)."""
    clear_day_prob: float = 0.12
    """Mean probability that a day is quiet (births cut to ``quiet_factor``); it peaks in
    October at about 1.8 times this value and bottoms out in April."""
    quiet_factor: float = 0.1
    """Birth-rate multiplier of a quiet day."""
    diurnal_peak_hour: float = 17.0
    """Local solar hour at which isolated cells are most often born."""
    diurnal_strength: float = 1.6
    """Concentration of cell births around ``diurnal_peak_hour`` (von Mises kappa; 0 = flat)."""
    mean_flow_kmh: float = 35.0
    """Mean eastward steering flow (km/h) in summer; winter flow is 40 % faster."""
    background_dbz: float = -10.0
    """Value of "no echo" (HRRR's clear-air REFC); NaN is never produced."""
    min_echo_dbz: float = 5.0
    """Reflectivity below this is replaced by ``background_dbz``."""
    texture_db: float = 1.5
    """Standard deviation (dB) of the fine-scale texture added to echoes."""
    clear_fraction: float = 0.01
    """An hour with less than this fraction of the grid at >= 20 dBZ is labelled ``"clear"``."""

    def __post_init__(self) -> None:
        rates = (self.cell_rate, self.squall_rate, self.mcs_rate, self.stratiform_rate)
        if min(rates) < 0:
            raise ValueError(f"SynthConfig: birth rates must be >= 0, got {rates}")
        if self.render_km <= 0:
            raise ValueError(f"SynthConfig: render_km must be > 0, got {self.render_km}")
        if not 0 <= self.clear_day_prob <= 0.55:
            raise ValueError(
                f"SynthConfig: clear_day_prob must be in [0, 0.55], got {self.clear_day_prob}"
            )
        if self.min_echo_dbz <= self.background_dbz:
            raise ValueError("SynthConfig: min_echo_dbz must be above background_dbz")

    def rate(self, kind: int) -> float:
        """Births of ``kind`` per day per 10^6 km^2 where and when they are most favoured."""
        return {
            CELL: self.cell_rate,
            SQUALL: self.squall_rate,
            MCS: self.mcs_rate,
            STRATIFORM: self.stratiform_rate,
        }[kind]
