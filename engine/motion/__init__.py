"""Motion spaces, sequences, windows and motion files."""

from .space import (
    AUTHORS_SPACE,
    OPEN_SPACE,
    MotionFrame,
    MotionSequence,
    MotionSpace,
    check_values,
    known_space,
)
from .window import DEFAULT_RADIUS, StreamWindow, WindowSpec, build_windows, sequence_windows, window_indices

__all__ = [
    "AUTHORS_SPACE",
    "DEFAULT_RADIUS",
    "OPEN_SPACE",
    "MotionFrame",
    "MotionSequence",
    "MotionSpace",
    "StreamWindow",
    "WindowSpec",
    "build_windows",
    "check_values",
    "known_space",
    "sequence_windows",
    "window_indices",
]
