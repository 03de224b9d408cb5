"""Measuring the open motion space (``motion.space.OPEN_SPACE``) from face-mesh landmarks.

Needs no licensed face model. Every number means something a person can set with a slider:

| slot | unit / meaning | documented range: identity / hard |
|---|---|---|
| pitch | head rotation in radians, absolute (``geometry``): + looks down | +-0.45 / +-0.6 |
| yaw | the same: + turns to the image's left | +-0.5 / +-0.65 |
| roll | the same: + tilts clockwise | +-0.45 / +-0.55 |
| tx | head position relative to the neutral, in inter-ocular distances (IOD), + = right | +-0.6 / +-0.8 |
| ty | the same, + = down | +-0.5 / +-0.7 |
| scale | face size relative to the neutral (1 = same; depth motion shows as scale) | 0.8..1.2 / 0.7..1.35 |
| jaw_open | lips apart by ``jaw_open * 0.5`` IOD more than at neutral | 0..1.2 / -0.1..1.3 |
| smile_right, smile_left | corner out + up ``smile * 0.15`` IOD (summed), measured | -0.4..1.5 / -0.6..1.8 |
| | from where the jaw puts it (``JAW_CORNER_DROP`` x the lips' extra opening lower) | |
| lip_pucker | mouth ``pucker * 0.2`` IOD narrower than at neutral (- = stretched) | -1..1 / -1.2..1.2 |
| blink_right, blink_left | 1 - eyelid opening / neutral opening: 0 open, 1 closed | -0.3..0.85 / -0.4..0.95 |
| brow_raise_right, brow_raise_left | brow ``raise * 0.1`` IOD higher above the eye | -0.7..1.5 / -0.9..1.8 |
| brow_frown | inner brow ends ``frown * 0.05`` IOD closer together | -1..1.5 / -1.2..1.8 |
| gaze_x | iris offset from the neutral, in eye widths (+ = image right) | +-0.12 / +-0.15 |
| gaze_y | the same, + = down | +-0.1 / +-0.13 |

The ranges are ``motion.limits.OPEN_LIMITS`` (one place): values within the identity range pass
unchanged; beyond it every renderer receives them smoothly saturated toward the hard bound.

Left/right are the subject's. Expression controls are measured in the head's own frame (pose
removed) relative to a neutral reference of the same person, so they do not change with pose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PirenderError
from ..motion.space import OPEN_SPACE, MotionFrame
from . import landmarks as lm
from .geometry import Similarity, euler_from_rotation, fit_similarity, head_rotation, rotation_from_euler

#: Sizes (IOD units) that make each control's "1".
JAW_UNIT = 0.5
SMILE_UNIT = 0.15
PUCKER_UNIT = 0.2
BROW_UNIT = 0.1
FROWN_UNIT = 0.05
#: Opening the jaw lowers the mouth corners by this part of the lips' extra opening; the smiles are
#: measured from there (and the rig's jaw moves the corners so). Measured on d18: 0.18 overall.
JAW_CORNER_DROP = 0.25

_STABLE = np.array(lm.STABLE)
_LIP_GAP_PAIRS = ((13, 14), (82, 87), (312, 317))
_RIGHT_LID_PAIRS = tuple(zip(lm.RIGHT_UPPER_LID[1:-1], lm.RIGHT_LOWER_LID[1:-1], strict=True))
_LEFT_LID_PAIRS = tuple(zip(lm.LEFT_UPPER_LID[1:-1], lm.LEFT_LOWER_LID[1:-1], strict=True))


def _eye_distance(points: np.ndarray) -> float:
    """The inter-ocular distance of (478, 3) landmarks (3D eye centres), in their units."""
    right, left = lm.eye_centres(points)
    return float(np.linalg.norm(left - right))


def canonical_frame(landmarks: np.ndarray) -> Similarity:
    """Head frame of one face: canonical coordinates are frontal, centred on the stable points and in
    IOD units. ``frame.apply(canonical)`` gives pixels; ``frame.invert(pixels)`` canonical."""
    iod_px = _eye_distance(landmarks)
    if not np.isfinite(iod_px) or iod_px <= 1e-6:
        raise PirenderError("degenerate face landmarks (the eyes coincide)")
    return Similarity(iod_px, head_rotation(landmarks), landmarks[_STABLE].mean(axis=0))


_RIGHT_EYE_CORNERS = (lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER)
_LEFT_EYE_CORNERS = (lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER)


def _lower_face(canonical: np.ndarray) -> np.ndarray:
    """(478,) bool: points below the middle of nose tip and upper lip (lips, chin, jaw)."""
    seam_y = (canonical[lm.NOSE_TIP, 1] + canonical[lm.UPPER_LIP_OUTER, 1]) / 2
    return canonical[:, 1] > seam_y


def _eye_region(canonical: np.ndarray, corners: tuple[int, int]) -> np.ndarray:
    """(478,) bool: lids, eye contour and iris around one eye (not the brow above it)."""
    center = canonical[list(corners), :2].mean(axis=0)
    offset = np.abs(canonical[:, :2] - center)
    return (offset[:, 0] < 0.36) & (offset[:, 1] < 0.17)


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

    @classmethod
    def robust(cls, frames: list[np.ndarray], *, reference: NeutralFace | None = None) -> NeutralFace:
        """The neutral of a person from many (478, 3) pixel landmark sets that need not be neutral.

        Each region takes the calmest frames: the lower face (lips, chin, jaw) the frames whose lips
        are closest together (lowest quarter of the lip gaps), each eye the frames in which it is
        open at least as wide as its median, everything else all frames; each point is the
        per-coordinate median of its frames in the head frame. So a clip that starts with an open
        mouth or closed eyes, or that smiles now and then, still gets a closed mouth, open eyes and a
        relaxed face as its neutral (``pirender-live`` issue 11).

        Where the neutral sits in the picture (its head pose, position and size: the reference of
        ``rest_row``, tx, ty and scale) is the median over ``frames``; with ``reference`` it is the
        reference's, and the frames are aligned to the reference's head frame, so a neutral refined
        as a stream goes on changes the expression reference only, never the pose reference.

        Raises:
            PirenderError: no frames, or degenerate landmarks (coinciding eyes).
        """
        if not frames:
            raise PirenderError("a neutral needs at least one frame of landmarks")
        anchor = canonical_frame(frames[0]).invert(frames[0]) if reference is None else reference.canonical
        canonical = np.stack([fit_similarity(anchor[_STABLE], p[_STABLE]).invert(p) for p in frames])
        lip_gap = np.mean([canonical[:, b, 1] - canonical[:, a, 1] for a, b in _LIP_GAP_PAIRS], axis=0)
        lids = {
            side: np.mean([canonical[:, b, 1] - canonical[:, a, 1] for a, b in pairs], axis=0)
            for side, pairs in (("right", _RIGHT_LID_PAIRS), ("left", _LEFT_LID_PAIRS))
        }
        neutral = np.median(canonical, axis=0)
        closed_mouth = lip_gap <= np.percentile(lip_gap, 25)
        neutral[_lower_face(neutral)] = np.median(canonical[closed_mouth][:, _lower_face(neutral)], axis=0)
        for side, eye in (("right", _RIGHT_EYE_CORNERS), ("left", _LEFT_EYE_CORNERS)):
            open_eye = lids[side] >= np.median(lids[side])
            region = _eye_region(neutral, eye)
            neutral[region] = np.median(canonical[open_eye][:, region], axis=0)
        if reference is not None:
            frame = reference.frame
        else:
            fits = [fit_similarity(neutral[_STABLE], p[_STABLE]) for p in frames]
            angles = np.median([euler_from_rotation(f.rotation) for f in fits], axis=0)
            frame = Similarity(
                float(np.median([f.scale for f in fits])),
                rotation_from_euler(*angles),
                np.median([f.translation for f in fits], axis=0),
            )
        return cls(canonical=neutral, measures=measure(neutral), frame=frame)

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
        # opening the jaw lowers the corners by a part of the lips' extra opening: not a smile
        jaw_drop = np.array([0.0, JAW_CORNER_DROP * (now.lip_gap - ref.lip_gap)])
        corner_r = now.corner_right - ref.corner_right - jaw_drop
        corner_l = now.corner_left - ref.corner_left - jaw_drop
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
