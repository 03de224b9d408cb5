"""The one window rule, for sequences and for live streams at every lookahead."""

import numpy as np
import pytest

from pirender.engine.errors import MotionError
from pirender.engine.motion import (
    AUTHORS_SPACE,
    MotionFrame,
    MotionSequence,
    MotionSpace,
    StreamWindow,
    WindowSpec,
    build_windows,
    sequence_windows,
    window_indices,
)


def _values(frames: int, width: int = 73) -> np.ndarray:
    # row i holds i in every column, so a window shows which frames it read
    return np.repeat(np.arange(frames, dtype=np.float32)[:, None], width, axis=1)


def test_indices_clamp_at_both_borders() -> None:
    idx = window_indices([0, 5, 9], radius=3, newest=9)
    assert idx.tolist() == [
        [0, 0, 0, 0, 1, 2, 3],
        [2, 3, 4, 5, 6, 7, 8],
        [6, 7, 8, 9, 9, 9, 9],
    ]


def test_sequence_windows_layout_is_channel_first() -> None:
    values = np.random.default_rng(0).normal(size=(40, 73)).astype(np.float32)
    windows = sequence_windows(values, AUTHORS_SPACE)
    assert windows.shape == (40, 73, 27)
    np.testing.assert_array_equal(windows[20, :, 13], values[20])
    np.testing.assert_array_equal(windows[20, :, 0], values[7])
    np.testing.assert_array_equal(windows[0, :, 0], values[0])  # clamped
    np.testing.assert_array_equal(windows[39, :, 26], values[39])


def test_build_windows_fills_a_given_buffer() -> None:
    out = np.zeros((2, 73, 27), dtype=np.float32)
    result = build_windows(_values(30), [3, 4], 13, out=out)
    assert result is out
    assert out[1, 0].tolist() == [float(max(0, min(29, 4 + o))) for o in range(-13, 14)]


def test_short_sequences_repeat_their_frames() -> None:
    windows = sequence_windows(_values(1), AUTHORS_SPACE)
    assert windows.shape == (1, 73, 27) and not windows.any()


@pytest.mark.parametrize("lookahead", range(14))
def test_stream_windows_match_the_sequence_rule_at_every_lookahead(lookahead: int) -> None:
    frames, radius = 40, 13
    values = np.random.default_rng(lookahead).normal(size=(frames, 73)).astype(np.float32)
    stream = StreamWindow(AUTHORS_SPACE, WindowSpec(radius=radius, lookahead_frames=lookahead))
    emitted = []
    for t in range(frames):
        window = stream.push(values[t])
        if t < lookahead:
            assert window is None  # the output lags the input by L frames
        else:
            emitted.append(window.copy())
    emitted.extend(stream.flush())
    assert len(emitted) == frames
    for center, window in enumerate(emitted):
        newest = min(center + lookahead, frames - 1)
        expected = build_windows(values, center, radius, newest=newest)[0]
        np.testing.assert_array_equal(window, expected)
    if lookahead == radius:  # full lookahead reproduces the offline windows exactly
        np.testing.assert_array_equal(np.stack(emitted), sequence_windows(values, AUTHORS_SPACE, radius))


def test_stream_with_no_lookahead_repeats_the_newest_frame() -> None:
    stream = StreamWindow(AUTHORS_SPACE, WindowSpec(radius=2, lookahead_frames=0))
    for t in range(3):
        window = stream.push(_values(3)[t])
    assert window[0].tolist() == [0.0, 1.0, 2.0, 2.0, 2.0]


def test_stream_rejects_bad_frames_and_specs() -> None:
    stream = StreamWindow(AUTHORS_SPACE)
    with pytest.raises(MotionError, match="72 numbers"):
        stream.push(np.zeros(72))
    with pytest.raises(MotionError, match="non-finite"):
        stream.push(np.full(73, np.nan))
    with pytest.raises(MotionError, match=r"lookahead must be in 0\.\.13"):
        WindowSpec(radius=13, lookahead_frames=14)
    with pytest.raises(MotionError, match="at least one frame"):
        window_indices(0, 3, newest=-1)


def test_stream_refuses_frames_of_another_space() -> None:
    stream = StreamWindow(AUTHORS_SPACE, WindowSpec(radius=13, lookahead_frames=0))
    other = MotionSpace("open-73", tuple(f"c{i}" for i in range(73)))
    with pytest.raises(MotionError, match="cannot drive"):
        stream.push(MotionFrame(other, np.zeros(73)))
    window = stream.push(MotionSequence(AUTHORS_SPACE, np.ones((2, 73))).frame(1))
    assert window is not None and window.shape == (73, 27)
    with pytest.raises(MotionError, match="one row of 73"):
        MotionFrame(AUTHORS_SPACE, np.zeros((2, 73)))


def test_spaces_are_explicit() -> None:
    other = MotionSpace("open", ("yaw", "pitch"))
    with pytest.raises(MotionError, match="cannot drive a renderer of space 'pirender-3dmm-73'"):
        AUTHORS_SPACE.check_compatible(other)
    assert AUTHORS_SPACE.width == 73
    assert AUTHORS_SPACE.group("crop") == slice(70, 73)
    assert MotionSpace.from_dict(AUTHORS_SPACE.to_dict()) == AUTHORS_SPACE
    with pytest.raises(MotionError, match="duplicate"):
        MotionSpace("x", ("a", "a"))
