"""A live loop without the network: camera frames -> tracker -> mesh renderer -> file, window and/or
a virtual webcam (:func:`run_webcam`: the avatar as a camera that video-call apps can pick).

Every frame is stamped with one monotonic clock at capture and after each stage, so the summary
gives real per-stage latencies (ms) and the achieved frame rate. The streaming server (WebRTC) runs
the same stages as an asyncio pipeline.

Time: the output keeps the input's real time. A recording is written with each input frame's time
(a 30 frames/s clip gives a 30 frames/s file of the same duration, a variable-rate clip keeps its
times, a camera its measured rate), and a virtual camera fed from a file gets each frame at its time
(:class:`RealTimePacer`) and announces the input's rate.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .clock import now_s
from .errors import PirenderError
from .fileio import staged_output
from .image import SourceImage, load_source_image
from .motion.retarget import FollowingRetargeter
from .motion.space import OPEN_SPACE
from .motion.window import StreamWindow, WindowSpec
from .pipeline import FrameSink, FrameSlot, LivePipeline, PipelineStats, RealTimePacer, TimedMotion, history
from .renderer.base import PreparedSource, Renderer
from .sinks.preview import PreviewWindow
from .sinks.video_file import VideoFileWriter
from .sinks.virtual_cam import VirtualCamera
from .sources.frames import FALLBACK_FPS, CameraFrames, FrameSource, open_frames
from .track.crop import crop_to_face
from .track.tracker import FaceTracker, TrackerConfig

_STAGES = ("track", "render", "sink")


@dataclass
class LiveStats(PipelineStats):
    """The live loop's :class:`~pirender.engine.pipeline.PipelineStats` (stages ``track``, ``render``,
    ``sink``) and what the tracker saw."""

    stage_ms: dict[str, deque[float]] = field(default_factory=lambda: {s: history() for s in _STAGES})
    frames_with_face: int = 0
    cuts: int = 0  # shot changes the tracker found
    segments: int = 0  # people acquired (one per cut or change of person)

    def describe(self) -> str:
        def median(values: Sequence[float]) -> float:
            return float(np.median(values)) if values else float("nan")

        stages = ", ".join(f"{name} {median(v):.1f}" for name, v in self.stage_ms.items())
        fps = self.frames / self.wall_s if self.wall_s > 0 else float("inf")
        followed = f"; {self.cuts} shot change(s), {self.segments} person segment(s)" if self.cuts else ""
        return (
            f"{self.frames} frames ({self.frames_with_face} with a face{followed}), {fps:.1f} frames/s; "
            f"median ms per frame: {stages}; capture to output {median(self.total_ms):.1f}"
        )


class TrackedFrames:
    """The face in ``frames`` as a motion source (``pipeline.MotionSource``): each frame read (held
    back to its time by ``pacer``, when given; the wait is not latency), tracked, retargeted onto the
    portrait's rest pose ``rest`` (after a shot change or a change of person, relative to the new
    neutral); a frame without the face shows ``rest``. ``frames_with_face`` counts the frames where
    the face was found."""

    def __init__(
        self,
        frames: FrameSource,
        tracker: FaceTracker,
        rest: np.ndarray,
        *,
        pacer: RealTimePacer | None = None,
    ) -> None:
        self._frames = iter(frames)
        self.tracker, self._rest, self._pacer = tracker, rest, pacer
        self._retarget = FollowingRetargeter(rest)
        self.frames_with_face = 0

    def motion(self, slot: FrameSlot) -> TimedMotion | None:
        del slot  # paced by its frames (pipeline.SourcePaced): each call reads the next one
        frame = next(self._frames, None)
        if frame is None:
            return None
        if self._pacer is not None:
            self._pacer.wait(frame.time_s)
        captured = now_s()
        result = self.tracker.process(frame.rgb, frame.time_s)
        self.frames_with_face += result.landmarks is not None
        moved = self._retarget(
            None if result.motion is None else result.motion.values, self.tracker.rest_row()
        )
        row = self._rest if moved is None else moved
        track_ms = 1000 * (now_s() - captured)
        return TimedMotion(row, frame.time_s, captured, {"track": track_ms})


def run_live_loop(
    renderer: Renderer,
    source: PreparedSource,
    frames: FrameSource,
    *,
    out: Path | None = None,
    window: bool = False,
    virtual_camera: VirtualCamera | None = None,
    pacer: RealTimePacer | None = None,
    tracker_config: TrackerConfig | None = None,
) -> LiveStats:
    """Drive ``source`` with the face in ``frames`` (a camera, a video, an image folder: see
    :func:`~pirender.engine.sources.frames.open_frames`; opened and closed by the caller).

    Each rendered frame goes to ``out`` (a video file written with the input frames' times: the
    input's real rate and duration), a window (``window``) and ``virtual_camera`` (opened and closed
    by the caller; its size must be the renderer's), all timed together as the "sink" stage. With a
    ``pacer`` each input frame is held back until its time (a file into a virtual camera; a live
    camera paces itself): the wait comes before the capture stamp, so it is not latency.
    ``tracker_config`` sets the tracker's rules (e.g. ``neutral_frame``). After a shot change or a
    change of person the driver's rest pose is the new neutral's; the motion held meanwhile stays
    retargeted from the previous one.
    """
    if renderer.space != OPEN_SPACE:
        raise PirenderError("the live loop drives renderers of the open space (mesh, neural)")
    size = renderer.image_size_px
    if virtual_camera is not None and virtual_camera.size_px != (size, size):
        width_px, height_px = virtual_camera.size_px
        raise PirenderError(
            f"virtual camera is {width_px}x{height_px} px but the renderer makes {size}x{size} px frames"
        )
    stats = LiveStats()
    tracker = FaceTracker(tracker_config)
    source_motion = TrackedFrames(frames, tracker, renderer.rest_row(source), pacer=pacer)
    stream = StreamWindow(OPEN_SPACE, WindowSpec(radius=0, lookahead_frames=0))
    sinks: list[FrameSink] = []
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.callback(_finish_loop, stats, source_motion)
        if out:
            # the recording is made beside `out` and moved into place when the loop ends, also by
            # Ctrl-C (the usual end of a camera recording); after an error it is kept as
            # <stem>.partial<suffix> (a live moment cannot be recorded again), `out` left as it was
            staged = stack.enter_context(
                staged_output(out, on_interrupt="finish", on_error="partial", what="the recording is")
            )
            nominal_fps = frames.fps or FALLBACK_FPS  # the stream's declared rate; times come per frame
            sinks.append(
                stack.enter_context(
                    VideoFileWriter(staged, fps=nominal_fps, size_px=(size, size), timestamps=True)
                )
            )
        if virtual_camera is not None:
            sinks.append(virtual_camera)
        if window:
            sinks.append(stack.enter_context(contextlib.closing(PreviewWindow("pirender live"))))
        LivePipeline(source_motion, stream, renderer, source, sinks, stats=stats).run()
    stats.wall_s = time.perf_counter() - started
    return stats


def _finish_loop(stats: LiveStats, source: TrackedFrames) -> None:
    stats.frames_with_face = source.frames_with_face
    stats.cuts, stats.segments = source.tracker.cuts, source.tracker.segment + 1
    source.tracker.close()


def run_webcam(
    source_path: str | os.PathLike[str],
    *,
    camera: str = "camera:0",
    size_px: int = 256,
    renderer: str = "mesh",
    preview: Path | None = None,
    virtual: bool = True,
    max_frames: int | None = None,
    face_crop: bool = False,
    virtual_backend: str | None = None,
    virtual_device: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> LiveStats:
    """The portrait at ``source_path``, driven by the face in ``camera``, as a virtual webcam.

    Args:
        source_path: the source portrait (PNG/JPEG/WebP...).
        camera: where the driving face comes from: ``camera:N``, a video file or an image folder
            (as :func:`~pirender.engine.sources.frames.open_frames` reads it).
        size_px: side of the square avatar in pixels (the mesh renderer's size: 256 or 512).
        renderer: ``mesh`` or ``neural`` (:func:`~pirender.engine.api.open_space_renderer`).
        preview: also record the avatar to this video file (.mp4, .mkv ...), at the input frames'
            times (the input's real rate and duration).
        virtual: send the avatar to a virtual webcam (pyvirtualcam), announced at the input's frame
            rate (:data:`~pirender.engine.sources.frames.FALLBACK_FPS` where it declares none); a
            video or image input is sent at its frames' times (:class:`RealTimePacer`). The input
            and the virtual camera are opened before the portrait, so a missing input or backend
            fails at once with what to do.
        max_frames: stop after this many input frames (``None``: until the input ends).
        face_crop: frame the portrait around its face first (VoxCeleb-style crop).
        virtual_backend: pyvirtualcam backend name (``None``: any of this system's).
        virtual_device: virtual camera device (Linux ``/dev/videoN``; ``None``: the first free one).
        announce: called once with a line saying where the frames go (e.g. ``print``), as soon as
            the virtual camera is open: the loop runs until the input ends or Ctrl+C.

    Returns:
        The loop's :class:`LiveStats` (per-stage latencies; the virtual camera's send is in "sink").

    Raises:
        PirenderError: nowhere to send the frames (``virtual=False`` without ``preview``), no virtual
            camera (pyvirtualcam missing, no v4l2loopback / OBS camera), an unusable portrait (no
            face), input or preview file.
    """
    if not virtual and preview is None:
        raise PirenderError(
            "webcam: nowhere to send the avatar: turn the virtual camera on or give a preview file"
        )
    from .api import open_space_renderer

    avatar = open_space_renderer(renderer, image_size_px=size_px)
    with contextlib.ExitStack() as stack:
        stack.enter_context(avatar)  # its face finder's graphs are released at the end
        frames = stack.enter_context(open_frames(camera, max_frames=max_frames))
        virtual_camera = None
        pacer = None
        if virtual:
            virtual_camera = stack.enter_context(
                VirtualCamera(
                    size_px=(size_px, size_px),
                    fps=frames.fps or FALLBACK_FPS,
                    backend=virtual_backend,
                    device=virtual_device,
                )
            )
            if announce is not None:
                announce(f"sending to {virtual_camera.describe()}")
            # a live camera delivers frames in real time; a file is held to its frames' times
            pacer = None if isinstance(frames, CameraFrames) else RealTimePacer()
        portrait = _load_portrait(source_path, size_px=size_px, face_crop=face_crop)
        prepared = avatar.prepare(portrait)
        stats = run_live_loop(
            avatar,
            prepared,
            frames,
            out=Path(preview) if preview is not None else None,
            virtual_camera=virtual_camera,
            pacer=pacer,
        )
    return stats


def _load_portrait(source_path: str | os.PathLike[str], *, size_px: int, face_crop: bool) -> SourceImage:
    """The source portrait at ``size_px``, framed around its face with ``face_crop``."""
    if face_crop:
        return crop_to_face(source_path, size_px=size_px)
    return load_source_image(source_path, size_px=size_px)
