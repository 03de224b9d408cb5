"""The local live pipeline: one loop for every live use on this machine (``pirender live``,
``webcam`` and ``talk --mic``): a :class:`MotionSource` gives timestamped motion, the one window rule
(``motion.window.StreamWindow``) turns it into windows, the renderer draws them and every
:class:`FrameSink` takes the frame with one verb. Pacing belongs to the source (a camera delivers
frames in real time, a file into a virtual camera is held to its frames' times, an audio-driven
source waits for its frame slot), so the loop itself never sleeps.

Every motion carries the monotonic time (``time.perf_counter``, s) at which what drove it was
captured (the camera frame read, the frame slot of an audio-driven source) and the stages its source
spent on it, so the stats give real per-stage latencies and capture-to-output times.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .image import tensor_to_images
from .motion.window import StreamWindow
from .renderer.base import PreparedSource, Renderer


@dataclass(frozen=True)
class TimedMotion:
    """One frame's motion: ``row`` (width,) in the renderer's space, ``time_s`` the output frame's
    media time (s), ``captured_s`` the ``time.perf_counter()`` of the capture that drove it, and
    ``stage_ms`` the time its source spent after that capture (e.g. ``{"track": 6.1}``)."""

    row: np.ndarray
    time_s: float
    captured_s: float
    stage_ms: dict[str, float] = field(default_factory=dict)


class MotionSource(Protocol):
    """Timestamped motion, one frame at a time; ``next`` blocks until the next frame is due (its own
    pacing) and returns None when the input has ended."""

    def next(self) -> TimedMotion | None: ...


class FrameSink(Protocol):
    """Takes the rendered frames: ``send`` one (H, W, 3) uint8 frame shown at media time ``time_s``;
    False asks the pipeline to stop (a closed window)."""

    def send(self, rgb: np.ndarray, time_s: float) -> bool: ...


@dataclass
class PipelineStats:
    """Per-stage times (ms per frame: the source's stages, ``render``, ``sink``), capture-to-output
    times (ms) and the wall time of a run."""

    frames: int = 0
    stage_ms: dict[str, list[float]] = field(default_factory=dict)
    total_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def add(self, stage: str, ms: float) -> None:
        self.stage_ms.setdefault(stage, []).append(ms)


class LivePipeline:
    """``source`` -> ``window`` -> ``renderer`` (of the portrait ``prepared``) -> every sink."""

    def __init__(
        self,
        source: MotionSource,
        window: StreamWindow,
        renderer: Renderer,
        prepared: PreparedSource,
        sinks: Sequence[FrameSink],
        *,
        stats: PipelineStats | None = None,
    ) -> None:
        self.source, self.window, self.renderer, self.prepared = source, window, renderer, prepared
        self.sinks = list(sinks)
        self.stats = stats or PipelineStats()

    def step(self) -> bool:
        """Run one frame through; False when the source has ended or a sink asked to stop."""
        motion = self.source.next()
        if motion is None:
            return False
        started = time.perf_counter()
        window = self.window.push(motion.row)
        if window is None:  # a window with lookahead still filling: nothing to show yet
            return True
        rendered = self.renderer.render(window, source=self.prepared).frame
        rgb = tensor_to_images(rendered)[0]
        done_render = time.perf_counter()
        going = True
        for sink in self.sinks:
            going = sink.send(rgb, motion.time_s) and going
        finished = time.perf_counter()
        stats = self.stats
        stats.frames += 1
        for stage, ms in motion.stage_ms.items():
            stats.add(stage, ms)
        stats.add("render", 1000 * (done_render - started))
        stats.add("sink", 1000 * (finished - done_render))
        stats.total_ms.append(1000 * (finished - motion.captured_s))
        return going

    def run(self) -> PipelineStats:
        """Steps until the source ends or a sink asks to stop (Ctrl-C propagates to the caller)."""
        started = time.perf_counter()
        try:
            while self.step():
                pass
        finally:
            self.stats.wall_s = time.perf_counter() - started
        return self.stats
