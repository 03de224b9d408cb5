"""Tests of engine/audio: loading audio, the microphone's errors, log-mel features, voice activity."""

from __future__ import annotations

import builtins
import itertools
import math
import shutil
import subprocess
import sys
import types
import wave
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from scipy import signal as sps

from pirender.engine.audio.features import (
    FeatureConfig,
    MelFilterbank,
    StreamingLogMel,
    frames_per_video_frame,
    log_mel,
    video_frame_audio_range,
    video_frame_features,
)
from pirender.engine.audio.sources import (
    SAMPLE_RATE_HZ,
    AudioError,
    MicrophoneConfig,
    MicrophoneStream,
    audio_duration_s,
    load_audio,
)
from pirender.engine.audio.vad import VadConfig, VoiceActivity, frame_energy_dbfs

from conftest import shared_data

DURATION_TOLERANCE_S = 0.020
NOISE_DBFS = -60.0
SPEECH_DBFS = -20.0


# --------------------------------------------------------------------------------------------------
# test signals


def _noise(duration_s: float, level_dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """(samples,) white noise with an RMS of ``level_dbfs`` (full scale 1.0)."""
    return rng.standard_normal(round(duration_s * SAMPLE_RATE_HZ)) * 10 ** (level_dbfs / 20)


def _trim(samples: np.ndarray, floor_dbfs: float = -45.0) -> np.ndarray:
    """``samples`` without the leading/trailing 10 ms blocks quieter than ``floor_dbfs``."""
    block = SAMPLE_RATE_HZ // 100
    levels = frame_energy_dbfs(samples[: len(samples) // block * block].reshape(-1, block))
    loud = np.flatnonzero(levels > floor_dbfs)
    return samples[loud[0] * block : (loud[-1] + 1) * block]


def _espeak_utterance(path: Path, text: str) -> np.ndarray:
    """espeak-ng's rendering of ``text`` (16 kHz mono) via the WAV ``path``, trimmed of its silent ends."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt install espeak-ng); the synthetic voice still runs")
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True, timeout=30)
    return _trim(load_audio(path))


#: (centre Hz, bandwidth Hz) of three formants for four vowels (/a/, /i/, /o/, /e/-like).
_VOWEL_FORMANTS = (
    ((700, 80), (1220, 90), (2600, 120)),
    ((300, 60), (2300, 100), (3000, 120)),
    ((500, 70), (900, 80), (2400, 120)),
    ((400, 60), (2000, 90), (2550, 120)),
)


def _synthetic_vowel(duration_s: float, formants: tuple[tuple[int, int], ...]) -> np.ndarray:
    """A 120 Hz glottal pulse train (with a slow +-5 % pitch contour) through 2nd-order formant
    resonators, shaped by a syllable envelope, at ``SPEECH_DBFS`` RMS."""
    count = round(duration_s * SAMPLE_RATE_HZ)
    time_s = np.arange(count) / SAMPLE_RATE_HZ
    pitch_hz = 120.0 * (1.0 + 0.05 * np.sin(2 * np.pi * 3.0 * time_s))
    phase_cycles = np.cumsum(pitch_hz / SAMPLE_RATE_HZ)
    voiced = (np.diff(np.floor(phase_cycles), prepend=0.0) > 0).astype(np.float64)
    for centre_hz, bandwidth_hz in formants:
        radius = math.exp(-math.pi * bandwidth_hz / SAMPLE_RATE_HZ)
        angle = 2 * math.pi * centre_hz / SAMPLE_RATE_HZ
        voiced = sps.lfilter([1 - radius], [1, -2 * radius * math.cos(angle), radius**2], voiced)
    voiced *= np.sin(np.pi * np.arange(count) / count) ** 0.5
    return voiced * 10 ** (SPEECH_DBFS / 20) / np.sqrt(np.mean(voiced**2))


def _synthetic_utterance(syllables: int, rng: np.random.Generator) -> np.ndarray:
    """Syllables of 120..250 ms with 20..60 ms gaps between them (like words in a phrase)."""
    parts = []
    for index in range(syllables):
        if index:
            parts.append(np.zeros(round(rng.uniform(0.02, 0.06) * SAMPLE_RATE_HZ)))
        parts.append(_synthetic_vowel(rng.uniform(0.12, 0.25), _VOWEL_FORMANTS[index % 4]))
    return np.concatenate(parts)


def _speech_in_noise(utterances: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pause, utterance, pause, utterance, pause, all under -60 dBFS white noise.

    Returns (samples,) float32 and (samples,) bool labels (True inside an utterance).
    """
    pauses_s = (0.6, 0.8, 0.6)
    pieces: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for index, pause_s in enumerate(pauses_s):
        pause = np.zeros(round(pause_s * SAMPLE_RATE_HZ))
        pieces.append(pause)
        labels.append(np.zeros(len(pause), dtype=bool))
        if index < len(utterances):
            pieces.append(utterances[index])
            labels.append(np.ones(len(utterances[index]), dtype=bool))
    clean = np.concatenate(pieces)
    noisy = clean + _noise(len(clean) / SAMPLE_RATE_HZ, NOISE_DBFS, rng)
    return noisy.astype(np.float32), np.concatenate(labels)


def _speech_signal(kind: str, tmp_path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two utterances (espeak-ng speech, or the synthetic voice) with pauses, in -60 dBFS noise."""
    rng = np.random.default_rng(7)
    if kind == "espeak":
        assert tmp_path is not None
        texts = ["The quick brown fox jumps over the lazy dog", "How are you today my friend"]
        utterances = [_espeak_utterance(tmp_path / f"utterance{i}.wav", text) for i, text in enumerate(texts)]
    else:
        utterances = [_synthetic_utterance(8, rng), _synthetic_utterance(6, rng)]
    return _speech_in_noise(utterances, rng)


# --------------------------------------------------------------------------------------------------
# voice activity


@pytest.mark.parametrize("kind", ["espeak", "synthetic"])
def test_vad_marks_speech_and_low_noise(kind: str, tmp_path: Path) -> None:
    samples, labels = _speech_signal(kind, tmp_path)
    config = VadConfig()
    speech = VoiceActivity(config).process(samples)
    frame = config.frame_samples
    truth = labels[: len(speech) * frame].reshape(len(speech), frame).mean(axis=1) >= 0.5

    # pause frames more than the hangover after an utterance must be silence
    after_speech = np.zeros(len(truth), dtype=bool)
    for end in np.flatnonzero(truth[:-1] & ~truth[1:]) + 1:
        after_speech[end : end + config.hangover_frames] = True
    pause = ~truth & ~after_speech

    agreement = float(np.mean(speech == truth))
    recall = float(np.mean(speech[truth]))
    silence = float(np.mean(~speech[pause]))
    print(f"{kind}: agreement {agreement:.3f}, speech recall {recall:.3f}, pause silence {silence:.3f}")
    assert agreement >= 0.90, f"{kind}: frames agreeing with the labels {agreement:.3f} < 0.90"
    assert recall >= 0.95, f"{kind}: speech frames found {recall:.3f} < 0.95"
    assert silence >= 0.97, f"{kind}: pause frames (-60 dBFS noise) called silence {silence:.3f} < 0.97"


def test_vad_low_noise_alone_is_silence() -> None:
    noise = _noise(3.0, NOISE_DBFS, np.random.default_rng(3)).astype(np.float32)
    for aggressiveness in range(4):
        speech = VoiceActivity(VadConfig(aggressiveness=aggressiveness)).process(noise)
        assert len(speech) == 100 and not speech.any(), f"mode {aggressiveness}: {speech.sum()} noise frames"
    assert not VoiceActivity().process(np.zeros(SAMPLE_RATE_HZ, np.float32)).any()


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_vad_streaming_equals_one_call(frame_ms: int) -> None:
    samples, _ = _speech_signal("synthetic")
    config = VadConfig(frame_ms=frame_ms)  # type: ignore[arg-type]
    whole = VoiceActivity(config).process(samples)
    assert len(whole) == len(samples) // config.frame_samples

    streaming = VoiceActivity(config)
    rng = np.random.default_rng(0)
    parts, start = [], 0
    while start < len(samples):
        size = int(rng.choice([1, 7, 160, 479, 480, 1000, 2500]))
        parts.append(streaming.process(samples[start : start + size]))
        start += size
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_vad_bad_config_and_input() -> None:
    with pytest.raises(AudioError, match=r"10, 20 or 30 ms"):
        VadConfig(frame_ms=25)  # type: ignore[arg-type]
    with pytest.raises(AudioError, match=r"aggressiveness must be 0, 1, 2 or 3"):
        VadConfig(aggressiveness=4)
    with pytest.raises(AudioError, match=r"1-D float array"):
        VoiceActivity().process(np.zeros((2, 480), np.float32))
    with pytest.raises(AudioError, match=r"1-D float array"):
        VoiceActivity().process(np.zeros(480, np.int16))


def test_vad_without_webrtcvad(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "webrtcvad", None)  # makes `import webrtcvad` fail
    with pytest.raises(AudioError, match=r"pip install webrtcvad-wheels"):
        VoiceActivity()


# --------------------------------------------------------------------------------------------------
# log-mel features


@pytest.mark.parametrize("chunk_sizes", [[1], [7], [160], [401], [1000], [1, 7, 160, 401, 1000, 3, 399]])
def test_streaming_log_mel_equals_offline(chunk_sizes: list[int]) -> None:
    rng = np.random.default_rng(1)
    samples, _ = _speech_signal("synthetic")
    samples = samples[: round(1.5 * SAMPLE_RATE_HZ) + 77]  # not a multiple of the hop
    offline = log_mel(samples)
    assert offline.shape == (math.ceil(len(samples) / 160), 40) and offline.dtype == np.float32

    stream = StreamingLogMel()
    parts, start, call = [], 0, 0
    while start < len(samples):
        size = chunk_sizes[call % len(chunk_sizes)]
        new = stream.push(samples[start : start + size])
        assert new.shape[1] == 40
        parts.append(new)
        start, call = min(start + size, len(samples)), call + 1
        # a frame comes out as soon as its 400 samples arrived, not later
        assert stream.frames_emitted == max(0, (start - 400) // 160 + 1)
    parts.append(stream.flush())
    streamed = np.concatenate(parts)
    assert streamed.shape == offline.shape
    assert np.abs(streamed - offline).max() <= 1e-6

    random_sizes = rng.integers(1, 1200, size=200)
    stream = StreamingLogMel()
    bounds = np.concatenate([[0], np.cumsum(random_sizes)])
    pieces = [stream.push(samples[a:b]) for a, b in itertools.pairwise(bounds) if a < len(samples)]
    streamed = np.concatenate([*pieces, stream.flush()])
    assert np.abs(streamed - offline).max() <= 1e-6


def test_log_mel_framing_has_no_centre_padding() -> None:
    click = np.zeros(2000, np.float32)
    click[1000] = 0.5
    features = log_mel(click)
    floor = np.float32(np.log(FeatureConfig().log_floor))
    touched = np.flatnonzero((features > floor).any(axis=1))
    # frame t covers [160 t, 160 t + 400): sample 1000 lies in frames 4, 5 and 6 only
    assert touched.tolist() == [4, 5, 6]
    assert features.shape == (13, 40)  # ceil(2000 / 160)
    assert log_mel(np.zeros(0, np.float32)).shape == (0, 40)
    assert np.all(log_mel(np.zeros(5, np.float32)) == floor)


def test_log_mel_tone_lands_in_its_band() -> None:
    config = FeatureConfig()
    bank = MelFilterbank(config)
    time_s = np.arange(SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    for tone_hz in (250.0, 1000.0, 4000.0):
        features = log_mel((0.5 * np.sin(2 * np.pi * tone_hz * time_s)).astype(np.float32), config)
        loudest_band = int(np.argmax(features[10:-10].mean(axis=0)))
        nearest_band = int(np.argmin(np.abs(bank.centres_hz - tone_hz)))
        assert abs(loudest_band - nearest_band) <= 1, (tone_hz, loudest_band, nearest_band)


def test_mel_filterbank_sanity() -> None:
    config = FeatureConfig()
    bank = MelFilterbank(config)
    bin_hz = config.sample_rate_hz / config.n_fft
    assert bank.weights.shape == (40, 257)
    assert bank.edges_hz[0] == 20.0 and bank.edges_hz[-1] == 7600.0
    assert np.all(np.diff(bank.centres_hz) > 0)
    # every filter is a non-empty triangle whose largest weight sits on a bin next to its centre
    for band, centre_hz in enumerate(bank.centres_hz):
        weights = bank.weights[band]
        assert weights.max() > 0.0, f"band {band} is empty"
        assert int(np.argmax(weights)) in (math.floor(centre_hz / bin_hz), math.ceil(centre_hz / bin_hz))
        nonzero = np.flatnonzero(weights)
        assert np.all(np.diff(nonzero) == 1), f"band {band} is not one contiguous run of bins"
        peak = int(np.argmax(weights))
        assert np.all(np.diff(weights[nonzero[0] : peak + 1]) > 0)
        assert np.all(np.diff(weights[peak : nonzero[-1] + 1]) < 0)
    # the bank covers 20..7600 Hz: nothing outside, and the filters sum to 1 between the outer centres
    covered_hz = bank.bin_hz[bank.weights.sum(axis=0) > 0]
    assert covered_hz.min() >= 20.0 and covered_hz.max() <= 7600.0
    assert covered_hz.min() < 20.0 + bin_hz and covered_hz.max() > 7600.0 - bin_hz
    inner = (bank.bin_hz >= bank.centres_hz[0]) & (bank.bin_hz <= bank.centres_hz[-1])
    np.testing.assert_allclose(bank.weights[:, inner].sum(axis=0), 1.0, atol=1e-12)
    # HTK mel: centres equally spaced in 2595 log10(1 + f / 700)
    mel = 2595.0 * np.log10(1.0 + bank.edges_hz / 700.0)
    np.testing.assert_allclose(np.diff(mel), np.diff(mel)[0], rtol=1e-9)


def test_feature_config_errors() -> None:
    with pytest.raises(AudioError, match=r"hop <= window <= n_fft"):
        FeatureConfig(hop_samples=500)
    with pytest.raises(AudioError, match=r"Nyquist"):
        FeatureConfig(f_max_hz=9000.0)
    with pytest.raises(AudioError, match=r"contain no FFT bin"):
        MelFilterbank(FeatureConfig(n_mels=200))


def test_video_frame_schedule() -> None:
    assert frames_per_video_frame(25) == 4.0
    assert frames_per_video_frame(30) == pytest.approx(10 / 3)
    assert frames_per_video_frame(Fraction(30000, 1001)) == pytest.approx(3.33667, abs=1e-5)
    features = np.arange(100 * 40, dtype=np.float32).reshape(100, 40)  # 1 s of audio frames

    at_25 = video_frame_features(features, 25)
    assert at_25.shape == (25, 4, 40)
    np.testing.assert_array_equal(at_25.reshape(100, 40), features)

    at_30 = video_frame_features(features, 30)
    assert at_30.shape == (30, 4, 40)
    starts = at_30[:, 0, 0] / 40
    assert starts[:7].tolist() == [0, 4, 7, 10, 14, 17, 20]
    assert list(video_frame_audio_range(2, 30)) == [7, 8, 9, 10]
    used = np.unique(at_30[:, :, 0] / 40)
    assert len(used) == 101  # every audio frame 0..99, plus the silence fill after the end
    floor = np.float32(np.log(FeatureConfig().log_floor))
    assert np.all(at_30[-1, -1] == floor)  # audio frame 100 does not exist: digital silence
    assert video_frame_features(features, 30, video_frames=3).shape == (3, 4, 40)
    with pytest.raises(AudioError, match=r"positive finite"):
        frames_per_video_frame(0)


# --------------------------------------------------------------------------------------------------
# loading audio


def _write_tone(path: Path, codec: str, *, rate_hz: int, duration_s: float, tone_hz: float = 440.0) -> None:
    """A stereo sine (0.5 full scale; the right channel is the left one) written with PyAV."""
    count = round(duration_s * rate_hz)
    tone = (0.5 * np.sin(2 * np.pi * tone_hz * np.arange(count) / rate_hz)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream: Any = container.add_stream(codec, rate=rate_hz, layout="stereo")
        block = 1024
        for start in range(0, count, block):
            part = tone[start : start + block]
            frame = av.AudioFrame.from_ndarray(np.stack([part, part]), format="fltp", layout="stereo")
            frame.sample_rate = rate_hz
            frame.pts = start
            frame.time_base = Fraction(1, rate_hz)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.mark.parametrize(
    ("codec", "suffix", "level_tolerance"),
    [("pcm_s16le", ".wav", 0.01), ("flac", ".flac", 0.01), ("libmp3lame", ".mp3", 0.1)],
)
def test_load_audio_written_by_pyav(tmp_path: Path, codec: str, suffix: str, level_tolerance: float) -> None:
    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    path = tmp_path / f"tone{suffix}"
    _write_tone(path, codec, rate_hz=44_100, duration_s=1.25)
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(audio_duration_s(samples) - 1.25) <= DURATION_TOLERANCE_S
    assert np.abs(samples).max() <= 1.0
    middle = samples[SAMPLE_RATE_HZ // 4 : SAMPLE_RATE_HZ]
    # FFmpeg's stereo -> mono downmix is (L + R) / sqrt(2): equal channels of RMS 0.354 give 0.5
    # (LAME's encode comes out ~0.5 dB lower)
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5, rel=level_tolerance)
    spectrum = np.abs(np.fft.rfft(middle))
    assert np.fft.rfftfreq(len(middle), 1 / SAMPLE_RATE_HZ)[np.argmax(spectrum)] == pytest.approx(440, abs=2)


def test_load_audio_track_of_a_video() -> None:
    path = shared_data("driving", "d3.mp4")
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.duration is not None
        expected_s = float(stream.duration * stream.time_base)
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(audio_duration_s(samples) - expected_s) <= DURATION_TOLERANCE_S
    assert abs(len(samples) / SAMPLE_RATE_HZ - 11.8) <= 0.05  # the data README says 11.8 s


def _write_silent_video(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream: Any = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), index * 40, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_load_audio_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not audio\n" * 20)
    video = tmp_path / "silent.mp4"
    _write_silent_video(video)
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(SAMPLE_RATE_HZ)
    cases: list[tuple[Path, str]] = [
        (tmp_path / "missing.wav", r"audio file not found: .*missing\.wav"),
        (tmp_path, r"not an audio file \(a folder\?\)"),
        (text, r"notes\.txt is not an audio or video file FFmpeg can read"),
        (video, r"silent\.mp4 has no audio stream \(video\)"),
        (empty, r"empty\.wav has an audio stream but no audio samples"),
    ]
    for path, message in cases:
        with pytest.raises(AudioError, match=message) as info:
            load_audio(path)
        assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------------
# microphone


def _machine_has_input_device() -> bool:
    try:
        import sounddevice
    except (ImportError, OSError):
        return False
    return any(int(device["max_input_channels"]) > 0 for device in sounddevice.query_devices())


def test_microphone_missing_on_this_machine() -> None:
    if _machine_has_input_device():
        pytest.skip("this machine has a microphone, so the no-microphone error cannot be seen here")
    with pytest.raises(AudioError, match=r"no microphone") as info, MicrophoneStream():
        pass
    assert "\n" not in str(info.value)


def _fake_sounddevice(
    devices: list[dict[str, Any]], *, open_error: str | None = None
) -> tuple[types.SimpleNamespace, list[Any]]:
    """A stand-in for the sounddevice module; returns it and the list of streams it opened."""
    port_audio_error = type("PortAudioError", (Exception,), {})
    opened: list[Any] = []

    class FakeInputStream:
        def __init__(self, **kwargs: Any) -> None:
            if open_error is not None:
                raise port_audio_error(open_error)
            self.kwargs = kwargs
            self.callback: Callable[..., None] = kwargs["callback"]
            self.running = False
            opened.append(self)

        def start(self) -> None:
            self.running = True

        def stop(self) -> None:
            self.running = False

        def close(self) -> None:
            self.closed = True

    module = types.SimpleNamespace(
        PortAudioError=port_audio_error, query_devices=lambda: devices, InputStream=FakeInputStream
    )
    return module, opened


def test_microphone_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    no_input, _ = _fake_sounddevice([{"name": "speakers", "max_input_channels": 0}])
    monkeypatch.setitem(sys.modules, "sounddevice", no_input)
    with pytest.raises(AudioError, match=r"no microphone found \(sounddevice sees no input device\)"):
        MicrophoneStream().open()

    busy, _ = _fake_sounddevice([{"name": "mic", "max_input_channels": 1}], open_error="Device unavailable")
    monkeypatch.setitem(sys.modules, "sounddevice", busy)
    with pytest.raises(AudioError, match=r"cannot open microphone the default input .*Device unavailable"):
        MicrophoneStream().open()

    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(AudioError, match=r"pip install sounddevice"):
        MicrophoneStream().open()

    real_import = builtins.__import__

    def import_without_portaudio(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sounddevice")
    monkeypatch.setattr(builtins, "__import__", import_without_portaudio)
    with pytest.raises(AudioError, match=r"PortAudio library is missing .*apt install libportaudio2"):
        MicrophoneStream().open()


def test_microphone_queue_drops_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    module, opened = _fake_sounddevice([{"name": "mic", "max_input_channels": 2}])
    monkeypatch.setitem(sys.modules, "sounddevice", module)
    config = MicrophoneConfig(block_ms=10, queue_ms=50)  # 5 blocks of 160 samples
    with MicrophoneStream(config) as mic:
        (stream,) = opened
        assert stream.running
        assert stream.kwargs["samplerate"] == 16_000 and stream.kwargs["channels"] == 1
        assert stream.kwargs["dtype"] == "float32" and stream.kwargs["blocksize"] == 160
        assert mic.read(timeout_s=0.01) is None
        for index in range(8):
            stream.callback(np.full((160, 1), index, np.float32), 160, None, None)
        samples = mic.read(timeout_s=0.01)
        assert samples is not None and samples.shape == (5 * 160,)
        assert np.unique(samples).tolist() == [3, 4, 5, 6, 7]  # blocks 0..2 were dropped
        assert mic.dropped_blocks == 3
    assert not stream.running and stream.closed
    assert mic.read(timeout_s=None) is None  # closed and empty: returns at once
