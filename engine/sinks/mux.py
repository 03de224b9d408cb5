"""Soundtracks for rendered videos: the original sound of a file, muxed in sync with a silent video.

The sound is decoded from the file it came from (the speech given to ``pirender talk``, the driving
clip of ``pirender render --driving``) by the engine's one audio decoder
(:class:`~pirender.engine.audio.sources.AudioFileReader`: damaged packets skipped, format changes
converted), kept at its own rate and channel count, and encoded as AAC (every container the video
writer makes - MP4, MOV, MKV, AVI - holds it and browsers play it in MP4). The 16 kHz mono signal the
motion is computed from is only the analysis copy; it is never what the viewer hears.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..audio.sources import AudioError, AudioFileReader, AudioFormat
from ..errors import PirenderError, exception_text
from ..fileio import staged_output

__all__ = ["AAC_BITS_PER_CHANNEL", "Soundtrack", "first_video_time_s", "has_audio_stream", "mux_soundtrack"]

#: AAC bit rate per channel (bits/s): 64 kb/s mono, 128 kb/s stereo (FFmpeg's own default for
#: stereo), enough for speech and music without audible loss at 44.1/48 kHz.
AAC_BITS_PER_CHANNEL = 64_000

# Containers whose index is moved to the front (playback can start while downloading).
_FASTSTART_SUFFIXES = frozenset({".mp4", ".m4v", ".mov"})


@dataclass(frozen=True)
class Soundtrack:
    """What :func:`mux_soundtrack` wrote: the file, the audio codec, its format and bit rate (bits/s),
    and the sound's duration (s)."""

    path: Path
    codec: str
    format: AudioFormat
    bit_rate: int
    duration_s: float

    def describe(self) -> str:
        return (
            f"{self.codec.upper()} {self.format.rate_hz / 1000:g} kHz {self.format.layout} "
            f"{self.bit_rate // 1000} kb/s, "
            + (f"{self.duration_s:.2f} s" if self.duration_s >= 0.1 else f"{1000 * self.duration_s:.0f} ms")
        )


def has_audio_stream(path: str | os.PathLike[str]) -> bool:
    """True where ``path`` is a file FFmpeg opens that has an audio stream (False for image folders,
    cameras, unreadable files: nothing to mux)."""
    if not Path(path).is_file():
        return False
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError, ValueError):
        return False


def first_video_time_s(path: str | os.PathLike[str]) -> float | None:
    """The presentation time (s, on the file's own timeline) of the first decodable video frame of
    ``path``, or None when it has none: the time the driving clip's sound is aligned to."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            for frame in container.decode(video=0):
                return None if frame.time is None else float(frame.time)
    except (av.FFmpegError, OSError, ValueError):
        return None
    return None


def mux_soundtrack(
    video_path: str | os.PathLike[str],
    audio_path: str | os.PathLike[str],
    *,
    out_path: str | os.PathLike[str],
    start_at_s: float | None = None,
    warn: bool = True,
) -> Soundtrack:
    """Copy the video stream of ``video_path`` (no re-encoding) into ``out_path`` (a new file) with
    the first audio stream of ``audio_path`` as AAC, interleaved with the video.

    Timing: with ``start_at_s=None`` the first decoded sample plays with the first video frame (the
    talking avatar, whose motion was computed from the decoded samples from the first one on); with a
    time, the sound keeps its place on the audio file's own timeline and the moment ``start_at_s``
    (the driving clip's first video frame, :func:`first_video_time_s`) plays with the first video
    frame (silence before a sound that starts later, the part before it cut). The sound is cut at the
    video's end. Format: the widest rate and channel count the stream decodes to (a file whose format
    changes mid-way keeps its best part; the AAC rate at or above it), ``AAC_BITS_PER_CHANNEL`` per
    channel. Damaged packets are skipped with a warning (``warn=False``: none, e.g. when the same
    file's analysis copy warned already).

    The file is written beside ``out_path`` under a hidden name and moved into place when complete
    (:func:`~pirender.engine.fileio.staged_output`): an error or an interrupt leaves ``out_path`` as
    it was and no other file.

    Raises :class:`~pirender.engine.audio.sources.AudioError` for audio that cannot be used (no
    stream, no samples, nothing decodable) and PirenderError when the output cannot be written.
    """
    target = Path(out_path)
    with AudioFileReader(audio_path) as probe:
        formats = probe.formats()
    if not formats:
        raise AudioError(f"{audio_path} has an audio stream but no audio samples (empty)")
    rate_hz = max(found.rate_hz for found in formats)
    most = max(formats, key=lambda found: found.channels)
    widest = AudioFormat(rate_hz, most.layout, most.channels)
    suffix = target.suffix.lower()
    options = {"movflags": "+faststart"} if suffix in _FASTSTART_SUFFIXES else {}
    try:
        with (
            staged_output(target, on_interrupt="discard") as staged,
            av.open(str(video_path)) as source,
            AudioFileReader(audio_path) as reader,
            av.open(str(staged), "w", container_options=options) as out,
        ):
            video_in = source.streams.video[0]
            end_s = _duration_s(source, video_in)
            video_out = out.add_stream_from_template(video_in)
            chosen = _aac_format(widest)
            audio_out = out.add_stream("aac", rate=chosen.rate_hz, layout=chosen.layout)
            audio_out.bit_rate = AAC_BITS_PER_CHANNEL * chosen.channels
            audio_out.codec_context.open()
            samples = _PlacedSamples(reader, chosen, start_at_s, end_s)
            packets = _encode(audio_out, samples, chosen, frame_size=audio_out.codec_context.frame_size)
            pending = next(packets, None)
            for packet in source.demux(video_in):
                if packet.dts is None:
                    continue
                video_time_s = float(packet.dts * packet.time_base)
                while pending is not None and _packet_time_s(pending) <= video_time_s:
                    out.mux(pending)
                    pending = next(packets, None)
                packet.stream = video_out
                out.mux(packet)
            while pending is not None:
                out.mux(pending)
                pending = next(packets, None)
            written = samples.written
        if warn:
            reader.warn_if_damaged()
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise PirenderError(f"{target}: cannot add the soundtrack ({exception_text(exc)})") from None
    return Soundtrack(
        path=target,
        codec="aac",
        format=chosen,
        bit_rate=AAC_BITS_PER_CHANNEL * chosen.channels,
        duration_s=written / chosen.rate_hz,
    )


def _duration_s(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    """The video's duration (s): its stream's, else the container's, else None (no cut)."""
    if stream.duration and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


#: FFmpeg's standard layout of a channel count (a stream without a channel mask has none)
_STANDARD_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def _aac_format(wanted: AudioFormat) -> AudioFormat:
    """The AAC format nearest ``wanted``: its rate or the next one AAC has above it (else the highest),
    its layout where FFmpeg's AAC encoder takes it, else the standard layout of its channel count (a
    WAV without a channel mask decodes as "1 channels": mono), else stereo."""
    rates = sorted(av.Codec("aac", "w").audio_rates or (wanted.rate_hz,))
    rate_hz = next((rate for rate in rates if rate >= wanted.rate_hz), rates[-1])
    for layout in dict.fromkeys((wanted.layout, _STANDARD_LAYOUTS.get(wanted.channels, wanted.layout))):
        try:
            probe = av.CodecContext.create("aac", "w")
            probe.sample_rate, probe.layout, probe.format = rate_hz, layout, "fltp"
            probe.open()
            return AudioFormat(rate_hz, layout, wanted.channels)
        except (av.FFmpegError, ValueError):
            continue
    return AudioFormat(rate_hz, "stereo", 2)


class _PlacedSamples:
    """The reader's sound converted to ``fmt``, shifted to the video's timeline and cut at its end:
    an iterator of (channels, n) float32 chunks; ``written`` counts the samples given out."""

    def __init__(
        self, reader: AudioFileReader, fmt: AudioFormat, start_at_s: float | None, end_s: float | None
    ) -> None:
        self._reader, self._fmt, self._start_at_s = reader, fmt, start_at_s
        self._limit = None if end_s is None else round(end_s * fmt.rate_hz)
        self.written = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        to_drop = 0
        chunks = self._reader.chunks(rate_hz=self._fmt.rate_hz, layout=self._fmt.layout)
        for index, chunk in enumerate(chunks):
            if index == 0 and self._start_at_s is not None:
                # the chunks start with the silence of damaged leading packets: the sound's first
                # sample is that much before its first decoded frame
                first_s = (self._reader.first_time_s or 0.0) - self._reader.leading_silence_s
                lead = round((first_s - self._start_at_s) * self._fmt.rate_hz)
                if lead > 0:  # the sound starts after the first video frame
                    yield from self._limited(np.zeros((chunk.shape[0], lead), np.float32))
                to_drop = max(0, -lead)
            if to_drop:
                cut = min(to_drop, chunk.shape[1])
                chunk, to_drop = chunk[:, cut:], to_drop - cut
            yield from self._limited(chunk)
            if self._limit is not None and self.written >= self._limit:
                return

    def _limited(self, chunk: np.ndarray) -> Iterator[np.ndarray]:
        if self._limit is not None:
            chunk = chunk[:, : max(0, self._limit - self.written)]
        if chunk.shape[1]:
            self.written += chunk.shape[1]
            yield chunk


def _encode(
    stream: av.AudioStream, samples: _PlacedSamples, fmt: AudioFormat, *, frame_size: int
) -> Iterator[av.Packet]:
    """AAC packets of ``samples`` in frames of ``frame_size`` (the encoder's), then the flush."""
    size = frame_size or 1024
    buffered = np.zeros((fmt.channels, 0), np.float32)
    position = 0

    def frame_of(block: np.ndarray) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout=fmt.layout)
        frame.sample_rate = fmt.rate_hz
        frame.pts = position
        frame.time_base = Fraction(1, fmt.rate_hz)
        return frame

    for chunk in samples:
        buffered = np.concatenate([buffered, chunk], axis=1)
        while buffered.shape[1] >= size:
            yield from stream.encode(frame_of(buffered[:, :size]))
            buffered, position = buffered[:, size:], position + size
    if buffered.shape[1]:
        yield from stream.encode(frame_of(buffered))
    yield from stream.encode(None)


def _packet_time_s(packet: av.Packet) -> float:
    if packet.dts is None or packet.time_base is None:
        return 0.0
    return float(packet.dts * packet.time_base)
