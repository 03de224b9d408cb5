"""Intuitive edits in the authors' space: pose in degrees, translation, expression coefficients.

The paper's editing demo overwrites the pose slots of every window slot and swaps expression presets
(``pirender-spec.md`` section 5.3). Here an edit is *relative*: it is added to a base frame, which is
the source portrait's own coefficients when known, or :func:`neutral_frame` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import MotionError
from .space import AUTHORS_SPACE, MotionSequence

#: The authors' demo neutral translation (tx, ty, tz).
NEUTRAL_TRANSLATION = (0.0, 0.0, 0.45)
#: Rough crop numbers (s, t0, t1) of a face in a VoxCeleb-aligned 256x256 crop. Only an estimate (a
#: face model unit is ~102 px at s = 1 and the head sits near the centre): use the source's real
#: coefficients (``--source-motion``) whenever they exist.
APPROX_VOX_CROP = (1.0, 128.0, 128.0)

_EXPRESSION = AUTHORS_SPACE.group("expression")
_ANGLES = AUTHORS_SPACE.group("angles")  # x = pitch, y = yaw, z = roll (radians)
_TRANSLATION = AUTHORS_SPACE.group("translation")
_CROP = AUTHORS_SPACE.group("crop")


def neutral_frame(crop: tuple[float, float, float] = APPROX_VOX_CROP) -> np.ndarray:
    """A frame (73,) with zero expression, zero angles, the demo's neutral translation and ``crop``."""
    row = np.zeros(AUTHORS_SPACE.width, dtype=np.float32)
    row[_TRANSLATION] = NEUTRAL_TRANSLATION
    row[_CROP] = crop
    return row


@dataclass(frozen=True)
class MotionEdit:
    """A change of pose and expression, added to a base frame."""

    pitch_deg: float = 0.0
    yaw_deg: float = 0.0
    roll_deg: float = 0.0
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    expression: dict[int, float] = field(default_factory=dict)  # coefficient index (0..63) -> change

    def __post_init__(self) -> None:
        width = _EXPRESSION.stop - _EXPRESSION.start
        for index in self.expression:
            if not 0 <= index < width:
                raise MotionError(f"expression index {index} is outside 0..{width - 1}")
        values = [self.pitch_deg, self.yaw_deg, self.roll_deg, *self.translation, *self.expression.values()]
        if not all(math.isfinite(v) for v in values):
            raise MotionError("edit values must be finite numbers")

    def apply(self, base: np.ndarray, amount: float = 1.0) -> np.ndarray:
        """base (73,) -> edited copy (73,); ``amount`` in [0, 1] scales the edit (for sweeps)."""
        row = np.array(base, dtype=np.float32, copy=True).reshape(-1)
        if row.shape[0] != AUTHORS_SPACE.width:
            raise MotionError(f"edits work on the authors' space ({AUTHORS_SPACE.width} numbers per frame)")
        angles_rad = np.radians([self.pitch_deg, self.yaw_deg, self.roll_deg])
        row[_ANGLES] += amount * angles_rad.astype(np.float32)
        row[_TRANSLATION] += amount * np.asarray(self.translation, dtype=np.float32)
        for index, change in self.expression.items():
            row[_EXPRESSION.start + index] += amount * change
        return row


def sweep(base: np.ndarray, edit: MotionEdit, *, frames: int, fps: float = 25.0) -> MotionSequence:
    """Base -> edited -> base over ``frames`` frames (linear in the edit amount)."""
    if frames < 2:
        raise MotionError("a sweep needs at least 2 frames")
    amounts = 1.0 - np.abs(np.linspace(-1.0, 1.0, frames))  # 0 -> 1 -> 0
    rows = np.stack([edit.apply(base, float(a)) for a in amounts])
    return MotionSequence(AUTHORS_SPACE, rows, fps=fps)


def demo_motion(base: np.ndarray, *, frames: int, fps: float = 25.0) -> MotionSequence:
    """A scripted clip in the authors' space: the head turns (yaw +-20 deg), nods and tilts.

    The expression stays at the base's values: without the 3DMM's expression basis there is no
    documented meaning for single coefficients, so none is invented.
    """
    if frames < 1:
        raise MotionError("the demo needs at least one frame")
    t_s = np.arange(frames, dtype=np.float64) / fps
    rows = np.repeat(np.asarray(base, dtype=np.float32).reshape(1, -1), frames, axis=0)
    rows[:, _ANGLES.start + 1] += np.radians(20.0 * np.sin(2 * np.pi * t_s / 4.0))  # yaw, 4 s period
    rows[:, _ANGLES.start + 0] += np.radians(8.0 * np.sin(2 * np.pi * t_s / 2.5))  # pitch
    rows[:, _ANGLES.start + 2] += np.radians(5.0 * np.sin(2 * np.pi * t_s / 5.0))  # roll
    return MotionSequence(AUTHORS_SPACE, rows, fps=fps)
