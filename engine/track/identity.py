"""Following one person: what a face in one frame looks like, and whether it is the person followed.

A face is described by (``FaceObservation``):

- **position**: the centre of its landmarks' box and its inter-ocular distance (IOD, pixels);
- **pose**: absolute head rotation from the face's own symmetry (``geometry.head_rotation``);
- **geometry**: its rigid landmarks (eye corners, nose, forehead, temples, cheeks, chin) in the head's
  own frame, in IOD units: the face's proportions, independent of where it is and how it is turned;
- **appearance**: the colour of the skin inside the face outline, as a normalised 16 x 16 histogram of
  CIELAB (a, b) (lighting-robust chroma).

A person (``PersonModel``) keeps running averages of geometry and appearance. A face in a later frame
is the same person when it is near where the person was (a jump of at most ``max_jump_iod`` per frame,
growing while the person is not seen), of a similar size, and neither its geometry nor its appearance
differs more than the thresholds below. Measured on 16 clips of 13 people (``../shared/data``, MediaPipe
0.10.14): the geometry of one person's frames lies within 0.03-0.09 IOD (95th percentile) of that
person's median, but different people's medians are only 0.02-0.05 IOD apart, so geometry alone cannot
tell people apart (MediaPipe regularises every face toward its mean shape) and only vetoes gross
mismatches; appearance within one clip lies within 0.03-0.11 (Bhattacharyya distance, 95th
percentile), between people 0.09-0.6 (under the same lighting), and changes with the lighting across
shots. So within a shot, position and size continuity carry the identity, appearance and geometry veto
a different person appearing in the same place; across a cut the tracker always re-acquires and
re-calibrates (``tracker.FaceTracker``), and appearance only groups the segments into people for the
summary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import landmarks as lm
from .geometry import euler_from_rotation
from .open_space import canonical_frame

__all__ = ["FaceObservation", "IdentityConfig", "PersonModel", "observe"]

#: Rigid landmarks whose canonical positions describe a face's proportions.
SHAPE_POINTS = (
    *(33, 133, 263, 362),  # eye corners
    *(1, 4, 5, 6, 168, 98, 327, 2),  # nose
    *(234, 454, 93, 323, 127, 356),  # temples and cheek sides
    *(10, 109, 338, 67, 297),  # forehead
    152,  # chin
)
_HIST_BINS = 16


@dataclass(frozen=True)
class IdentityConfig:
    """Thresholds of "the same person" (see the module docstring for the measurements).

    Attributes:
        max_jump_iod: how far (IODs) a face may move between consecutive frames (a fast head shake
            moves about 0.5).
        jump_per_s_iod: extra distance allowed per second the person has not been seen.
        max_size_ratio: largest change of the IOD between the last sighting and now (either way).
        max_shape_iod: largest RMS distance of the rigid landmarks from the person's (IOD units).
        max_colour: largest Bhattacharyya distance of the skin-colour histograms.
        same_person_colour: segments whose appearance is this close count as one person in the summary.
    """

    max_jump_iod: float = 1.2
    jump_per_s_iod: float = 1.0
    max_size_ratio: float = 1.5
    max_shape_iod: float = 0.16
    max_colour: float = 0.4
    same_person_colour: float = 0.2


@dataclass(frozen=True)
class FaceObservation:
    """One face in one frame.

    Attributes:
        landmarks: (478, 3) pixel landmarks (x right, y down, z depth in pixels).
        center: (2,) centre of the landmarks' box, pixels.
        iod_px: inter-ocular distance, pixels.
        angles: (pitch, yaw, roll) of the head in radians (``geometry`` conventions).
        shape: (len(SHAPE_POINTS), 2) rigid landmarks in the head's frame, IOD units.
        colour: (16 * 16,) normalised CIELAB (a, b) histogram of the skin inside the face outline.
    """

    landmarks: np.ndarray
    center: np.ndarray
    iod_px: float
    angles: tuple[float, float, float]
    shape: np.ndarray
    colour: np.ndarray

    @property
    def area_px(self) -> float:
        """Area of the landmarks' bounding box (square pixels), as ``crop.FoundFace.area_px``."""
        return lm.box_area(lm.landmark_box(self.landmarks))

    def turned_deg(self) -> float:
        """How far the head is turned from frontal: the larger of |pitch| and |yaw|, degrees."""
        return float(np.degrees(max(abs(self.angles[0]), abs(self.angles[1]))))


def _skin_histogram(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(256,) normalised CIELAB (a, b) histogram of the pixels inside the face outline."""
    import cv2  # the track extra's OpenCV

    height_px, width_px = rgb.shape[:2]
    outline = landmarks[list(lm.FACE_OVAL), :2]
    x0, y0 = np.clip(np.floor(outline.min(axis=0)).astype(int), 0, [width_px - 1, height_px - 1])
    x1, y1 = np.clip(np.ceil(outline.max(axis=0)).astype(int) + 1, 1, [width_px, height_px])
    histogram = np.zeros(_HIST_BINS * _HIST_BINS, dtype=np.float32)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return histogram
    region = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    step = max(1, (x1 - x0) // 64)  # at most ~64 px across: plenty for a colour histogram
    if step > 1:
        region = np.ascontiguousarray(region[::step, ::step])
    mask = np.zeros(region.shape[:2], dtype=np.uint8)
    polygon = np.round((outline - [x0, y0]) / step).astype(np.int32)
    cv2.fillPoly(mask, [polygon], 255)
    lab = cv2.cvtColor(region, cv2.COLOR_RGB2Lab)
    counts = cv2.calcHist([lab], [1, 2], mask, [_HIST_BINS, _HIST_BINS], [0, 256, 0, 256]).ravel()
    total = float(counts.sum())
    if total > 0:
        histogram[:] = counts / total
    return histogram


def colour_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two normalised histograms: 0 equal .. 1 disjoint."""
    coefficient = float(np.sqrt(np.clip(a, 0, None) * np.clip(b, 0, None)).sum())
    return float(np.sqrt(max(0.0, 1.0 - min(coefficient, 1.0))))


def shape_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS distance of two (K, 2) rigid-landmark sets (IOD units)."""
    return float(np.sqrt(((a - b) ** 2).sum(axis=1).mean()))


def observe(rgb: np.ndarray, landmarks: np.ndarray) -> FaceObservation:
    """Describe one face of an (H, W, 3) uint8 RGB frame from its (478, 3) pixel landmarks."""
    frame = canonical_frame(landmarks)
    canonical = frame.invert(landmarks)
    box_min, box_max = landmarks[:, :2].min(axis=0), landmarks[:, :2].max(axis=0)
    return FaceObservation(
        landmarks=landmarks,
        center=(box_min + box_max) / 2,
        iod_px=float(frame.scale),
        angles=euler_from_rotation(frame.rotation),
        shape=canonical[list(SHAPE_POINTS), :2].copy(),
        colour=_skin_histogram(rgb, landmarks),
    )


class PersonModel:
    """The person being followed: last position and size, running geometry and appearance."""

    def __init__(self, first: FaceObservation, time_s: float, config: IdentityConfig) -> None:
        self.config = config
        self.center = first.center.copy()
        self.iod_px = first.iod_px
        self.shape = first.shape.copy()
        self.colour = first.colour.copy()
        self.last_seen_s = time_s
        self.sightings = 1

    def differences(self, face: FaceObservation, time_s: float) -> dict[str, float]:
        """How ``face`` differs from the person: jump (IODs, and its limit now), size ratio, shape,
        colour."""
        unseen_s = max(0.0, time_s - self.last_seen_s)
        return {
            "jump_iod": float(np.linalg.norm(face.center - self.center) / self.iod_px),
            "jump_limit_iod": self.config.max_jump_iod + self.config.jump_per_s_iod * unseen_s,
            "size_ratio": max(face.iod_px / self.iod_px, self.iod_px / face.iod_px),
            "shape_iod": shape_distance(face.shape, self.shape),
            "colour": colour_distance(face.colour, self.colour),
        }

    def matches(self, face: FaceObservation, time_s: float) -> float | None:
        """A cost (lower = more alike) when ``face`` can be this person, else None."""
        cfg = self.config
        d = self.differences(face, time_s)
        if (
            d["jump_iod"] > d["jump_limit_iod"]
            or d["size_ratio"] > cfg.max_size_ratio
            or d["shape_iod"] > cfg.max_shape_iod
            or d["colour"] > cfg.max_colour
        ):
            return None
        return d["jump_iod"] / d["jump_limit_iod"] + d["colour"] / cfg.max_colour

    def update(self, face: FaceObservation, time_s: float) -> None:
        """Take ``face`` as the person's newest sighting (running means of shape and colour)."""
        self.sightings += 1
        weight = max(1.0 / self.sightings, 0.05)  # mean of the first 20 sightings, then an EMA
        self.center = face.center.copy()
        self.iod_px = face.iod_px
        self.shape += weight * (face.shape - self.shape)
        self.colour += weight * (face.colour - self.colour)
        self.last_seen_s = time_s
