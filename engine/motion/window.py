"""The renderer's input window: 2k+1 frames of motion around a centre frame, shape (width, 2k+1).

One rule builds every window, for files, live streams and training alike (:func:`window_indices`):
slot ``j`` of the window centred on frame ``c`` reads frame ``clamp(c - k + j, 0, newest)``, where
``newest`` is the last frame that exists. For a whole sequence ``newest = N - 1`` (the authors' border
rule: first/last frame repeated). A live stream with lookahead ``L`` (0..k) renders the frame
``c = newest - L`` as soon as frame ``newest`` arrives, so its output lags the input by ``L`` frames and
slots later than the newest frame repeat it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import MotionError
from .space import MotionFrame, MotionSpace, check_values

#: The authors' semantic radius k: windows of 2k+1 = 27 frames.
DEFAULT_RADIUS = 13


@dataclass(frozen=True)
class WindowSpec:
    """Window geometry: ``radius`` k (window length 2k+1) and live ``lookahead_frames`` L in 0..k."""

    radius: int = DEFAULT_RADIUS
    lookahead_frames: int = DEFAULT_RADIUS

    def __post_init__(self) -> None:
        if self.radius < 0:
            raise MotionError(f"window radius must be >= 0, got {self.radius}")
        if not 0 <= self.lookahead_frames <= self.radius:
            raise MotionError(f"lookahead must be in 0..{self.radius}, got {self.lookahead_frames}")

    @property
    def length(self) -> int:
        """Frames per window (2k+1)."""
        return 2 * self.radius + 1


def window_indices(
    centers: int | Sequence[int] | np.ndarray, radius: int, newest: int, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Frame indices of the windows centred on ``centers``: (B, 2k+1) int64, clamped to [0, newest].

    ``out`` (B, 2k+1) int64 is filled in place when given.
    """
    if newest < 0:
        raise MotionError("a window needs at least one frame")
    center_array = np.atleast_1d(np.asarray(centers, dtype=np.int64))
    offsets = np.arange(-radius, radius + 1, dtype=np.int64)
    if out is None:
        return np.clip(center_array[:, None] + offsets[None, :], 0, newest)
    np.add(center_array[:, None], offsets[None, :], out=out)
    return np.clip(out, 0, newest, out=out)


def build_windows(
    values: np.ndarray,
    centers: int | Sequence[int] | np.ndarray,
    radius: int = DEFAULT_RADIUS,
    *,
    newest: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Gather windows from ``values`` (frames, width): returns (B, width, 2k+1) float32.

    ``newest`` defaults to the last row of ``values``. ``out`` (B, width, 2k+1) is filled in place
    when given (no allocation for the result).
    """
    last = values.shape[0] - 1 if newest is None else newest
    if last >= values.shape[0]:
        raise MotionError(f"newest frame {last} is beyond the {values.shape[0]} frames given")
    indices = window_indices(centers, radius, last)  # (B, 2k+1)
    if out is None:
        out = np.empty((indices.shape[0], values.shape[1], indices.shape[1]), dtype=np.float32)
    # gather straight into the (B, 2k+1, width) view of out; indices are already in range
    np.take(values, indices, axis=0, out=out.transpose(0, 2, 1), mode="clip")
    return out


def sequence_windows(values: np.ndarray, space: MotionSpace, radius: int = DEFAULT_RADIUS) -> np.ndarray:
    """All windows of a whole sequence (frames, width) -> (frames, width, 2k+1), for offline use."""
    checked = check_values(values, space)
    return build_windows(checked, np.arange(checked.shape[0]), radius)


class StreamWindow:
    """Windows for a live stream: push one frame of motion at a time, get the window to render.

    Keeps a ring of ``k + L + 1`` frames and one output buffer, both allocated once. ``push`` returns
    the window of frame ``newest - L`` (or ``None`` during the first ``L`` frames); ``flush`` yields the
    last ``L`` windows when the stream ends. The returned array is reused: copy it to keep it.
    """

    def __init__(self, space: MotionSpace, spec: WindowSpec | None = None) -> None:
        self.space = space
        self.spec = spec or WindowSpec()
        self._capacity = self.spec.radius + self.spec.lookahead_frames + 1
        self._ring = np.zeros((self._capacity, space.width), dtype=np.float32)
        self._window = np.zeros((1, space.width, self.spec.length), dtype=np.float32)
        self._frame_index = np.zeros((1, self.spec.length), dtype=np.int64)
        self._newest = -1
        self._next_center = 0

    @property
    def frames_pushed(self) -> int:
        return self._newest + 1

    def reset(self) -> None:
        """Forget the history (a new stream starts)."""
        self._newest = -1
        self._next_center = 0

    def push(self, frame: MotionFrame | np.ndarray) -> np.ndarray | None:
        """Add the newest frame (width,); return the (width, 2k+1) window now due, if any.

        A :class:`MotionFrame` of another space is refused; a bare array is taken as this space's.
        """
        if isinstance(frame, MotionFrame):
            self.space.check_compatible(frame.space)
            frame = frame.values
        row = np.asarray(frame, dtype=np.float32).reshape(-1)
        if row.shape[0] != self.space.width:
            raise MotionError(
                f"stream frame has {row.shape[0]} numbers, space {self.space.name!r} has {self.space.width}"
            )
        if not np.isfinite(row).all():
            raise MotionError(f"stream frame {self._newest + 1} holds non-finite values")
        self._newest += 1
        self._ring[self._newest % self._capacity] = row
        if self._newest - self.spec.lookahead_frames < self._next_center:
            return None
        return self._emit()

    def flush(self) -> list[np.ndarray]:
        """Windows of the frames still owed at the end of the stream (copies)."""
        windows = []
        while self._newest >= 0 and self._next_center <= self._newest:
            windows.append(self._emit().copy())
        return windows

    def _emit(self) -> np.ndarray:
        indices = window_indices(self._next_center, self.spec.radius, self._newest, out=self._frame_index)
        np.remainder(indices, self._capacity, out=indices)
        np.take(self._ring, indices[0], axis=0, out=self._window[0].T, mode="clip")
        self._next_center += 1
        return self._window[0]
