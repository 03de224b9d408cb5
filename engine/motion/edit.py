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
from .space import AUTHORS_SPACE, OPEN_SPACE, MotionFrame, MotionSequence

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
_OPEN_CONTROLS = OPEN_SPACE.slot_names[OPEN_SPACE.group("expression")]


def neutral_frame(crop: tuple[float, float, float] = APPROX_VOX_CROP) -> np.ndarray:
    """A frame (73,) with zero expression, zero angles, the demo's neutral translation and ``crop``."""
    row = np.zeros(AUTHORS_SPACE.width, dtype=np.float32)
    row[_TRANSLATION] = NEUTRAL_TRANSLATION
    row[_CROP] = crop
    return row


@dataclass(frozen=True)
class MotionEdit:
    """A change of pose and expression, added to a base frame of either space.

    Authors' space: ``translation`` adds to (tx, ty, tz) and ``expression`` to coefficients 0..63.
    Open space: ``translation`` (x, y) adds to (tx, ty) in IOD units, ``controls`` to named controls.
    """

    pitch_deg: float = 0.0
    yaw_deg: float = 0.0
    roll_deg: float = 0.0
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    expression: dict[int, float] = field(default_factory=dict)  # coefficient index (0..63) -> change
    controls: dict[str, float] = field(default_factory=dict)  # open-space control name -> change

    def __post_init__(self) -> None:
        width = _EXPRESSION.stop - _EXPRESSION.start
        for index in self.expression:
            if not 0 <= index < width:
                raise MotionError(f"expression index {index} is outside 0..{width - 1}")
        for name in self.controls:
            if name not in _OPEN_CONTROLS:
                raise MotionError(f"unknown control {name!r} (controls: {', '.join(_OPEN_CONTROLS)})")
        values = [
            *(self.pitch_deg, self.yaw_deg, self.roll_deg),
            *self.translation,
            *self.expression.values(),
            *self.controls.values(),
        ]
        if not all(math.isfinite(v) for v in values):
            raise MotionError("edit values must be finite numbers")

    def apply(self, base: MotionFrame, amount: float = 1.0) -> np.ndarray:
        """The edited copy (width,) of ``base``; ``amount`` in [0, 1] scales the edit (for sweeps)."""
        row = base.values.astype(np.float32, copy=True)
        angles_rad = np.radians([self.pitch_deg, self.yaw_deg, self.roll_deg]).astype(np.float32)
        if base.space == AUTHORS_SPACE:
            if self.controls:
                raise MotionError("named controls belong to the open space; the authors' space takes --exp")
            row[_ANGLES] += amount * angles_rad
            row[_TRANSLATION] += amount * np.asarray(self.translation, dtype=np.float32)
            for index, change in self.expression.items():
                row[_EXPRESSION.start + index] += amount * change
            return row
        if base.space == OPEN_SPACE:
            if self.expression or self.translation[2]:
                raise MotionError("the open space has no 3DMM coefficients or depth translation")
            row[OPEN_SPACE.group("pose")] += amount * angles_rad
            row[OPEN_SPACE.index("tx")] += amount * self.translation[0]
            row[OPEN_SPACE.index("ty")] += amount * self.translation[1]
            for name, change in self.controls.items():
                row[OPEN_SPACE.index(name)] += amount * change
            return row
        raise MotionError(f"edits are defined for the authors' and the open space, not {base.space.name!r}")


def sweep(base: MotionFrame, edit: MotionEdit, *, frames: int, fps: float = 25.0) -> MotionSequence:
    """Base -> edited -> base over ``frames`` frames (linear in the edit amount)."""
    if frames < 2:
        raise MotionError("a sweep needs at least 2 frames")
    amounts = 1.0 - np.abs(np.linspace(-1.0, 1.0, frames))  # 0 -> 1 -> 0
    rows = np.stack([edit.apply(base, float(a)) for a in amounts])
    return MotionSequence(base.space, rows, fps=fps)


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


def demo_open_motion(*, frames: int, fps: float = 25.0) -> MotionSequence:
    """A scripted open-space clip relative to a frontal neutral: the head turns (yaw +-18 deg), nods
    and tilts, the eyes blink every 2.4 s and the mouth talks (syllables at ~4 Hz), then smiles."""
    if frames < 1:
        raise MotionError("the demo needs at least one frame")
    t_s = np.arange(frames, dtype=np.float64) / fps
    rows = np.zeros((frames, OPEN_SPACE.width), dtype=np.float32)
    rows[:, OPEN_SPACE.index("scale")] = 1.0
    rows[:, OPEN_SPACE.index("yaw")] = np.radians(18.0 * np.sin(2 * np.pi * t_s / 4.0))
    rows[:, OPEN_SPACE.index("pitch")] = np.radians(6.0 * np.sin(2 * np.pi * t_s / 2.7))
    rows[:, OPEN_SPACE.index("roll")] = np.radians(4.0 * np.sin(2 * np.pi * t_s / 5.3))
    blink = np.clip(1.0 - np.abs((t_s % 2.4) - 1.2) / 0.09, 0.0, 1.0)  # ~0.18 s blinks
    rows[:, OPEN_SPACE.index("blink_right")] = blink
    rows[:, OPEN_SPACE.index("blink_left")] = blink
    talking = (t_s % 6.0) < 3.5
    syllables = np.clip(np.sin(2 * np.pi * 4.1 * t_s) * 0.5 + np.sin(2 * np.pi * 2.3 * t_s) * 0.3, 0, None)
    rows[:, OPEN_SPACE.index("jaw_open")] = np.where(talking, 0.9 * syllables, 0.0)
    smile = np.clip(np.sin(np.pi * ((t_s % 6.0) - 3.5) / 2.5), 0, None) * (~talking)
    rows[:, OPEN_SPACE.index("smile_right")] = 0.8 * smile
    rows[:, OPEN_SPACE.index("smile_left")] = 0.8 * smile
    return MotionSequence(OPEN_SPACE, rows, fps=fps)
