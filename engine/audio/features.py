"""Log-mel features of 16 kHz mono audio, offline and streaming with identical values.

The front end (our design; the paper does not specify one, see ``shared/design/audio-flow.md``):

* **Frames.** Frame ``t`` covers samples ``[t * hop, t * hop + window)`` (default 25 ms = 400
  samples, hop 10 ms = 160 samples, so 100 frames per second; frame ``t`` starts at ``t * 10`` ms).
  There is no centre padding: frame 0 starts at the first sample, so a frame's features only
  depend on audio at or after its start time (no audio from "before the start" is invented).
  A signal of ``N`` samples gives ``ceil(N / hop)`` frames, one for every hop start inside the
  signal; zeros are appended at the end so the last frames have complete windows.
* **Spectrum.** Each window is multiplied by a periodic Hann window (``0.5 - 0.5 cos(2 pi n / W)``),
  zero-padded at its end to ``n_fft`` = 512 points and transformed with a real FFT; the power
  spectrum is ``|X_k|^2`` (samples at full scale 1.0, no normalisation; no pre-emphasis, no dither).
* **Mel.** 40 triangular filters (peak 1.0 at the centre, not area-normalised) with centres equally
  spaced on the HTK mel scale ``mel = 2595 log10(1 + f / 700)`` between 20 and 7600 Hz; band ``m``
  rises from edge ``m`` to its centre ``m + 1`` and falls to edge ``m + 2`` of the ``n_mels + 2``
  edges. Between the first and last centres the filters sum to 1.
* **Log.** ``log(max(mel_power, 1e-6))`` (natural log): digital silence gives ``log(1e-6)`` ~= -13.8;
  a full-scale tone peaks around +9.
* All arithmetic runs in float64 on each frame independently (the mel projection is an elementwise
  sum in a fixed order, not a BLAS product whose order depends on the batch), and the result is
  float32, so :class:`StreamingLogMel` gives bit-identical values to :func:`log_mel`.

Video alignment: with a 10 ms hop a 25-fps video frame (40 ms) owns exactly 4 audio frames. At
30 fps it owns 3.33: :func:`video_frame_features` uses the fractional schedule documented there.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import describe_value
from .sources import SAMPLE_RATE_HZ, AudioError, check_samples

__all__ = [
    "FeatureConfig",
    "FeatureNorm",
    "MelFilterbank",
    "StreamingLogMel",
    "frames_per_video_frame",
    "hz_to_mel",
    "log_mel",
    "mel_to_hz",
    "video_frame_audio_range",
    "video_frame_features",
]


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel parameters (defaults: 25 ms window, 10 ms hop, 512-point FFT, 40 bands 20..7600 Hz).

    ``log_floor`` is in the units of the mel power (squared full-scale amplitude times FFT gain):
    the smallest value taken before the log.
    """

    sample_rate_hz: int = SAMPLE_RATE_HZ
    window_samples: int = 400  # 25 ms at 16 kHz
    hop_samples: int = 160  # 10 ms at 16 kHz
    n_fft: int = 512
    n_mels: int = 40
    f_min_hz: float = 20.0
    f_max_hz: float = 7600.0
    log_floor: float = 1e-6

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate_hz <= 0:
            problems.append(f"sample rate {self.sample_rate_hz} Hz is not positive")
        if not 0 < self.hop_samples <= self.window_samples <= self.n_fft:
            problems.append(
                f"need 0 < hop <= window <= n_fft, got hop {self.hop_samples}, window "
                f"{self.window_samples}, n_fft {self.n_fft} samples"
            )
        if self.n_mels < 1:
            problems.append(f"n_mels must be at least 1, got {self.n_mels}")
        if not 0 <= self.f_min_hz < self.f_max_hz <= self.sample_rate_hz / 2:
            problems.append(
                f"need 0 <= f_min < f_max <= {self.sample_rate_hz / 2:g} Hz (Nyquist), got "
                f"{self.f_min_hz:g}..{self.f_max_hz:g} Hz"
            )
        if not self.log_floor > 0:
            problems.append(f"log_floor must be positive, got {self.log_floor}")
        if problems:
            raise AudioError("invalid feature config: " + "; ".join(problems))

    @property
    def window_ms(self) -> float:
        return 1000.0 * self.window_samples / self.sample_rate_hz

    @property
    def hop_ms(self) -> float:
        return 1000.0 * self.hop_samples / self.sample_rate_hz

    @property
    def frame_rate_hz(self) -> float:
        """Audio feature frames per second (100 with a 10 ms hop)."""
        return self.sample_rate_hz / self.hop_samples

    @property
    def n_bins(self) -> int:
        """Real-FFT bins ``n_fft // 2 + 1`` (257), bin ``k`` at ``k * sample_rate / n_fft`` Hz."""
        return self.n_fft // 2 + 1

    def frame_count(self, sample_count: int) -> int:
        """Frames :func:`log_mel` gives for ``sample_count`` samples: ``ceil(samples / hop)``."""
        return -(-sample_count // self.hop_samples)


def hz_to_mel(freq_hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(freq_hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`: ``700 (10^(mel / 2595) - 1)``."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


class MelFilterbank:
    """Triangular HTK-mel filters on the real-FFT bins of ``config``.

    ``edges_hz`` (n_mels + 2,): band ``m`` spans ``edges_hz[m]..edges_hz[m + 2]`` and peaks (1.0)
    at ``centres_hz[m] = edges_hz[m + 1]``. ``weights`` (n_mels, n_bins) float64.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        cfg = self.config
        mel_edges = np.linspace(hz_to_mel(cfg.f_min_hz), hz_to_mel(cfg.f_max_hz), cfg.n_mels + 2)
        self.edges_hz: np.ndarray = mel_to_hz(mel_edges)
        self.edges_hz[0], self.edges_hz[-1] = cfg.f_min_hz, cfg.f_max_hz  # exact despite rounding
        self.centres_hz: np.ndarray = self.edges_hz[1:-1]
        self.bin_hz: np.ndarray = np.arange(cfg.n_bins) * (cfg.sample_rate_hz / cfg.n_fft)
        left, centre, right = self.edges_hz[:-2, None], self.edges_hz[1:-1, None], self.edges_hz[2:, None]
        rising = (self.bin_hz[None, :] - left) / (centre - left)
        falling = (right - self.bin_hz[None, :]) / (right - centre)
        self.weights: np.ndarray = np.maximum(0.0, np.minimum(rising, falling))
        empty = np.flatnonzero(self.weights.max(axis=1) == 0)
        if empty.size:
            raise AudioError(
                f"invalid feature config: mel band(s) {empty.tolist()} contain no FFT bin "
                f"(too many bands for n_fft {cfg.n_fft}); use fewer bands or a larger n_fft"
            )
        # Sparse form for the fixed-order projection: band m uses bins start[m] .. start[m] + width - 1.
        nonzero = self.weights > 0
        self._start = nonzero.argmax(axis=1)
        stop = cfg.n_bins - nonzero[:, ::-1].argmax(axis=1)
        width = int((stop - self._start).max())
        offsets = np.arange(width)[:, None]
        self._bins = np.minimum(self._start[None, :] + offsets, cfg.n_bins - 1)  # (width, n_mels)
        inside = self._start[None, :] + offsets < stop[None, :]
        self._band_weights = np.where(inside, self.weights[np.arange(cfg.n_mels)[None, :], self._bins], 0.0)

    def apply(self, power: np.ndarray) -> np.ndarray:
        """(frames, n_bins) power -> (frames, n_mels) mel power, float64.

        Each output is summed over its band's bins in a fixed order with elementwise operations, so
        a frame's value does not depend on which other frames are in the batch (bit-exact streaming).
        """
        mel = np.zeros((power.shape[0], self.config.n_mels), dtype=np.float64)
        for bins, weights in zip(self._bins, self._band_weights, strict=True):
            mel += power[:, bins] * weights
        return mel


class _LogMelCore:
    """The shared per-frame computation of :func:`log_mel` and :class:`StreamingLogMel`."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.filterbank = MelFilterbank(config)
        n = np.arange(config.window_samples)
        self.window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / config.window_samples)  # periodic Hann

    def frames(self, padded: np.ndarray, count: int) -> np.ndarray:
        """(count, n_mels) float32 log-mel of frames ``t`` covering ``padded[t*hop : t*hop+window]``;
        ``padded`` must hold at least ``(count - 1) * hop + window`` samples."""
        cfg = self.config
        if count == 0:
            return np.zeros((0, cfg.n_mels), dtype=np.float32)
        span = (count - 1) * cfg.hop_samples + cfg.window_samples
        windows = np.lib.stride_tricks.sliding_window_view(padded[:span], cfg.window_samples)
        windows = windows[:: cfg.hop_samples].astype(np.float64) * self.window
        spectrum = np.fft.rfft(windows, n=cfg.n_fft, axis=-1)
        power = spectrum.real**2 + spectrum.imag**2
        mel = self.filterbank.apply(power)
        return np.log(np.maximum(mel, cfg.log_floor)).astype(np.float32)


def log_mel(samples: np.ndarray, config: FeatureConfig | None = None) -> np.ndarray:
    """(samples,) mono audio at ``config.sample_rate_hz`` -> (ceil(samples / hop), n_mels) float32.

    Frame ``t`` covers samples ``[t * hop, t * hop + window)``, starting at ``t * hop_ms``; the
    signal is zero-padded at its end so the last frames are complete; no centre padding.
    """
    cfg = config or FeatureConfig()
    signal = check_samples(samples)
    count = cfg.frame_count(len(signal))
    needed = (count - 1) * cfg.hop_samples + cfg.window_samples if count else 0
    padded = np.zeros(max(needed, len(signal)), dtype=np.float32)
    padded[: len(signal)] = signal
    return _LogMelCore(cfg).frames(padded, count)


class StreamingLogMel:
    """:func:`log_mel` over a stream fed in chunks of any size, with bit-identical values.

    :meth:`push` returns the frames completed by the chunk (a frame is complete once all of its
    ``window`` samples arrived, i.e. it lags its start by 25 ms); :meth:`flush` ends the signal,
    returns the last frames (zero-padded like the offline function) and starts a new stream.
    Concatenating every push and the flush equals ``log_mel(whole_signal)``.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        self._core = _LogMelCore(self.config)
        self._buffer = np.zeros(0, dtype=np.float32)  # samples from the next frame's start onwards
        self.frames_emitted = 0
        self.samples_received = 0

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """(n,) new samples -> (new_complete_frames, n_mels) float32 (possibly 0 frames)."""
        cfg = self.config
        chunk = check_samples(chunk, name="chunk")
        self.samples_received += len(chunk)
        self._buffer = np.concatenate([self._buffer, chunk])
        if len(self._buffer) < cfg.window_samples:
            return np.zeros((0, cfg.n_mels), dtype=np.float32)
        count = 1 + (len(self._buffer) - cfg.window_samples) // cfg.hop_samples
        return self._emit(self._buffer, count)

    def flush(self) -> np.ndarray:
        """End of signal: (remaining_frames, n_mels) with zero padding at the end; then resets."""
        cfg = self.config
        count = -(-len(self._buffer) // cfg.hop_samples)
        padded = np.zeros((count - 1) * cfg.hop_samples + cfg.window_samples if count else 0, np.float32)
        padded[: len(self._buffer)] = self._buffer
        frames = self._emit(padded, count)
        self.reset()
        return frames

    def reset(self) -> None:
        """Forget everything (a new signal starts)."""
        self._buffer = np.zeros(0, dtype=np.float32)
        self.frames_emitted = 0
        self.samples_received = 0

    def _emit(self, padded: np.ndarray, count: int) -> np.ndarray:
        frames = self._core.frames(padded, count)
        self._buffer = self._buffer[count * self.config.hop_samples :].copy()
        self.frames_emitted += count
        return frames


# --------------------------------------------------------------------------------------------------
# alignment with video frames


def _fps_fraction(fps: float | Fraction) -> Fraction:
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise AudioError(f"video frame rate must be a positive finite number, got {fps!r}")
    return Fraction(fps).limit_denominator(10_000)  # 29.97 -> 2997/100, 30000/1001 stays exact


def _audio_per_video(fps: float | Fraction, config: FeatureConfig) -> Fraction:
    return Fraction(config.sample_rate_hz, config.hop_samples) / _fps_fraction(fps)


def frames_per_video_frame(fps: float | Fraction, config: FeatureConfig | None = None) -> float:
    """Audio frames per video frame: ``frame_rate_hz / fps`` (4.0 at 25 fps, 3.33 at 30 fps with a
    10 ms hop). A non-integer value means the count per video frame varies (see
    :func:`video_frame_features` for the fixed-count schedule used then)."""
    return float(_audio_per_video(fps, config or FeatureConfig()))


def video_frame_audio_range(
    video_frame: int, fps: float | Fraction, config: FeatureConfig | None = None
) -> range:
    """The audio frames :func:`video_frame_features` stacks for ``video_frame`` (may extend past
    the end of the audio): ``k = ceil(r)`` frames from ``ceil(video_frame * r)``, ``r`` = audio
    frames per video frame."""
    ratio = _audio_per_video(fps, config or FeatureConfig())
    start = math.ceil(video_frame * ratio)
    return range(start, start + math.ceil(ratio))


def video_frame_features(
    features: np.ndarray,
    fps: float | Fraction,
    config: FeatureConfig | None = None,
    *,
    video_frames: int | None = None,
) -> np.ndarray:
    """(audio_frames, n_mels) -> (video_frames, k_audio, n_mels): the audio frames of each video frame.

    Rule (the fractional schedule): with ``r = frame_rate_hz / fps`` audio frames per video frame,
    video frame ``i`` (times ``[i / fps, (i + 1) / fps)``) takes ``k_audio = ceil(r)`` consecutive
    audio frames starting at ``ceil(i * r)``, the first audio frame that starts inside it.
    At 25 fps (r = 4) the frames partition exactly: video frame ``i`` gets audio ``4i .. 4i + 3``.
    At 30 fps (r = 3.33, k = 4) the starts go 0, 4, 7, 10, 14, 17, 20, ...: the interval of a video
    frame holds 4, 3, 3, 4, 3, 3, ... audio frame starts, and where it holds 3 the 4th stacked frame
    is the first of the next video frame (a 10 ms lookahead), so every video frame gets the same
    count and no audio frame is skipped.

    ``video_frames`` defaults to ``ceil(audio_frames / r)``, every video frame starting before the
    audio ends; audio frames needed beyond the end are filled with ``log(config.log_floor)``
    (digital silence).
    """
    cfg = config or FeatureConfig()
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] != cfg.n_mels:
        raise AudioError(f"features must be (frames, {cfg.n_mels}), got {describe_value(features)}")
    ratio = _audio_per_video(fps, cfg)
    count = math.ceil(Fraction(features.shape[0]) / ratio) if video_frames is None else video_frames
    if count < 0:
        raise AudioError(f"video_frames must be >= 0, got {count}")
    k_audio = math.ceil(ratio)
    index = np.arange(count, dtype=np.int64)
    starts = -((-index * ratio.numerator) // ratio.denominator)  # ceil(i * r), exact integers
    rows = starts[:, None] + np.arange(k_audio)[None, :]  # (video_frames, k_audio)
    silence = np.full((1, cfg.n_mels), np.log(cfg.log_floor), dtype=features.dtype)
    padded = np.concatenate([features, silence])
    return padded[np.minimum(rows, features.shape[0])]


def video_frame_log_mel(samples: np.ndarray, frames: int, fps: float) -> np.ndarray:
    """(frames, n_mels) float32: the mean log-mel of each video frame's audio (the flow's input)."""
    per_frame = video_frame_features(log_mel(samples), fps, video_frames=frames)  # (frames, k, n_mels)
    return per_frame.mean(axis=1).astype(np.float32)


class FeatureNorm:
    """Causal per-utterance normalisation (CMVN) of per-video-frame features, the same offline and live.

    Frame ``t`` of an utterance (its features ``x_1 .. x_t`` so far) becomes ``(x_t - m_t) / s_t`` with
    ``m_t``, ``s_t`` the mean and standard deviation of those frames pooled with ``prior_frames`` frames
    of a prior (``mean``, ``std``: the training features'), so the first frames lean on the prior and a
    long utterance on itself: a speaker's level and timbre (microphone gain, vocal tract) are taken out
    as they become known, with no lookahead. :meth:`push` takes frames in order; :meth:`normalise`
    does a whole utterance (equal to pushing its frames one by one after :meth:`reset`).
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray, prior_frames: float) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.prior_frames = float(prior_frames)
        self.reset()

    @classmethod
    def from_features(cls, features: dict) -> FeatureNorm | None:
        """The normaliser a flow checkpoint's ``features`` dict describes (``cmvn``), or None."""
        cmvn = features.get("cmvn")
        if not cmvn:
            return None
        return cls(np.asarray(cmvn["mean"]), np.asarray(cmvn["std"]), float(cmvn["prior_frames"]))

    def to_features(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "prior_frames": self.prior_frames}

    def reset(self) -> None:
        self._count = self.prior_frames
        self._sum = self.prior_frames * self.mean
        self._sum_sq = self.prior_frames * (self.std**2 + self.mean**2)

    def push(self, frame: np.ndarray) -> np.ndarray:
        x = np.asarray(frame, dtype=np.float64)
        self._count += 1.0
        self._sum += x
        self._sum_sq += x * x
        mean = self._sum / self._count
        var = np.maximum(self._sum_sq / self._count - mean * mean, 1e-6)
        return ((x - mean) / np.sqrt(var)).astype(np.float32)

    def normalise(self, features: np.ndarray) -> np.ndarray:
        self.reset()
        out = np.stack([self.push(f) for f in features]) if len(features) else np.asarray(features)
        self.reset()
        return out.astype(np.float32)
