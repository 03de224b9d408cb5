"""Audio sources of the talking avatar: files and a local microphone, as mono 16 kHz float32.

Every source gives 1-D float32 samples in [-1, 1] (full scale = 1.0) at :data:`SAMPLE_RATE_HZ`, the
format the browser microphone already lands in (:class:`pirender.engine.stream.sources.MicrophoneSource`)
and the one :mod:`pirender.engine.audio.features` and :mod:`pirender.engine.audio.vad` expect.

* :func:`load_audio` decodes any file FFmpeg reads (WAV, MP3, AAC, the audio track of a video, ...)
  with PyAV and converts it with libswresample (``av.AudioResampler``), the same conversion the
  browser microphone goes through, so file and live audio have the same levels: channels are
  down-mixed with FFmpeg's default matrix (stereo -> ``(L + R) / sqrt(2)``, so two identical
  channels come out 3 dB above each one; 5.1 sums more), the rate is converted to 16 kHz, and the
  result is clipped to [-1, 1] (lossy codecs and multichannel down-mixes may exceed full scale).
  This 16 kHz mono signal is for analysis (features, voice activity); a video's soundtrack is made
  from the original file (:mod:`pirender.engine.sinks.mux`).
* :class:`AudioFileReader` is the one decoder of audio files behind both (and behind the training
  pairs): packet by packet, damaged packets skipped with one warning, a rate or channel change
  mid-stream converted by a new resampler (:class:`AudioConverter`), any length.
* :class:`MicrophoneStream` reads a local input device through ``sounddevice`` (PortAudio), imported
  only when a stream is opened so that the rest of the engine works without PortAudio.

Errors caused by the user's input or machine (missing file, no audio stream, no microphone, missing
PortAudio) are :class:`AudioError` with a one-line message.
"""

from __future__ import annotations

import collections
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import av
import numpy as np

from ..errors import PirenderError, describe_value, exception_text

__all__ = [
    "SAMPLE_RATE_HZ",
    "AudioConverter",
    "AudioError",
    "AudioFileReader",
    "AudioFormat",
    "MicrophoneConfig",
    "MicrophoneStream",
    "audio_duration_s",
    "check_samples",
    "load_audio",
]

#: The sample rate of every audio array in the engine (Hz); mono float32 in [-1, 1].
SAMPLE_RATE_HZ = 16_000


class AudioError(PirenderError):
    """Audio that cannot be used: a file without audio, no microphone, a missing audio package."""


def check_samples(samples: object, *, name: str = "samples") -> np.ndarray:
    """``samples`` as a 1-D float32 array (a copy only where needed), or :class:`AudioError`.

    Accepts a 1-D float array (full scale 1.0); refuses other shapes, integer PCM (convert int16
    with ``x / 32768``), complex and non-finite values.
    """
    array = np.asarray(samples)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.floating):
        raise AudioError(
            f"{name} must be a 1-D float array of mono samples in [-1, 1], got {describe_value(samples)}"
        )
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise AudioError(f"{name} contain NaN or infinite values")
    return array


def audio_duration_s(samples: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> float:
    """The duration (s) of 1-D ``samples`` at ``sample_rate_hz``: ``len(samples) / sample_rate_hz``."""
    if sample_rate_hz <= 0:
        raise AudioError(f"sample rate must be positive, got {sample_rate_hz} Hz")
    return len(check_samples(samples)) / sample_rate_hz


def load_audio(path: str | Path, *, warn: bool = True) -> np.ndarray:
    """Decode the first audio stream of ``path`` to (samples,) float32 mono in [-1, 1] at 16 kHz.

    Any container/codec FFmpeg reads works (WAV, MP3, FLAC, OGG, the AAC track of an MP4, ...), with
    any rate and channel count, also when they change mid-stream (concatenated MP3s). Damaged packets
    are skipped with one warning (``warn=False``: none), like the ``ffmpeg`` command does; see
    :class:`AudioFileReader`. Raises :class:`AudioError` for a missing file, a file FFmpeg cannot read
    (e.g. a text file), a file without an audio stream (e.g. a video without sound), an audio stream
    without samples and one whose every packet is damaged.
    """
    with AudioFileReader(path) as reader:
        chunks = [chunk[0] for chunk in reader.chunks(rate_hz=SAMPLE_RATE_HZ, layout="mono")]
        if warn:
            reader.warn_if_damaged()
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise AudioError(f"{reader.path} has an audio stream but no audio samples (empty)")
    return np.clip(samples, -1.0, 1.0)


@dataclass(frozen=True)
class AudioFormat:
    """The rate (Hz), channel layout (FFmpeg's name: ``"mono"``, ``"stereo"``, ``"5.1"``, ...) and
    channel count of decoded audio."""

    rate_hz: int
    layout: str
    channels: int


class AudioConverter:
    """Decoded PyAV audio frames of any format -> float32 (channels, samples) at ``rate_hz`` in
    ``layout``, with FFmpeg's resampler and down/up-mix matrix (libswresample).

    An ``av.AudioResampler`` takes only frames of the format it was set up with; this keeps one per
    input format and starts a new one when the format changes (the old one's last samples are
    flushed first), so a stream that switches rate or channels mid-way converts without a gap.
    Each segment's output has exactly ``round(input samples * rate_hz / input rate)`` samples.
    """

    def __init__(self, rate_hz: int, layout: str) -> None:
        self.rate_hz = int(rate_hz)
        self.layout = layout
        self._resampler: av.AudioResampler | None = None
        self._key: tuple[str, str, int] | None = None
        self._template: av.AudioFrame | None = None
        self._in_samples = 0  # of the current segment, at its input rate
        self._out_samples = 0  # of the current segment, at rate_hz

    def push(self, frame: av.AudioFrame) -> list[np.ndarray]:
        """The converted audio available after ``frame``: a list of (channels, n) float32 arrays."""
        key = (frame.format.name, frame.layout.name, int(frame.sample_rate))
        chunks = self.finish() if key != self._key else []
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate_hz)
            self._key = key
        self._template = frame
        self._in_samples += frame.samples
        return chunks + self._take(self._resampler.resample(frame))

    def finish(self) -> list[np.ndarray]:
        """Flush the current segment (its exact length); the next :meth:`push` starts a new one."""
        resampler, template = self._resampler, self._template
        if resampler is None or template is None:
            return []
        # libswresample keeps back up to a filter length of input and may return nothing at all
        # for a tiny segment (a 1 ms file); pad with silence, flush, and cut to the exact length
        expected = round(self._in_samples * self.rate_hz / template.sample_rate)
        padding = av.AudioFrame(
            format=template.format.name, layout=template.layout.name, samples=template.sample_rate // 50
        )
        for plane in padding.planes:
            plane.update(bytes(plane.buffer_size))
        padding.sample_rate = template.sample_rate
        if template.pts is not None and template.time_base is not None:  # right after the last frame
            padding.time_base = template.time_base
            padding.pts = template.pts + round(template.samples / template.sample_rate / template.time_base)
        chunks = self._take(resampler.resample(padding) + resampler.resample(None))
        excess = self._out_samples - expected
        while excess > 0 and chunks:
            cut = min(excess, chunks[-1].shape[1])
            chunks[-1] = chunks[-1][:, : chunks[-1].shape[1] - cut]
            excess -= cut
            if chunks[-1].shape[1] == 0:
                chunks.pop()
        if excess < 0:
            chunks.append(np.zeros((len(av.AudioLayout(self.layout).channels), -excess), np.float32))
        self._resampler, self._key, self._template = None, None, None
        self._in_samples = self._out_samples = 0
        return chunks

    def _take(self, frames: list[av.AudioFrame]) -> list[np.ndarray]:
        chunks = [frame.to_ndarray().astype(np.float32, copy=False) for frame in frames if frame.samples]
        self._out_samples += sum(chunk.shape[1] for chunk in chunks)
        return chunks


class AudioFileReader:
    """The first audio stream of a file, decoded packet by packet (a context manager).

    What real files contain is survived the way the ``ffmpeg`` command does:

    * a packet the decoder refuses (damaged data, FFmpeg's "Header missing") is skipped and counted
      in ``skipped_packets``; the time it covered (its container duration, ``skipped_s``) becomes
      silence so that what follows keeps its place on the timeline. :meth:`warn_if_damaged` says so
      once; only a stream of which nothing decodes is an error;
    * a change of rate or channels mid-stream (concatenated MP3s) converts without a gap
      (:class:`AudioConverter`);
    * a container that cannot be read further (cut off) ends the stream with what was decoded.

    ``first_time_s`` is the presentation time (s, on the file's timeline) of the first decoded
    sample once decoding started, for putting the sound in sync with a video track of the same file.
    Raises :class:`AudioError` (one line naming the file) for a missing file, a file FFmpeg cannot
    read and a file without an audio stream.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise AudioError(f"audio file not found: {self.path}")
        if not self.path.is_file():
            raise AudioError(f"not an audio file (a folder?): {self.path}")
        try:
            self._container = av.open(str(self.path))
        except av.InvalidDataError as exc:
            raise AudioError(
                f"{self.path} is not an audio or video file FFmpeg can read (invalid data)"
            ) from exc
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise AudioError(f"cannot read {self.path} as audio or video ({exception_text(exc)})") from exc
        if not self._container.streams.audio:
            kinds = ", ".join(stream.type for stream in self._container.streams) or "no streams"
            self._container.close()
            raise AudioError(f"{self.path} has no audio stream ({kinds})")
        self._stream = self._container.streams.audio[0]
        self.skipped_packets = 0
        self.skipped_s = 0.0
        self.first_error = ""
        self.stopped_early = ""  # why reading stopped before the end of the file ("" = it did not)
        self.first_time_s: float | None = None
        # skipped (damaged) packets before the first decoded frame, given out as silence before it
        self.leading_silence_s = 0.0
        self.decoded_frames = 0
        self._used = False

    def __enter__(self) -> AudioFileReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (safe to call more than once); frames not yet decoded are not read."""
        self._container.close()

    def frames(self) -> Iterator[tuple[av.AudioFrame, float]]:
        """(frame, silence_s) in decoding order: ``silence_s`` is the time (s) of the packets skipped
        just before ``frame`` (0.0 almost always). A reader decodes once."""
        if self._used:
            raise AudioError(f"{self.path}: the audio was already decoded (open a new reader)")
        self._used = True
        time_base = self._stream.time_base
        pending_s = 0.0
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.FFmpegError, OSError) as exc:  # the container itself: nothing more can be read
                self.stopped_early = exception_text(exc)
                break
            try:
                decoded = packet.decode()
            except av.FFmpegError as exc:
                self.skipped_packets += 1
                self.first_error = self.first_error or (exc.strerror or exception_text(exc))
                if packet.duration and time_base is not None:
                    pending_s += float(packet.duration * time_base)
                    self.skipped_s += float(packet.duration * time_base)
                continue
            for frame in decoded:
                if self.first_time_s is None and frame.time is not None:
                    self.first_time_s = float(frame.time)
                    self.leading_silence_s = pending_s
                self.decoded_frames += 1
                yield frame, pending_s
                pending_s = 0.0
        if self.stopped_early:
            try:
                tail = self._stream.codec_context.decode(None)  # what the decoder still holds
            except av.FFmpegError:
                tail = []
            for frame in tail:
                self.decoded_frames += 1
                yield frame, pending_s
                pending_s = 0.0

    def chunks(self, *, rate_hz: int, layout: str) -> Iterator[np.ndarray]:
        """The whole stream as (channels, n) float32 arrays at ``rate_hz`` in ``layout`` (FFmpeg's
        conversion, :class:`AudioConverter`), silence where damaged packets were skipped; raises
        :class:`AudioError` when every packet is damaged."""
        converter = AudioConverter(rate_hz, layout)
        channels = len(av.AudioLayout(layout).channels)
        try:
            for frame, silence_s in self.frames():
                if silence_s > 0:
                    yield from converter.finish()
                    yield np.zeros((channels, round(silence_s * rate_hz)), np.float32)
                yield from converter.push(frame)
            yield from converter.finish()
        except (av.FFmpegError, ValueError) as exc:  # a format the resampler cannot convert
            raise AudioError(f"cannot convert the audio of {self.path} ({exception_text(exc)})") from exc
        if self.decoded_frames == 0 and self.skipped_packets:
            raise AudioError(
                f"cannot decode the audio of {self.path}: all {self.skipped_packets} packets are damaged "
                f"({self.first_error})"
            )

    def formats(self) -> list[AudioFormat]:
        """Every format the stream decodes to, in order of appearance (decodes the whole stream)."""
        seen: list[AudioFormat] = []
        for frame, _ in self.frames():
            found = AudioFormat(int(frame.sample_rate), frame.layout.name, len(frame.layout.channels))
            if found not in seen:
                seen.append(found)
        if not seen and self.skipped_packets:
            raise AudioError(
                f"cannot decode the audio of {self.path}: all {self.skipped_packets} packets are damaged "
                f"({self.first_error})"
            )
        return seen

    def warn_if_damaged(self) -> None:
        """One warning (``warnings.warn``) when packets were skipped or reading stopped early."""
        if self.skipped_packets:
            warnings.warn(
                f"{self.path}: skipped {self.skipped_packets} damaged audio packet"
                f"{'s' if self.skipped_packets != 1 else ''} ({self.first_error}), replaced by "
                f"{1000 * self.skipped_s:.0f} ms of silence",
                UserWarning,
                stacklevel=2,
            )
        if self.stopped_early:
            warnings.warn(
                f"{self.path}: the audio could not be read to its end ({self.stopped_early}); "
                f"using what was decoded",
                UserWarning,
                stacklevel=2,
            )


# --------------------------------------------------------------------------------------------------
# local microphone

_PORTAUDIO_HINT = "on Debian/Ubuntu: apt install libportaudio2; on macOS: brew install portaudio"


@dataclass(frozen=True)
class MicrophoneConfig:
    """How :class:`MicrophoneStream` reads the device.

    ``block_ms``: samples per callback block in milliseconds (10 ms = 160 samples at 16 kHz; the
    latency PortAudio adds is about one block). ``queue_ms``: the most audio kept between reads; when
    the reader falls behind, the oldest blocks are dropped (counted in ``dropped_blocks``).
    ``device``: a sounddevice device index or name substring; None = the system's default input.
    """

    block_ms: int = 10
    queue_ms: int = 2_000
    device: int | str | None = None

    def __post_init__(self) -> None:
        if self.block_ms <= 0 or self.queue_ms < self.block_ms:
            raise AudioError(
                f"microphone block must be > 0 ms and the queue at least one block, "
                f"got block {self.block_ms} ms, queue {self.queue_ms} ms"
            )

    @property
    def block_samples(self) -> int:
        return self.block_ms * SAMPLE_RATE_HZ // 1000

    @property
    def queue_blocks(self) -> int:
        return self.queue_ms // self.block_ms


def _import_sounddevice() -> ModuleType:
    """The ``sounddevice`` module, or one clear :class:`AudioError` saying what is missing."""
    try:
        import sounddevice
    except ImportError as exc:
        raise AudioError(
            f"no microphone support: the Python package sounddevice is not installed "
            f"(pip install sounddevice; it also needs PortAudio: {_PORTAUDIO_HINT})"
        ) from exc
    except OSError as exc:  # sounddevice raises OSError('PortAudio library not found')
        raise AudioError(
            f"no microphone support: the PortAudio library is missing ({_PORTAUDIO_HINT}; "
            f"{exception_text(exc, with_type=False)})"
        ) from exc
    return sounddevice


class MicrophoneStream:
    """A local microphone as mono 16 kHz float32 blocks (a context manager).

    PortAudio calls back on its own thread with (block_samples,) blocks; they go into a bounded
    queue (``config.queue_ms`` of audio, oldest dropped first), and :meth:`read` takes everything
    queued so far. Opening raises one :class:`AudioError` when sounddevice or PortAudio is missing,
    when no input device exists, or when the device cannot be opened at 16 kHz mono.

    Usage::

        with MicrophoneStream() as mic:
            while running:
                samples = mic.read(timeout_s=0.1)  # None when nothing arrived in time
    """

    def __init__(self, config: MicrophoneConfig | None = None) -> None:
        self.config = config or MicrophoneConfig()
        self._blocks: collections.deque[np.ndarray] = collections.deque(maxlen=self.config.queue_blocks)
        self._arrived = threading.Condition()
        self._stream: Any = None
        self.dropped_blocks = 0
        #: Callbacks that carried PortAudio status flags (input overflow etc.), and the last flags as text.
        self.status_count = 0
        self.last_status = ""

    def __enter__(self) -> MicrophoneStream:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    def open(self) -> None:
        """Start capturing (no-op when already open)."""
        if self._stream is not None:
            return
        sd = _import_sounddevice()
        try:
            devices = list(sd.query_devices())
        except sd.PortAudioError as exc:
            raise AudioError(f"cannot list audio devices ({exception_text(exc)}; {_PORTAUDIO_HINT})") from exc
        if not any(int(device.get("max_input_channels", 0)) > 0 for device in devices):
            raise AudioError(
                "no microphone found (sounddevice sees no input device); "
                f"connect or enable a microphone and check its permissions ({_PORTAUDIO_HINT})"
            )
        try:
            stream = sd.InputStream(
                samplerate=SAMPLE_RATE_HZ,
                channels=1,
                dtype="float32",
                blocksize=self.config.block_samples,
                device=self.config.device,
                callback=self._callback,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            which = "the default input" if self.config.device is None else repr(self.config.device)
            raise AudioError(
                f"cannot open microphone {which} at {SAMPLE_RATE_HZ} Hz mono ({exception_text(exc)})"
            ) from exc
        self._stream = stream

    def close(self) -> None:
        """Stop capturing and release the device (safe to call twice)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()

    def _callback(self, indata: np.ndarray, frames: int, time: object, status: object) -> None:
        """PortAudio thread: (frames, 1) float32 -> one queued (frames,) block."""
        del frames, time
        if status:
            self.status_count += 1
            self.last_status = str(status)
        block = np.array(indata[:, 0], dtype=np.float32)
        with self._arrived:
            if len(self._blocks) == self._blocks.maxlen:
                self.dropped_blocks += 1  # deque(maxlen) drops the oldest on append
            self._blocks.append(block)
            self._arrived.notify_all()

    def read(self, timeout_s: float | None = None) -> np.ndarray | None:
        """Everything captured since the last read, (samples,) float32 oldest first; waits up to
        ``timeout_s`` seconds (None = forever) for the first block and returns None on timeout (at
        once when the stream is closed and nothing is left)."""
        with self._arrived:
            if not self._blocks and (
                self._stream is None or not self._arrived.wait_for(lambda: bool(self._blocks), timeout_s)
            ):
                return None
            blocks = list(self._blocks)
            self._blocks.clear()
        return np.concatenate(blocks)
