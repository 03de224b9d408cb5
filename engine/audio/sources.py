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
* :class:`MicrophoneStream` reads a local input device through ``sounddevice`` (PortAudio), imported
  only when a stream is opened so that the rest of the engine works without PortAudio.

Errors caused by the user's input or machine (missing file, no audio stream, no microphone, missing
PortAudio) are :class:`AudioError` with a one-line message.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import av
import numpy as np

from ..errors import PirenderError, describe_value, exception_text

__all__ = [
    "SAMPLE_RATE_HZ",
    "AudioError",
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


def load_audio(path: str | Path) -> np.ndarray:
    """Decode the first audio stream of ``path`` to (samples,) float32 mono in [-1, 1] at 16 kHz.

    Any container/codec FFmpeg reads works (WAV, MP3, FLAC, OGG, the AAC track of an MP4, ...).
    Raises :class:`AudioError` for a missing file, a file FFmpeg cannot read (e.g. a text file), a
    file without an audio stream (e.g. a video without sound) and an audio stream without samples.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"audio file not found: {path}")
    if not path.is_file():
        raise AudioError(f"not an audio file (a folder?): {path}")
    try:
        container = av.open(str(path))
    except av.InvalidDataError as exc:
        raise AudioError(f"{path} is not an audio or video file FFmpeg can read (invalid data)") from exc
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioError(f"cannot read {path} as audio or video ({exception_text(exc)})") from exc
    chunks: list[np.ndarray] = []
    with container:
        if not container.streams.audio:
            kinds = ", ".join(stream.type for stream in container.streams) or "no streams"
            raise AudioError(f"{path} has no audio stream ({kinds})")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE_HZ)
        try:
            for frame in container.decode(audio=0):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
        except (av.FFmpegError, ValueError) as exc:
            raise AudioError(f"cannot decode the audio of {path} ({exception_text(exc)})") from exc
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise AudioError(f"{path} has an audio stream but no audio samples (empty)")
    return np.clip(samples, -1.0, 1.0)


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
