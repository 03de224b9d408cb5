"""Real time of frame sequences: the frame rate of timestamped frames, and constant-rate resampling.

Video does not always come at a constant rate: browser recordings (WebM from MediaRecorder) store each
frame's time in milliseconds with irregular gaps and declare no rate (or a bogus 1000 per second);
phones lower the rate in the dark; a camera's frames come when they come. The renderer, the motion
files and the video writer's constant-rate mode all count frames at a fixed rate, so this module is
the one place that turns frame times into that:

* :func:`measure_rate`: the average rate of a set of frame times, and whether it is variable.
* :func:`resample_uniform`: rows stamped at (any) increasing times -> rows at a constant rate over
  the same span of time (linear interpolation; chosen columns held instead).
* :func:`held_indices`: which input row is on show at each time of that constant-rate grid (for labels
  and other per-frame data that cannot be interpolated).

All times are in seconds. The constant-rate grid of ``times_s`` at ``fps`` is
``times_s[0] + k / fps`` for ``k = 0 .. M-1``, ``M = floor((times_s[-1] - times_s[0]) * fps) + 1``
(frames that fall on the grid, with a tolerance of 1e-6 frame for rounding): the output covers the
input's span and, at ``fps`` = the input's average rate, has as many rows as the input.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import MotionError

__all__ = ["FrameRate", "held_indices", "measure_rate", "resample_uniform"]

# Part of a frame by which the span may fall short of the next grid point and still count it
# (float rounding of times such as k / 30).
_GRID_TOLERANCE_FRAMES = 1e-6

# Two intervals count as equal when they differ by at most this many clock ticks plus this part of
# the typical interval: times stored on a clock (e.g. milliseconds) are rounded to a tick, so a
# constant 30 frames/s on a 1 ms clock has intervals of 33 and 34 ms.
_EQUAL_INTERVAL_TICKS = 1.5
_EQUAL_INTERVAL_PART = 0.01

# A declared rate is kept where it is within this part of the measured one.
_DECLARED_AGREEMENT = 0.01


@dataclass(frozen=True)
class FrameRate:
    """The rate of a set of frame times.

    Attributes:
        fps: average frames per second, ``(N - 1) / (last - first)``; snapped to a common rate (an
            integer, or an NTSC rate N * 1000/1001) when it lies within the clock's rounding of one.
        variable: True where the intervals between frames differ by more than the clock's rounding
            (a variable-rate recording, dropped frames, a live camera).
    """

    fps: float
    variable: bool


def measure_rate(
    times_s: np.ndarray | Sequence[float], *, tick_s: float = 0.0, declared_fps: float | None = None
) -> FrameRate | None:
    """The average frame rate of frames at ``times_s``, and whether their intervals vary.

    Args:
        times_s: (N,) frame times in seconds, in any order (e.g. packets in decoding order);
            repeated times count once; may be empty.
        tick_s: resolution of the clock the times were stored with (a stream's time base, e.g. 0.001
            for WebM), in seconds; 0 for exact times. It sets how far intervals may differ and still
            be equal, and how close a rate must be to a common rate to be snapped to it.
        declared_fps: the rate the file declares (``None`` or <= 0: none). It is the answer where it
            agrees with the measured rate within 1 % (a declared rate is exact: 30000/1001), and where
            there is nothing to measure; a declared rate the times contradict (a WebM's 1000/s from its
            1 ms clock, a container default of 24) is replaced by the measured one.

    Returns:
        The rate, or ``None`` where fewer than two distinct times are given and no rate is declared.

    Raises:
        MotionError: times not a 1-D array of finite numbers, or a negative or non-finite ``tick_s``.
    """
    times = _check_times(times_s, sorted_required=False, allow_empty=True)
    if not (isinstance(tick_s, numbers.Real) and math.isfinite(tick_s) and tick_s >= 0):
        raise MotionError(f"tick_s must be a finite number >= 0 (seconds), got {tick_s!r}")
    declared = float(declared_fps) if declared_fps is not None and declared_fps > 0 else None
    measured = _measured_rate(np.unique(times), float(tick_s))
    if measured is None:
        return None if declared is None else FrameRate(fps=declared, variable=False)
    if declared is not None and abs(declared - measured.fps) <= _DECLARED_AGREEMENT * measured.fps:
        return FrameRate(fps=declared, variable=measured.variable)
    return measured


def _measured_rate(times: np.ndarray, tick_s: float) -> FrameRate | None:
    """The rate of sorted, distinct ``times`` (``None`` for fewer than two)."""
    if times.size < 2:
        return None
    span_s = float(times[-1] - times[0])
    intervals = np.diff(times)
    fps = (times.size - 1) / span_s
    typical = float(np.median(intervals))
    tolerance_s = _EQUAL_INTERVAL_TICKS * tick_s + _EQUAL_INTERVAL_PART * typical
    variable = bool(np.any(np.abs(intervals - typical) > tolerance_s))
    # the span is known to within a tick at each end: so is the rate, relatively
    relative_error = max(2.0 * tick_s / span_s, 1e-9)
    return FrameRate(fps=_snap_rate(fps, relative_error), variable=variable)


def _snap_rate(fps: float, relative_error: float) -> float:
    """``fps`` replaced by the nearest integer or NTSC (N * 1000/1001) rate within ``relative_error``."""
    candidates = (float(round(fps)), round(fps * 1.001) / 1.001)
    best = min(candidates, key=lambda rate: abs(rate - fps))
    return best if best > 0 and abs(best - fps) <= relative_error * fps else fps


def resample_uniform(
    times_s: np.ndarray | Sequence[float],
    values: np.ndarray,
    fps: float,
    *,
    step_columns: Sequence[int] = (),
) -> np.ndarray:
    """Rows stamped at increasing times -> rows at a constant ``fps`` over the same span.

    Row ``k`` of the result is the value at time ``times_s[0] + k / fps``: linearly interpolated
    between the two input rows around that time (each column separately), or, for the columns in
    ``step_columns``, the value of the latest input row at or before it (sample and hold: for
    state-like numbers, flags, indices, which must not take in-between values). Angles are
    interpolated as plain numbers (no wrap-around), as motion rows keep them within (-pi, pi).

    At times already on the grid (a constant-rate input resampled at its own rate) the rows are the
    input rows unchanged.

    Args:
        times_s: (N,) strictly increasing frame times in seconds, N >= 1 (e.g. :class:`Frame.time_s`
            of a video's frames).
        values: (N, W) rows, one per time.
        fps: output rate in frames per second, > 0.
        step_columns: columns held instead of interpolated (0-based; negative counts from the end).

    Returns:
        (M, W) array, M = ``floor((times_s[-1] - times_s[0]) * fps) + 1`` (see the module's grid),
        in ``values``' floating dtype (float64 for integer input).

    Raises:
        MotionError: times not strictly increasing or not finite, values not (N, W) with N matching,
            a bad ``fps`` or a column out of range.
    """
    times = _check_times(times_s, sorted_required=True)
    rows = np.asarray(values)
    if rows.ndim != 2 or rows.shape[0] != times.size:
        raise MotionError(f"values must be ({times.size}, W) rows, one per time, got shape {rows.shape}")
    dtype = rows.dtype if np.issubdtype(rows.dtype, np.floating) else np.dtype(np.float64)
    grid = _grid(times, fps)
    held = _held(times, grid)
    later = np.minimum(held + 1, times.size - 1)
    gap_s = times[later] - times[held]
    weight = np.divide(grid - times[held], gap_s, out=np.zeros_like(grid), where=gap_s > 0)
    weight = np.clip(weight, 0.0, 1.0)[:, None]
    start, end = rows[held].astype(np.float64), rows[later].astype(np.float64)
    result = start + weight * (end - start)
    width = rows.shape[1]
    for column in step_columns:
        is_index = isinstance(column, numbers.Integral) and not isinstance(column, bool)
        if not is_index or not -width <= column < width:
            raise MotionError(f"step column {column!r} is not a column of {width}-wide rows")
        result[:, column] = start[:, column]
    return result.astype(dtype, copy=False)


def held_indices(times_s: np.ndarray | Sequence[float], fps: float) -> np.ndarray:
    """(M,) int64: the input row on show at each time of the constant-rate grid of ``times_s``.

    The latest row at or before each grid time ``times_s[0] + k / fps`` (as a player shows frames),
    on the same grid as :func:`resample_uniform`: per-frame data that cannot be interpolated
    (tracker states, labels) follows the resampled rows with ``data[held_indices(times_s, fps)]``.

    Raises:
        MotionError: times not strictly increasing or not finite, or a bad ``fps``.
    """
    times = _check_times(times_s, sorted_required=True)
    return _held(times, _grid(times, fps))


def _grid(times: np.ndarray, fps: float) -> np.ndarray:
    """(M,) float64 times of the constant-rate grid over ``times`` (see the module docstring)."""
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise MotionError(f"fps must be a positive number (frames per second), got {fps!r}")
    span_frames = float(times[-1] - times[0]) * float(fps)
    count = math.floor(span_frames + _GRID_TOLERANCE_FRAMES) + 1
    return times[0] + np.arange(count, dtype=np.float64) / float(fps)


def _held(times: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Index of the latest time at or before each grid time (the last one for rounding past the end)."""
    # grid times a rounding error short of an input time count as that time
    slack = _GRID_TOLERANCE_FRAMES * float(np.min(np.diff(times))) if times.size > 1 else 0.0
    return np.clip(np.searchsorted(times, grid + slack, side="right") - 1, 0, times.size - 1).astype(np.int64)


def _check_times(
    times_s: np.ndarray | Sequence[float], *, sorted_required: bool, allow_empty: bool = False
) -> np.ndarray:
    """``times_s`` as a (N,) float64 array of finite numbers (strictly increasing if required)."""
    try:
        times = np.asarray(times_s, dtype=np.float64)
    except (TypeError, ValueError):
        raise MotionError(f"times must be numbers in seconds, got {type(times_s).__name__}") from None
    if times.ndim != 1 or (times.size == 0 and not allow_empty):
        raise MotionError(f"times must be a non-empty 1-D array (seconds), got shape {times.shape}")
    if not np.all(np.isfinite(times)):
        raise MotionError("times must be finite numbers (seconds)")
    if sorted_required and times.size > 1 and not np.all(np.diff(times) > 0):
        first = int(np.argmax(np.diff(times) <= 0)) + 1
        raise MotionError(
            f"times must be strictly increasing; time {first} ({times[first]:.6f} s) is not after "
            f"time {first - 1} ({times[first - 1]:.6f} s)"
        )
    return times
