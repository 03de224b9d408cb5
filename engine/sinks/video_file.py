"""Offline video sink: RGB frames -> a browser-playable video file, written with PyAV.

Frames are (H, W, 3) uint8 RGB (what :func:`pirender.engine.image.tensor_to_images` returns). They
are converted to yuv420p with the BT.709 matrix in limited ("TV") range and the stream is tagged
BT.709, so players show the colours that were written. The default codec is H.264 (``libx264``,
constant quality ``crf``), falling back to MPEG-4 part 2 where FFmpeg has no H.264 encoder; mp4/mov
files get ``+faststart`` so browsers can start playing before the whole file arrives.

Time: by default frame k is shown at ``k / fps`` (a constant rate). A writer opened with
``timestamps=True`` keeps each frame's own time instead (``write(frame, time_s=...)``): the file then
plays in real time whatever the frames' rate (a variable-rate recording, a camera's measured rate),
with ``fps`` as the nominal rate (frames on its grid stay exactly on it).

Errors caused by the caller's input (missing folder, unknown extension, odd size, wrong frame
shape, encoder failure) are :class:`~pirender.engine.errors.PirenderError` with a one-line message
that names the file.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from ..errors import PirenderError, describe_value, exception_text
from ..sources.frames import video_stream_rate

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "VideoFileWriter",
    "VideoInfo",
    "default_codec",
    "read_video_info",
]

#: File extensions the writer accepts (lower case, with the dot); the container is chosen from it.
SUPPORTED_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".avi")

# Containers whose index ("moov atom") is moved to the front on close (+faststart).
_FASTSTART_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov"})

# Encoders tried in order when no codec is given.
_DEFAULT_CODECS: tuple[str, ...] = ("libx264", "h264", "mpeg4")

# Encoders that understand the x264 "crf" option.
_CRF_CODECS = frozenset({"libx264", "libx264rgb"})

# Bit budget for encoders without crf (mpeg4 and others), in bits per pixel per frame.
_FALLBACK_BITS_PER_PIXEL = 0.5

# The largest crf libx264 accepts for 8-bit video.
_MAX_CRF = 51

# FFmpeg / AVCOL_* code of ITU-R BT.709 for colour primaries, transfer and matrix.
_BT709 = 1

# Clock rate of timestamped writing, in ticks per second (at least; the MPEG-TS / RTP video clock).
_TIMED_CLOCK_HZ = 90_000

# Encoders whose time base must fit 16 bits (MPEG-4 part 2: vop_time_increment_resolution).
_SHORT_CLOCK_CODECS = frozenset({"mpeg4"})
_SHORT_CLOCK_MAX = 65_535

# Frame times as `VideoFileWriter.write` takes them: seconds, one number or one per frame of a batch.
FrameTimes = float | Sequence[float] | np.ndarray

# Containers that store one frame per slot of the nominal rate (no per-frame time).
_CONSTANT_RATE_EXTENSIONS = frozenset({".avi"})


def _encoder_available(name: str) -> bool:
    """True where this FFmpeg build has an encoder called ``name``."""
    if name not in av.codecs_available:
        return False
    try:
        return bool(av.Codec(name, "w").is_encoder)
    except Exception:  # PyAV raises different types for "no such encoder"
        return False


def default_codec() -> str:
    """Name of the encoder used when none is given: ``libx264``, else ``h264``, else ``mpeg4``."""
    for name in _DEFAULT_CODECS:
        if _encoder_available(name):
            return name
    raise PirenderError("video: this FFmpeg build has neither an H.264 nor an MPEG-4 encoder")


def _frame_rate(fps: float) -> Fraction:
    """Exact frame rate for ``fps``: NTSC rates (29.97, 23.976, 59.94 ...) become N*1000/1001."""
    ntsc_base = round(fps * 1.001)
    if ntsc_base > 0 and abs(fps - ntsc_base / 1.001) < 1e-3 and abs(fps - round(fps)) > 1e-3:
        return Fraction(ntsc_base * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def _timed_clock(rate: Fraction, codec_name: str, extension: str) -> tuple[Fraction, int]:
    """(time base, ticks per nominal frame) for timestamped writing at nominal ``rate`` = p / q.

    The time base is 1 / (p k): the nominal period q / p is then exactly q k ticks (frames on the
    rate's grid get exact, evenly spaced pts), with k the smallest giving a clock of at least
    :data:`_TIMED_CLOCK_HZ`, or, where the encoder's time base must fit 16 bits (MPEG-4 part 2), the
    largest that fits. AVI has no per-frame time: one tick per frame of the nominal rate.
    """
    if extension in _CONSTANT_RATE_EXTENSIONS:
        return 1 / rate, 1
    p, q = rate.numerator, rate.denominator
    if codec_name in _SHORT_CLOCK_CODECS:
        if p > _SHORT_CLOCK_MAX:  # a rate too odd for a 16-bit clock: the finest one, periods rounded
            return Fraction(1, _SHORT_CLOCK_MAX), max(1, round(_SHORT_CLOCK_MAX / rate))
        k = _SHORT_CLOCK_MAX // p
    else:
        k = -(-_TIMED_CLOCK_HZ // p)  # ceil
    return Fraction(1, p * k), q * k


class VideoFileWriter:
    """Write RGB frames to a video file; use as a context manager.

    Example::

        with VideoFileWriter("out.mp4", fps=25, size_px=(256, 256)) as writer:
            for frame in frames:          # (256, 256, 3) uint8 RGB
                writer.write(frame)

    With each frame's time (a variable-rate input, a camera)::

        with VideoFileWriter("out.mp4", fps=30, size_px=(256, 256), timestamps=True) as writer:
            for frame in frames:
                writer.write(render(frame), time_s=frame.time_s)

    If the block raises, the frames written so far are flushed and the file is closed, so it stays
    playable; the exception then propagates. The writer writes ``path`` itself; to replace a file
    only with a complete one, write to :func:`~pirender.engine.fileio.staged_output`'s temporary
    path (what the commands do: a stopped render keeps its frames in ``<stem>.partial<suffix>``).
    FFmpeg creates the file when the first frame is muxed: a writer closed without any frame leaves
    no file (and leaves an existing file at ``path`` untouched).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: float,
        size_px: tuple[int, int],
        codec: str | None = None,
        crf: int = 18,
        timestamps: bool = False,
    ) -> None:
        """Open ``path`` for writing.

        Args:
            path: output file; its extension (one of :data:`SUPPORTED_EXTENSIONS`) picks the container.
            fps: frames per second, > 0; fractional rates such as 29.97 are stored exactly
                (as 30000/1001). With ``timestamps`` the nominal rate: the stream's declared rate and
                the last frame's duration.
            size_px: (width, height) of every frame in pixels; both must be even (yuv420p).
            codec: FFmpeg encoder name; ``None`` picks :func:`default_codec`.
            crf: constant-rate factor of libx264, 0 (lossless, not browser-playable) .. 51 (worst);
                18 is visually lossless. Other encoders get a bitrate of
                0.5 bit per pixel per frame instead.
            timestamps: each :meth:`write` gives the frames' times (``time_s``, seconds) and the
                file keeps them: frame pts from the time minus the first frame's time, on a clock of
                at least 90 kHz whose tick divides the nominal period (mp4, mov, mkv: variable frame
                rate; mkv rounds to its 1 ms clock). AVI stores a constant rate: each frame takes the
                slot of the nominal rate nearest its time (the next free one where two frames fall in
                one slot). ``False``: frame k is shown at ``k / fps``.

        Raises:
            PirenderError: folder missing, unknown extension, bad fps/size/crf, codec unavailable,
                or FFmpeg cannot open the file or the encoder.
        """
        self._path = os.fspath(path)
        self._label = f"video {self._path}"
        self._frames_written = 0
        self._closed = False
        width_px, height_px = self._check_arguments(fps, size_px, crf)
        self._width_px = width_px
        self._height_px = height_px
        self._fps = float(fps)
        self._timestamps = bool(timestamps)
        self._first_time_s: float | None = None
        self._last_pts: int | None = None
        self._last_time_s = 0.0
        codec_name = default_codec() if codec is None else codec
        if not _encoder_available(codec_name):
            raise PirenderError(f"{self._label}: this FFmpeg build has no encoder named {codec_name!r}")

        extension = Path(self._path).suffix.lower()
        container_options = {"movflags": "+faststart"} if extension in _FASTSTART_EXTENSIONS else {}
        try:
            self._container = av.open(self._path, mode="w", container_options=container_options)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise PirenderError(f"{self._label}: cannot open for writing ({exception_text(exc)})") from None
        try:
            rate = _frame_rate(fps)
            stream = self._container.add_stream(codec_name, rate=rate)
            if not isinstance(stream, av.VideoStream):
                raise ValueError(f"{codec_name} is not a video encoder")
            self._stream: av.VideoStream = stream
            self._time_base: Fraction | None = None
            self._ticks_per_frame = 1
            if self._timestamps:
                self._time_base, self._ticks_per_frame = _timed_clock(rate, codec_name, extension)
                self._stream.codec_context.time_base = self._time_base
            self._stream.width = width_px
            self._stream.height = height_px
            self._stream.pix_fmt = "yuv420p"
            context = self._stream.codec_context
            context.color_range = 1  # MPEG / limited range
            context.colorspace = _BT709
            context.color_primaries = _BT709
            context.color_trc = _BT709
            if codec_name in _CRF_CODECS:
                self._stream.options = {"crf": str(int(crf))}
            else:
                self._stream.bit_rate = max(
                    100_000, int(_FALLBACK_BITS_PER_PIXEL * width_px * height_px * self._fps)
                )
            self._codec_name = codec_name
            context.open()  # open the encoder now so a bad codec fails here, not at the first frame
        except (av.FFmpegError, OSError, ValueError, TypeError) as exc:
            self._abandon()
            raise PirenderError(
                f"{self._label}: cannot set up the {codec_name} encoder ({exception_text(exc)})"
            ) from None

    def _check_arguments(self, fps: float, size_px: tuple[int, int], crf: int) -> tuple[int, int]:
        extension = Path(self._path).suffix.lower()
        if extension not in SUPPORTED_EXTENSIONS:
            shown = extension or "no extension"
            allowed = ", ".join(SUPPORTED_EXTENSIONS)
            raise PirenderError(f"{self._label}: unknown video extension ({shown}); use one of {allowed}")
        folder = Path(os.path.abspath(self._path)).parent
        if not folder.is_dir():
            raise PirenderError(f"{self._label}: folder {folder} does not exist")
        if Path(self._path).is_dir():
            raise PirenderError(f"{self._label}: is a folder, not a file name")
        if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
            raise PirenderError(f"{self._label}: fps must be a positive number, got {fps!r}")
        if (
            not isinstance(size_px, tuple | list)
            or len(size_px) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size_px)
        ):
            raise PirenderError(f"{self._label}: size_px must be (width, height) in pixels, got {size_px!r}")
        width_px, height_px = int(size_px[0]), int(size_px[1])
        if width_px <= 0 or height_px <= 0:
            raise PirenderError(f"{self._label}: size_px must be positive, got {width_px}x{height_px}")
        if width_px % 2 or height_px % 2:
            raise PirenderError(
                f"{self._label}: size {width_px}x{height_px} px is odd; yuv420p video needs an even "
                "width and height (crop or pad one pixel)"
            )
        if isinstance(crf, bool) or not isinstance(crf, numbers.Integral) or not 0 <= crf <= _MAX_CRF:
            raise PirenderError(f"{self._label}: crf must be an int in 0..{_MAX_CRF}, got {crf!r}")
        return width_px, height_px

    # ---------------------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The output file."""
        return self._path

    @property
    def frames_written(self) -> int:
        """Number of frames handed to the encoder so far."""
        return self._frames_written

    @property
    def codec(self) -> str:
        """Name of the encoder in use (e.g. ``libx264``)."""
        return self._codec_name

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    @property
    def timestamps(self) -> bool:
        """True where each frame is written at its own time (``write(..., time_s=...)``)."""
        return self._timestamps

    def send(self, rgb: np.ndarray, time_s: float) -> bool:
        """The live pipeline's sink verb (``pipeline.FrameSink``): one frame, written at ``time_s``
        where the writer keeps each frame's time (:attr:`timestamps`), else at the next slot."""
        self.write(rgb, time_s=time_s if self._timestamps else None)
        return True

    def write(self, frame_rgb: np.ndarray, time_s: FrameTimes | None = None) -> None:
        """Encode one (H, W, 3) uint8 RGB frame, or each frame of a (B, H, W, 3) batch.

        H and W must equal the writer's (height, width).

        Args:
            frame_rgb: the frame or the batch.
            time_s: with ``timestamps=True`` (then required), the frame's time in seconds, or the
                (B,) times of a batch: any origin (the first frame written is the file's start),
                each later than the one before. Without it, ``None``.

        Raises:
            PirenderError: writer closed, wrong dtype/shape, missing/unexpected/non-increasing times,
                or the encoder/muxer fails.
        """
        if self._closed:
            raise PirenderError(f"{self._label}: write() after close()")
        if not isinstance(frame_rgb, np.ndarray) or frame_rgb.dtype != np.uint8:
            raise PirenderError(
                f"{self._label}: frames must be uint8 RGB arrays, got {describe_value(frame_rgb)}"
            )
        expected = (self._height_px, self._width_px, 3)
        if frame_rgb.ndim == 3:
            batch = frame_rgb[np.newaxis]
        elif frame_rgb.ndim == 4:
            batch = frame_rgb
        else:
            batch = None
        if batch is None or batch.shape[1:] != expected:
            raise PirenderError(
                f"{self._label}: frame shape must be {expected} (H, W, 3) or (B, *{expected}), "
                f"got {frame_rgb.shape}"
            )
        times = self._check_times(time_s, len(batch))
        for index, frame in enumerate(batch):
            self._encode_one(frame, None if times is None else float(times[index]))

    def _check_times(self, time_s: FrameTimes | None, count: int) -> np.ndarray | None:
        """The (count,) frame times, or ``None`` for a constant-rate writer."""
        if not self._timestamps:
            if time_s is not None:
                raise PirenderError(
                    f"{self._label}: time_s given but the writer was opened without timestamps=True"
                )
            return None
        if time_s is None:
            raise PirenderError(f"{self._label}: this writer keeps each frame's time: give time_s (seconds)")
        try:
            times = np.asarray(time_s, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise PirenderError(
                f"{self._label}: time_s must be seconds (a number or one per frame), "
                f"got {describe_value(time_s)}"
            ) from None
        if times.size != count or not np.all(np.isfinite(times)):
            raise PirenderError(
                f"{self._label}: time_s must give {count} finite time(s) in seconds, one per frame, "
                f"got {times.size}"
            )
        return times

    def _pts(self, time_s: float) -> int:
        """The pts of a frame at ``time_s`` (timestamped writing), increasing along the file."""
        assert self._time_base is not None
        if self._first_time_s is None:
            self._first_time_s = time_s
        pts = round((time_s - self._first_time_s) / self._time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            if Path(self._path).suffix.lower() not in _CONSTANT_RATE_EXTENSIONS:
                raise PirenderError(
                    f"{self._label}: frame {self._frames_written} at {time_s:.6f} s is not after the "
                    f"frame before it ({self._last_time_s:.6f} s); frame times must increase"
                )
            pts = self._last_pts + 1  # a constant-rate container: the next free slot
        self._last_pts, self._last_time_s = pts, time_s
        return pts

    def _encode_one(self, frame: np.ndarray, time_s: float | None) -> None:
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        yuv = video_frame.reformat(
            format="yuv420p",
            dst_colorspace="ITU709",
            dst_color_range="MPEG",
            dst_color_trc=_BT709,
            dst_color_primaries=_BT709,
        )
        if time_s is None:
            yuv.pts = self._frames_written
        else:
            yuv.pts = self._pts(time_s)
            yuv.time_base = self._time_base
            yuv.duration = self._ticks_per_frame  # the last frame's; the others end at the next one
        try:
            packets = self._stream.encode(yuv)
            self._container.mux(packets)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise PirenderError(
                f"{self._label}: encoding frame {self._frames_written} failed ({exception_text(exc)})"
            ) from None
        self._frames_written += 1

    def close(self) -> None:
        """Flush the encoder and close the file; calling it again does nothing.

        Raises:
            PirenderError: flushing or writing the trailer fails (the file may then be unplayable).
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._container.mux(self._stream.encode(None))
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._abandon()
            raise PirenderError(
                f"{self._label}: flushing the encoder failed ({exception_text(exc)})"
            ) from None
        try:
            self._container.close()
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise PirenderError(f"{self._label}: closing the file failed ({exception_text(exc)})") from None

    def _abandon(self) -> None:
        """Close the container after a failure, ignoring further errors."""
        self._closed = True
        with contextlib.suppress(Exception):  # already failing: the first error is what the user needs
            self._container.close()

    def __enter__(self) -> VideoFileWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        # The block failed: keep what was written (flush + trailer), then let the original error through.
        try:
            self.close()
        except PirenderError as close_error:
            exc.add_note(f"while saving the frames written so far: {close_error}")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"VideoFileWriter({self._path!r}, fps={self._fps}, size_px=({self._width_px}, "
            f"{self._height_px}), codec={self._codec_name!r}, timestamps={self._timestamps}, "
            f"frames_written={self._frames_written}, {state})"
        )


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds (first video stream).

    Attributes:
        frames: number of frames, counted by decoding the whole stream.
        width: frame width in pixels (as stored).
        height: frame height in pixels (as stored).
        fps: average frame rate in frames per second (29.97002997 for 30000/1001): the declared one
            where the frames' timestamps agree with it, else measured from them
            (:func:`~pirender.engine.motion.timing.measure_rate`).
        codec: FFmpeg codec name of the stream, e.g. ``h264`` or ``mpeg4``.
        duration_s: the stream's duration in seconds as the file declares it (first frame's start to
            last frame's end), else the container's; where neither is declared, the decoded frames'
            span plus one frame at ``fps``.
        variable_rate: True where the frames' timestamps are irregular (variable frame rate).
    """

    frames: int
    width: int
    height: int
    fps: float
    codec: str
    duration_s: float
    variable_rate: bool


def read_video_info(path: str | os.PathLike[str]) -> VideoInfo:
    """Describe the first video stream of ``path``, counting its frames by decoding them.

    Raises:
        PirenderError: file missing, not a video, no video stream, or decoding fails.
    """
    name = os.fspath(path)
    label = f"video {name}"
    if not os.path.exists(name):
        raise PirenderError(f"{label}: file not found")
    try:
        with av.open(name, mode="r") as container:
            if not container.streams.video:
                raise PirenderError(f"{label}: has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            pts = [frame.pts for frame in container.decode(stream)]
            tick_s = float(stream.time_base) if stream.time_base is not None else 0.0
            known = [p for p in pts if p is not None] if tick_s > 0 else []
            measured_fps, variable_rate = video_stream_rate(stream, pts)  # the readers' one rule
            fps = measured_fps or 0.0
            if stream.duration is not None and tick_s > 0:
                duration_s = float(stream.duration) * tick_s
            elif container.duration is not None:
                duration_s = container.duration / av.time_base
            elif known and fps > 0:
                duration_s = (max(known) - min(known)) * tick_s + 1.0 / fps
            else:
                duration_s = 0.0
            return VideoInfo(
                frames=len(pts),
                width=int(stream.codec_context.width),
                height=int(stream.codec_context.height),
                fps=fps,
                codec=str(stream.codec_context.name),
                duration_s=duration_s,
                variable_rate=variable_rate,
            )
    except PirenderError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise PirenderError(f"{label}: cannot read as a video ({exception_text(exc)})") from None
