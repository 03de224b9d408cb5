"""FaceTracker: camera frames -> open-space motion every frame, following one person through real footage.

What it does with each frame (RGB uint8 and its time in seconds):

1. **Shot changes** (``shots.ShotDetector``): a cut ends the current segment; the person is
   re-acquired and the neutral re-calibrated (unless the first face found within
   ``cut_decision_s`` after the cut is plainly the same person in the same place: a false alarm,
   e.g. a caption appearing, a hand or a flash across the face, then nothing changes).
2. **One person** (``identity``): the face followed is the one near where the person was, of a
   similar size, whose appearance and proportions do not contradict the person's; other faces in the
   picture are ignored. When the person is lost, the last motion is held for ``hold_s`` and then
   eased to the rest pose over ``ease_s``; only after that may another person be acquired (a new
   segment), so the tracker never jumps to someone in the background.
3. **Acquiring** a person: among the faces that MediaPipe finds, that pass the human-face rule
   (``face_check``) and are at least ``min_iod_px`` large and turned at most ``fallback_frontal_deg``
   from frontal, the largest (in 5 % area steps), then the most central.
4. **Calibrating** the neutral only on frames turned at most ``frontal_deg`` from frontal (after
   ``fallback_after_s`` without one, up to ``fallback_frontal_deg``; never further): the first
   ``calibration_frames`` such frames give a robust neutral (``NeutralFace.robust``: calmest frames
   per region), refined as the stream goes on from a bounded reservoir of frontal frames (expression
   only; the pose reference stays), or frame ``neutral_frame`` when given.
5. **Motion** of the followed face against the neutral, kept within the open space's documented
   ranges by soft limits (``motion.limits``), smoothed with a One-Euro filter.

States (``TrackState``): no_face, not_followed (faces seen, none the tracker may follow: turned far
from frontal, too small or not human), calibrating, tracking, holding, easing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from ..motion.limits import soft_limit
from ..motion.space import OPEN_SPACE, MotionFrame
from .face_check import HumanFaceCheck
from .filters import OneEuroConfig, OneEuroFilter
from .identity import FaceObservation, IdentityConfig, PersonModel, colour_distance, observe
from .landmarks import FaceMesh, FaceMeshConfig
from .open_space import NeutralFace
from .shots import ShotConfig, ShotDetector


class TrackState(StrEnum):
    NO_FACE = "no_face"  # no face in the picture (and no motion to hold)
    NOT_FOLLOWED = "not_followed"  # faces seen, none to follow (turned away, too small, not human)
    CALIBRATING = "calibrating"  # following a person, collecting frontal frames for the neutral
    TRACKING = "tracking"
    HOLDING = "holding"  # the person is lost: last motion held
    EASING = "easing"  # lost longer: easing back to the rest pose


@dataclass(frozen=True)
class TrackerConfig:
    """How the tracker follows a person (angles in degrees, times in seconds, sizes in pixels)."""

    mesh: FaceMeshConfig = field(default_factory=FaceMeshConfig)
    smoothing: OneEuroConfig = field(default_factory=lambda: OneEuroConfig(min_cutoff_hz=1.5, beta=0.3))
    calibration_frames: int = 5
    hold_s: float = 0.5
    ease_s: float = 1.0
    frontal_deg: float = 20.0
    fallback_frontal_deg: float = 30.0
    fallback_after_s: float = 1.5
    min_iod_px: float = 12.0
    cut_decision_s: float = 0.5  # after a cut, how long the same person may reappear and be followed on
    refine_frames: int = 250  # frontal frames kept for refining the neutral (every 2nd frame)
    neutral_frame: int | None = None  # 0-based frame index whose face is the neutral
    shots: ShotConfig = field(default_factory=ShotConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)


@dataclass(frozen=True)
class TrackResult:
    state: TrackState
    motion: MotionFrame | None  # None before the neutral is known (no face yet, or calibrating)
    landmarks: np.ndarray | None  # (478, 3) pixels of the followed face, None when not followed
    faces: int  # faces seen in this frame
    cut: bool = False  # this frame starts a new shot
    segment: int | None = None  # which followed-person segment the frame belongs to (0, 1, ...)
    turned_deg: float | None = None  # how far the followed face is turned (max of |pitch|, |yaw|)
    larger_face_passed_over: bool = False  # a clearly larger face than the followed one is in the picture


#: A rule "is this a human face": (RGB frame, (478, 3) landmarks) -> True/False.
HumanFaceRule = Callable[[np.ndarray, np.ndarray], bool]


def choose_face(faces: list[FaceObservation], frame_size: tuple[int, int]) -> int:
    """Index of the face to acquire: the largest (in 5 %-of-frame area steps), then the most central."""
    height, width = frame_size
    center = np.array([width / 2, height / 2])

    def key(i: int) -> tuple[float, float]:
        area_step = -round(faces[i].area_px / (0.05 * width * height))
        return (area_step, float(np.linalg.norm(faces[i].center - center)))

    return min(range(len(faces)), key=key)


class MotionEmitter:
    """The motion a tracker emits: measured rows smoothed (One-Euro), and when the face is lost the
    last row held for ``hold_s`` then eased to a rest row over ``ease_s``."""

    def __init__(self, smoothing: OneEuroConfig, hold_s: float, ease_s: float) -> None:
        self.hold_s = hold_s
        self.ease_s = ease_s
        self._filter = OneEuroFilter(OPEN_SPACE.width, smoothing)
        self._limited = np.empty(OPEN_SPACE.width, dtype=np.float32)
        self._scratch = np.empty(OPEN_SPACE.width, dtype=np.float32)
        self.last_row: np.ndarray | None = None  # the last measured (smoothed) row
        self.last_emitted: np.ndarray | None = None  # the last row given out (measured, held or eased)
        self._last_time_s: float | None = None
        self._lost_since_s: float | None = None

    def reset(self) -> None:
        """Forget everything (a new person or shot)."""
        self._filter.reset()
        self.last_row = None
        self.last_emitted = None
        self._last_time_s = None
        self._lost_since_s = None

    def measured(self, row: np.ndarray, time_s: float) -> np.ndarray:
        """Soft-limit and smooth one measured (17,) row; returns the emitted row (float32)."""
        dt_s = 0.0 if self._last_time_s is None else time_s - self._last_time_s
        self._last_time_s = time_s
        self._lost_since_s = None
        np.copyto(self._limited, row)
        soft_limit(self._limited, OPEN_SPACE, out=self._limited, scratch=self._scratch)
        self.last_row = self._filter(self._limited, dt_s).astype(np.float32)
        self.last_emitted = self.last_row
        return self.last_row

    def seen(self, row: np.ndarray, time_s: float) -> None:
        """Take an already smoothed row as the newest motion (offline, smoothed without lag)."""
        self._last_time_s = time_s
        self._lost_since_s = None
        self.last_row = self.last_emitted = row

    def lost(self, time_s: float, rest: np.ndarray) -> tuple[TrackState, np.ndarray | None]:
        """The state and row of a frame without the face: held, then eased to ``rest``."""
        self._last_time_s = time_s
        if self.last_row is None:
            return TrackState.NO_FACE, None
        if self._lost_since_s is None:
            self._lost_since_s = time_s
        lost_s = time_s - self._lost_since_s
        if lost_s <= self.hold_s:
            self.last_emitted = self.last_row
            return TrackState.HOLDING, self.last_row
        amount = min(1.0, (lost_s - self.hold_s) / self.ease_s)
        self._filter.reset()
        self.last_emitted = ((1 - amount) * self.last_row + amount * rest).astype(np.float32)
        return TrackState.EASING, self.last_emitted


#: How many of the most recent cut times and segment people a tracker keeps (a live session runs
#: for hours; the totals are counted).
RECENT_KEPT = 256


class FaceTracker:
    """Call :meth:`process` with every frame (RGB uint8) and its capture time in seconds.

    Public state (read it, do not change it): ``neutral``; ``segment`` (index of the current person
    segment, -1 before the first); ``cuts`` (shot changes so far) and ``cuts_s`` (the times of the
    newest :data:`RECENT_KEPT` of them, seconds); ``segment_people`` (the :class:`PersonModel` of the
    newest :data:`RECENT_KEPT` segments, the current one last); ``cuts_followed_on`` (cuts after
    which the same person was in the same place). :meth:`reset` starts a new stream (a new clip)
    with the same MediaPipe graphs.
    """

    def __init__(
        self,
        config: TrackerConfig | None = None,
        *,
        mesh: FaceMesh | None = None,
        human_face: HumanFaceRule | None = None,
    ) -> None:
        self.config = config or TrackerConfig()
        self.mesh = mesh or FaceMesh(self.config.mesh)
        self._face_check: HumanFaceCheck | None = None
        if human_face is None:
            self._face_check = HumanFaceCheck()
            human_face = self._is_human
        self.human_face = human_face
        self._emitter = MotionEmitter(self.config.smoothing, self.config.hold_s, self.config.ease_s)
        self._reservoir: deque[np.ndarray] = deque(maxlen=self.config.refine_frames)
        self.cuts_s: deque[float] = deque(maxlen=RECENT_KEPT)
        self.segment_people: deque[PersonModel] = deque(maxlen=RECENT_KEPT)
        self._clear()

    def reset(self) -> None:
        """Forget the stream: the next frame is frame 0 of a new one (no shot, person, neutral or
        cut yet; the face mesh looks for faces afresh). The MediaPipe graphs are kept."""
        self.mesh.reset()
        self._clear()

    def _clear(self) -> None:
        self.neutral: NeutralFace | None = None
        self.segment = -1  # index of the current person segment (-1: none yet)
        self.cuts = 0  # shot changes since the stream started (``cuts_s`` keeps the newest times)
        self.cuts_s.clear()
        self.segment_people.clear()
        self.cuts_followed_on = 0  # cuts after which the same person was in the same place
        self._shots = ShotDetector(self.config.shots)
        self._emitter.reset()
        self._person: PersonModel | None = None
        self._previous_person: PersonModel | None = None  # before the last cut
        self._cut_pending_s: float | None = None  # time of a cut whose decision is still open
        self._acquired_s = 0.0
        self._person_lost_since_s: float | None = None
        self._held_row: np.ndarray | None = None  # the last row before a new segment
        self._calibration: list[np.ndarray] = []
        self._reference: NeutralFace | None = None  # the first neutral of the segment (pose reference)
        self._reservoir.clear()
        self._frontal_seen = 0
        self._next_refine = 0
        self._neutral_fixed = False
        self._frame_index = -1

    # ---------------------------------------------------------------------------------------------
    def set_neutral(self, landmarks: list[np.ndarray] | None = None) -> None:
        """Recalibrate: from the given landmarks (kept as they are), or from the next frontal frames."""
        self._calibration = []
        self._reservoir.clear()
        self.neutral = NeutralFace.robust(landmarks) if landmarks else None
        self._reference = self.neutral
        self._neutral_fixed = bool(landmarks)
        self._emitter.reset()

    def finish_calibration(self) -> bool:
        """Build the neutral from the frames collected so far (a clip shorter than the calibration);
        False when no face has been calibrated on at all."""
        if self.neutral is None and self._calibration:
            self._set_neutral(NeutralFace.robust(self._calibration))
        return self.neutral is not None

    def rest_row(self) -> np.ndarray | None:
        """The current neutral's rest row (its own head pose, no move, no expression), if calibrated."""
        return None if self.neutral is None else self.neutral.rest_row()

    # ---------------------------------------------------------------------------------------------
    def process(self, rgb: np.ndarray, time_s: float) -> TrackResult:
        self._frame_index += 1
        cut = self._shots(rgb, time_s)
        if cut:
            self.cuts += 1
            self.cuts_s.append(time_s)
            if self._person is not None:
                self._previous_person = self._person
            self._person = None
            self._cut_pending_s = time_s
        faces = self.mesh.detect(rgb)
        observations = [observe(rgb, points) for points in faces]
        face = self._follow(rgb, observations, time_s)
        if face is None:
            if self._person_lost_since_s is None:
                self._person_lost_since_s = time_s
            return self._lost(time_s, observations, cut)
        self._person_lost_since_s = None
        turned = face.turned_deg()
        larger = any(other.area_px > 1.2 * face.area_px for other in observations)
        if self._frame_index == self.config.neutral_frame:
            self._set_neutral(NeutralFace.from_landmarks([face.landmarks]), fixed=True)
        elif not self._neutral_fixed:
            self._calibrate(face, turned, time_s)
        if self.neutral is None:  # hold the previous motion (if any) while calibrating
            held = None if self._held_row is None else MotionFrame(OPEN_SPACE, self._held_row)
            return TrackResult(
                TrackState.CALIBRATING, held, face.landmarks, len(faces), cut, self.segment, turned, larger
            )
        row = self._emitter.measured(self.neutral.motion(face.landmarks).values, time_s)
        motion = MotionFrame(OPEN_SPACE, row)
        return TrackResult(
            TrackState.TRACKING, motion, face.landmarks, len(faces), cut, self.segment, turned, larger
        )

    # ---------------------------------------------------------------------------------------------
    def _follow(self, rgb: np.ndarray, faces: list[FaceObservation], time_s: float) -> FaceObservation | None:
        """The followed person's face in this frame (acquiring a new person where allowed)."""
        person = self._person
        if person is not None and faces:
            costs = [person.matches(face, time_s) for face in faces]
            found = [(cost, i) for i, cost in enumerate(costs) if cost is not None]
            if found:
                face = faces[min(found)[1]]
                person.update(face, time_s)
                return face
        lost_s = 0.0 if self._person_lost_since_s is None else time_s - self._person_lost_since_s
        if person is not None and lost_s < self.config.hold_s + self.config.ease_s:
            return None  # the person may come back: nobody else is followed meanwhile
        candidates = [face for face in faces if self._acquirable(rgb, face)]
        if not candidates:
            return None
        face = candidates[choose_face(candidates, rgb.shape[:2])]
        previous = self._previous_person
        if (
            self._cut_decision_open(time_s)
            and previous is not None
            and self.neutral is not None
            and self._same_place(previous, face, time_s)
        ):
            self._person = previous  # a false alarm: the same person in the same place
            self._cut_pending_s = None
            self.cuts_followed_on += 1
            previous.update(face, time_s)
            return face
        self._start_segment(face, time_s)
        return face

    def _cut_decision_open(self, time_s: float) -> bool:
        """Whether a face acquired now still decides the last cut: the first one within
        ``cut_decision_s`` after it (a hand or a flash may hide the face on the cut frame itself)."""
        if self._cut_pending_s is None:
            return False
        if time_s - self._cut_pending_s <= self.config.cut_decision_s:
            return True
        self._cut_pending_s = None
        return False

    def _acquirable(self, rgb: np.ndarray, face: FaceObservation) -> bool:
        return (
            face.iod_px >= self.config.min_iod_px
            and face.turned_deg() <= self.config.fallback_frontal_deg
            and self.human_face(rgb, face.landmarks)
        )

    def _same_place(self, person: PersonModel, face: FaceObservation, time_s: float) -> bool:
        """``face`` is where ``person`` was (as far as it may have moved while unseen), of about the
        same size and skin colour."""
        d = person.differences(face, time_s)
        return (
            d["jump_iod"] <= d["jump_limit_iod"]
            and d["size_ratio"] <= 1.2
            and colour_distance(person.colour, face.colour) <= self.config.identity.same_person_colour
        )

    def _start_segment(self, face: FaceObservation, time_s: float) -> None:
        self.segment += 1
        self._person = PersonModel(face, time_s, self.config.identity)
        self.segment_people.append(self._person)
        self._previous_person = None
        self._cut_pending_s = None
        self._acquired_s = time_s
        self._calibration = []
        self._reservoir.clear()
        self._frontal_seen = 0
        self.neutral = None
        self._reference = None
        self._neutral_fixed = False
        if self._emitter.last_emitted is not None:
            self._held_row = self._emitter.last_emitted
        self._emitter.reset()
        self._person_lost_since_s = None

    # ---------------------------------------------------------------------------------------------
    def _calibrate(self, face: FaceObservation, turned_deg: float, time_s: float) -> None:
        """Collect frontal frames; build the neutral, then refine its expression now and then."""
        cfg = self.config
        limit = cfg.frontal_deg
        if self.neutral is None and time_s - self._acquired_s >= cfg.fallback_after_s:
            limit = cfg.fallback_frontal_deg
        if turned_deg > limit:
            return
        if self.neutral is None:
            self._calibration.append(face.landmarks)
            if len(self._calibration) >= cfg.calibration_frames:
                self._reservoir.extend(self._calibration)
                self._set_neutral(NeutralFace.robust(self._calibration))
                self._next_refine = 2 * len(self._reservoir)
            return
        self._frontal_seen += 1
        if self._frontal_seen % 2:
            return
        self._reservoir.append(face.landmarks)
        if len(self._reservoir) >= self._next_refine or (
            len(self._reservoir) == self._reservoir.maxlen and self._frontal_seen % 100 == 0
        ):
            self.neutral = NeutralFace.robust(list(self._reservoir), reference=self._reference)
            self._next_refine = 2 * len(self._reservoir)

    def _set_neutral(self, neutral: NeutralFace, *, fixed: bool = False) -> None:
        self.neutral = neutral
        self._reference = neutral
        self._neutral_fixed = fixed
        self._calibration = []

    def _lost(self, time_s: float, faces: list[FaceObservation], cut: bool) -> TrackResult:
        rest = self.neutral.rest_row() if self.neutral is not None else None
        if rest is None:
            state = TrackState.NOT_FOLLOWED if faces else TrackState.NO_FACE
            if self._person is not None and faces:
                state = TrackState.CALIBRATING
            motion = None if self._held_row is None else MotionFrame(OPEN_SPACE, self._held_row)
            return TrackResult(state, motion, None, len(faces), cut=cut, segment=None)
        state, row = self._emitter.lost(time_s, rest)
        motion = None if row is None else MotionFrame(OPEN_SPACE, row)
        return TrackResult(state, motion, None, len(faces), cut=cut, segment=None)

    def _is_human(self, rgb: np.ndarray, landmarks: np.ndarray) -> bool:
        """The project's one human-face rule (``face_check``, shared with the portrait loader)."""
        assert self._face_check is not None
        return self._face_check.check(rgb, landmarks).human

    def close(self) -> None:
        """Release the MediaPipe graphs (the face mesh and the human-face check)."""
        self.mesh.close()
        if self._face_check is not None:
            self._face_check.close()
