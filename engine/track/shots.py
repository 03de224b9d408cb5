"""Shot changes (cuts) in a stream of frames, detected from how much the picture's content changes.

The score of a frame is the mean absolute change of its hue, saturation and value against the
previous frame, on a thumbnail ``ShotConfig.thumb_px`` wide (levels 0..255; hue compared on its
circle). This is the content score of PySceneDetect's ``ContentDetector`` (Castellano), made causal
for live streams in the manner of its ``AdaptiveDetector``: a frame starts a new shot when its score
is at least ``min_change`` *and* ``ratio`` times the average score of the ``window`` frames before
it, so a fast pan or a camera shake (every frame changes a lot) is not a cut, while a hard cut between
two still shots is. (The library itself is not used: it depends on ``opencv-python``, which would
clash with the ``opencv-contrib-python`` that MediaPipe installs.)

Measured on this project's real clips (``../shared/data``, 105 talking-head clips without cuts):
continuous frames of 104 clips score 0.3-17 (camera wobble, fast head shakes); one clip
(``styletalk__furious_talk1_clip1``: a fast shake behind a hand sweeping across the face) scores up
to 24.5, above the threshold (``min_change`` = 20), so the tracker finds cuts there and then follows
the same person on (``tracker.FaceTracker``: the same person in the same place after a cut); joins
of clips of different people score 30-60.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["ShotConfig", "ShotDetector"]


@dataclass(frozen=True)
class ShotConfig:
    """When a frame counts as the first of a new shot.

    Attributes:
        thumb_px: width of the thumbnail the score is computed on (pixels; the aspect is kept).
        min_change: smallest score of a cut (mean absolute HSV change, levels 0..255).
        ratio: a cut's score is at least this many times the recent average score.
        window: frames whose average score is the "recent" one.
        min_shot_s: shots shorter than this are not split again (seconds).
    """

    thumb_px: int = 64
    min_change: float = 20.0
    ratio: float = 3.0
    window: int = 8
    min_shot_s: float = 0.3


class ShotDetector:
    """Call with every frame (RGB uint8, its time in seconds); True when the frame starts a new shot.

    The first frame starts the first shot but is not a cut (returns False). Buffers are allocated
    once per frame size.
    """

    def __init__(self, config: ShotConfig | None = None) -> None:
        self.config = config or ShotConfig()
        self._previous: np.ndarray | None = None  # (h, w, 3) int16 HSV of the previous thumbnail
        self._current: np.ndarray | None = None
        self._difference: np.ndarray | None = None
        self._scores: deque[float] = deque(maxlen=self.config.window)
        self._last_cut_s = -np.inf
        self.last_score = 0.0

    def reset(self) -> None:
        """Forget the previous frame (the next frame starts a shot without being a cut)."""
        self._previous = None
        self._scores.clear()

    def _thumbnail_hsv(self, rgb: np.ndarray) -> np.ndarray:
        import cv2  # the track extra's OpenCV

        height_px, width_px = rgb.shape[:2]
        thumb_w = min(self.config.thumb_px, width_px)
        thumb_h = max(1, round(height_px * thumb_w / width_px))
        small = cv2.resize(rgb, (thumb_w, thumb_h), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV_FULL)  # hue 0..255 around the circle
        if self._current is None or self._current.shape != hsv.shape:
            self._current = np.empty(hsv.shape, dtype=np.int16)
            self._difference = np.empty(hsv.shape, dtype=np.int16)
            self._previous = None
        np.copyto(self._current, hsv)
        return self._current

    def score(self, rgb: np.ndarray) -> float | None:
        """The content change of ``rgb`` against the previous frame (None for the first frame)."""
        current = self._thumbnail_hsv(rgb)
        previous = self._previous
        difference = self._difference
        assert difference is not None
        result: float | None = None
        if previous is not None:
            np.subtract(current, previous, out=difference)
            np.abs(difference, out=difference)
            hue = difference[..., 0]
            np.minimum(hue, 256 - hue, out=hue)  # the hue circle: 250 and 5 are 11 apart
            result = float(difference.mean())
        # swap the buffers: this frame becomes the previous one
        self._previous, self._current = current, previous if previous is not None else np.empty_like(current)
        return result

    def __call__(self, rgb: np.ndarray, time_s: float) -> bool:
        value = self.score(rgb)
        if value is None:
            self._last_cut_s = time_s
            return False
        self.last_score = value
        cfg = self.config
        recent = float(np.mean(self._scores)) if self._scores else 0.0
        is_cut = (
            value >= cfg.min_change
            and value >= cfg.ratio * recent
            and time_s - self._last_cut_s >= cfg.min_shot_s
        )
        if is_cut:
            self._last_cut_s = time_s
            self._scores.clear()  # the new shot's own motion sets the next average
        else:
            self._scores.append(value)
        return is_cut
