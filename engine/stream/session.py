"""One live avatar stream: a motion source, the one window rule, the shared renderer, the frame clock."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..motion.space import OPEN_SPACE, MotionSequence
from ..motion.window import StreamWindow, WindowSpec
from ..renderer.base import PreparedSource
from ..talk import TalkSource
from .audio_return import RETURN_FRAME_MS, ReturnAudio
from .batcher import RenderService
from .clock import FrameStamps, now_ms
from .sources import CameraSource, FileSource, IdleSource, MicrophoneSource, MotionSource, SliderSource

_HISTORY = 600  # frames of stamps kept for stats
_JAW = OPEN_SPACE.index("jaw_open")


@dataclass
class StreamStats:
    stage_ms: dict[str, deque[float]] = field(default_factory=dict)
    glass_to_glass_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_HISTORY))
    av_offset_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_HISTORY))  # audio - video send
    frames: int = 0
    dropped: int = 0  # frame slots skipped because rendering fell behind
    started_ms: float = field(default_factory=now_ms)

    def add(self, stamps: FrameStamps) -> None:
        self.frames += 1
        for stage, duration in stamps.durations_ms().items():
            self.stage_ms.setdefault(stage, deque(maxlen=_HISTORY)).append(duration)

    def summary(self) -> dict[str, object]:
        elapsed_s = max((now_ms() - self.started_ms) / 1000, 1e-6)
        return {
            "fps": self.frames / elapsed_s,
            "dropped": self.dropped,
            "stage_ms": {k: float(np.median(v)) for k, v in self.stage_ms.items() if v},
            "glass_to_glass_ms": _percentiles(self.glass_to_glass_ms, (50, 90, 99)),
            "av_offset_ms": _percentiles(self.av_offset_ms, (10, 50, 90)),
        }


def _percentiles(values: deque[float], quantiles: tuple[int, ...]) -> dict[str, float] | None:
    """{"p50": ..., ...} of the values, or None before the first one."""
    if not values:
        return None
    return {f"p{q}": float(np.percentile(values, q)) for q in quantiles}


@dataclass
class MotionSources:
    """The motion sources of one stream for one portrait (see :meth:`AvatarStream.sources_for`)."""

    idle: IdleSource
    sliders: SliderSource
    file: FileSource | None
    talk: TalkSource | None
    camera: CameraSource | None


class AvatarStream:
    """Frames of one portrait at ``fps``, driven by the chosen motion source."""

    def __init__(
        self,
        service: RenderService,
        source: PreparedSource,
        rest: np.ndarray,
        *,
        fps: float = 25.0,
        motion_file: MotionSequence | None = None,
    ) -> None:
        self.service = service
        self.source = source
        self.fps = fps
        self.rest = rest
        self.idle = IdleSource(rest, fps=fps)
        self.sliders = SliderSource(rest)
        self.camera: CameraSource | None = None
        self.motion_file = motion_file
        self.file = FileSource(motion_file, rest) if motion_file is not None else None
        self.microphone = MicrophoneSource()  # the client's microphone, for audio-driven motion
        self.return_audio = ReturnAudio(self.microphone, fps=fps)  # that voice, back in sync
        self.talk: TalkSource | None = None
        self.mode = "idle"
        self.window = StreamWindow(OPEN_SPACE, WindowSpec(radius=0, lookahead_frames=0))
        self.stats = StreamStats()
        self.capture_ms_by_pts: dict[int, float] = {}
        self._pts_order: deque[int] = deque(maxlen=_HISTORY)
        self._start_ms: float | None = None
        self._index = 0
        self._clock_started = asyncio.Event()  # the audio clock starts with the first video slot
        self._send_lag_ms = 0.0  # how long after its slot a video frame leaves (smoothed render time)
        self._video_sent_ms: dict[int, float] = {}  # video frame index -> send time, for the A/V offset
        self._audio_index = 0
        self.last_mouth_open = 0.0  # jaw_open of the latest frame above the portrait's rest

    def build_mode(self, mode: str) -> None:
        """Build the motion source ``mode`` needs if it is not built yet (``camera``: a face tracker,
        ``talk``: the audio-to-motion model; up to a second or more). Safe to run off the event loop
        (the server runs it on its tracking thread); :meth:`set_mode` is then instant.

        Raises:
            ValueError: ``file`` without a motion file.
        """
        if mode == "file" and self.file is None:
            raise ValueError("no motion file on this server (pirender serve --motion FILE)")
        if mode == "talk" and self.talk is None:
            self.talk = TalkSource(self.microphone, self.rest, fps=self.fps)
        if mode == "camera" and self.camera is None:
            self.camera = CameraSource(self.rest)

    def set_mode(self, mode: str) -> None:
        """Switch the motion source (built here if :meth:`build_mode` has not run)."""
        self.build_mode(mode)
        self.mode = mode

    def sources_for(self, rest: np.ndarray) -> MotionSources:
        """The motion sources this stream has, rebuilt for a new portrait's rest pose (heavy for the
        camera and talk sources: safe to run off the event loop; nothing of the stream changes)."""
        return MotionSources(
            idle=IdleSource(rest, fps=self.fps),
            sliders=SliderSource(rest),
            file=FileSource(self.motion_file, rest) if self.motion_file is not None else None,
            talk=TalkSource(self.microphone, rest, fps=self.fps) if self.talk is not None else None,
            camera=CameraSource(rest) if self.camera is not None else None,
        )

    def set_source(
        self, source: PreparedSource, rest: np.ndarray, sources: MotionSources | None = None
    ) -> None:
        """A new portrait (upload): motion sources restart relative to its rest pose (``sources``
        from :meth:`sources_for`, built here when not given). All of it changes at once."""
        built = sources or self.sources_for(rest)
        old_camera = self.camera
        self.source, self.rest = source, rest
        self.idle, self.sliders, self.file = built.idle, built.sliders, built.file
        if built.talk is not None or self.talk is None:
            self.talk = built.talk
        self.camera = built.camera if built.camera is not None else old_camera
        if old_camera is not None and old_camera is not self.camera:
            old_camera.close()

    def _motion(self, time_s: float) -> np.ndarray:
        """The row of the current mode's source (idle while that source is not built)."""
        sources: dict[str, MotionSource | None] = {
            "idle": self.idle,
            "sliders": self.sliders,
            "camera": self.camera,
            "file": self.file,
            "talk": self.talk,
        }
        return (sources.get(self.mode) or self.idle).row(time_s)

    async def next_frame(self) -> tuple[np.ndarray, FrameStamps, int]:
        """Wait for the next frame slot, then render it: (rgb (H, W, 3) uint8, stamps, pts at 90 kHz)."""
        if self._start_ms is None:
            self._start_ms = now_ms()
            self._clock_started.set()
        due_ms = self._start_ms + 1000 * self._index / self.fps
        wait_ms = due_ms - now_ms()
        if wait_ms > 0:
            await asyncio.sleep(wait_ms / 1000)
        elif wait_ms < -1000 / self.fps:  # fell behind: skip slots instead of building a backlog
            caught_up = int((now_ms() - self._start_ms) * self.fps / 1000)
            self.stats.dropped += caught_up - self._index
            self._index = caught_up
        stamps = FrameStamps(index=self._index, capture_ms=now_ms())
        row = self._motion(self._index / self.fps)
        window = self.window.push(row)
        self.last_mouth_open = float(row[_JAW] - self.rest[_JAW])
        assert window is not None
        voice_at = self.talk.audio_position if self.mode == "talk" and self.talk is not None else None
        self.return_audio.mark_video(self._index, voice_at)
        stamps.mark("motion")
        frame = await self.service.render(self.source, window.copy())
        stamps.mark("render")
        lag_ms = max(0.0, now_ms() - (self._start_ms + 1000 * self._index / self.fps))
        self._send_lag_ms += 0.1 * (lag_ms - self._send_lag_ms)
        pts = round(self._index * 90_000 / self.fps)
        if len(self._pts_order) == self._pts_order.maxlen:  # forget the oldest frame's capture time
            self.capture_ms_by_pts.pop(self._pts_order[0], None)
        self._pts_order.append(pts)
        self.capture_ms_by_pts[pts] = stamps.capture_ms
        self._index += 1
        return frame, stamps, pts

    def frame_sent(self, index: int, send_ms: float) -> None:
        """Video frame ``index`` left the server at ``send_ms`` (for the A/V offset)."""
        self._video_sent_ms[index] = send_ms
        self._video_sent_ms.pop(index - _HISTORY, None)

    async def next_audio_frame(self) -> tuple[np.ndarray, int]:
        """The next 20 ms of returned audio on the video's clock: ((1, 320) int16, pts at 16 kHz).

        Audio frame ``m`` covers stream time ``m * 20 ms`` and leaves at its slot plus the video's
        smoothed send lag, so both tracks leave the same time after their content's slot and the RTCP
        sender reports (send time <-> RTP time) let the browser line them up.
        """
        await self._clock_started.wait()
        assert self._start_ms is not None
        due_ms = self._start_ms + RETURN_FRAME_MS * self._audio_index + self._send_lag_ms
        wait_ms = due_ms - now_ms()
        if wait_ms > 0:
            await asyncio.sleep(wait_ms / 1000)
        elif wait_ms < -5 * RETURN_FRAME_MS:  # the loop stalled: skip ahead instead of bursting
            self._audio_index = int((now_ms() - self._start_ms - self._send_lag_ms) / RETURN_FRAME_MS)
        index = self._audio_index
        self._audio_index += 1
        pcm, _ = self.return_audio.frame(index)
        time_ms = index * RETURN_FRAME_MS
        video_index = time_ms * self.fps / 1000
        if video_index == int(video_index) and int(video_index) in self._video_sent_ms:
            self.stats.av_offset_ms.append(now_ms() - self._video_sent_ms[int(video_index)])
        return pcm, index * self.return_audio.samples_per_frame

    def presented(self, pts: int, presented_ms: float) -> None:
        """A client reports when it showed frame ``pts`` (on the server clock)."""
        capture_ms = self.capture_ms_by_pts.get(pts)
        if capture_ms is not None and presented_ms >= capture_ms:
            self.stats.glass_to_glass_ms.append(presented_ms - capture_ms)

    def close(self) -> None:
        if self.camera is not None:
            self.camera.close()
