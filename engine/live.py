"""A live loop without the network: camera frames -> tracker -> mesh renderer -> file and/or window.

Every frame is stamped with one monotonic clock at capture and after each stage, so the summary
gives real per-stage latencies (ms) and the achieved frame rate. The streaming server (WebRTC) runs
the same stages as an asyncio pipeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .image import tensor_to_images
from .motion.retarget import OpenRetargeter
from .motion.space import OPEN_SPACE
from .motion.window import StreamWindow, WindowSpec
from .renderer.base import PreparedSource
from .renderer.mesh.renderer import MeshRenderer
from .sinks.video_file import VideoFileWriter
from .sources.frames import open_frames
from .track.tracker import FaceTracker

_STAGES = ("track", "render", "sink")


@dataclass
class LiveStats:
    frames: int = 0
    frames_with_face: int = 0
    stage_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in _STAGES})
    total_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def describe(self) -> str:
        def median(values: list[float]) -> float:
            return float(np.median(values)) if values else float("nan")

        stages = ", ".join(f"{name} {median(v):.1f}" for name, v in self.stage_ms.items())
        fps = self.frames / self.wall_s if self.wall_s > 0 else float("inf")
        return (
            f"{self.frames} frames ({self.frames_with_face} with a face), {fps:.1f} frames/s; median ms "
            f"per frame: {stages}; capture to output {median(self.total_ms):.1f}"
        )


def run_live_loop(
    renderer: MeshRenderer,
    source: PreparedSource,
    frames_spec: str,
    *,
    out: Path | None = None,
    window: bool = False,
    max_frames: int | None = None,
    fps: float = 25.0,
) -> LiveStats:
    """Drive ``source`` with the face in ``frames_spec`` (camera:N, a video, an image folder)."""
    stats = LiveStats()
    tracker = FaceTracker()
    stream = StreamWindow(OPEN_SPACE, WindowSpec(radius=0, lookahead_frames=0))
    retarget: OpenRetargeter | None = None
    size = renderer.image_size_px
    writer = VideoFileWriter(out, fps=fps, size_px=(size, size)) if out else None
    cv2 = None
    if window:
        import cv2  # ships with mediapipe
    started = time.perf_counter()
    try:
        with open_frames(frames_spec, max_frames=max_frames) as frames:
            for frame in frames:
                captured = time.perf_counter()
                result = tracker.process(frame.rgb, frame.time_s)
                tracked = time.perf_counter()
                stats.frames += 1
                stats.frames_with_face += result.landmarks is not None
                if result.motion is None or tracker.neutral is None:
                    row = renderer.rest_row(source)
                else:
                    if retarget is None:
                        retarget = OpenRetargeter(tracker.neutral.rest_row(), renderer.rest_row(source))
                    row = retarget(result.motion.values)
                window_now = stream.push(row)
                rendered = renderer.render(window_now, source=source).frame
                image = tensor_to_images(rendered)[0]
                done_render = time.perf_counter()
                if writer is not None:
                    writer.write(image)
                if cv2 is not None:
                    cv2.imshow("pirender live", image[:, :, ::-1])
                    if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                        break
                finished = time.perf_counter()
                for name, (a, b) in zip(
                    _STAGES,
                    ((captured, tracked), (tracked, done_render), (done_render, finished)),
                    strict=True,
                ):
                    stats.stage_ms[name].append(1000 * (b - a))
                stats.total_ms.append(1000 * (finished - captured))
    finally:
        tracker.close()
        if writer is not None:
            writer.close()
        if cv2 is not None:
            cv2.destroyAllWindows()
    stats.wall_s = time.perf_counter() - started
    return stats
