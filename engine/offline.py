"""Offline rendering: a whole motion sequence -> a video file, in batches, with a progress bar."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import PirenderError
from .fileio import staged_output
from .image import tensor_to_images
from .motion.space import MotionSequence
from .motion.window import DEFAULT_RADIUS, build_windows
from .renderer.base import PreparedSource, Renderer, RenderMode
from .sinks.video_file import VideoFileWriter


@dataclass(frozen=True)
class RenderSummary:
    frames: int
    seconds: float
    path: Path

    @property
    def ms_per_frame(self) -> float:
        return 1000.0 * self.seconds / max(self.frames, 1)

    def describe(self) -> str:
        fps = self.frames / self.seconds if self.seconds > 0 else float("inf")
        return (
            f"wrote {self.frames} frames to {self.path} in {self.seconds:.1f} s "
            f"({self.ms_per_frame:.1f} ms per frame, {fps:.1f} frames/s)"
        )


def render_to_video(
    renderer: Renderer,
    source: PreparedSource,
    motion: MotionSequence,
    out_path: str | Path,
    *,
    batch_size: int = 1,
    radius: int = DEFAULT_RADIUS,
    mode: RenderMode | str | None = None,
    progress: bool = True,
    in_place: bool = False,
) -> RenderSummary:
    """Render every frame of ``motion`` of the portrait ``source`` (``renderer.prepare``) and write a
    video.

    The windows are built batch by batch (the border rule of ``motion.window``), so memory does not
    grow with the sequence length. The video is written to a hidden file beside ``out_path`` and
    moved into place when complete (:func:`~pirender.engine.fileio.staged_output`): if rendering
    fails, ``out_path`` is left as it was and nothing else remains; if it is interrupted
    (KeyboardInterrupt), the frames written so far are kept, playable, in ``<stem>.partial<suffix>``
    and the interrupt propagates. ``in_place=True`` writes ``out_path`` itself (for a caller that
    stages the file): the frames written so far then stay there, playable, whatever stops it.

    Raises:
        PirenderError: a bad batch size or radius, motion the renderer cannot use, or the video
            cannot be written.
    """
    if batch_size < 1:
        raise PirenderError(f"batch size must be >= 1, got {batch_size}")
    if 2 * radius + 1 < renderer.min_window_frames:
        raise PirenderError(
            f"window radius {radius} gives {2 * radius + 1} frames; the renderer needs "
            f">= {renderer.min_window_frames} (radius >= {(renderer.min_window_frames - 1) // 2})"
        )
    renderer.check_motion(motion)
    frame_count = len(motion)
    size_px = renderer.image_size_px
    windows = np.empty((batch_size, motion.space.width, 2 * radius + 1), dtype=np.float32)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        path = Path(out_path)
        if not in_place:
            path = stack.enter_context(staged_output(out_path, what="the frames written so far are"))
        writer = stack.enter_context(VideoFileWriter(path, fps=motion.fps, size_px=(size_px, size_px)))
        bar = stack.enter_context(
            tqdm(total=frame_count, unit="frame", disable=not progress, dynamic_ncols=True)
        )
        for first in range(0, frame_count, batch_size):
            centers = np.arange(first, min(first + batch_size, frame_count))
            batch = build_windows(motion.values, centers, radius, out=windows[: len(centers)])
            output = renderer.render(batch, source=source, mode=mode)
            writer.write(tensor_to_images(output.frame))
            bar.update(len(centers))
    return RenderSummary(frames=frame_count, seconds=time.perf_counter() - started, path=Path(out_path))
