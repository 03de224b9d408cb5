"""FaceTracker: camera frames -> open-space motion every frame, smoothed, robust to losing the face.

- Landmarks from MediaPipe's face mesh in video mode (detection only when the face is lost).
- Several faces: the first frame picks the largest face (ties: the most central); later frames follow
  the face whose box overlaps the previous one most.
- Neutral: the first ``calibration_frames`` frames with a face (or :meth:`set_neutral` on demand).
- No face is a state, not an exception: the last motion is held for ``hold_s``, then eases back to
  the neutral's rest pose over ``ease_s``.
- Motion is smoothed with a One-Euro filter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from ..motion.space import OPEN_SPACE, MotionFrame
from .filters import OneEuroConfig, OneEuroFilter
from .landmarks import FaceMesh, FaceMeshConfig
from .open_space import NeutralFace


class TrackState(StrEnum):
    CALIBRATING = "calibrating"  # collecting neutral frames; no motion yet
    TRACKING = "tracking"
    HOLDING = "holding"  # face lost: last motion held
    EASING = "easing"  # face lost longer: easing back to the rest pose
    NO_FACE = "no_face"  # never seen a face yet


@dataclass(frozen=True)
class TrackerConfig:
    mesh: FaceMeshConfig = field(default_factory=FaceMeshConfig)
    smoothing: OneEuroConfig = field(default_factory=lambda: OneEuroConfig(min_cutoff_hz=1.5, beta=0.3))
    calibration_frames: int = 5
    hold_s: float = 0.5
    ease_s: float = 1.0


@dataclass(frozen=True)
class TrackResult:
    state: TrackState
    motion: MotionFrame | None  # None before the neutral is known (no face yet, or calibrating)
    landmarks: np.ndarray | None  # (478, 3) pixels of the followed face, None when not found
    faces: int  # faces seen in this frame


def _box(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points[:, :2].min(axis=0), points[:, :2].max(axis=0)])


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None).prod()
    union = (a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter
    return float(inter / union) if union > 0 else 0.0


def choose_face(faces: list[np.ndarray], frame_size: tuple[int, int], previous: np.ndarray | None) -> int:
    """Index of the face to follow: most overlap with ``previous`` box, else largest then central."""
    boxes = [_box(f) for f in faces]
    if previous is not None:
        overlaps = [_overlap(b, previous) for b in boxes]
        if max(overlaps) > 0.1:
            return int(np.argmax(overlaps))
    height, width = frame_size
    center = np.array([width / 2, height / 2])

    def key(i: int) -> tuple[float, float]:
        area = float((boxes[i][2:] - boxes[i][:2]).prod())
        distance = float(np.linalg.norm((boxes[i][:2] + boxes[i][2:]) / 2 - center))
        return (-round(area / (0.05 * width * height)), distance)  # 5% area steps, then centrality

    return min(range(len(faces)), key=key)


class FaceTracker:
    """Call :meth:`process` with every frame (RGB uint8) and its capture time in seconds."""

    def __init__(self, config: TrackerConfig | None = None, *, mesh: FaceMesh | None = None) -> None:
        self.config = config or TrackerConfig()
        self.mesh = mesh or FaceMesh(self.config.mesh)
        self.neutral: NeutralFace | None = None
        self._calibration: list[np.ndarray] = []
        self._filter = OneEuroFilter(OPEN_SPACE.width, self.config.smoothing)
        self._last_box: np.ndarray | None = None
        self._last_row: np.ndarray | None = None
        self._last_time_s: float | None = None
        self._lost_since_s: float | None = None

    def set_neutral(self, landmarks: list[np.ndarray] | None = None) -> None:
        """Recalibrate: from the given landmarks, or from the next frames with a face."""
        self._calibration = []
        self.neutral = NeutralFace.from_landmarks(landmarks) if landmarks else None
        self._filter.reset()

    def finish_calibration(self) -> bool:
        """Build the neutral from the frames collected so far (a clip shorter than the calibration);
        False when no face has been seen at all."""
        if self.neutral is None and self._calibration:
            self.neutral = NeutralFace.from_landmarks(self._calibration)
            self._calibration = []
        return self.neutral is not None

    def process(self, rgb: np.ndarray, time_s: float) -> TrackResult:
        faces = self.mesh.detect(rgb)
        dt_s = 0.0 if self._last_time_s is None else time_s - self._last_time_s
        self._last_time_s = time_s
        if not faces:
            return self._lost(time_s)
        chosen = faces[choose_face(faces, rgb.shape[:2], self._last_box)]
        self._last_box = _box(chosen)
        self._lost_since_s = None
        if self.neutral is None:
            self._calibration.append(chosen)
            if len(self._calibration) < self.config.calibration_frames:
                return TrackResult(TrackState.CALIBRATING, None, chosen, len(faces))
            self.neutral = NeutralFace.from_landmarks(self._calibration)
            self._calibration = []
            self._filter.reset()
        raw = self.neutral.motion(chosen).values
        self._last_row = self._filter(raw, dt_s).astype(np.float32)
        return TrackResult(TrackState.TRACKING, MotionFrame(OPEN_SPACE, self._last_row), chosen, len(faces))

    def _lost(self, time_s: float) -> TrackResult:
        self._last_box = None
        if self.neutral is None or self._last_row is None:
            calibrating = self.neutral is not None or bool(self._calibration)
            state = TrackState.CALIBRATING if calibrating else TrackState.NO_FACE
            return TrackResult(state, None, None, 0)
        if self._lost_since_s is None:
            self._lost_since_s = time_s
        lost_s = time_s - self._lost_since_s
        if lost_s <= self.config.hold_s:
            return TrackResult(TrackState.HOLDING, MotionFrame(OPEN_SPACE, self._last_row), None, 0)
        amount = min(1.0, (lost_s - self.config.hold_s) / self.config.ease_s)
        eased = (1 - amount) * self._last_row + amount * self.neutral.rest_row()
        self._filter.reset()
        return TrackResult(TrackState.EASING, MotionFrame(OPEN_SPACE, eased.astype(np.float32)), None, 0)

    def close(self) -> None:
        self.mesh.close()
