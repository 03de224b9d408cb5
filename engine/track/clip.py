"""Tracking a whole clip (video file, image sequence or camera) into motion sequences.

Two passes. The first runs the live tracker (``tracker.FaceTracker``) frame by frame: shot changes,
the person followed, the segments (one per person acquired: a cut, or a new person after the last one
was lost) and every followed face's landmarks. The second knows each segment's every frame, so it
calibrates each segment's neutral on the segment's calmest frontal frames (``NeutralFace.robust``, or
the frame the user names), measures every frame against its own segment's neutral, keeps the values
within the documented ranges (soft limits) and smooths them with the live tracker's filter run
forward and backward (no lag: the motion stays in sync with the driver's sound). A variable-rate
source (a browser's WebM recording, a camera) gives motion resampled to a constant rate over the same
real time (``motion.timing``), so the motion plays at the speed it was recorded. Rotations of later
segments are expressed relative to the first segment's rest pose, so one ``neutral_rest`` (in
``meta``) serves the whole sequence. Frames without a followed face hold the last motion, then ease to
the rest pose (as live); frames before the first face repeat the first face's motion.

Frame numbers (``meta["states"]``, ``meta["segments"]``, :attr:`TrackedClip.states`,
:class:`Segment`) count the rows of the motion: for a variable-rate source those are the frames of
the constant-rate grid, each showing the latest decoded frame at or before its time
(``motion.timing.held_indices``). ``neutral_frame`` and :attr:`TrackedClip.frames` count decoded
frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from ..errors import PirenderError
from ..motion.limits import soft_limit
from ..motion.space import AUTHORS_SPACE, OPEN_SPACE, MotionSequence
from ..motion.timing import held_indices, measure_rate, resample_uniform
from ..sources.frames import FALLBACK_FPS, FrameSource
from .deep3d import Deep3DRegressor
from .filters import OneEuroFilter
from .geometry import euler_from_rotation, rotation_from_euler
from .identity import PersonModel, colour_distance, shape_distance
from .landmarks import five_points
from .open_space import NeutralFace
from .tracker import FaceTracker, MotionEmitter, TrackerConfig, TrackState

#: The most frames a segment's neutral is computed from (evenly spread over the segment).
MAX_NEUTRAL_FRAMES = 600


@dataclass
class Segment:
    """Frames in which one person was followed without a break in the shot.

    Attributes:
        index: 0, 1, ... in the clip's order.
        first_frame, last_frame: 0-based indices (inclusive) of the first and last motion row in
            which the person's face was found (rows of the motion: decoded frames, or the
            constant-rate grid of a resampled variable-rate source).
        frames_with_face: motion rows of the segment in which the person's face was found.
        person: 1, 2, ...: segments whose faces look alike (skin colour, proportions) share a number.
        neutral_frames: frames the neutral was computed from (0: never frontal enough, no motion).
        neutral_turned_deg: how far the neutral face is turned (max of |pitch|, |yaw|), degrees.
        starts_at_cut: the segment begins at a shot change.
    """

    index: int
    first_frame: int
    last_frame: int
    frames_with_face: int = 0
    person: int = 0
    neutral_frames: int = 0
    neutral_turned_deg: float = float("nan")
    starts_at_cut: bool = False

    def to_meta(self) -> dict[str, Any]:
        """The segment as the motion file's ``meta["segments"]`` entry: first_frame, last_frame,
        person, frames_with_face, neutral_frames and starts_at_cut (JSON types)."""
        return {
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "person": self.person,
            "frames_with_face": self.frames_with_face,
            "neutral_frames": self.neutral_frames,
            "starts_at_cut": self.starts_at_cut,
        }


@dataclass
class TrackedClip:
    """Motion of every frame of a clip and what the tracker saw.

    ``frames`` counts the decoded frames tracked; ``frames_with_face`` those in which the followed
    person's face was found; ``frames_not_followed`` those with faces but none the tracker could
    follow (turned too far from frontal, too small, or not human); ``cuts_s`` the times of shot
    changes (seconds, frame times of the source). ``states`` holds one tracker state per motion
    row and ``segments`` count motion rows (module docstring); ``resampled_from`` is the number of
    decoded frames where a variable-rate source was resampled (else None).
    ``calibration_limit_deg``: how far from frontal a face may be turned and still be calibrated on
    (``TrackerConfig.fallback_frontal_deg``).
    """

    open_motion: MotionSequence
    authors_motion: MotionSequence | None
    frames: int
    frames_with_face: int
    states: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cuts_s: list[float] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    frames_without_face: int = 0
    frames_not_followed: int = 0
    frames_larger_face_passed_over: int = 0
    cuts_followed_on: int = 0
    resampled_from: int | None = None
    calibration_limit_deg: float = TrackerConfig.fallback_frontal_deg

    @property
    def people(self) -> int:
        """How many different people were followed (segments with a neutral, grouped by
        ``Segment.person``)."""
        return len({segment.person for segment in self.segments if segment.neutral_frames})

    def describe(self) -> str:
        share = 100.0 * self.frames_with_face / max(self.frames, 1)
        fps = self.frames / self.seconds if self.seconds > 0 else float("inf")
        lines = [
            f"tracked {self.frames} frames ({self.frames_with_face} with a face, {share:.0f}%) in "
            f"{self.seconds:.1f} s ({fps:.0f} frames/s)"
        ]
        if self.resampled_from is not None:
            lines.append(
                f"variable frame rate: resampled to {len(self.open_motion)} frames at "
                f"{self.open_motion.fps:.2f} frames/s (frame numbers below are those of the motion)"
            )
        if self.cuts_s:
            times = ", ".join(f"{t:.2f}" for t in self.cuts_s)
            kept, total = self.cuts_followed_on, len(self.cuts_s)
            if kept == 0:
                what = "re-acquired and re-calibrated"
            elif kept == total:
                what = "the same person was in the same place after each: followed on"
            else:
                what = f"re-acquired after {total - kept}; the same person followed on after {kept}"
            lines.append(f"{len(self.cuts_s)} shot change(s), at {times} s: {what}")
        followed = [s for s in self.segments if s.neutral_frames]
        if followed:
            parts = [f"frames {s.first_frame}-{s.last_frame} person {s.person}" for s in followed]
            noun = "person" if self.people == 1 else "people"
            lines.append(f"followed {self.people} {noun} in {len(followed)} segment(s): " + "; ".join(parts))
        for segment in self.segments:
            if not segment.neutral_frames:
                lines.append(
                    f"frames {segment.first_frame}-{segment.last_frame}: the face was never within "
                    f"{self.calibration_limit_deg:g} degrees of frontal, so it was not calibrated on "
                    "(motion held)"
                )
        quiet = []
        if self.frames_without_face:
            quiet.append(f"{self.frames_without_face} frames without a face")
        if self.frames_not_followed:
            quiet.append(
                f"{self.frames_not_followed} frames with only faces the tracker does not follow "
                "(turned far from frontal, too small or not human)"
            )
        if quiet:
            lines.append("; ".join(quiet) + " (motion held, then eased to the rest pose)")
        if self.frames_larger_face_passed_over:
            lines.append(
                f"in {self.frames_larger_face_passed_over} frames a larger face than the one followed was in "
                "the picture (turned far from frontal, not human, or someone else while the person followed "
                "was there)"
            )
        return "\n".join(lines)


@dataclass
class _FrameRecord:
    time_s: float
    state: str
    segment: int | None
    landmarks: np.ndarray | None  # (478, 3) float32
    turned_deg: float
    cut: bool
    larger_face_passed_over: bool


def track_clip(
    frames: FrameSource,
    *,
    tracker: FaceTracker | None = None,
    regressor: Deep3DRegressor | None = None,
    progress: bool = True,
    config: TrackerConfig | None = None,
) -> TrackedClip:
    """Run the tracker over every frame; with a Deep3DFaceRecon ``regressor``, also the authors' space.

    ``config`` sets the tracker's rules, e.g. ``neutral_frame`` (a 0-based decoded frame index); a
    ``tracker`` passed in brings its own (``FaceTracker(config)``), is :meth:`~FaceTracker.reset`
    first (nothing of an earlier clip carries over) and is not closed.

    Raises:
        PirenderError: both ``tracker`` and a different ``config`` given; a clip without frames; no
            human face found in any frame; no face frontal enough to calibrate on; ``neutral_frame``
            outside the clip or on a frame without the followed face.
    """
    owned = tracker is None
    if tracker is None:
        tracker = FaceTracker(config)
    else:
        if config is not None and config != tracker.config:
            raise PirenderError(
                "track_clip: give either a tracker or a config, not both (a tracker follows its own "
                "config: make it with FaceTracker(config))"
            )
        tracker.reset()
    config = tracker.config
    people: dict[int, PersonModel] = {}  # each segment's person (the model the tracker keeps up to date)
    records: list[_FrameRecord] = []
    authors_rows: list[np.ndarray | None] = []
    started = time.perf_counter()
    try:
        for frame in tqdm(frames, unit="frame", disable=not progress, dynamic_ncols=True):
            result = tracker.process(frame.rgb, frame.time_s)
            if result.landmarks is not None and result.segment is not None and result.segment not in people:
                people[result.segment] = tracker.segment_people[-1]
            landmarks = None if result.landmarks is None else result.landmarks.astype(np.float32)
            records.append(
                _FrameRecord(
                    time_s=frame.time_s,
                    state=result.state.value,
                    segment=result.segment if result.landmarks is not None else None,
                    landmarks=landmarks,
                    turned_deg=float("nan") if result.turned_deg is None else result.turned_deg,
                    cut=result.cut,
                    larger_face_passed_over=result.larger_face_passed_over,
                )
            )
            if regressor is not None:
                authors_rows.append(
                    None
                    if result.landmarks is None
                    else regressor.predict(frame.rgb, five_points(result.landmarks)).values
                )
    finally:
        if owned:
            tracker.close()
    if not records:
        raise PirenderError("the clip has no frames")
    segments = _segments(records, people, config)
    if not any(s.frames_with_face for s in segments):
        raise PirenderError(
            f"no human face found in any of the {len(records)} frames (the tracker follows human faces"
            + (
                "; faces were seen but all turned far from frontal)"
                if any(r.state == TrackState.NOT_FOLLOWED for r in records)
                else ")"
            )
        )
    values, rest = _measure(records, segments, config)
    authors = None if regressor is None else _fill_gaps(authors_rows)
    cuts_s = [r.time_s for r in records if r.cut]
    fps = frames.fps or FALLBACK_FPS
    times_s = np.array([r.time_s for r in records])
    row_records = records  # the record on show in each motion row
    resampled_from: int | None = None
    if getattr(frames, "variable_rate", False) and len(records) > 1:
        # a variable-rate source (browser recording, camera): motion at a constant rate in real time
        rate = measure_rate(times_s, declared_fps=frames.fps)
        fps = rate.fps if rate is not None else fps
        values = resample_uniform(times_s, values, fps)
        authors = None if authors is None else resample_uniform(times_s, authors, fps)
        held = held_indices(times_s, fps)
        row_records = [records[i] for i in held]
        _renumber_segments(segments, held, row_records)
        resampled_from = len(records)
    states = [r.state for r in row_records]
    meta: dict[str, Any] = {
        "neutral_rest": [float(v) for v in rest],
        "states": _run_lengths(states),
        "cuts_s": [round(t, 4) for t in cuts_s],
        "segments": [s.to_meta() for s in segments],
    }
    if resampled_from is not None:
        meta["resampled"] = {"from_frames": resampled_from, "variable_rate_source": True}
    open_motion = MotionSequence(OPEN_SPACE, values, fps=fps, meta=meta)
    authors_motion = None if authors is None else MotionSequence(AUTHORS_SPACE, authors, fps=fps)
    return TrackedClip(
        open_motion=open_motion,
        authors_motion=authors_motion,
        frames=len(records),
        frames_with_face=sum(r.landmarks is not None for r in records),
        states=states,
        seconds=time.perf_counter() - started,
        cuts_s=cuts_s,
        segments=segments,
        frames_without_face=sum(r.state == TrackState.NO_FACE for r in records),
        frames_not_followed=sum(r.state == TrackState.NOT_FOLLOWED for r in records),
        frames_larger_face_passed_over=sum(r.larger_face_passed_over for r in records),
        cuts_followed_on=tracker.cuts_followed_on,
        resampled_from=resampled_from,
        calibration_limit_deg=config.fallback_frontal_deg,
    )


def _segments(
    records: list[_FrameRecord], people: dict[int, PersonModel], config: TrackerConfig
) -> list[Segment]:
    """The followed-person segments of pass one (decoded frame numbers), numbered into people by
    appearance. A segment starts at a cut when a cut came after the previous segment's last frame
    (the face may be found a few frames after the cut)."""
    segments: dict[int, Segment] = {}
    cut_since_last_face = False
    for index, record in enumerate(records):
        cut_since_last_face = cut_since_last_face or record.cut
        if record.segment is None:
            continue
        segment = segments.get(record.segment)
        if segment is None:
            segment = segments[record.segment] = Segment(
                index=record.segment, first_frame=index, last_frame=index, starts_at_cut=cut_since_last_face
            )
        segment.last_frame = index
        segment.frames_with_face += 1
        cut_since_last_face = False
    ordered = [segments[key] for key in sorted(segments)]
    known: list[tuple[np.ndarray, np.ndarray]] = []  # (colour, shape) of each person
    identity = config.identity
    for segment in ordered:
        model = people[segment.index]
        for number, (colour, shape) in enumerate(known, start=1):
            if (
                colour_distance(colour, model.colour) <= identity.same_person_colour
                and shape_distance(shape, model.shape) <= identity.max_shape_iod
            ):
                segment.person = number
                break
        else:
            known.append((model.colour, model.shape))
            segment.person = len(known)
    return ordered


def _renumber_segments(segments: list[Segment], held: np.ndarray, row_records: list[_FrameRecord]) -> None:
    """Segments' frame numbers from decoded frames to motion rows: ``held`` (M,) is the decoded frame
    on show in each row (``motion.timing.held_indices``), ``row_records`` its record. A segment that
    no row shows (shorter than a row's interval) gets the first row after its start, with no frames
    with a face."""
    for segment in segments:
        rows = [row for row, record in enumerate(row_records) if record.segment == segment.index]
        if rows:
            segment.first_frame, segment.last_frame, segment.frames_with_face = rows[0], rows[-1], len(rows)
        else:
            row = min(int(np.searchsorted(held, segment.first_frame)), len(held) - 1)
            segment.first_frame, segment.last_frame, segment.frames_with_face = row, row, 0


def _neutral(
    records: list[_FrameRecord], segment: Segment, config: TrackerConfig
) -> tuple[NeutralFace | None, int, float]:
    """A segment's neutral, the number of frames it came from and how far it is turned (degrees)."""
    own = [r for r in records[segment.first_frame : segment.last_frame + 1] if r.segment == segment.index]
    chosen = None if config.neutral_frame is None else records[config.neutral_frame]
    if chosen is not None and chosen.landmarks is not None and chosen.segment == segment.index:
        return NeutralFace.from_landmarks([chosen.landmarks.astype(np.float64)]), 1, chosen.turned_deg
    for limit in (config.frontal_deg, config.fallback_frontal_deg):
        frontal = [r for r in own if r.landmarks is not None and r.turned_deg <= limit]
        if frontal:
            break
    else:
        return None, 0, float("nan")
    if len(frontal) > MAX_NEUTRAL_FRAMES:
        picks = np.linspace(0, len(frontal) - 1, MAX_NEUTRAL_FRAMES).round().astype(int)
        frontal = [frontal[i] for i in picks]
    landmarks = [r.landmarks.astype(np.float64) for r in frontal if r.landmarks is not None]
    return NeutralFace.robust(landmarks), len(landmarks), float(np.median([r.turned_deg for r in frontal]))


def _measure(
    records: list[_FrameRecord], segments: list[Segment], config: TrackerConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(frames, 17) motion of every frame and the reference rest row (pass two)."""
    _check_neutral_frame(records, config.neutral_frame)
    neutrals: dict[int, NeutralFace] = {}
    for segment in segments:
        neutral, count, turned = _neutral(records, segment, config)
        segment.neutral_frames, segment.neutral_turned_deg = count, turned
        if neutral is not None:
            neutrals[segment.index] = neutral
    if not neutrals:
        raise PirenderError(
            f"the face was never within {config.fallback_frontal_deg:.0f} degrees of frontal, so no "
            "neutral could be calibrated (the tracker does not calibrate on turned faces)"
        )
    reference = neutrals[min(neutrals)]
    rest = reference.rest_row()
    to_reference = {
        index: neutral.frame.rotation.T @ reference.frame.rotation for index, neutral in neutrals.items()
    }
    # every frame with a measurable face, moved into the reference rest pose and soft-limited
    measured: list[np.ndarray | None] = []
    for record in records:
        segment_index = record.segment
        if record.landmarks is None or segment_index is None or segment_index not in neutrals:
            measured.append(None)
            continue
        raw = neutrals[segment_index].motion(record.landmarks.astype(np.float64)).values.copy()
        rotation = rotation_from_euler(*raw[:3].astype(np.float64)) @ to_reference[segment_index]
        raw[:3] = euler_from_rotation(rotation)
        measured.append(soft_limit(raw, OPEN_SPACE))
    smoothed = _smooth_runs(measured, records, config)
    # frames without the face: the last motion held, then eased to the rest pose (as live)
    emitter = MotionEmitter(config.smoothing, config.hold_s, config.ease_s)
    rows: list[np.ndarray | None] = []
    for record, row in zip(records, smoothed, strict=True):
        if row is not None:
            emitter.seen(row, record.time_s)
            rows.append(row)
        else:
            _, held = emitter.lost(record.time_s, rest)
            rows.append(None if held is None else held.copy())
    return _fill_gaps(rows), rest


def _check_neutral_frame(records: list[_FrameRecord], frame: int | None) -> None:
    """Refuse a ``neutral_frame`` outside the clip or on a frame without the followed face."""
    if frame is None:
        return
    if not 0 <= frame < len(records):
        raise PirenderError(
            f"--neutral-frame {frame}: the clip has {len(records)} frames (0-{len(records) - 1})"
        )
    if records[frame].landmarks is not None and records[frame].segment is not None:
        return
    with_face = [i for i, r in enumerate(records) if r.landmarks is not None and r.segment is not None]
    nearest = []
    before = [i for i in with_face if i < frame]
    if before:
        nearest.append(f"frame {before[-1]} before it")
    after = [i for i in with_face if i > frame]
    if after:
        nearest.append(f"frame {after[0]} after it")
    raise PirenderError(
        f"--neutral-frame {frame}: the followed face is not in that frame (tracker state "
        f"{records[frame].state}); the nearest frames with it: {' and '.join(nearest) or 'none'}"
    )


def _smooth_runs(
    measured: list[np.ndarray | None], records: list[_FrameRecord], config: TrackerConfig
) -> list[np.ndarray | None]:
    """Zero-lag smoothing of each run of consecutive measured frames of one segment: the live
    tracker's One-Euro filter run forward and backward in time and the two averaged, so offline
    motion does not trail the driver (the causal filter alone lags a step by 1-2 frames at 25 fps,
    and the driver's sound is muxed in with it)."""
    smoothed: list[np.ndarray | None] = [None] * len(measured)
    start = 0
    while start < len(measured):
        if measured[start] is None:
            start += 1
            continue
        end = start
        while (
            end + 1 < len(measured)
            and measured[end + 1] is not None
            and records[end + 1].segment == records[start].segment
        ):
            end += 1
        rows = np.stack([row for row in measured[start : end + 1] if row is not None])
        times = np.array([r.time_s for r in records[start : end + 1]])
        forward = _one_euro(rows, times, config)
        backward = _one_euro(rows[::-1], -times[::-1], config)[::-1]
        for offset, row in enumerate(((forward + backward) / 2).astype(np.float32)):
            smoothed[start + offset] = row
        start = end + 1
    return smoothed


def _one_euro(rows: np.ndarray, times_s: np.ndarray, config: TrackerConfig) -> np.ndarray:
    """(n, 17) rows through a fresh One-Euro filter (``times_s`` increasing)."""
    smoother = OneEuroFilter(rows.shape[1], config.smoothing)
    out = np.empty_like(rows, dtype=np.float64)
    previous = times_s[0]
    for index, (row, time_s) in enumerate(zip(rows, times_s, strict=True)):
        out[index] = smoother(row, float(time_s - previous))
        previous = time_s
    return out


def _fill_gaps(rows: list[np.ndarray | None]) -> np.ndarray:
    """Frames without motion repeat the previous frame's (the first motion, at the start)."""
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


__all__ = ["Segment", "TrackState", "TrackedClip", "track_clip"]
