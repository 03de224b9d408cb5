"""Self-made (speech, motion) training pairs for the audio-to-motion flow — no downloads.

No talking-head data set can be fetched here, so the default model learns from synthetic pairs:

- **speech**: Debian's ``espeak-ng`` reads procedurally built sentences with varied voices (English
  accents, ``+m1..+m7`` / ``+f1..+f4`` variants), speed and pitch, with pauses between phrases;
- **motion** (the open space, 25 fps) derived from that speech: the jaw follows the speech's smoothed
  energy envelope (compressed, a few ms behind like real articulation), the lips pucker on dark
  (low spectral centroid, rounded) vowels, the head nods and turns slowly with prosody plus a random
  drift, brows lift on emphasis peaks, blinks come at random (Poisson, ~every 3 s), and silence gives
  a closed mouth and calm idle drift.

The recipe is seeded: the same seed gives the same pairs. ``pirender prepare-audio`` (for real
talking-head videos) and this generator write the same pair format: ``<name>.wav`` + ``<name>.npz``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pirender.engine.errors import PirenderError
from pirender.engine.motion.space import OPEN_SPACE, MotionSequence

VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4")
_WORD_TEXT = (
    "the avatar speaks in real time while the portrait moves its head and smiles at the camera "
    "every morning we open the window look at the river and count boats going north before "
    "lunch people talk about music travel weather books food and the news of a small town "
    "quickly slowly maybe never always today tomorrow yesterday beautiful strange quiet loud "
    "open close round wide bright dark hello thank you good night please wait here over there"
)
_WORDS = tuple(_WORD_TEXT.split())


@dataclass(frozen=True)
class SyntheticSpeechConfig:
    fps: float = 25.0
    sample_rate_hz: int = 16_000
    phrases: tuple[int, int] = (2, 4)  # phrases per utterance
    words: tuple[int, int] = (3, 9)  # words per phrase
    pause_s: tuple[float, float] = (0.25, 0.9)  # silence between phrases
    speed_wpm: tuple[int, int] = (130, 200)
    pitch: tuple[int, int] = (30, 70)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, *, voice: str, speed_wpm: int, pitch: int, sample_rate_hz: int = 16_000) -> np.ndarray:
    """Mono float32 speech of ``text`` at ``sample_rate_hz`` from espeak-ng."""
    from pirender.engine.audio.sources import load_audio

    if not espeak_available():
        raise PirenderError("synthetic speech needs espeak-ng: apt-get install espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        command = ["espeak-ng", "-v", voice, "-s", str(speed_wpm), "-p", str(pitch), "-w", str(wav), text]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0 or not wav.exists():
            raise PirenderError(f"espeak-ng failed for voice {voice!r}: {result.stderr.strip()[:200]}")
        samples = load_audio(wav)
    if sample_rate_hz != 16_000:
        raise PirenderError("the synthetic recipe works at 16 kHz")
    return samples


def utterance(rng: np.random.Generator, config: SyntheticSpeechConfig) -> tuple[np.ndarray, str]:
    """One utterance: phrases of speech separated by pauses, one voice. Returns (samples, voice)."""
    voice = f"{rng.choice(VOICES)}+{rng.choice(VARIANTS)}"
    speed, pitch = int(rng.integers(*config.speed_wpm)), int(rng.integers(*config.pitch))
    pieces = [np.zeros(int(rng.uniform(*config.pause_s) * config.sample_rate_hz), np.float32)]
    for _ in range(int(rng.integers(config.phrases[0], config.phrases[1] + 1))):
        words = rng.choice(_WORDS, size=int(rng.integers(config.words[0], config.words[1] + 1)))
        pieces.append(speak(" ".join(words), voice=voice, speed_wpm=speed, pitch=pitch))
        pieces.append(np.zeros(int(rng.uniform(*config.pause_s) * config.sample_rate_hz), np.float32))
    return np.concatenate(pieces), voice


def motion_from_speech(
    samples: np.ndarray, rng: np.random.Generator, config: SyntheticSpeechConfig
) -> MotionSequence:
    """Open-space motion (frames at ``config.fps``) that follows the speech (see the module doc)."""
    rate = config.sample_rate_hz
    hop = round(rate / config.fps)
    frames = int(np.ceil(len(samples) / hop))
    padded = np.pad(samples, (0, frames * hop + hop - len(samples)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * hop)[::hop][:frames]  # 80 ms
    rms = np.sqrt((windows**2).mean(axis=1) + 1e-12)
    level_db = 20 * np.log10(rms)
    speech = level_db > -40.0
    energy = np.clip((level_db + 40.0) / 25.0, 0.0, 1.0) * speech  # 0 silent .. 1 loud
    spectrum = np.abs(np.fft.rfft(windows * np.hanning(windows.shape[1]), axis=1))
    freqs = np.fft.rfftfreq(windows.shape[1], 1 / rate)
    centroid_hz = (spectrum * freqs).sum(axis=1) / (spectrum.sum(axis=1) + 1e-9)
    t_s = np.arange(frames) / config.fps

    def smooth(x: np.ndarray, frames_: int) -> np.ndarray:
        kernel = np.hanning(2 * frames_ + 1)
        return np.convolve(x, kernel / kernel.sum(), mode="same")

    rows = np.zeros((frames, OPEN_SPACE.width), dtype=np.float32)
    rows[:, OPEN_SPACE.index("scale")] = 1.0
    jaw = smooth(energy, 1) ** 0.8 * rng.uniform(0.7, 1.0)
    rows[:, OPEN_SPACE.index("jaw_open")] = np.roll(jaw, 1)  # the mouth lags the sound slightly
    rounded = np.clip((1500.0 - centroid_hz) / 1000.0, 0.0, 1.0) * speech
    rows[:, OPEN_SPACE.index("lip_pucker")] = 0.5 * smooth(rounded, 2)
    smile = np.clip(rng.uniform(-0.1, 0.4) + 0.05 * np.sin(2 * np.pi * t_s / rng.uniform(4, 9)), -0.2, 0.6)
    rows[:, OPEN_SPACE.index("smile_right")] = smile
    rows[:, OPEN_SPACE.index("smile_left")] = smile
    prosody = smooth(energy, 6)
    drift = [smooth(rng.normal(size=frames), 20) * 8 for _ in range(3)]  # slow random head drift
    rows[:, OPEN_SPACE.index("pitch")] = np.radians(3.0 * prosody + 0.4 * drift[0])
    rows[:, OPEN_SPACE.index("yaw")] = np.radians(0.6 * drift[1] + 2.0 * (prosody - prosody.mean()))
    rows[:, OPEN_SPACE.index("roll")] = np.radians(0.3 * drift[2])
    emphasis = np.clip(smooth(energy, 3) - smooth(energy, 12) - 0.05, 0.0, None)
    brows = np.clip(3.0 * emphasis, 0.0, 1.0)
    rows[:, OPEN_SPACE.index("brow_raise_right")] = brows
    rows[:, OPEN_SPACE.index("brow_raise_left")] = brows
    blink = np.zeros(frames)
    for start in np.nonzero(rng.random(frames) < 1.0 / (3.0 * config.fps))[0]:
        blink[start : start + 4] = np.array([0.5, 1.0, 1.0, 0.5])[: max(0, min(4, frames - start))]
    rows[:, OPEN_SPACE.index("blink_right")] = blink
    rows[:, OPEN_SPACE.index("blink_left")] = blink
    return MotionSequence(OPEN_SPACE, rows, fps=config.fps, meta={"recipe": "synthetic-espeak-ng"})


def write_pairs(
    folder: Path, count: int, *, seed: int = 0, config: SyntheticSpeechConfig | None = None
) -> list[Path]:
    """Write ``count`` pairs ``pair_NNNN.wav`` + ``pair_NNNN.npz`` into ``folder`` (resumable:
    existing complete pairs are kept; each file is moved into place when complete). Returns the wav
    paths."""
    from pirender.engine.motion.io import save_motion

    from .audio_pairs import write_wav

    cfg = config or SyntheticSpeechConfig()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        wav, npz = folder / f"pair_{index:04d}.wav", folder / f"pair_{index:04d}.npz"
        if not (wav.exists() and npz.exists()):
            samples, voice = utterance(rng, cfg)
            motion = motion_from_speech(samples, rng, cfg)
            motion.meta["voice"] = voice
            write_wav(wav, samples, cfg.sample_rate_hz)  # each file atomic: a pair that is there is whole
            save_motion(npz, motion)
        written.append(wav)
    return written
