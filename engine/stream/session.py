"""One live avatar stream of ``pirender serve``: the motion sources of its modes, the one window rule,
the shared batching renderer and a dropping frame clock, assembled into the one
:class:`~pirender.engine.pipeline.LivePipeline` that the WebRTC track pulls; and the figures a stream
reports (per-stage times, render-slot and motion-to-photon latency, A/V offset)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..clock import now_ms, now_s
from ..motion.space import OPEN_SPACE, MotionSequence
from ..motion.window import StreamWindow, WindowSpec
from ..pipeline import (
    FrameClock,
    FrameSlot,
    LivePipeline,
    MotionSource,
    PipelineStats,
    RenderedFrame,
    TimedMotion,
)
from ..renderer.base import PreparedSource
from ..talk import TalkSource
from .audio_return import RETURN_FRAME_MS, ReturnAudio
from .batcher import FrameService
from .sources import CameraSource, FileSource, IdleSource, MicrophoneSource, SliderSource

_HISTORY = 600  # frames of latencies kept for stats
_JAW = OPEN_SPACE.index("jaw_open")


def _latencies() -> deque[float]:
    return deque(maxlen=_HISTORY)


@dataclass
class StreamStats(PipelineStats):
    """The pipeline's stats plus what only a stream to a viewer has: render-slot latency
    (``glass_to_glass_ms``: slot to presentation), ``motion_to_photon_ms`` (capture of what drove
    the frame to presentation) and the audio - video send offset."""

    glass_to_glass_ms: deque[float] = field(default_factory=_latencies)
    motion_to_photon_ms: deque[float] = field(default_factory=_latencies)
    av_offset_ms: deque[float] = field(default_factory=_latencies)  # audio - video send
    started_ms: float = field(default_factory=now_ms)

    def summary(self) -> dict[str, object]:
        elapsed_s = max((now_ms() - self.started_ms) / 1000, 1e-6)
        return {
            "fps": self.frames / elapsed_s,
            "dropped": self.dropped,
            "stage_ms": {k: float(np.median(v)) for k, v in self.stage_ms.items() if v},
            "glass_to_glass_ms": _percentiles(self.glass_to_glass_ms, (50, 90, 99)),
            "motion_to_photon_ms": _percentiles(self.motion_to_photon_ms, (50, 90, 99)),
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
    """Frames of one portrait at ``fps``, driven by the chosen motion source.

    The stream is itself the pipeline's motion source: each slot asks the current mode's source
    (idle while that source is not built). :meth:`next_frame` pulls one frame from the pipeline.
    """

    def __init__(
        self,
        service: FrameService,
        source: PreparedSource,
        rest: np.ndarray,
        *,
        fps: float = 25.0,
        motion_file: MotionSequence | None = None,
    ) -> None:
        self.service = service
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
        self.stats = StreamStats()
        self.clock = FrameClock(fps, drop_late=True)  # a late slot is skipped, never queued
        window = StreamWindow(OPEN_SPACE, WindowSpec(radius=0, lookahead_frames=0))
        self.pipeline = LivePipeline(self, window, service, source, clock=self.clock, stats=self.stats)
        #: per sent frame (by pts): its slot and the capture time of its motion (ms, engine.clock)
        self.capture_ms_by_pts: dict[int, float] = {}
        self.motion_ms_by_pts: dict[int, float] = {}
        self._last_motion_ms: float | None = None
        self._pts_order: deque[int] = deque(maxlen=_HISTORY)
        self._clock_started = asyncio.Event()  # the audio clock starts with the first video slot
        self._send_lag_ms = 0.0  # how long after its slot a video frame leaves (smoothed render time)
        self._video_sent_ms: dict[int, float] = {}  # video frame index -> send time, for the A/V offset
        self._audio_index = 0
        self.last_mouth_open = 0.0  # jaw_open of the latest frame above the portrait's rest

    @property
    def source(self) -> PreparedSource:
        """The portrait being rendered."""
        return self.pipeline.prepared

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
        self.pipeline.prepared, self.rest = source, rest
        self.idle, self.sliders, self.file = built.idle, built.sliders, built.file
        if built.talk is not None or self.talk is None:
            self.talk = built.talk
        self.camera = built.camera if built.camera is not None else old_camera
        if old_camera is not None and old_camera is not self.camera:
            old_camera.close()

    def motion(self, slot: FrameSlot) -> TimedMotion:
        """``pipeline.MotionSource``: the current mode's motion (idle while its source is not built)."""
        sources: dict[str, MotionSource | None] = {
            "idle": self.idle,
            "sliders": self.sliders,
            "camera": self.camera,
            "file": self.file,
            "talk": self.talk,
        }
        motion = (sources.get(self.mode) or self.idle).motion(slot)
        assert motion is not None  # a stream's sources never end
        self.last_mouth_open = float(motion.row[_JAW] - self.rest[_JAW])
        voice_at = self.talk.audio_position if self.mode == "talk" and self.talk is not None else None
        self.return_audio.mark_video(slot.index, voice_at)
        return motion

    async def next_frame(self) -> tuple[RenderedFrame, int]:
        """Wait for the next frame slot, then render it: (the frame, its pts at 90 kHz)."""
        self.clock.start()
        self._clock_started.set()
        frame = await self.pipeline.pull()
        assert frame is not None  # a stream's sources never end
        lag_ms = max(0.0, 1000 * (now_s() - frame.slot.due_s))
        self._send_lag_ms += 0.1 * (lag_ms - self._send_lag_ms)
        pts = round(frame.slot.index * 90_000 / self.fps)
        if len(self._pts_order) == self._pts_order.maxlen:  # forget the oldest frame's times
            oldest = self._pts_order[0]
            self.capture_ms_by_pts.pop(oldest, None)
            self.motion_ms_by_pts.pop(oldest, None)
        self._pts_order.append(pts)
        self.capture_ms_by_pts[pts] = 1000 * frame.slot.due_s
        self.motion_ms_by_pts[pts] = 1000 * frame.motion.captured_s
        return frame, pts

    def frame_sent(self, frame: RenderedFrame, send_ms: float) -> None:
        """``frame`` left the server at ``send_ms`` (its ``send`` stage; for the A/V offset)."""
        index = frame.slot.index
        self.stats.add("send", send_ms - 1000 * frame.rendered_s)
        self._video_sent_ms[index] = send_ms
        self._video_sent_ms.pop(index - _HISTORY, None)

    async def next_audio_frame(self) -> tuple[np.ndarray, int]:
        """The next 20 ms of returned audio on the video's clock: ((1, 320) int16, pts at 16 kHz).

        Audio frame ``m`` covers stream time ``m * 20 ms`` and leaves at its slot plus the video's
        smoothed send lag, so both tracks leave the same time after their content's slot and the RTCP
        sender reports (send time <-> RTP time) let the browser line them up.
        """
        await self._clock_started.wait()
        start_ms = 1000 * self.clock.start()
        due_ms = start_ms + RETURN_FRAME_MS * self._audio_index + self._send_lag_ms
        wait_ms = due_ms - now_ms()
        if wait_ms > 0:
            await asyncio.sleep(wait_ms / 1000)
        elif wait_ms < -5 * RETURN_FRAME_MS:  # the loop stalled: skip ahead instead of bursting
            self._audio_index = int((now_ms() - start_ms - self._send_lag_ms) / RETURN_FRAME_MS)
        index = self._audio_index
        self._audio_index += 1
        pcm, _ = self.return_audio.frame(index)
        time_ms = index * RETURN_FRAME_MS
        video_index = time_ms * self.fps / 1000
        if video_index == int(video_index) and int(video_index) in self._video_sent_ms:
            self.stats.av_offset_ms.append(now_ms() - self._video_sent_ms[int(video_index)])
        return pcm, index * self.return_audio.samples_per_frame

    def presented(self, pts: int, presented_ms: float) -> None:
        """A client reports when it showed frame ``pts`` (on the server clock): its render-slot
        latency and, for the first frame showing a new motion, its motion-to-photon latency."""
        capture_ms = self.capture_ms_by_pts.get(pts)
        if capture_ms is not None and presented_ms >= capture_ms:
            self.stats.glass_to_glass_ms.append(presented_ms - capture_ms)
        motion_ms = self.motion_ms_by_pts.get(pts)
        # the first frame showing each new motion counts (a slider held still is not latency)
        if motion_ms is not None and motion_ms != self._last_motion_ms and presented_ms >= motion_ms:
            self._last_motion_ms = motion_ms
            self.stats.motion_to_photon_ms.append(presented_ms - motion_ms)

    def close(self) -> None:
        if self.camera is not None:
            self.camera.close()
