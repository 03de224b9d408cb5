"""Motion sources of a live stream. Each gives, at any time, one open-space row for the portrait
(already moved onto it: relative to the portrait's own rest pose)."""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

from ..audio.sources import SAMPLE_RATE_HZ
from ..motion.edit import demo_open_motion
from ..motion.limits import OPEN_LIMITS
from ..motion.retarget import FollowingRetargeter, OpenRetargeter, frontal_rest_row, retarget_open
from ..motion.space import OPEN_SPACE, MotionSequence
from ..track.tracker import FaceTracker

#: Slider ranges (open-space units; pose in radians added to the portrait's own pose, scale a factor on
#: it) and defaults: each slot's identity range of ``motion.limits`` (values there pass unchanged).
SLIDER_RANGES: dict[str, tuple[float, float, float, str]] = {
    name: (slot.knee_low, slot.knee_high, 1.0 if name == "scale" else 0.0, slot.unit)
    for name, slot in zip(OPEN_SPACE.slot_names, OPEN_LIMITS.ranges, strict=True)
}
_IDLE_LOOP_S = 12.0


class MotionSource(Protocol):
    """What every motion source of a stream gives: the open-space row (moved onto the portrait) to
    show at stream time ``time_s`` (s; sources driven by live input return their newest row)."""

    def row(self, time_s: float) -> np.ndarray: ...


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

    sample_rate_hz = SAMPLE_RATE_HZ

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
