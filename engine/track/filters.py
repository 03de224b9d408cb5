"""The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012): adaptive low-pass smoothing of noisy
signals. Slow movements are smoothed hard (little jitter); fast ones let the cutoff rise (little lag).

Per sample, with the time step ``dt_s``:

    alpha(fc) = 1 / (1 + 1 / (2 * pi * fc * dt_s))
    dx_hat    = lowpass(d/dt x, alpha(d_cutoff_hz))
    cutoff    = min_cutoff_hz + beta * |dx_hat|
    x_hat     = lowpass(x, alpha(cutoff))

MediaPipe's face defaults are min_cutoff 0.05 Hz, beta 80, d_cutoff 1 Hz (for landmark coordinates in
normalised image units); our motion numbers use their own defaults (see ``OneEuroConfig``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroConfig:
    min_cutoff_hz: float = 1.0  # cutoff at rest: lower = less jitter, more lag
    beta: float = 0.5  # speed coefficient: higher = less lag on fast moves
    d_cutoff_hz: float = 1.0  # cutoff of the derivative estimate


def smoothing_factor(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray | float:
    """alpha = 1 / (1 + tau / dt) with tau = 1 / (2 pi fc)."""
    tau_s = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz))
    return 1.0 / (1.0 + tau_s / dt_s)


class OneEuroFilter:
    """Filters a vector of ``width`` numbers per sample; state is allocated once."""

    def __init__(self, width: int, config: OneEuroConfig | None = None) -> None:
        self.config = config or OneEuroConfig()
        self._x_hat = np.zeros(width, dtype=np.float64)
        self._dx_hat = np.zeros(width, dtype=np.float64)
        self._cutoff = np.zeros(width, dtype=np.float64)
        self._alpha = np.zeros(width, dtype=np.float64)
        self._started = False

    def reset(self) -> None:
        self._started = False

    def __call__(self, x: np.ndarray, dt_s: float) -> np.ndarray:
        """The filtered value of sample ``x`` taken ``dt_s`` seconds after the previous one."""
        if not self._started or dt_s <= 0:
            self._x_hat[:] = x
            self._dx_hat[:] = 0.0
            self._started = True
            return self._x_hat.copy()
        cfg = self.config
        derivative_alpha = smoothing_factor(cfg.d_cutoff_hz, dt_s)
        # dx_hat <- dx_hat + a_d * ((x - x_hat) / dt - dx_hat)
        np.subtract(x, self._x_hat, out=self._cutoff)
        self._cutoff /= dt_s
        self._cutoff -= self._dx_hat
        self._cutoff *= derivative_alpha
        self._dx_hat += self._cutoff
        # cutoff = min_cutoff + beta |dx_hat|;  alpha = 1 / (1 + 1 / (2 pi cutoff dt))
        np.abs(self._dx_hat, out=self._cutoff)
        self._cutoff *= cfg.beta
        self._cutoff += cfg.min_cutoff_hz
        np.multiply(self._cutoff, 2.0 * math.pi * dt_s, out=self._alpha)
        self._alpha /= self._alpha + 1.0
        # x_hat <- x_hat + alpha (x - x_hat)
        np.subtract(x, self._x_hat, out=self._cutoff)
        self._cutoff *= self._alpha
        self._x_hat += self._cutoff
        return self._x_hat.copy()
