"""The driving audio sent back with the avatar's video, lined up with the motion it drove.

Sync rule (talk mode): every video frame remembers the microphone sample where the audio of its motion
begins. The audio for stream time ``t`` (the same frame clock as the video's pts) is the microphone
audio starting at the position of the latest video frame shown at or before ``t``, advanced by the time
since that frame. So the sound sent with pts ``t`` is the sound that drove the picture sent with pts
``t``: the returned audio is delayed by exactly the motion's latency, never by a guess. Without talk
motion (other modes, or before the first talk row) the returned audio is silence.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .sources import MicrophoneSource

RETURN_FRAME_MS = 20  # one audio frame per 20 ms (an Opus packet)


class ReturnAudio:
    """Audio frames (16 kHz mono int16, 20 ms) for the stream's clock, from its microphone ring."""

    def __init__(self, microphone: MicrophoneSource, *, fps: float, history_frames: int = 256) -> None:
        self.microphone = microphone
        self.fps = fps
        self.sample_rate_hz = microphone.sample_rate_hz
        self.samples_per_frame = self.sample_rate_hz * RETURN_FRAME_MS // 1000
        self._positions: deque[tuple[int, int]] = deque(maxlen=history_frames)  # (video index, mic sample)
        self._float = np.zeros(self.samples_per_frame, dtype=np.float32)
        self._pcm = np.zeros((1, self.samples_per_frame), dtype=np.int16)

    def mark_video(self, index: int, mic_position: int | None) -> None:
        """Video frame ``index`` shows motion whose audio begins at ``mic_position`` (None: no voice)."""
        if mic_position is None:
            self._positions.clear()
        else:
            self._positions.append((index, mic_position))

    def position_at(self, time_s: float) -> int | None:
        """The microphone sample heard at stream time ``time_s`` (None: silence)."""
        for index, position in reversed(self._positions):
            frame_s = index / self.fps
            if frame_s <= time_s + 1e-9:
                return position + round((time_s - frame_s) * self.sample_rate_hz)
        return None

    def frame(self, index: int) -> tuple[np.ndarray, int | None]:
        """Audio frame ``index`` (pts ``index * samples_per_frame`` at 16 kHz): ((1, 320) int16, its
        first microphone sample or None for silence). The array is reused by the next call."""
        position = self.position_at(index * RETURN_FRAME_MS / 1000)
        if position is None:
            self._pcm[:] = 0
        else:
            self.microphone.read(position, self._float)
            np.clip(self._float, -1.0, 1.0, out=self._float)
            np.multiply(self._float, 32767.0, out=self._float)
            self._pcm[0] = self._float  # float -> int16 (truncation, within 1 LSB)
        return self._pcm, position
