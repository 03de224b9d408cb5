"""A live loop without the network: camera frames -> tracker -> mesh renderer -> file, window and/or
a virtual webcam (:func:`run_webcam`: the avatar as a camera that video-call apps can pick).

Every frame is stamped with one monotonic clock at capture and after each stage, so the summary
gives real per-stage latencies (ms) and the achieved frame rate. The streaming server (WebRTC) runs
the same stages as an asyncio pipeline.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import PirenderError
from .image import SourceImage, load_source_image, tensor_to_images
from .motion.retarget import OpenRetargeter
from .motion.space import OPEN_SPACE
from .motion.window import StreamWindow, WindowSpec
from .renderer.base import PreparedSource
from .renderer.mesh.renderer import MeshRenderer
from .sinks.preview import PreviewWindow
from .sinks.video_file import VideoFileWriter
from .sinks.virtual_cam import VirtualCamera
from .sources.frames import CameraFrames, open_frames
from .track.crop import crop_to_face
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
    virtual_camera: VirtualCamera | None = None,
) -> LiveStats:
    """Drive ``source`` with the face in ``frames_spec`` (camera:N, a video, an image folder).

    Each rendered frame goes to ``out`` (a video file written at ``fps``), a window (``window``)
    and ``virtual_camera`` (opened and closed by the caller; its size must be the renderer's), all
    timed together as the "sink" stage. With a video or image input the virtual camera's pacing
    (``VirtualCamera(pace=True)``) holds its frame rate; a live camera paces itself.
    """
    size = renderer.image_size_px
    if virtual_camera is not None and virtual_camera.size_px != (size, size):
        width_px, height_px = virtual_camera.size_px
        raise PirenderError(
            f"virtual camera is {width_px}x{height_px} px but the renderer makes {size}x{size} px frames"
        )
    stats = LiveStats()
    tracker = FaceTracker()
    stream = StreamWindow(OPEN_SPACE, WindowSpec(radius=0, lookahead_frames=0))
    retarget: OpenRetargeter | None = None
    writer = VideoFileWriter(out, fps=fps, size_px=(size, size)) if out else None
    preview = PreviewWindow("pirender live") if window else None
    started = time.perf_counter()
    try:
        with open_frames(frames_spec, max_frames=max_frames) as frames:
            # a live camera delivers frames in real time; a file is paced by the virtual camera
            pacer = None if isinstance(frames, CameraFrames) else virtual_camera
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
                if virtual_camera is not None:
                    virtual_camera.send(image)
                if preview is not None and not preview.show(image):
                    break
                finished = time.perf_counter()
                for name, (a, b) in zip(
                    _STAGES,
                    ((captured, tracked), (tracked, done_render), (done_render, finished)),
                    strict=True,
                ):
                    stats.stage_ms[name].append(1000 * (b - a))
                stats.total_ms.append(1000 * (finished - captured))
                if pacer is not None:
                    pacer.wait_for_next_frame()  # after the stamps: waiting is not latency
    finally:
        tracker.close()
        if writer is not None:
            writer.close()
        if preview is not None:
            preview.close()
    stats.wall_s = time.perf_counter() - started
    return stats


def run_webcam(
    source_path: str | os.PathLike[str],
    *,
    camera: str = "camera:0",
    size_px: int = 256,
    preview: Path | None = None,
    virtual: bool = True,
    max_frames: int | None = None,
    face_crop: bool = False,
    fps: float = 25.0,
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
        preview: also record the avatar to this video file (.mp4, .mkv ...).
        virtual: send the avatar to a virtual webcam (pyvirtualcam). The camera is opened before the
            portrait and the input, so a missing backend fails at once with what to install.
        max_frames: stop after this many input frames (``None``: until the input ends).
        face_crop: frame the portrait around its face first (VoxCeleb-style crop).
        fps: frame rate of the virtual camera and the preview, in frames per second.
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
    renderer = MeshRenderer(image_size_px=size_px)
    with contextlib.ExitStack() as stack:
        virtual_camera = None
        if virtual:
            virtual_camera = stack.enter_context(
                VirtualCamera(
                    size_px=(size_px, size_px),
                    fps=fps,
                    backend=virtual_backend,
                    device=virtual_device,
                    pace=True,
                )
            )
            if announce is not None:
                announce(f"sending to {virtual_camera.describe()}")
        portrait = _load_portrait(source_path, size_px=size_px, face_crop=face_crop)
        prepared = renderer.prepare(portrait)
        stats = run_live_loop(
            renderer,
            prepared,
            camera,
            out=Path(preview) if preview is not None else None,
            max_frames=max_frames,
            fps=fps,
            virtual_camera=virtual_camera,
        )
    return stats


def _load_portrait(source_path: str | os.PathLike[str], *, size_px: int, face_crop: bool) -> SourceImage:
    """The source portrait at ``size_px``, framed around its face with ``face_crop``."""
    if face_crop:
        return crop_to_face(source_path, size_px=size_px)
    return load_source_image(source_path, size_px=size_px)
