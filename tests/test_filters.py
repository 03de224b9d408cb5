"""The One-Euro filter (engine/track/filters.py) against its published definition.

Casiez, Roussel and Vogel, "1 Euro Filter: A Simple Speed-based Low-pass Filter for Noisy Input in
Interactive Systems", CHI 2012, Algorithm 1. The reference below is written from the paper's
pseudocode, one scalar at a time in a plain loop:

    alpha(rate, cutoff) = 1 / (1 + tau / te),  tau = 1 / (2 pi cutoff),  te = 1 / rate
    LowPassFilter.filter(x, alpha): first call hatx = x, else hatx = alpha x + (1 - alpha) hatxprev
    OneEuroFilter.filter(X, rate):
        dx = 0 on the first call, else (X - x.hatxprev()) * rate
        edx = dx_filter.filter(dx, alpha(rate, dcutoff))
        cutoff = mincutoff + beta |edx|
        return x_filter.filter(X, alpha(rate, cutoff))
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pirender.engine.track.filters import OneEuroConfig, OneEuroFilter, smoothing_factor


class _LowPass:
    """The paper's LowPassFilter (exponential smoothing that remembers its last output)."""

    def __init__(self) -> None:
        self.first_time = True
        self.hatxprev = 0.0

    def filter(self, x: float, alpha: float) -> float:
        if self.first_time:
            self.first_time = False
            hatx = x
        else:
            hatx = alpha * x + (1.0 - alpha) * self.hatxprev
        self.hatxprev = hatx
        return hatx


def _alpha(rate_hz: float, cutoff_hz: float) -> float:
    tau_s = 1.0 / (2.0 * math.pi * cutoff_hz)
    te_s = 1.0 / rate_hz
    return 1.0 / (1.0 + tau_s / te_s)


class _ReferenceOneEuro:
    """The paper's Algorithm 1 for one scalar signal."""

    def __init__(self, mincutoff: float, beta: float, dcutoff: float) -> None:
        self.mincutoff, self.beta, self.dcutoff = mincutoff, beta, dcutoff
        self.first_time = True
        self.x = _LowPass()
        self.dx = _LowPass()

    def filter(self, value: float, dt_s: float) -> float:
        rate_hz = 1.0 / dt_s
        if self.first_time:
            self.first_time = False
            dx = 0.0
        else:
            dx = (value - self.x.hatxprev) * rate_hz
        edx = self.dx.filter(dx, _alpha(rate_hz, self.dcutoff))
        cutoff_hz = self.mincutoff + self.beta * abs(edx)
        return self.x.filter(value, _alpha(rate_hz, cutoff_hz))


def _run(config: OneEuroConfig, signal: np.ndarray, dts: np.ndarray) -> np.ndarray:
    """Our filter over an (N,) or (N, width) signal; returns the same shape."""
    values = signal.reshape(len(signal), -1)
    one_euro = OneEuroFilter(values.shape[1], config)
    out = np.stack([one_euro(row, float(dt)) for row, dt in zip(values, dts, strict=True)])
    return out.reshape(signal.shape)


def _run_reference(config: OneEuroConfig, signal: np.ndarray, dts: np.ndarray) -> np.ndarray:
    reference = _ReferenceOneEuro(config.min_cutoff_hz, config.beta, config.d_cutoff_hz)
    return np.array([reference.filter(float(x), float(dt)) for x, dt in zip(signal, dts, strict=True)])


def _steady_ramp_lag_s(config: OneEuroConfig, slope: float, dt_s: float) -> float:
    """Closed-form steady-state lag (seconds) of the paper's filter on x = slope * t sampled every dt_s.

    In steady state the output follows the ramp at a constant error e = x - x_hat. An exponential
    smoother with alpha = 1 / (1 + tau / dt) has e = slope * tau exactly (e = slope dt (1 - alpha) /
    alpha), i.e. a lag of tau = 1 / (2 pi fc) seconds. The derivative the paper filters is
    (x_i - x_hat_{i-1}) / dt = slope + e / dt (constant, so edx equals it), hence
        fc = m + beta (slope + slope / (2 pi fc dt)),
    the positive root of fc^2 - (m + beta slope) fc - beta slope / (2 pi dt) = 0.
    """
    m, beta = config.min_cutoff_hz, config.beta
    b = m + beta * slope
    cutoff_hz = (b + math.sqrt(b * b + 4.0 * beta * slope / (2.0 * math.pi * dt_s))) / 2.0
    return 1.0 / (2.0 * math.pi * cutoff_hz)


@pytest.mark.parametrize(
    "config",
    [OneEuroConfig(), OneEuroConfig(min_cutoff_hz=1.5, beta=0.3), OneEuroConfig(0.05, 80.0, 1.0)],
    ids=["defaults", "tracker", "mediapipe"],
)
def test_matches_the_papers_algorithm_with_varying_dt(config: OneEuroConfig) -> None:
    rng = np.random.default_rng(1)
    n = 400
    dts = rng.uniform(0.005, 0.08, n)  # 12..200 Hz, jittery like a camera
    signal = np.cumsum(rng.normal(0.0, 0.3, n)) + rng.normal(0.0, 0.05, n)  # random walk + jitter
    ours = _run(config, signal, dts)
    reference = _run_reference(config, signal, dts)
    assert ours[0] == signal[0]  # the first sample passes through
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-9)


def test_smoothing_factor_is_the_papers_alpha() -> None:
    for cutoff_hz, dt_s in [(1.0, 1 / 30), (0.05, 0.01), (12.0, 0.2)]:
        assert smoothing_factor(cutoff_hz, dt_s) == pytest.approx(_alpha(1.0 / dt_s, cutoff_hz), abs=1e-15)


def test_noisy_constant_is_smoothed() -> None:
    """Unit-sigma jitter on a constant at 30 Hz. beta is set the way the paper tunes it (beta = 0 and
    mincutoff for the jitter, then a beta small against the jitter's apparent speed, which is about
    10 units/s here, so it barely raises the cutoff at rest). Theory for beta = 0: std ratio
    sqrt(alpha / (2 - alpha)) = 0.223 at 0.5 Hz / 30 Hz; measured 0.25 with beta = 0.01."""
    rng = np.random.default_rng(2)
    n = 6000
    signal = 5.0 + rng.normal(0.0, 1.0, n)
    out = _run(OneEuroConfig(min_cutoff_hz=0.5, beta=0.01), signal, np.full(n, 1 / 30))[100:]
    assert out.std() < 0.3 * signal[100:].std()
    assert abs(out.mean() - 5.0) < 0.1  # no bias


def test_without_speed_term_it_is_a_first_order_low_pass() -> None:
    """beta = 0: a fixed exponential smoother, whose output variance on white noise is
    alpha / (2 - alpha) of the input's (0.308^2 at 1 Hz / 30 Hz); measured within 10 %."""
    rng = np.random.default_rng(3)
    n = 20000
    signal = rng.normal(0.0, 1.0, n)
    out = _run(OneEuroConfig(min_cutoff_hz=1.0, beta=0.0), signal, np.full(n, 1 / 30))[100:]
    alpha = _alpha(30.0, 1.0)
    assert out.std() / signal[100:].std() == pytest.approx(math.sqrt(alpha / (2 - alpha)), rel=0.1)


def test_ramp_lag_is_small_and_speed_adaptation_works() -> None:
    """x = 10 t at 30 Hz. The steady lag equals the closed form of _steady_ramp_lag_s: 0.0182 s with
    the defaults (beta 0.5), 0.0239 s with the tracker's (1.5 Hz, beta 0.3), 1 / (2 pi) = 0.159 s with
    beta = 0. A lag under 0.05 s is under 1.5 frames at 30 Hz; the bound keeps 2.7x headroom."""
    slope, dt_s = 10.0, 1 / 30
    t = np.arange(300) * dt_s
    signal = slope * t
    lags = {}
    for name, config in [
        ("defaults", OneEuroConfig()),
        ("tracker", OneEuroConfig(min_cutoff_hz=1.5, beta=0.3)),
        ("no speed term", OneEuroConfig(beta=0.0)),
    ]:
        lag_s = (signal - _run(config, signal, np.full(len(t), dt_s))) / slope
        assert np.ptp(lag_s[-60:]) < 1e-9  # settled (within ~40 samples)
        assert lag_s[-1] == pytest.approx(_steady_ramp_lag_s(config, slope, dt_s), abs=1e-9)
        lags[name] = lag_s[-1]
    assert lags["defaults"] < 0.05
    assert lags["tracker"] < 0.05
    assert lags["no speed term"] == pytest.approx(1 / (2 * math.pi), abs=1e-9)
    assert lags["no speed term"] > 3 * lags["defaults"]  # beta > 0 cuts the lag (the speed adaptation)


def test_reset_restarts_from_the_next_sample() -> None:
    rng = np.random.default_rng(4)
    first, second = rng.normal(0.0, 1.0, (50, 2)), rng.normal(3.0, 1.0, (50, 2))
    dts = rng.uniform(0.01, 0.05, 50)
    used = OneEuroFilter(2)
    for row, dt in zip(first, dts, strict=True):
        used(row, float(dt))
    used.reset()
    fresh = OneEuroFilter(2)
    for i, (row, dt) in enumerate(zip(second, dts, strict=True)):
        out_used, out_fresh = used(row, float(dt)), fresh(row, float(dt))
        if i == 0:
            np.testing.assert_array_equal(out_used, row)  # the next sample passes through
        np.testing.assert_array_equal(out_used, out_fresh)


def test_non_positive_dt_restarts_too() -> None:
    """A repeated or earlier timestamp (dt <= 0) cannot give a rate: the filter restarts there."""
    one_euro = OneEuroFilter(1)
    one_euro(np.array([0.0]), 0.0)
    one_euro(np.array([1.0]), 0.04)
    np.testing.assert_array_equal(one_euro(np.array([7.0]), 0.0), [7.0])
    np.testing.assert_array_equal(one_euro(np.array([-2.0]), -0.01), [-2.0])


def test_each_channel_is_filtered_independently() -> None:
    rng = np.random.default_rng(5)
    n, width = 200, 4
    dts = rng.uniform(0.01, 0.06, n)
    signal = np.cumsum(rng.normal(0.0, 1.0, (n, width)), axis=0) * rng.uniform(0.1, 10.0, width)
    config = OneEuroConfig(min_cutoff_hz=1.0, beta=0.7)
    together = _run(config, signal, dts)
    for channel in range(width):
        alone = _run(config, signal[:, channel], dts)
        np.testing.assert_allclose(together[:, channel], alone, rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            together[:, channel], _run_reference(config, signal[:, channel], dts), atol=1e-9
        )
    # changing one channel leaves the others' outputs untouched
    changed = signal.copy()
    changed[:, 0] *= 50.0
    np.testing.assert_array_equal(_run(config, changed, dts)[:, 1:], together[:, 1:])


def test_output_is_a_copy() -> None:
    one_euro = OneEuroFilter(2)
    out = one_euro(np.array([1.0, 2.0]), 0.0)
    out[:] = 99.0
    np.testing.assert_array_equal(one_euro(np.array([1.0, 2.0]), 0.04), [1.0, 2.0])
