"""Measuring the open motion space (``motion.space.OPEN_SPACE``) from face-mesh landmarks.

Needs no licensed face model. Every number means something a person can set with a slider:

| slot | unit / meaning | typical range |
|---|---|---|
| pitch, yaw, roll | head rotation in radians, absolute (``geometry``: + pitch looks down, | +-0.6 |
| | + yaw turns to the image's left, + roll tilts clockwise) | |
| tx, ty | head position relative to the neutral, in inter-ocular distances (IOD), + = right / down | +-1 |
| scale | face size relative to the neutral (1 = same; depth motion shows as scale) | 0.7..1.4 |
| jaw_open | lips apart by ``jaw_open * 0.5`` IOD more than at neutral | 0..1.2 |
| smile_right, smile_left | mouth corner out + up by ``smile * 0.15`` IOD (sum of both moves) | -0.5..1.5 |
| lip_pucker | mouth ``pucker * 0.2`` IOD narrower than at neutral (negative = stretched) | -1..1 |
| blink_right, blink_left | 1 - eyelid opening / neutral opening: 0 open, 1 closed | -0.3..1 |
| brow_raise_right, brow_raise_left | brow higher above the eye by ``raise * 0.1`` IOD | -0.7..1.5 |
| brow_frown | inner brow ends ``frown * 0.05`` IOD closer together | -1..1.5 |
| gaze_x, gaze_y | iris offset from the neutral, in eye widths (+ = image right / down) | +-0.3 |

Left/right are the subject's. Expression controls are measured in the head's own frame (pose
removed) relative to a neutral reference of the same person, so they do not change with pose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PirenderError
from ..motion.space import OPEN_SPACE, MotionFrame
from . import landmarks as lm
from .geometry import Similarity, euler_from_rotation, fit_similarity, head_rotation

#: Sizes (IOD units) that make each control's "1".
JAW_UNIT = 0.5
SMILE_UNIT = 0.15
PUCKER_UNIT = 0.2
BROW_UNIT = 0.1
FROWN_UNIT = 0.05

_STABLE = np.array(lm.STABLE)
_LIP_GAP_PAIRS = ((13, 14), (82, 87), (312, 317))
_RIGHT_LID_PAIRS = tuple(zip(lm.RIGHT_UPPER_LID[1:-1], lm.RIGHT_LOWER_LID[1:-1], strict=True))
_LEFT_LID_PAIRS = tuple(zip(lm.LEFT_UPPER_LID[1:-1], lm.LEFT_LOWER_LID[1:-1], strict=True))


def _eye_distance(points: np.ndarray) -> float:
    right = (points[lm.RIGHT_EYE_OUTER] + points[lm.RIGHT_EYE_INNER]) / 2
    left = (points[lm.LEFT_EYE_OUTER] + points[lm.LEFT_EYE_INNER]) / 2
    return float(np.linalg.norm(left - right))


def canonical_frame(landmarks: np.ndarray) -> Similarity:
    """Head frame of one face: canonical coordinates are frontal, centred on the stable points and in
    IOD units. ``frame.apply(canonical)`` gives pixels; ``frame.invert(pixels)`` canonical."""
    iod_px = _eye_distance(landmarks)
    if not np.isfinite(iod_px) or iod_px <= 1e-6:
        raise PirenderError("degenerate face landmarks (the eyes coincide)")
    return Similarity(iod_px, head_rotation(landmarks), landmarks[_STABLE].mean(axis=0))


@dataclass(frozen=True)
class Measures:
    """Raw expression measures of canonical landmarks (IOD units)."""

    lip_gap: float
    corner_right: np.ndarray  # (2,) x, y
    corner_left: np.ndarray
    mouth_width: float
    lid_right: float
    lid_left: float
    brow_right: float  # height of the brow above the eye corners
    brow_left: float
    inner_brow_gap: float
    iris_right: np.ndarray  # (2,) iris centre relative to the eye centre, in eye widths
    iris_left: np.ndarray


def _iris_offset(points: np.ndarray, center: int, outer: int, inner: int) -> np.ndarray:
    eye_center = (points[outer, :2] + points[inner, :2]) / 2
    width = np.linalg.norm(points[outer, :2] - points[inner, :2])
    return (points[center, :2] - eye_center) / width


def measure(points: np.ndarray) -> Measures:
    """Measures of (478, 3) canonical landmarks."""
    eye_level = points[[lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER, lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER], 1]
    return Measures(
        lip_gap=float(np.mean([points[b, 1] - points[a, 1] for a, b in _LIP_GAP_PAIRS])),
        corner_right=points[lm.MOUTH_RIGHT, :2].copy(),
        corner_left=points[lm.MOUTH_LEFT, :2].copy(),
        mouth_width=float(points[lm.MOUTH_LEFT, 0] - points[lm.MOUTH_RIGHT, 0]),
        lid_right=float(np.mean([points[b, 1] - points[a, 1] for a, b in _RIGHT_LID_PAIRS])),
        lid_left=float(np.mean([points[b, 1] - points[a, 1] for a, b in _LEFT_LID_PAIRS])),
        brow_right=float(eye_level[:2].mean() - points[list(lm.RIGHT_BROW), 1].mean()),
        brow_left=float(eye_level[2:].mean() - points[list(lm.LEFT_BROW), 1].mean()),
        inner_brow_gap=float(points[lm.LEFT_BROW_INNER, 0] - points[lm.RIGHT_BROW_INNER, 0]),
        iris_right=_iris_offset(points, lm.RIGHT_IRIS_CENTER, lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER),
        iris_left=_iris_offset(points, lm.LEFT_IRIS_CENTER, lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER),
    )


@dataclass(frozen=True)
class NeutralFace:
    """A person's neutral reference: canonical landmarks (478, 3), their measures, and where the
    neutral face sat in its picture (for translation and scale)."""

    canonical: np.ndarray
    measures: Measures
    frame: Similarity

    @classmethod
    def from_landmarks(cls, frames: list[np.ndarray]) -> NeutralFace:
        """The neutral of one or more (478, 3) pixel landmark sets (averaged in the head frame)."""
        if not frames:
            raise PirenderError("a neutral needs at least one frame of landmarks")
        first = canonical_frame(frames[0])
        canonical = [first.invert(frames[0])]
        for points in frames[1:]:  # align every further frame to the first on the stable points
            fit = fit_similarity(canonical[0][_STABLE], points[_STABLE])
            canonical.append(fit.invert(points))
        mean = np.mean(canonical, axis=0)
        return cls(
            canonical=mean, measures=measure(mean), frame=fit_similarity(mean[_STABLE], frames[0][_STABLE])
        )

    def rest_row(self) -> np.ndarray:
        """The open-space row of the neutral itself: its own head pose, no move, no expression."""
        row = np.zeros(OPEN_SPACE.width, dtype=np.float32)
        row[:3] = euler_from_rotation(self.frame.rotation)
        row[OPEN_SPACE.index("scale")] = 1.0
        return row

    def pose(self, landmarks: np.ndarray) -> Similarity:
        """Where this person's canonical head lies in a frame (fitted on the stable points)."""
        return fit_similarity(self.canonical[_STABLE], landmarks[_STABLE])

    def motion(self, landmarks: np.ndarray) -> MotionFrame:
        """The open-space row of one frame's (478, 3) pixel landmarks."""
        fit = self.pose(landmarks)
        points = fit.invert(landmarks)
        now, ref = measure(points), self.measures
        pitch, yaw, roll = euler_from_rotation(fit.rotation)
        shift = (fit.translation - self.frame.translation)[:2] / self.frame.scale
        corner_r = now.corner_right - ref.corner_right
        corner_l = now.corner_left - ref.corner_left
        gaze = ((now.iris_right - ref.iris_right) + (now.iris_left - ref.iris_left)) / 2
        row = np.array(
            [
                pitch,
                yaw,
                roll,
                shift[0],
                shift[1],
                fit.scale / self.frame.scale,
                (now.lip_gap - ref.lip_gap) / JAW_UNIT,
                (-corner_r[0] - corner_r[1]) / SMILE_UNIT,
                (corner_l[0] - corner_l[1]) / SMILE_UNIT,
                (ref.mouth_width - now.mouth_width) / PUCKER_UNIT,
                1.0 - now.lid_right / ref.lid_right,
                1.0 - now.lid_left / ref.lid_left,
                (now.brow_right - ref.brow_right) / BROW_UNIT,
                (now.brow_left - ref.brow_left) / BROW_UNIT,
                (ref.inner_brow_gap - now.inner_brow_gap) / FROWN_UNIT,
                gaze[0],
                gaze[1],
            ],
            dtype=np.float32,
        )
        return MotionFrame(OPEN_SPACE, row)
