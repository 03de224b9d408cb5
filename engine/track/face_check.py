"""The one rule for "is this a human face": used by the portrait face search (``crop.FaceFinder``:
``--face-crop``, the server's uploads, the mesh renderer's ``prepare``) and by the tracker when it
acquires a face.

Face-mesh landmark models fit a human-shaped mesh to whatever their detector hands them, so a mesh
alone does not prove a human face (MediaPipe's face mesh followed an alpaca's muzzle in ``track``).
The rule asks two questions of a face given by its (478, 3) landmarks in an RGB picture:

1. **Human proportions.** Measured in 3D (so the pose does not matter) in inter-ocular distances,
   the mouth, the chin and the face's width must lie where a human face has them (generous bounds;
   on the faces below: 0.72-1.33, 1.28-2.22 and 1.98-2.43 eye distances). This refuses degenerate or
   stretched meshes.
2. **Human-face detectors see a face there.** MediaPipe's two BlazeFace models look at the face at
   their own framings, turned upright by the eye line: the short-range one at a square of
   :data:`SHORT_RANGE_CROP_SIDE` times the landmarks' box (a face that fills half its input), the
   full-range one at :data:`FULL_RANGE_CROP_SIDE` times it. The mean of their scores for a detection
   at the centre must reach :data:`HUMAN_FACE_MIN_SCORE`.

Measured (``../shared/data``): 375 frames of the 106 driving and talking clips (photos, news, actors
shouting or with closed eyes, three-quarter views, small faces in tall frames) score 0.79-0.95, the 11
VoxCeleb crops, the paintings s0/s3/s5, the cartoon s7 and the black-and-white s12 likewise; a
human mesh laid on the dog (s33) at 75 places and sizes scores at most 0.34, on backgrounds at most
0.35, and the detectors themselves find no face on it. A capuchin monkey's face (s22) scores 0.6-0.9
and is accepted: both detectors take it for a human face.

One check costs about 17-21 ms on a CPU (two 256-pixel crops and two detector passes), whatever the
picture's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import PirenderError, describe_value
from . import landmarks as lm
from .face_models import FaceDetector

#: the mean of the two detectors' scores (0..1) a human face reaches (module docstring)
HUMAN_FACE_MIN_SCORE = 0.6
#: the square each detector sees, in sides of the landmarks' bounding box: the short-range model is
#: made for faces that fill half its input, the full-range model for smaller ones
SHORT_RANGE_CROP_SIDE = 2.0
FULL_RANGE_CROP_SIDE = 4.0
#: pixels of those squares (the detectors themselves work at 128 and 192 pixels)
CHECK_INPUT_PX = 256
#: a detection counts as this face when its centre lies within this fraction of the square's side
#: from the square's centre
_CENTRE_TOLERANCE = 0.2
#: human proportions in inter-ocular distances (eye centres, 3D): (low, high)
_EYES_TO_MOUTH_IOD = (0.45, 1.7)
_EYES_TO_CHIN_IOD = (0.9, 2.7)
_FACE_WIDTH_IOD = (1.5, 3.0)
#: face-mesh points at the two sides of the face, by the ears (image left, image right)
FACE_SIDES = (234, 454)


@dataclass(frozen=True)
class FaceVerdict:
    """The rule's answer for one face.

    Attributes:
        human: the face passes the rule.
        score: the mean of the two detectors' scores (0..1) for the face; 0 when the proportions
            already failed.
        reason: why it failed (one phrase), empty when ``human``.
    """

    human: bool
    score: float
    reason: str


class HumanFaceCheck:
    """``check(rgb, landmarks)``: does this face-mesh face show a human face? (module docstring)

    Holds one MediaPipe detector; reuse the object for many checks and ``close`` it (or use it as a
    context manager). Not thread-safe: one object per thread.
    """

    def __init__(self) -> None:
        self._short_range = lm.face_detector(model_selection=0, min_detection_confidence=0.1)
        self._full_range = lm.face_detector(model_selection=1, min_detection_confidence=0.1)

    def check(self, rgb: np.ndarray, landmarks: np.ndarray) -> FaceVerdict:
        """Apply the rule to one face.

        Args:
            rgb: (H, W, 3) uint8 RGB picture the landmarks were found in (any size).
            landmarks: (478, 3) (or 468 without irises) float face-mesh points in pixels of ``rgb``
                (x right, y down, z in x's scale), as :class:`~.landmarks.FaceMesh` returns them.

        Returns:
            The verdict; refusals say why ("not human proportions", "no human face seen there").

        Raises:
            PirenderError: ``rgb`` is not (H, W, 3) uint8 or ``landmarks`` is not (N >= 468, 3).
        """
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise PirenderError(
                f"the human-face check needs an (H, W, 3) uint8 RGB picture, got {describe_value(rgb)}"
            )
        points = np.asarray(landmarks, dtype=np.float64)
        if points.ndim != 2 or points.shape[0] < 468 or points.shape[1] != 3:
            raise PirenderError(f"the human-face check needs (478, 3) landmarks, got shape {points.shape}")
        if not np.isfinite(points).all():
            return FaceVerdict(False, 0.0, "landmarks are not finite")
        proportions = _proportions_problem(points)
        if proportions:
            return FaceVerdict(False, 0.0, proportions)
        short = _centre_score(self._short_range, _upright_crop(rgb, points, SHORT_RANGE_CROP_SIDE))
        full = _centre_score(self._full_range, _upright_crop(rgb, points, FULL_RANGE_CROP_SIDE))
        score = (short + full) / 2
        if score < HUMAN_FACE_MIN_SCORE:
            return FaceVerdict(
                False, score, f"no human face seen there (detector scores {short:.2f} and {full:.2f})"
            )
        return FaceVerdict(True, score, "")

    def close(self) -> None:
        """Release the two MediaPipe detectors."""
        self._short_range.close()
        self._full_range.close()

    def __enter__(self) -> HumanFaceCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _proportions_problem(points: np.ndarray) -> str:
    """'' when the face has human proportions, else what is wrong (measured in 3D, so pose-free)."""
    right_eye, left_eye = lm.eye_centres(points)
    iod = float(np.linalg.norm(left_eye - right_eye))
    if iod <= 1e-6:
        return "not human proportions (the eyes coincide)"
    eyes = (right_eye + left_eye) / 2
    mouth = (points[lm.MOUTH_RIGHT] + points[lm.MOUTH_LEFT]) / 2
    face_width = float(np.linalg.norm(points[FACE_SIDES[1]] - points[FACE_SIDES[0]]))
    measures = (
        ("eyes to mouth", float(np.linalg.norm(mouth - eyes)) / iod, _EYES_TO_MOUTH_IOD),
        ("eyes to chin", float(np.linalg.norm(points[lm.CHIN] - eyes)) / iod, _EYES_TO_CHIN_IOD),
        ("face width", face_width / iod, _FACE_WIDTH_IOD),
    )
    for name, value, (low, high) in measures:
        if not low <= value <= high:
            return f"not human proportions ({name} {value:.2f} eye distances, expected {low}-{high})"
    return ""


def _centre_score(detector: FaceDetector, rgb: np.ndarray) -> float:
    """The best score of a detection centred in ``rgb`` (0 when there is none)."""
    height, width = rgb.shape[:2]
    best = 0.0
    for face in detector.detect(rgb):
        x0, y0, x1, y1 = face.box
        centre = np.array([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height])  # relative to the picture
        if np.abs(centre - 0.5).max() <= _CENTRE_TOLERANCE:
            best = max(best, face.score)
    return best


def _upright_crop(rgb: np.ndarray, points: np.ndarray, box_sides: float) -> np.ndarray:
    """(CHECK_INPUT_PX, CHECK_INPUT_PX, 3) uint8: the square of ``box_sides`` times the landmarks'
    box around the face, turned so that the eye line is horizontal."""
    low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    right_eye, left_eye = lm.eye_centres(points)
    angle = float(np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))
    side = box_sides * float((high - low).max())
    return square_patch(rgb, (low + high) / 2, side, CHECK_INPUT_PX, angle_rad=angle)


def square_patch(
    rgb: np.ndarray, centre: np.ndarray, side: float, out_px: int, *, angle_rad: float = 0.0
) -> np.ndarray:
    """(out_px, out_px, 3) uint8: the square of ``side`` pixels centred at ``centre`` (x, y pixels,
    continuous: the picture spans 0..W) of an (H, W, 3) uint8 picture, turned by ``angle_rad``
    (its x axis along that direction in the picture), resized antialiased; mid grey outside.

    Output pixel (u, v) (continuous) shows picture point ``centre + R(angle) @ ((u, v) - out_px / 2)
    * side / out_px``."""
    height, width = rgb.shape[:2]
    centre = np.asarray(centre, dtype=np.float64)
    reach = 0.75 * side  # covers the turned square (half diagonal 0.71 side)
    x0, y0 = np.clip(np.floor(centre - reach), 0, [width - 1, height - 1]).astype(int)
    x1, y1 = np.clip(np.ceil(centre + reach), [x0 + 1, y0 + 1], [width, height]).astype(int)
    factor = max(1, int(side / out_px))  # reduce first: the affine resampling does not antialias
    stride = max(1, factor // 2)  # every stride-th pixel, then a box of the rest: copies little
    box = max(1, factor // stride)
    region = Image.fromarray(np.ascontiguousarray(rgb[y0:y1:stride, x0:x1:stride]))
    if box > 1:
        region = region.reduce(box)
    # picture point -> region point (continuous coordinates: pixel i spans i..i+1)
    cx = ((centre[0] - x0 - 0.5) / stride + 0.5) / box
    cy = ((centre[1] - y0 - 0.5) / stride + 0.5) / box
    scale = side / out_px / (stride * box)  # region pixels per output pixel
    cos, sin = np.cos(angle_rad) * scale, np.sin(angle_rad) * scale
    half = out_px / 2
    coefficients = (cos, -sin, cx - cos * half + sin * half, sin, cos, cy - sin * half - cos * half)
    patch = region.transform(
        (out_px, out_px),
        Image.Transform.AFFINE,
        coefficients,
        resample=Image.Resampling.BILINEAR,
        fillcolor=(128, 128, 128),
    )
    return np.ascontiguousarray(np.asarray(patch))
