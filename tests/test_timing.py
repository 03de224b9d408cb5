"""engine/motion/timing.py: the real rate of frame times; timestamped rows resampled to a constant rate."""

from __future__ import annotations

import numpy as np
import pytest

from pirender.engine.errors import MotionError
from pirender.engine.motion.timing import FrameRate, held_indices, measure_rate, resample_uniform

# Irregular frame intervals of a browser recording, in ms (a 1 ms clock).
BROWSER_INTERVALS_MS = [33, 34, 50, 67, 20, 33, 41, 34, 100, 33, 17, 50]


def browser_times_s() -> np.ndarray:
    """(13,) times of a variable-rate recording on a 1 ms clock, from 0."""
    return np.cumsum([0, *BROWSER_INTERVALS_MS]) / 1000.0


# --------------------------------------------------------------------------------------------------
# measure_rate


def test_constant_rates_are_measured_exactly() -> None:
    assert measure_rate(np.arange(60) / 30) == FrameRate(fps=30.0, variable=False)
    ntsc = measure_rate(np.arange(48) * 1001 / 30000, tick_s=1 / 30000)
    assert ntsc is not None and ntsc.fps == pytest.approx(30000 / 1001, abs=1e-9) and not ntsc.variable


def test_a_millisecond_clock_rounds_but_does_not_make_a_rate_variable() -> None:
    # 30 frames/s stored in ms: intervals of 33 and 34 ms; span 1.967 s for 60 frames
    times_s = np.round(np.arange(60) / 30 * 1000) / 1000
    assert set(np.round(np.diff(times_s) * 1000).astype(int)) == {33, 34}
    assert measure_rate(times_s, tick_s=0.001) == FrameRate(fps=30.0, variable=False)
    exact = measure_rate(times_s)  # without the clock's tick the same times look irregular
    assert exact is not None and exact.variable and exact.fps == pytest.approx(59 / 1.967)


def test_irregular_times_give_the_average_rate_and_variable() -> None:
    times_s = browser_times_s()
    rate = measure_rate(times_s, tick_s=0.001)
    assert rate is not None and rate.variable
    assert rate.fps == pytest.approx(12 / (sum(BROWSER_INTERVALS_MS) / 1000))


def test_a_dropped_frame_makes_a_rate_variable() -> None:
    times_s = np.delete(np.arange(30) / 25, 10)
    rate = measure_rate(times_s)
    assert rate is not None and rate.variable and rate.fps == pytest.approx(28 / (29 / 25))


def test_order_and_repeats_do_not_matter() -> None:
    times_s = np.arange(20) / 25
    shuffled = np.random.default_rng(0).permutation(np.r_[times_s, times_s[:5]])  # decoding order, repeats
    assert measure_rate(shuffled) == measure_rate(times_s) == FrameRate(fps=25.0, variable=False)


def test_declared_rate_kept_where_the_times_agree_else_replaced() -> None:
    times_ms = np.round(np.arange(60) / 30 * 1000) / 1000
    # a declared exact rate within 1 % of the times is the answer (here it agrees anyway)
    assert measure_rate(times_ms, tick_s=0.001, declared_fps=30.0) == FrameRate(30.0, False)
    near = measure_rate(np.arange(100) / 29.8, declared_fps=30.0)
    assert near is not None and near.fps == 30.0
    # a WebM's 1000/s (its clock) or a container default of 24 contradicted by the times: measured
    browser = browser_times_s()
    for bogus in (1000.0, 24.0):
        rate = measure_rate(browser, tick_s=0.001, declared_fps=bogus)
        assert rate is not None and rate.fps == pytest.approx(12 / (sum(BROWSER_INTERVALS_MS) / 1000))
    # nothing to measure: the declared rate, or nothing
    assert measure_rate([0.5], declared_fps=25.0) == FrameRate(25.0, False)
    assert measure_rate([], declared_fps=0.0) is None
    assert measure_rate([0.5, 0.5]) is None


@pytest.mark.parametrize("bad", [[0.0, float("nan")], [[0.0, 1.0]], "abc"])
def test_measure_rate_refuses_bad_times(bad: object) -> None:
    with pytest.raises(MotionError, match="times"):
        measure_rate(bad)  # type: ignore[arg-type]


def test_measure_rate_refuses_a_bad_tick() -> None:
    with pytest.raises(MotionError, match="tick_s"):
        measure_rate([0.0, 0.04], tick_s=-1.0)


# --------------------------------------------------------------------------------------------------
# resample_uniform / held_indices


def test_constant_rate_rows_at_their_own_rate_come_back_unchanged() -> None:
    times_s = 0.5 + np.arange(60) / 30  # a video that starts at 0.5 s
    values = np.random.default_rng(1).normal(size=(60, 5)).astype(np.float32)
    result = resample_uniform(times_s, values, 30.0)
    assert result.dtype == np.float32 and result.shape == (60, 5)
    np.testing.assert_array_equal(result, values)
    np.testing.assert_array_equal(held_indices(times_s, 30.0), np.arange(60))


def test_variable_rate_rows_become_the_constant_rate_signal() -> None:
    # a motion that is a known function of time, sampled at a browser recording's irregular times
    times_s = browser_times_s()
    values = np.stack([2.0 * times_s - 1.0, np.full_like(times_s, 7.0)], axis=1)
    fps = 30.0
    result = resample_uniform(times_s, values, fps)
    span_s = times_s[-1] - times_s[0]
    assert result.shape == (int(np.floor(span_s * fps)) + 1, 2)
    grid_s = np.arange(len(result)) / fps
    np.testing.assert_allclose(result[:, 0], 2.0 * grid_s - 1.0, atol=1e-12)  # linear: exact
    np.testing.assert_allclose(result[:, 1], 7.0)


def test_step_columns_hold_the_latest_row() -> None:
    times_s = np.array([0.0, 0.1, 0.35, 0.4])
    values = np.array([[0.0, 0.0], [1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    result = resample_uniform(times_s, values, 10.0, step_columns=[-1])
    np.testing.assert_allclose(result[:, 0], [0.0, 1.0, 1.4, 1.8, 3.0])  # interpolated
    np.testing.assert_allclose(result[:, 1], [0.0, 10.0, 10.0, 10.0, 30.0])  # held
    np.testing.assert_array_equal(held_indices(times_s, 10.0), [0, 1, 1, 1, 3])


def test_resampling_to_another_rate() -> None:
    times_s = np.arange(31) / 30  # 1 s at 30 frames/s
    values = np.sin(times_s)[:, None]
    half = resample_uniform(times_s, values, 15.0)
    np.testing.assert_allclose(half[:, 0], np.sin(np.arange(16) / 15), atol=1e-12)  # every other row
    double = resample_uniform(times_s, values, 60.0)
    assert double.shape == (61, 1)
    np.testing.assert_allclose(double[::2, 0], values[:, 0], atol=1e-12)


def test_one_row_and_integer_rows() -> None:
    np.testing.assert_array_equal(resample_uniform([3.0], np.array([[1.0, 2.0]]), 25.0), [[1.0, 2.0]])
    result = resample_uniform([0.0, 0.1], np.array([[0], [10]]), 20.0)
    assert result.dtype == np.float64
    np.testing.assert_allclose(result[:, 0], [0.0, 5.0, 10.0])


def test_resample_refuses_bad_input() -> None:
    rows = np.zeros((3, 2))
    with pytest.raises(MotionError, match="strictly increasing; time 2"):
        resample_uniform([0.0, 0.1, 0.1], rows, 25.0)
    with pytest.raises(MotionError, match=r"values must be \(3, W\)"):
        resample_uniform([0.0, 0.1, 0.2], np.zeros((2, 2)), 25.0)
    with pytest.raises(MotionError, match="fps must be a positive number"):
        resample_uniform([0.0, 0.1, 0.2], rows, 0.0)
    with pytest.raises(MotionError, match="step column 2"):
        resample_uniform([0.0, 0.1, 0.2], rows, 25.0, step_columns=[2])
    with pytest.raises(MotionError, match="non-empty"):
        held_indices([], 25.0)
