"""Camera, video-file and image-sequence frames for the face tracker.

Every source is a :class:`FrameSource`: iterating it yields :class:`Frame` objects, each holding
(H, W, 3) uint8 RGB pixels, a time in seconds from the source's start and a 0-based index. Sources
are context managers (``with open_frames("camera") as frames: ...``) and release their file or device
on :meth:`FrameSource.close`.

* :class:`VideoFileFrames`: any file FFmpeg (PyAV) decodes; times from the presentation timestamps,
  pictures turned the way players show them (the container's rotation / display matrix applied).
* :class:`ImageSequenceFrames`: image files in a folder or matching a glob, in natural sorted order;
  times at a fixed frame rate.
* :class:`CameraFrames`: a webcam through OpenCV; times from ``time.monotonic()`` since opening.
* :func:`open_frames`: picks one of the above from a command-line style string.

Every error caused by the input (missing file, not a video, corrupt data, unreadable image, camera
that cannot be opened) is a :class:`~pirender.engine.errors.PirenderError` with a one-line message
that names the file, frame or device.
"""

from __future__ import annotations

import glob
import math
import numbers
import os
import re
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self, cast

import av
import numpy as np
from av.sidedata.sidedata import SideDataContainer
from av.sidedata.sidedata import Type as SideDataType

from ..errors import PirenderError, describe_value, exception_text
from ..image import read_image
from ..motion.timing import measure_rate

__all__ = [
    "IMAGE_EXTENSIONS",
    "CameraFrames",
    "Frame",
    "FrameSource",
    "ImageSequenceFrames",
    "VideoFileFrames",
    "open_frames",
]

#: File extensions an image sequence is made of (lower case, with the dot; matched case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

#: Frame rate assumed for the times of a video whose stream declares none, in frames per second.
FALLBACK_FPS = 25.0

# What the error for an unusable `open_frames` spec lists.
_ACCEPTED_SPECS = (
    "use 'camera', 'camera:N' or N for camera number N, a video file, a folder of images "
    "or a glob such as 'frames/*.png'"
)

# "camera", "camera:N" or a bare non-negative integer N (case-insensitive, surrounding blanks ignored).
_CAMERA_SPEC = re.compile(r"camera(?::(\d+))?|(\d+)", re.IGNORECASE)

# Characters that make a string a glob pattern (as `glob` understands it).
_GLOB_CHARACTERS = frozenset("*?[")

#: Packets whose timestamps give a video's frame rate (the first ones: about 10 s at 30 frames/s).
RATE_PROBE_PACKETS = 300

# Frames a decoder may hold back for reordering (H.264/HEVC allow up to 16).
_REORDER_PACKETS = 16

# A display-matrix entry this small relative to the largest one counts as zero (right angles).
_MATRIX_ZERO = 1e-3

# A video that ends more than this many frames before the end its index declares is reported as
# probably cut off (a warning: the frames decoded so far are good).
_TRUNCATION_TOLERANCE_FRAMES = 2

# FFmpeg demuxers that open plain text as a "video" (the tty demuxer renders .txt/.nfo files).
_TEXT_FORMATS = frozenset({"tty"})


@dataclass(frozen=True)
class Frame:
    """One picture of a frame source.

    Attributes:
        rgb: (H, W, 3) uint8 RGB pixels, C-contiguous.
        time_s: capture (camera) or presentation (video, image sequence) time in seconds from the
            source's start; strictly increasing along a source.
        index: 0-based position of the frame in its source.
    """

    rgb: np.ndarray
    time_s: float
    index: int

    def __post_init__(self) -> None:
        rgb = self.rgb
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise PirenderError(f"Frame.rgb must be an (H, W, 3) uint8 array, got {describe_value(rgb)}")

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) of ``rgb`` in pixels."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


class FrameSource(ABC):
    """Base of every frame source: an iterable of :class:`Frame` and a context manager.

    Attributes:
        fps: frame rate in frames per second (the average rate for a variable-rate source), or
            ``None`` where the source does not say.
        variable_rate: True where the frames do not come at a constant rate (a variable-rate video,
            a live camera): their real times are ``time_s``, not ``index / fps``. Consumers that need
            a constant rate resample by ``time_s``
            (:func:`~pirender.engine.motion.timing.resample_uniform`); writers take the times.
        size_px: (width, height) of the frames in pixels, or ``None`` where it is not known before
            the first frame.
        label: what error messages and warnings call the source (e.g. ``"video clip.mp4"``).
    """

    fps: float | None
    variable_rate: bool = False
    size_px: tuple[int, int] | None
    label: str

    def __iter__(self) -> Iterator[Frame]:
        """Yield the frames in order; raises ``PirenderError`` once the source is closed."""
        if self.closed:
            raise PirenderError(f"{self.label}: the frame source is closed")
        return self._frames()

    @property
    @abstractmethod
    def closed(self) -> bool:
        """True once :meth:`close` has run."""

    @abstractmethod
    def _frames(self) -> Iterator[Frame]:
        """The frames of an open source, in order."""

    @abstractmethod
    def close(self) -> None:
        """Release the file or device; safe to call more than once. Running iterations stop."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------
# video files


class VideoFileFrames(FrameSource):
    """Frames of a video file, decoded with PyAV (FFmpeg) and converted to RGB (``rgb24``).

    Args:
        path: the video file (any container/codec this FFmpeg build decodes: mp4, mov, mkv, avi, webm ...).
        max_frames: stop after this many frames (``None``: all of them).

    Behaviour:
        * The first video stream is used (cover-art pictures of audio files do not count as video).
        * ``time_s`` is the frame's presentation timestamp (pts x stream time base) minus the stream's
          start time, in seconds; where a frame has no pts it is ``index / fps``. A time that would not
          increase (broken timestamps) becomes the previous time plus one frame period, so times are
          strictly increasing. Times are real time whatever the rate: a variable-rate file keeps
          its irregular times.
        * ``fps`` is the real average rate, measured from the timestamps of the first
          :data:`RATE_PROBE_PACKETS` packets and checked against what the stream declares
          (:func:`~pirender.engine.motion.timing.measure_rate`): the declared average rate where the
          two agree within 1 % (exact rates such as 30000/1001 are kept), the measured one where the
          file declares none or a bogus one (browser WebM: no rate, or 1000/s from its 1 ms time base,
          with irregular frame durations). ``None`` only where neither exists (a one-frame file
          without a rate; times then use :data:`FALLBACK_FPS`). ``variable_rate`` says whether those
          timestamps are irregular.
        * Pictures are turned the way players show them: the container's display matrix (a phone
          video stored sideways with a rotation of 90/180/270 degrees, possibly mirrored) is applied
          when decoding, and ``size_px`` is the displayed (width, height). ``rotation_deg`` and
          ``mirrored`` say what was applied: a counter-clockwise rotation (0, 90, 180 or -90
          degrees), then a left-right mirror or not. A rotation that is not a multiple of 90 degrees
          is ignored with a ``UserWarning`` (frames come as stored).
        * An empty video (a video stream with 0 frames) yields nothing and raises nothing: the caller
          decides how to report it.
        * A file cut off at the end (an interrupted copy whose index survived) often decodes cleanly up
          to the cut: the iteration then ends with a ``UserWarning`` that gives the decoded and the
          declared frame counts, and no exception.
        * Every iteration decodes the file from its start again.

    Raises:
        PirenderError: at construction for a missing file, a folder, an empty (0-byte) file, a file
            FFmpeg cannot read (e.g. text renamed .mp4), a file without a video stream (e.g. audio
            only) or whose video codec cannot be decoded, a bad ``max_frames``; while iterating for
            corrupt data, naming the index of the frame that could not be decoded (the frames before
            it have been yielded), or for iterating a closed source.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_frames: int | None = None) -> None:
        self.path = os.fspath(path)
        self.label = f"video {self.path}"
        self.max_frames = _check_max_frames(max_frames, self.label)
        file = Path(self.path)
        if not file.exists():
            raise PirenderError(f"{self.label}: file not found")
        if file.is_dir():
            raise PirenderError(f"{self.label}: is a folder, not a video file")
        if file.stat().st_size == 0:
            raise PirenderError(f"{self.label}: file is empty (0 bytes)")
        container = self._open()
        try:
            stream = self._video_stream(container)
            packet_pts, matrix = _probe_stream(container, stream)
            self.fps, self.variable_rate = video_stream_rate(stream, packet_pts)
            self._orientation = _Orientation.from_display_matrix(matrix, self.label)
            width_px, height_px = stream.codec_context.width, stream.codec_context.height
            self.size_px: tuple[int, int] | None = (
                self._orientation.displayed_size(int(width_px), int(height_px))
                if width_px > 0 and height_px > 0
                else None
            )
        finally:
            container.close()
        self._open_containers: list[av.container.InputContainer] = []
        self._closed = False

    @property
    def rotation_deg(self) -> int:
        """Counter-clockwise rotation applied to the stored pictures (0, 90, 180 or -90 degrees)."""
        return self._orientation.rotation_deg

    @property
    def mirrored(self) -> bool:
        """True where the display matrix also mirrors the picture (applied with the rotation)."""
        return self._orientation.mirrored

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        for container in self._open_containers:
            container.close()
        self._open_containers.clear()

    def _open(self) -> av.container.InputContainer:
        """Open the file for reading and refuse formats that are not video."""
        try:
            container = av.open(self.path, mode="r")
        except PermissionError:
            raise PirenderError(f"{self.label}: permission denied") from None
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise PirenderError(
                f"{self.label}: not a video file FFmpeg can read ({exception_text(exc)})"
            ) from None
        if container.format.name in _TEXT_FORMATS:
            container.close()
            raise PirenderError(f"{self.label}: is a text file, not a video")
        return container

    def _video_stream(self, container: av.container.InputContainer) -> av.VideoStream:
        """The first real video stream (not an attached cover picture) with a usable decoder."""
        attached_picture = av.stream.Disposition.attached_pic
        videos = [s for s in container.streams.video if not s.disposition & attached_picture]
        if not videos:
            kinds = sorted({s.type for s in container.streams if s.type is not None})
            found = f"only {', '.join(kinds)}" if kinds else "no streams at all"
            raise PirenderError(f"{self.label}: has no video stream ({found})")
        stream = videos[0]
        if stream.codec_context is None:
            raise PirenderError(f"{self.label}: its video codec cannot be decoded by this FFmpeg build")
        return stream

    def _frames(self) -> Iterator[Frame]:
        container = self._open()
        self._open_containers.append(container)
        try:
            stream = self._video_stream(container)
            stream.thread_type = "AUTO"  # frame + slice threads: several times faster on large videos
            time_base: Fraction | None = stream.time_base
            start_pts = stream.start_time or 0  # in time_base units
            period_s = 1.0 / (self.fps or FALLBACK_FPS)
            previous_s = -math.inf
            decoded = container.decode(stream)
            index = 0
            while not self._closed and (self.max_frames is None or index < self.max_frames):
                try:
                    av_frame = next(decoded, None)
                    if av_frame is None:
                        self._warn_if_truncated(container, stream, index, previous_s + period_s, period_s)
                        return
                    rgb = self._orientation.apply(av_frame.to_ndarray(format="rgb24"))  # (H, W, 3) uint8
                except (av.FFmpegError, ValueError) as exc:
                    raise PirenderError(
                        f"{self.label}: corrupt data at frame {index}, cannot decode ({exception_text(exc)})"
                    ) from None
                if av_frame.pts is not None and time_base is not None:
                    time_s = float((av_frame.pts - start_pts) * time_base)
                else:
                    time_s = index * period_s
                if time_s <= previous_s:
                    time_s = previous_s + period_s
                previous_s = time_s
                yield Frame(rgb=np.ascontiguousarray(rgb), time_s=time_s, index=index)
                index += 1
        finally:
            container.close()
            if container in self._open_containers:
                self._open_containers.remove(container)

    def _warn_if_truncated(
        self,
        container: av.container.InputContainer,
        stream: av.VideoStream,
        frame_count: int,
        end_s: float,
        period_s: float,
    ) -> None:
        """Warn where decoding ended well before the end the file's index declares (a cut-off file).

        Both the declared frame count and the declared duration must be short by more than
        :data:`_TRUNCATION_TOLERANCE_FRAMES` frames: an edit list (a trimmed clip) declares more frames
        than it shows but the right duration; a variable-rate video's long last frame makes the
        duration look short but the frame count right.
        """
        declared_frames = stream.frames or 0
        if stream.duration and stream.time_base is not None:
            declared_s = float(stream.duration * stream.time_base)
        elif container.duration:
            declared_s = container.duration / av.time_base
        else:
            return
        if frame_count == 0:
            end_s = 0.0
        tolerance = _TRUNCATION_TOLERANCE_FRAMES
        if declared_frames - frame_count > tolerance and declared_s - end_s > tolerance * period_s:
            warnings.warn(
                f"{self.label}: decoding ended after {frame_count} frames ({end_s:.2f} s) but the file "
                f"declares {declared_frames} frames ({declared_s:.2f} s); the file is probably cut off",
                UserWarning,
                stacklevel=3,
            )


def _probe_stream(
    container: av.container.InputContainer, stream: av.VideoStream
) -> tuple[list[int], list[int] | None]:
    """The pts of the first :data:`RATE_PROBE_PACKETS` packets and the first frame's display matrix.

    Demuxing reads no more than those packets; only the first frame is decoded. A file that fails
    here (corrupt data) gives what was read so far: the iteration reports the error.
    """
    packet_pts: list[int] = []
    matrix: list[int] | None = None
    decoding = True
    cut_short = False
    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                packet_pts.append(int(packet.pts))
            if decoding:
                for av_frame in stream.decode(packet):
                    matrix = _display_matrix(av_frame)
                    decoding = False
                    break
            if len(packet_pts) >= RATE_PROBE_PACKETS and not decoding:
                cut_short = True
                break
    except (av.FFmpegError, ValueError):
        cut_short = True
    if cut_short:
        # packets come in decoding order: the latest presentation times read so far may still have
        # gaps that later packets fill (B-frames); drop as many as a reordering can reach
        packet_pts = sorted(packet_pts)[: max(0, len(packet_pts) - _REORDER_PACKETS)]
    return packet_pts, matrix


def _display_matrix(av_frame: av.VideoFrame) -> list[int] | None:
    """The frame's DISPLAYMATRIX side data: 9 int32 (16.16 fixed point; 2.30 in the last column)."""
    # PyAV's stubs type Frame.side_data as a TypedDict (iterating it would give str keys); at runtime it
    # is a SideDataContainer, whose iteration yields the SideData entries
    container = cast(SideDataContainer, av_frame.side_data)
    for side_data in container:
        if side_data.type == SideDataType.DISPLAYMATRIX:
            data = bytes(side_data)
            if len(data) == 36:
                return [int(v) for v in np.frombuffer(data, dtype="<i4")]
    return None


def video_stream_rate(stream: av.VideoStream, pts: Sequence[int | None]) -> tuple[float | None, bool]:
    """(fps, variable_rate) of a video stream: the one rule for every reader (the frame sources and
    ``sinks.video_file.read_video_info``). Measured from timestamps (``pts``, in the stream's time base,
    of packets or frames; None entries ignored) by ``motion.timing.measure_rate``, with the container's
    declared rate (average, else guessed) as the hint for a constant-rate clip; (None, False) when
    neither says anything."""
    declared = stream.average_rate or stream.guessed_rate
    declared_fps = float(declared) if declared is not None and declared > 0 else None
    tick_s = float(stream.time_base) if stream.time_base is not None else 0.0
    known = [p for p in pts if p is not None] if tick_s > 0 else []
    times_s = np.asarray(known, dtype=np.float64) * tick_s
    rate = measure_rate(times_s, tick_s=tick_s, declared_fps=declared_fps)
    return (None, False) if rate is None else (rate.fps, rate.variable)


# (transpose, flip rows, flip columns) -> (counter-clockwise rotation in degrees, then a left-right
# mirror?): the eight right-angle orientations, as PyAV's VideoStream.set_display_rotation writes them.
_TURNS: dict[tuple[bool, bool, bool], tuple[int, bool]] = {
    (False, False, False): (0, False),
    (False, True, True): (180, False),
    (False, False, True): (0, True),
    (False, True, False): (180, True),
    (True, True, False): (90, False),
    (True, False, True): (-90, False),
    (True, True, True): (90, True),
    (True, False, False): (-90, True),
}


@dataclass(frozen=True)
class _Orientation:
    """How stored pictures are turned for display: a transpose, then flips of rows and columns.

    These three cover the eight right-angle orientations (four rotations, each possibly mirrored).
    """

    transpose: bool = False
    flip_rows: bool = False
    flip_columns: bool = False

    @classmethod
    def from_display_matrix(cls, matrix: list[int] | None, label: str) -> _Orientation:
        """The orientation of FFmpeg's display matrix (``None``: upright).

        The matrix maps a stored pixel (x, y) to the displayed one by
        ``(x', y') = (a x + c y, b x + d y)`` (plus a shift) with ``a, b, c, d = m[0], m[1], m[3],
        m[4]``; for right angles one of the pairs (a, d) or (b, c) is zero.
        """
        if matrix is None:
            return cls()
        a, b, c, d = (float(matrix[i]) for i in (0, 1, 3, 4))
        diagonal, cross = max(abs(a), abs(d)), max(abs(b), abs(c))
        if cross <= _MATRIX_ZERO * diagonal:  # x' from x, y' from y
            return cls(transpose=False, flip_rows=d < 0, flip_columns=a < 0)
        if diagonal <= _MATRIX_ZERO * cross:  # x' from y, y' from x
            return cls(transpose=True, flip_rows=b < 0, flip_columns=c < 0)
        angle = -math.degrees(math.atan2(b, a))
        warnings.warn(
            f"{label}: its display matrix rotates by {angle:.1f} degrees, not a multiple of 90; "
            "the frames are used as stored",
            UserWarning,
            stacklevel=3,
        )
        return cls()

    @property
    def rotation_deg(self) -> int:
        """Counter-clockwise rotation, in degrees (0, 90, 180 or -90), as "rotate, then mirror"."""
        return _TURNS[(self.transpose, self.flip_rows, self.flip_columns)][0]

    @property
    def mirrored(self) -> bool:
        """True where the turn ends with a left-right mirror (an odd number of reflections)."""
        return _TURNS[(self.transpose, self.flip_rows, self.flip_columns)][1]

    def displayed_size(self, width_px: int, height_px: int) -> tuple[int, int]:
        """(width, height) of a stored (width, height) picture once turned."""
        return (height_px, width_px) if self.transpose else (width_px, height_px)

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) stored pixels -> the displayed picture, C-contiguous."""
        if self.transpose:
            rgb = rgb.transpose(1, 0, 2)
        if self.flip_rows:
            rgb = rgb[::-1]
        if self.flip_columns:
            rgb = rgb[:, ::-1]
        return np.ascontiguousarray(rgb)


# --------------------------------------------------------------------------------------------------
# image sequences


class ImageSequenceFrames(FrameSource):
    """Frames from image files: a folder's images, the images matching a glob, or one image file.

    Args:
        folder_or_glob: a folder (its files with an extension of :data:`IMAGE_EXTENSIONS`, not
            recursive), a glob pattern such as ``"shots/*.png"`` or ``"shots/**/*.jpg"`` (``**``
            matches sub-folders; non-image matches are ignored) or a single image file.
        fps: frame rate that gives the times, in frames per second: ``time_s = index / fps``.
        max_frames: stop after this many frames (``None``: all of them).

    Behaviour:
        * Files are sorted in natural order (``frame2.png`` before ``frame10.png``); hidden files
          (name starting with ``.``) are skipped.
        * Each image is read with Pillow when its frame is due, EXIF orientation applied, and
          converted to RGB (transparency composited over white, as for source portraits).
        * The first image is read at construction: it gives ``size_px`` and fails fast when broken.
        * All images must have the first image's size.

    Raises:
        PirenderError: no such folder/file, no images found, a single file that is not an image, a
            bad ``fps`` or ``max_frames``; an unreadable or corrupt image (at construction for the
            first, while iterating for the others), naming the file; an image whose size differs
            from the first image's; iterating a closed source.
    """

    def __init__(
        self,
        folder_or_glob: str | os.PathLike[str],
        *,
        fps: float = 25.0,
        max_frames: int | None = None,
    ) -> None:
        self.spec = os.fspath(folder_or_glob)
        self.label = f"images {self.spec}"
        self.fps: float | None = _check_fps(fps, self.label)
        self.max_frames = _check_max_frames(max_frames, self.label)
        self.paths: tuple[str, ...] = _find_images(self.spec, self.label)
        first = _load_rgb(self.paths[0])
        self._first_size_px = (int(first.shape[1]), int(first.shape[0]))
        self.size_px: tuple[int, int] | None = self._first_size_px
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

    def _frames(self) -> Iterator[Frame]:
        fps = self.fps or 25.0  # always set; `or` only narrows the type
        count = len(self.paths) if self.max_frames is None else min(self.max_frames, len(self.paths))
        for index in range(count):
            if self._closed:
                return
            path = self.paths[index]
            rgb = _load_rgb(path)
            width_px, height_px = int(rgb.shape[1]), int(rgb.shape[0])
            if (width_px, height_px) != self._first_size_px:
                first_width_px, first_height_px = self._first_size_px
                raise PirenderError(
                    f"image {path}: is {width_px}x{height_px} px but the first image of the sequence is "
                    f"{first_width_px}x{first_height_px} px; all images must have the same size"
                )
            yield Frame(rgb=rgb, time_s=index / fps, index=index)


def _find_images(spec: str, label: str) -> tuple[str, ...]:
    """The image files ``spec`` names (folder, glob or single file), in natural sorted order."""
    extensions = ", ".join(IMAGE_EXTENSIONS)
    location = Path(spec)
    if location.is_dir():
        candidates = [str(entry) for entry in location.iterdir()]
    elif _GLOB_CHARACTERS.intersection(spec):
        candidates = glob.glob(spec, recursive=True)
    elif location.is_file():
        if location.suffix.lower() not in IMAGE_EXTENSIONS:
            raise PirenderError(f"{label}: not an image file (expected one of {extensions})")
        candidates = [spec]
    else:
        raise PirenderError(f"{label}: no such folder or file")
    images = [
        path
        for path in candidates
        if Path(path).suffix.lower() in IMAGE_EXTENSIONS
        and not Path(path).name.startswith(".")
        and os.path.isfile(path)
    ]
    if not images:
        raise PirenderError(f"{label}: no images found (looked for {extensions})")
    return tuple(sorted(images, key=_natural_key))


def _natural_key(path: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders digit runs by value: ``a2.png`` < ``a10.png``; case-insensitive otherwise."""
    parts = re.split(r"(\d+)", path)
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower()) for part in parts)


def _load_rgb(path: str) -> np.ndarray:
    """(H, W, 3) uint8 C-contiguous RGB pixels of an image file, by the one loader (``image.read_image``:
    EXIF orientation, transparency over white, longer side at most ``image.MAX_DECODE_SIDE_PX``)."""
    return read_image(path, label=f"image {path}").rgb


# --------------------------------------------------------------------------------------------------
# cameras


class CameraFrames(FrameSource):
    """Live frames of a camera through OpenCV (``cv2.VideoCapture``), converted BGR -> RGB.

    Args:
        device: camera number as OpenCV counts them (0: the first camera; ``/dev/video<N>`` on Linux).
        width_px, height_px: requested frame size in pixels; the camera may pick another one, which
            ``size_px`` then reports.
        fps: requested frame rate in frames per second; ``fps`` reports what the driver says it
            delivers (``None`` where it does not say).
        max_frames: stop after this many frames (``None``: until :meth:`close` or the camera fails).

    Behaviour:
        * ``time_s`` is ``time.monotonic()`` when a frame's read returned, minus the time the camera
          was opened, in seconds: the camera's real (measured) rate, whatever ``fps`` says;
          ``variable_rate`` is True.
        * Frames are numbered from 0 since opening, across iterations: iterating again continues the
          live stream.
        * A failed read (camera unplugged or taken away) ends the iteration with a ``UserWarning``
          instead of an exception.

    Raises:
        PirenderError: OpenCV missing (``pip install 'pirender-live[track]'``), the camera cannot be
            opened (none with that number, or in use), bad arguments, iterating a closed source.
    """

    def __init__(
        self,
        device: int = 0,
        *,
        width_px: int = 640,
        height_px: int = 480,
        fps: float = 30.0,
        max_frames: int | None = None,
    ) -> None:
        if isinstance(device, bool) or not isinstance(device, numbers.Integral) or device < 0:
            raise PirenderError(f"camera number must be an int >= 0, got {device!r}")
        self.device = int(device)
        self.label = f"camera {self.device}"
        for name, value in (("width_px", width_px), ("height_px", height_px)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise PirenderError(f"{self.label}: {name} must be a positive int (pixels), got {value!r}")
        requested_fps = _check_fps(fps, self.label)
        self.max_frames: int | None = _check_max_frames(max_frames, self.label)
        self._cv2: ModuleType = _import_cv2()
        cv2 = self._cv2
        # OpenCV logs its own line for a missing camera; the error below says it for the user
        logging = getattr(getattr(cv2, "utils", None), "logging", None)
        level = None if logging is None else logging.getLogLevel()
        if logging is not None:
            logging.setLogLevel(logging.LOG_LEVEL_SILENT)
        try:
            capture = cv2.VideoCapture(self.device)
        finally:
            if logging is not None:
                logging.setLogLevel(level)
        if not capture.isOpened():
            capture.release()
            raise PirenderError(f"camera {self.device} could not be opened (no camera, or in use)")
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, float(width_px))
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, float(height_px))
        capture.set(cv2.CAP_PROP_FPS, float(requested_fps))
        actual_width_px = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        actual_height_px = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.size_px: tuple[int, int] | None = (
            (actual_width_px, actual_height_px) if actual_width_px > 0 and actual_height_px > 0 else None
        )
        actual_fps = float(capture.get(cv2.CAP_PROP_FPS))
        self.fps: float | None = actual_fps if math.isfinite(actual_fps) and actual_fps > 0 else None
        self.variable_rate = True  # frames come when the camera delivers them: time_s is their time
        self._capture: Any = capture
        self._opened_at_s: float = time.monotonic()
        self._next_index: int = 0

    @property
    def closed(self) -> bool:
        return self._capture is None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _frames(self) -> Iterator[Frame]:
        cv2 = self._cv2
        while self._capture is not None and (self.max_frames is None or self._next_index < self.max_frames):
            ok, pixels = self._capture.read()
            if not ok or pixels is None:
                warnings.warn(
                    f"{self.label}: no frame could be read (camera unplugged or taken by another program); "
                    f"stopped after {self._next_index} frames",
                    UserWarning,
                    stacklevel=2,
                )
                return
            time_s = time.monotonic() - self._opened_at_s
            if pixels.ndim == 2:
                rgb = cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
            elif pixels.shape[2] == 4:
                rgb = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB)
            else:
                rgb = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
            index = self._next_index
            self._next_index += 1
            yield Frame(rgb=np.ascontiguousarray(rgb, dtype=np.uint8), time_s=time_s, index=index)


def _import_cv2() -> ModuleType:
    """OpenCV, imported on first use (the ``track`` extra installs it)."""
    try:
        import cv2
    except ImportError:
        raise PirenderError("camera input needs OpenCV: pip install 'pirender-live[track]'") from None
    return cv2


# --------------------------------------------------------------------------------------------------
# choosing a source


def open_frames(spec: str | os.PathLike[str], *, max_frames: int | None = None) -> FrameSource:
    """Open the frame source a command-line style string names.

    Args:
        spec: one of
            * ``"camera"`` (camera 0), ``"camera:N"`` or a bare integer ``"N"``: camera number N,
              opened with :class:`CameraFrames`' defaults (640x480 at 30 fps requested);
            * an existing folder, or a string with glob characters (``*``, ``?``, ``[``):
              :class:`ImageSequenceFrames` at 25 fps;
            * an existing image file (:data:`IMAGE_EXTENSIONS`): a one-frame image sequence;
            * any other existing file: :class:`VideoFileFrames`.
            A ``PathLike`` is always a path, never a camera.
        max_frames: stop after this many frames (``None``: all of them / until closed).

    Returns:
        The source, not yet iterated (use it as a context manager to release it).

    Raises:
        PirenderError: a spec that is none of the above (missing file, ``"camera:x"``, empty string),
            with the accepted forms in the message, or any error of the chosen source's constructor.
    """
    if isinstance(spec, os.PathLike):
        text = os.fspath(spec)
        camera = None
    elif isinstance(spec, str):
        text = spec
        camera = _CAMERA_SPEC.fullmatch(spec.strip())
    else:
        raise PirenderError(f"frame source must be a string, got {type(spec).__name__}; {_ACCEPTED_SPECS}")
    if camera is not None:
        return CameraFrames(int(camera.group(1) or camera.group(2) or 0), max_frames=max_frames)
    if not text.strip():
        raise PirenderError(f"frame source is empty; {_ACCEPTED_SPECS}")
    location = Path(text)
    if location.is_dir() or (not location.exists() and _GLOB_CHARACTERS.intersection(text)):
        return ImageSequenceFrames(text, max_frames=max_frames)
    if location.is_file():
        if location.suffix.lower() in IMAGE_EXTENSIONS:
            return ImageSequenceFrames(text, max_frames=max_frames)
        return VideoFileFrames(text, max_frames=max_frames)
    if isinstance(spec, str) and spec.strip().lower().startswith("camera"):
        raise PirenderError(f"frame source {text!r}: not a camera spec; {_ACCEPTED_SPECS}")
    raise PirenderError(f"frame source {text!r}: no such file or folder; {_ACCEPTED_SPECS}")


# --------------------------------------------------------------------------------------------------
# argument checks


def _check_max_frames(max_frames: int | None, label: str) -> int | None:
    if max_frames is None:
        return None
    if isinstance(max_frames, bool) or not isinstance(max_frames, numbers.Integral) or max_frames < 0:
        raise PirenderError(f"{label}: max_frames must be None or an int >= 0, got {max_frames!r}")
    return int(max_frames)


def _check_fps(fps: float, label: str) -> float:
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise PirenderError(f"{label}: fps must be a positive number (frames per second), got {fps!r}")
    return float(fps)
