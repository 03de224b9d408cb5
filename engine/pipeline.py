"""The live pipeline: one loop for every live use (``pirender live``, ``webcam``, ``talk --mic`` and
each stream of ``pirender serve``). A :class:`FrameClock` gives frame slots, a :class:`MotionSource`
gives the motion of each slot, the one window rule (``motion.window.StreamWindow``) turns it into
windows, the renderer draws them and every :class:`FrameSink` takes the frame with one verb.

Local uses call :meth:`LivePipeline.run` (blocking: sleeps until each slot); a server stream calls
:meth:`LivePipeline.pull` from its WebRTC track (``aiortc``'s ``MediaStreamTrack.recv``: awaits the
slot, renders off the event loop through the shared batching service). Pacing lives here (the clocks,
and :class:`RealTimePacer` for a file whose frames carry their own times), frame dropping in
:class:`FrameClock`, per-stage times and latencies in :class:`PipelineStats`: each exists once.

Every motion carries the time (on ``engine.clock``) at which what drove it was captured: the camera
frame it was tracked from, the audio its mouth shows, the frame slot of a scripted source. A frame's
latency from that capture to the viewer's screen is motion-to-photon; from its slot, render-slot.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .clock import now_s
from .image import tensor_to_images
from .motion.window import StreamWindow
from .renderer.base import PreparedSource, Renderer
from .stream.batcher import FrameService

#: frames of per-stage times a :class:`PipelineStats` keeps (a bounded history, never a growing list)
STATS_HISTORY = 3000


@dataclass(frozen=True)
class FrameSlot:
    """One output frame's slot: ``index`` (frames since the clock started, dropped slots counted),
    ``time_s`` its media time (s) and ``due_s`` when it is due on ``engine.clock`` (s)."""

    index: int
    time_s: float
    due_s: float


class FrameClock:
    """Frame slots at ``fps`` from the first call on, in real time.

    A slot that comes up more than one frame late (the loop fell behind) is skipped with every other
    late slot when ``drop_late`` (a live stream shows the newest frame; ``dropped`` counts them);
    otherwise late slots go at once, one after the other (a recording keeps every frame).

    Args:
        fps: frames per second (> 0).
        drop_late: skip late slots instead of catching up.
        clock: seconds of a monotonic clock (``engine.clock.now_s``).
    """

    def __init__(self, fps: float, *, drop_late: bool, clock: Callable[[], float] = now_s) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, not {fps}")
        self.fps, self.drop_late, self._clock = fps, drop_late, clock
        self.started_s: float | None = None
        self.dropped = 0
        self._index = 0

    def start(self) -> float:
        """Start the clock now if it has not started (the first slot is due at once); its start."""
        if self.started_s is None:
            self.started_s = self._clock()
        return self.started_s

    def next_slot(self) -> FrameSlot:
        now = self._clock()
        if self.started_s is None:
            self.started_s = now
        due = self.started_s + self._index / self.fps
        if self.drop_late and now - due > 1 / self.fps:
            caught_up = int((now - self.started_s) * self.fps)
            self.dropped += caught_up - self._index
            self._index = caught_up
            due = self.started_s + caught_up / self.fps
        slot = FrameSlot(self._index, self._index / self.fps, due)
        self._index += 1
        return slot


class SourcePaced:
    """The clock of a source that paces itself (a camera delivers frames in real time; a file into
    a virtual camera is held to its frames' times by its source): every slot is due at once and the
    source gives each frame's media time."""

    def __init__(self, clock: Callable[[], float] = now_s) -> None:
        self._clock = clock
        self._index = 0
        self.dropped = 0

    def next_slot(self) -> FrameSlot:
        slot = FrameSlot(self._index, math.nan, self._clock())
        self._index += 1
        return slot


class RealTimePacer:
    """Holds frames back until their time comes, so a file plays at its own rate (real time).

    The first frame sets the origin; frame ``t`` is then due ``t - t_first`` seconds later on
    ``clock``. A frame that is already late goes at once (nothing is dropped: a loop slower than the
    input falls behind).

    Args:
        clock: seconds of a monotonic clock (``engine.clock.now_s``).
        sleep: sleeps for the given seconds (``time.sleep``).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = now_s,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._origin_s: float | None = None

    def wait(self, time_s: float) -> float:
        """Sleep until the frame at ``time_s`` (seconds, the source's clock) is due; returns the sleep."""
        now_s = self._clock()
        if self._origin_s is None:
            self._origin_s = now_s - time_s
            return 0.0
        delay_s = self._origin_s + time_s - now_s
        if delay_s <= 0:
            return 0.0
        self._sleep(delay_s)
        return delay_s


class Clock(Protocol):
    """What a :class:`LivePipeline` takes as its clock (:class:`FrameClock`, :class:`SourcePaced`)."""

    dropped: int

    def next_slot(self) -> FrameSlot: ...


@dataclass(frozen=True)
class TimedMotion:
    """One frame's motion: ``row`` (width,) in the renderer's space, ``time_s`` the output frame's
    media time (s), ``captured_s`` the time (``engine.clock``, s) of the capture that drove it, and
    ``stage_ms`` the time its source spent after that capture (e.g. ``{"track": 6.1}``)."""

    row: np.ndarray
    time_s: float
    captured_s: float
    stage_ms: dict[str, float] = field(default_factory=dict)


class MotionSource(Protocol):
    """Timestamped motion: the motion to show in frame ``slot``, or None when the input has ended.
    Sources with live input (a camera, a microphone) give their newest motion; a source that paces
    itself (:class:`SourcePaced`) may block until its next input."""

    def motion(self, slot: FrameSlot) -> TimedMotion | None: ...


class FrameSink(Protocol):
    """Takes the rendered frames: ``send`` one (H, W, 3) uint8 frame shown at media time ``time_s``;
    False asks the pipeline to stop (a closed window)."""

    def send(self, rgb: np.ndarray, time_s: float) -> bool: ...


@dataclass(frozen=True)
class RenderedFrame:
    """One frame out of the pipeline: ``rgb`` (H, W, 3) uint8, its ``slot``, the ``motion`` it shows,
    the time its render finished (``rendered_s``, ``engine.clock``) and its stage times (ms)."""

    rgb: np.ndarray
    slot: FrameSlot
    motion: TimedMotion
    rendered_s: float
    stage_ms: dict[str, float]


def history() -> deque[float]:
    """An empty bounded series of per-frame figures (the newest :data:`STATS_HISTORY`)."""
    return deque(maxlen=STATS_HISTORY)


@dataclass
class PipelineStats:
    """Per-stage times (ms per frame: the source's own stages such as ``track``, or else ``motion``,
    from the slot, or the capture when later, to the motion ready; ``render``; ``sink``), capture-to-output
    times (ms), frames, dropped slots and the wall time of a run; the newest
    :data:`STATS_HISTORY` frames of each series are kept."""

    frames: int = 0
    dropped: int = 0
    stage_ms: dict[str, deque[float]] = field(default_factory=dict)
    total_ms: deque[float] = field(default_factory=history)
    wall_s: float = 0.0

    def add(self, stage: str, ms: float) -> None:
        self.stage_ms.setdefault(stage, history()).append(ms)

    def add_frame(self, frame: RenderedFrame, finished_s: float) -> None:
        """A frame that reached its sinks at ``finished_s`` (``engine.clock``)."""
        self.frames += 1
        for stage, ms in frame.stage_ms.items():
            self.add(stage, ms)
        self.total_ms.append(1000 * (finished_s - frame.motion.captured_s))


class LivePipeline:
    """``clock`` -> ``source`` -> ``window`` -> ``renderer`` (of the portrait ``prepared``) -> every sink.

    ``renderer`` is a :class:`Renderer` (run here, or in a thread by :meth:`pull`) or the server's
    shared render stage, a ``stream.batcher.FrameService`` (batched in this process or on a Ray
    cluster; for :meth:`pull` only). ``prepared`` may be replaced
    between frames (a new portrait).
    """

    def __init__(
        self,
        source: MotionSource,
        window: StreamWindow,
        renderer: Renderer | FrameService,
        prepared: PreparedSource,
        sinks: Sequence[FrameSink] = (),
        *,
        clock: Clock | None = None,
        stats: PipelineStats | None = None,
    ) -> None:
        self.source, self.window, self.renderer, self.prepared = source, window, renderer, prepared
        self.sinks = list(sinks)
        self.clock: Clock = clock or SourcePaced()
        self.stats = stats or PipelineStats()

    def step(self) -> bool:
        """Run one frame through (sleeping until its slot); False when the source has ended or a
        sink asked to stop."""
        slot = self.clock.next_slot()
        wait_s = slot.due_s - now_s()
        if wait_s > 0:
            time.sleep(wait_s)
        asked = self._ask(slot)
        if asked is None:
            return False
        motion, started, motion_ms = asked
        window = self.window.push(motion.row)
        if window is None:  # a window with lookahead still filling: nothing to show yet
            return True
        if not isinstance(self.renderer, Renderer):
            raise TypeError("LivePipeline.step renders with a Renderer; a FrameService needs pull()")
        rgb = self._render(self.renderer, window)
        return self._send(self._frame(rgb, slot, motion, started, motion_ms))

    def run(self) -> PipelineStats:
        """Steps until the source ends or a sink asks to stop (Ctrl-C propagates to the caller)."""
        started = now_s()
        try:
            while self.step():
                pass
        finally:
            self.stats.wall_s = now_s() - started
            self.stats.dropped = self.clock.dropped
        return self.stats

    async def pull(self) -> RenderedFrame | None:
        """The next frame for a consumer that pulls (a WebRTC track): awaits its slot, asks the
        source, renders off the event loop; the sinks get it too. None when the source has ended."""
        while True:
            slot = self.clock.next_slot()
            self.stats.dropped = self.clock.dropped
            wait_s = slot.due_s - now_s()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            asked = self._ask(slot)
            if asked is None:
                return None
            motion, started, motion_ms = asked
            window = self.window.push(motion.row)
            if window is None:
                continue
            if isinstance(self.renderer, Renderer):
                loop = asyncio.get_running_loop()
                rgb = await loop.run_in_executor(None, self._render, self.renderer, window.copy())
            else:
                rgb = await self.renderer.render(self.prepared, window.copy(), stream=id(self))
            frame = self._frame(rgb, slot, motion, started, motion_ms)
            self._send(frame)
            return frame

    def _ask(self, slot: FrameSlot) -> tuple[TimedMotion, float, float] | None:
        """The source's motion for ``slot`` (asked once its wait is over), the time it was ready
        and the ``motion`` stage (ms: from the slot, or the capture when later, to ready); None when
        the source has ended."""
        woke = now_s()
        motion = self.source.motion(slot)
        if motion is None:
            return None
        ready = now_s()
        return motion, ready, 1000 * (ready - max(woke, motion.captured_s))

    def _render(self, renderer: Renderer, window: np.ndarray) -> np.ndarray:
        rendered = renderer.render(window, source=self.prepared).frame
        return tensor_to_images(rendered)[0]

    def _frame(
        self, rgb: np.ndarray, slot: FrameSlot, motion: TimedMotion, started: float, motion_ms: float
    ) -> RenderedFrame:
        rendered = now_s()
        # a source that times its own work (``track``, ``talk``) has its stage; else ``motion`` is it
        stage_ms = dict(motion.stage_ms) if motion.stage_ms else {"motion": motion_ms}
        stage_ms["render"] = 1000 * (rendered - started)
        return RenderedFrame(rgb, slot, motion, rendered, stage_ms)

    def _send(self, frame: RenderedFrame) -> bool:
        going = True
        for sink in self.sinks:
            going = sink.send(frame.rgb, frame.motion.time_s) and going
        finished = now_s()
        if self.sinks:
            frame.stage_ms["sink"] = 1000 * (finished - frame.rendered_s)
        self.stats.add_frame(frame, finished)
        return going
