"""Motion sources of a live stream. Each gives, at any time, one open-space row for the portrait
(already moved onto it: relative to the portrait's own rest pose)."""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING

import numpy as np

from ..motion.edit import demo_open_motion
from ..motion.limits import OPEN_LIMITS
from ..motion.retarget import FollowingRetargeter, OpenRetargeter, frontal_rest_row, retarget_open
from ..motion.space import OPEN_SPACE, MotionSequence
from ..track.tracker import FaceTracker

if TYPE_CHECKING:
    from ..talk import TalkConfig

#: Slider ranges (open-space units; pose in radians added to the portrait's own pose, scale a factor on
#: it) and defaults: each slot's identity range of ``motion.limits`` (values there pass unchanged).
SLIDER_RANGES: dict[str, tuple[float, float, float, str]] = {
    name: (slot.knee_low, slot.knee_high, 1.0 if name == "scale" else 0.0, slot.unit)
    for name, slot in zip(OPEN_SPACE.slot_names, OPEN_LIMITS.ranges, strict=True)
}
_IDLE_LOOP_S = 12.0
_TALK_MAX_BACKLOG_S = 2.0  # a talk source this far behind its microphone skips the stale voice


class IdleSource:
    """A scripted idle loop (head sway, blinks, talking, smiles) on the portrait."""

    def __init__(self, rest: np.ndarray, *, fps: float = 25.0) -> None:
        retarget = OpenRetargeter(frontal_rest_row(), rest)
        script = demo_open_motion(frames=round(_IDLE_LOOP_S * fps), fps=fps)
        self._rows = np.stack([retarget(row) for row in script.values])
        self._fps = fps

    def row(self, time_s: float) -> np.ndarray:
        return self._rows[round(time_s * self._fps) % len(self._rows)]


class SliderSource:
    """Slider values from the client, on top of the portrait's rest pose."""

    def __init__(self, rest: np.ndarray) -> None:
        self._rest = rest.astype(np.float32)
        self._values = {name: default for name, (_, _, default, _) in SLIDER_RANGES.items()}
        self._lock = threading.Lock()

    def set(self, slots: dict[str, float]) -> None:
        """Clamped to ``SLIDER_RANGES``; unknown names are refused (ValueError)."""
        unknown = sorted(set(slots) - set(SLIDER_RANGES))
        if unknown:
            raise ValueError(f"unknown slider(s): {', '.join(unknown)}")
        with self._lock:
            for name, value in slots.items():
                low, high, _, _ = SLIDER_RANGES[name]
                self._values[name] = float(np.clip(float(value), low, high))

    def reset(self) -> None:
        self.set({name: default for name, (_, _, default, _) in SLIDER_RANGES.items()})

    def row(self, time_s: float) -> np.ndarray:
        del time_s
        row = self._rest.copy()
        with self._lock:
            for name, value in self._values.items():
                index = OPEN_SPACE.index(name)
                if name in ("pitch", "yaw", "roll"):
                    row[index] += value
                elif name == "scale":
                    row[index] *= value
                else:
                    row[index] = value
        return row


class CameraSource:
    """The face tracker on frames pushed from a camera track (``feed`` runs off the event loop)."""

    def __init__(self, rest: np.ndarray) -> None:
        self._rest = rest.astype(np.float32)
        self._tracker = FaceTracker()
        self._retarget = FollowingRetargeter(self._rest)
        self._latest = self._rest.copy()
        self._lock = threading.Lock()
        self.frames_seen = 0
        self.frames_with_face = 0

    def feed(self, rgb: np.ndarray, time_s: float) -> None:
        result = self._tracker.process(rgb, time_s)
        self.frames_seen += 1
        self.frames_with_face += result.landmarks is not None
        moved = self._retarget(
            None if result.motion is None else result.motion.values, self._tracker.rest_row()
        )
        if moved is None:
            return
        with self._lock:
            self._latest = moved

    def row(self, time_s: float) -> np.ndarray:
        del time_s
        with self._lock:
            return self._latest.copy()

    def close(self) -> None:
        self._tracker.close()


class FileSource:
    """A motion file (open space) played on the portrait, looped or once (then held at its end)."""

    def __init__(self, motion: MotionSequence, rest: np.ndarray, *, loop: bool = True) -> None:
        self._rows = retarget_open(motion, rest).values
        self._fps = motion.fps
        self._loop = loop

    def row(self, time_s: float) -> np.ndarray:
        index = round(time_s * self._fps)
        index = index % len(self._rows) if self._loop else min(index, len(self._rows) - 1)
        return self._rows[index]


class MicrophoneSource:
    """The client's microphone as mono 16 kHz float32 samples in a bounded ring (the newest
    ``capacity_s`` seconds), for audio-driven motion; ``feed`` takes aiortc/PyAV audio frames."""

    sample_rate_hz = 16_000

    def __init__(self, capacity_s: float = 5.0) -> None:
        from ..audio.sources import AudioConverter

        # a converter, not one resampler: a peer may switch rate or channels mid-stream
        self._converter = AudioConverter(self.sample_rate_hz, "mono")
        self._ring = np.zeros(round(capacity_s * self.sample_rate_hz), dtype=np.float32)
        self._written = 0
        self._lock = threading.Lock()

    def feed(self, frame: object) -> None:
        for chunk in self._converter.push(frame):  # type: ignore[arg-type]
            self.feed_samples(chunk[0])

    def feed_samples(self, samples: np.ndarray) -> None:
        """Mono float32 samples already at 16 kHz (e.g. a local microphone block)."""
        block = np.asarray(samples, dtype=np.float32).reshape(-1)
        with self._lock:
            for start in range(0, len(block), len(self._ring)):
                part = block[start : start + len(self._ring)]
                position = self._written % len(self._ring)
                first = min(len(part), len(self._ring) - position)
                self._ring[position : position + first] = part[:first]
                self._ring[: len(part) - first] = part[first:]
                self._written += len(part)

    @property
    def samples_received(self) -> int:
        return self._written

    def read(self, start: int, out: np.ndarray) -> np.ndarray:
        """Samples ``start .. start + len(out)`` (absolute sample numbers since the first sample) into
        ``out``; samples not received yet, or already overwritten in the ring, read as silence."""
        out[:] = 0.0
        with self._lock:
            size = len(self._ring)
            first = max(start, self._written - size, 0)
            count = min(start + len(out), self._written) - first
            if count > 0:  # at most two slices of the ring
                at, offset = first % size, first - start
                head = min(count, size - at)
                out[offset : offset + head] = self._ring[at : at + head]
                out[offset + head : offset + count] = self._ring[: count - head]
        return out


class TalkSource:
    """Motion from the client's microphone through the audio-to-motion flow, frame by frame.

    Audio arrives in ``microphone`` (16 kHz); ``engine.talk.SpeechMotion`` turns it into motion, the
    same object (features, voice-activity silence rule, flow, retargeting) ``pirender talk`` runs
    offline, so a file played into the microphone gives the offline motion exactly. Motion frame
    ``n`` needs the features of frames up to ``n + tau`` (the model's lookahead), so the motion shown
    lags the voice by ``tau`` frames plus the feature window: ``latency_ms``. Open-space models move
    onto the portrait's ``rest`` row; an authors'-space model (for PIRenderer) gives absolute 73-wide
    rows whose expression is ``rest``'s during silence. When the consumer falls more than
    :data:`_TALK_MAX_BACKLOG_S` behind the microphone, the stale voice is skipped (a new voice starts).
    """

    def __init__(
        self,
        microphone: MicrophoneSource,
        rest: np.ndarray,
        *,
        model: object | None = None,
        fps: float = 25.0,
        config: TalkConfig | None = None,
    ) -> None:
        from ..talk import SpeechMotion, TalkConfig, load_talk_model

        self.model = model or load_talk_model()
        self._mic = microphone
        config = dataclasses.replace(config or TalkConfig(), fps=fps)
        self._speech = SpeechMotion(self.model, rest, config)  # type: ignore[arg-type]
        self.origin_sample = microphone.samples_received  # the voice from now on drives the avatar
        self._consumed = self.origin_sample
        self._voice_start = self.origin_sample  # the sample where the current voice began
        self._samples_per_frame = round(microphone.sample_rate_hz / fps)
        self._latest = np.asarray(rest, dtype=np.float32).copy()
        lookahead = self.model.config.audio_lookahead_frames  # type: ignore[attr-defined]
        self.latency_ms = 1000.0 * lookahead / fps + 25.0

    @property
    def audio_position(self) -> int | None:
        """The microphone sample (absolute number) where the audio of the latest motion row begins;
        None before the first row. The sound a frame shows starts here."""
        produced = self._speech.frames_out
        if produced == 0:
            return None
        return self._voice_start + (produced - 1) * self._samples_per_frame

    def row(self, time_s: float) -> np.ndarray:
        del time_s
        received = self._mic.samples_received
        if received - self._consumed > _TALK_MAX_BACKLOG_S * self._mic.sample_rate_hz:
            # fell behind by seconds: start a new voice with the newest audio (enough for a few rows)
            lookahead = self.model.config.audio_lookahead_frames  # type: ignore[attr-defined]
            self._consumed = self._voice_start = received - (lookahead + 4) * self._samples_per_frame
            self._speech.reset()
        new = received - self._consumed
        if new > 0:
            samples = self._mic.read(self._consumed, np.empty(new, dtype=np.float32))
            self._consumed = received
            rows = self._speech.push(samples)
            if rows:
                self._latest = rows[-1]
        return self._latest.copy()
