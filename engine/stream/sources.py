"""Motion sources of a live stream (``pipeline.MotionSource``). Each gives, for any frame slot, one
open-space row for the portrait (already moved onto it: relative to the portrait's own rest pose)
with the capture time of what drove it: the camera frame tracked, the slider move, the slot itself
for scripted motion."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from ..audio.sources import SAMPLE_RATE_HZ
from ..clock import now_s
from ..motion.edit import demo_open_motion
from ..motion.limits import OPEN_LIMITS
from ..motion.retarget import FollowingRetargeter, OpenRetargeter, frontal_rest_row, retarget_open
from ..motion.space import OPEN_SPACE, MotionSequence
from ..pipeline import FrameSlot, TimedMotion
from ..track.tracker import FaceTracker

#: Slider ranges (open-space units; pose in radians added to the portrait's own pose, scale a factor on
#: it) and defaults: each slot's identity range of ``motion.limits`` (values there pass unchanged).
SLIDER_RANGES: dict[str, tuple[float, float, float, str]] = {
    name: (slot.knee_low, slot.knee_high, 1.0 if name == "scale" else 0.0, slot.unit)
    for name, slot in zip(OPEN_SPACE.slot_names, OPEN_LIMITS.ranges, strict=True)
}
_IDLE_LOOP_S = 12.0
_CAPTURE_HISTORY = 512  # microphone blocks whose capture times are kept (> 5 s of 20 ms frames)


class IdleSource:
    """A scripted idle loop (head sway, blinks, talking, smiles) on the portrait."""

    def __init__(self, rest: np.ndarray, *, fps: float = 25.0) -> None:
        retarget = OpenRetargeter(frontal_rest_row(), rest)
        script = demo_open_motion(frames=round(_IDLE_LOOP_S * fps), fps=fps)
        self._rows = np.stack([retarget(row) for row in script.values])
        self._fps = fps

    def motion(self, slot: FrameSlot) -> TimedMotion:
        """The script at the slot's time, captured at the slot."""
        return TimedMotion(
            self._rows[round(slot.time_s * self._fps) % len(self._rows)], slot.time_s, slot.due_s
        )


class SliderSource:
    """Slider values from the client, on top of the portrait's rest pose."""

    def __init__(self, rest: np.ndarray) -> None:
        self._rest = rest.astype(np.float32)
        self._values = {name: default for name, (_, _, default, _) in SLIDER_RANGES.items()}
        self._lock = threading.Lock()
        self._moved_s: float | None = None  # when the sliders last moved (engine.clock)

    def set(self, slots: dict[str, float], *, moved_s: float | None = None) -> None:
        """Clamped to ``SLIDER_RANGES``; unknown names are refused (ValueError). ``moved_s``: when
        the move was made (``engine.clock``; default now)."""
        unknown = sorted(set(slots) - set(SLIDER_RANGES))
        if unknown:
            raise ValueError(f"unknown slider(s): {', '.join(unknown)}")
        with self._lock:
            self._moved_s = now_s() if moved_s is None else moved_s
            for name, value in slots.items():
                low, high, _, _ = SLIDER_RANGES[name]
                self._values[name] = float(np.clip(float(value), low, high))

    def reset(self) -> None:
        self.set({name: default for name, (_, _, default, _) in SLIDER_RANGES.items()})

    def motion(self, slot: FrameSlot) -> TimedMotion:
        """The sliders on the rest pose, captured when they last moved (at the slot before any move)."""
        with self._lock:
            moved = slot.due_s if self._moved_s is None else self._moved_s
        return TimedMotion(self.row(), slot.time_s, moved)

    def row(self) -> np.ndarray:
        """The rest pose with the slider values applied."""
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
    """The face tracker on frames pushed from a camera track (``feed`` runs off the event loop); each
    slot shows the newest tracked frame, captured when that camera frame was."""

    def __init__(self, rest: np.ndarray) -> None:
        self._rest = rest.astype(np.float32)
        self._tracker = FaceTracker()
        self._retarget = FollowingRetargeter(self._rest)
        self._latest = self._rest.copy()
        self._latest_captured_s: float | None = None
        self._track_ms = 0.0
        self._lock = threading.Lock()
        self.frames_seen = 0
        self.frames_with_face = 0

    def feed(self, rgb: np.ndarray, time_s: float, captured_s: float | None = None) -> None:
        """Track one camera frame: (H, W, 3) uint8 at its media time ``time_s`` (s), captured at
        ``captured_s`` (``engine.clock``; default now)."""
        captured = now_s() if captured_s is None else captured_s
        started = now_s()
        result = self._tracker.process(rgb, time_s)
        self.frames_seen += 1
        self.frames_with_face += result.landmarks is not None
        moved = self._retarget(
            None if result.motion is None else result.motion.values, self._tracker.rest_row()
        )
        track_ms = 1000 * (now_s() - started)
        with self._lock:
            self._latest_captured_s, self._track_ms = captured, track_ms
            if moved is not None:
                self._latest = moved

    def motion(self, slot: FrameSlot) -> TimedMotion:
        """The newest tracked row (the rest pose before the first face), with its camera frame's
        capture time and tracking time (``track``; the slot itself before the first frame)."""
        with self._lock:
            if self._latest_captured_s is None:
                return TimedMotion(self._latest.copy(), slot.time_s, slot.due_s)
            return TimedMotion(
                self._latest.copy(), slot.time_s, self._latest_captured_s, {"track": self._track_ms}
            )

    def close(self) -> None:
        self._tracker.close()


class FileSource:
    """A motion file (open space) played on the portrait, looped or once (then held at its end)."""

    def __init__(self, motion: MotionSequence, rest: np.ndarray, *, loop: bool = True) -> None:
        self._rows = retarget_open(motion, rest).values
        self._fps = motion.fps
        self._loop = loop

    def motion(self, slot: FrameSlot) -> TimedMotion:
        """The file's row at the slot's time, captured at the slot."""
        index = round(slot.time_s * self._fps)
        index = index % len(self._rows) if self._loop else min(index, len(self._rows) - 1)
        return TimedMotion(self._rows[index], slot.time_s, slot.due_s)


class MicrophoneSource:
    """The client's microphone as mono 16 kHz float32 samples in a bounded ring (the newest
    ``capacity_s`` seconds), for audio-driven motion; ``feed`` takes aiortc/PyAV audio frames."""

    sample_rate_hz = SAMPLE_RATE_HZ

    def __init__(self, capacity_s: float = 5.0) -> None:
        from ..audio.sources import AudioConverter

        # a converter, not one resampler: a peer may switch rate or channels mid-stream
        self._converter = AudioConverter(self.sample_rate_hz, "mono")
        self._ring = np.zeros(round(capacity_s * self.sample_rate_hz), dtype=np.float32)
        self._written = 0
        self._lock = threading.Lock()
        #: (first sample, its capture time on engine.clock) of recent blocks, oldest first
        self._captured: deque[tuple[int, float]] = deque(maxlen=_CAPTURE_HISTORY)

    def feed(self, frame: object, captured_s: float | None = None) -> None:
        """An aiortc/PyAV audio frame whose first sample was captured at ``captured_s``
        (``engine.clock``; default: it ends now)."""
        for chunk in self._converter.push(frame):  # type: ignore[arg-type]
            self.feed_samples(chunk[0], captured_s=captured_s)
            captured_s = None if captured_s is None else captured_s + chunk.shape[1] / self.sample_rate_hz

    def feed_samples(self, samples: np.ndarray, *, captured_s: float | None = None) -> None:
        """Mono float32 samples already at 16 kHz (e.g. a local microphone block) whose first sample
        was captured at ``captured_s`` (``engine.clock``; default: the block ends now)."""
        block = np.asarray(samples, dtype=np.float32).reshape(-1)
        if captured_s is None:
            captured_s = now_s() - len(block) / self.sample_rate_hz
        with self._lock:
            self._captured.append((self._written, captured_s))
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

    def captured_s(self, sample: int) -> float | None:
        """When sample number ``sample`` was captured (``engine.clock``), from the block it came in;
        None when it is older than the blocks remembered or not received yet."""
        with self._lock:
            if sample >= self._written:
                return None
            for first, captured in reversed(self._captured):
                if first <= sample:
                    return captured + (sample - first) / self.sample_rate_hz
        return None

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
