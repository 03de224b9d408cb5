"""Tracking a whole clip (video file, image sequence or camera) into motion sequences."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from ..errors import PirenderError
from ..motion.space import AUTHORS_SPACE, OPEN_SPACE, MotionSequence
from ..sources.frames import FrameSource
from .deep3d import Deep3DRegressor
from .landmarks import five_points
from .tracker import FaceTracker, TrackState


@dataclass
class TrackedClip:
    """Motion of every frame of a clip (the calibration frames measured against the neutral they
    built, unsmoothed; frames without a face hold the previous motion)."""

    open_motion: MotionSequence
    authors_motion: MotionSequence | None
    frames: int
    frames_with_face: int
    states: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def describe(self) -> str:
        share = 100.0 * self.frames_with_face / max(self.frames, 1)
        fps = self.frames / self.seconds if self.seconds > 0 else float("inf")
        return (
            f"tracked {self.frames} frames ({self.frames_with_face} with a face, {share:.0f}%) in "
            f"{self.seconds:.1f} s ({fps:.0f} frames/s)"
        )


def track_clip(
    frames: FrameSource,
    *,
    tracker: FaceTracker | None = None,
    regressor: Deep3DRegressor | None = None,
    progress: bool = True,
) -> TrackedClip:
    """Run the tracker over every frame; with a Deep3DFaceRecon ``regressor``, also the authors' space.

    A clip in which no face is ever found is an error (the documented behaviour for e.g. an animal).
    """
    owned = tracker is None
    tracker = tracker or FaceTracker()
    rows: list[np.ndarray | None] = []
    calibration_landmarks: dict[int, np.ndarray] = {}
    authors_rows: list[np.ndarray | None] = []
    states: list[str] = []
    with_face = 0
    started = time.perf_counter()
    fps = frames.fps or 25.0
    try:
        for frame in tqdm(frames, unit="frame", disable=not progress, dynamic_ncols=True):
            result = tracker.process(frame.rgb, frame.time_s)
            states.append(result.state.value)
            with_face += result.landmarks is not None
            if result.motion is None and result.landmarks is not None:
                calibration_landmarks[len(rows)] = result.landmarks
            rows.append(None if result.motion is None else result.motion.values.copy())
            if regressor is not None:
                authors_rows.append(
                    None
                    if result.landmarks is None
                    else regressor.predict(frame.rgb, five_points(result.landmarks)).values
                )
    finally:
        if owned:
            tracker.close()
    if not rows:
        raise PirenderError("the clip has no frames")
    if not tracker.finish_calibration():
        raise PirenderError(
            f"no human face found in any of the {len(rows)} frames (the tracker follows human faces)"
        )
    neutral = tracker.neutral
    assert neutral is not None
    for index, landmarks in calibration_landmarks.items():
        rows[index] = neutral.motion(landmarks).values
    rest = neutral.rest_row()
    values = np.stack(_fill_gaps([rest if rows[0] is None else rows[0], *rows[1:]]))
    meta = {"neutral_rest": [float(v) for v in rest], "states": _run_lengths(states)}
    open_motion = MotionSequence(OPEN_SPACE, values, fps=fps, meta=meta)
    authors_motion = None
    if regressor is not None:
        authors_motion = MotionSequence(AUTHORS_SPACE, _fill_gaps(authors_rows), fps=fps)
    return TrackedClip(
        open_motion=open_motion,
        authors_motion=authors_motion,
        frames=len(rows),
        frames_with_face=with_face,
        states=states,
        seconds=time.perf_counter() - started,
    )


def _fill_gaps(rows: list[np.ndarray | None]) -> np.ndarray:
    """Frames without a face repeat the previous face's numbers (the first found, at the start)."""
    first = next(row for row in rows if row is not None)
    filled, last = [], first
    for row in rows:
        last = last if row is None else row
        filled.append(last)
    return np.stack(filled)


def _run_lengths(states: list[str]) -> list[list[object]]:
    """Compact state log: [[state, frames], ...]."""
    runs: list[list[object]] = []
    for state in states:
        if runs and runs[-1][0] == state:
            runs[-1][1] = int(runs[-1][1]) + 1  # type: ignore[call-overload]
        else:
            runs.append([state, 1])
    return runs


__all__ = ["TrackState", "TrackedClip", "track_clip"]
