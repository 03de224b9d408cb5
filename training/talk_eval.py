"""Lip sync measured on held-out people: ``pirender eval --talk`` (issue 15's measure).

For every held-out clip of a prepared dataset that has a voice (``talk_data.speech_clips``), the
audio-to-motion model makes the mouth from the clip's own sound exactly as ``pirender talk`` does
(``engine.talk.motion_for_speech``: the flow frame by frame at 25 frames/s, the voice-activity gate),
onto a frontal neutral rest row, and it is compared with the mouth tracked from the clip's video:

- ``corr``: Pearson correlation of the generated and the tracked mouth opening (``jaw_open``) at the
  video's own frames (the generated track is interpolated onto their times), the best over lags of
  -2..+2 video frames (``lag``: positive = the generated mouth late), at each temperature asked
  (the shipped one and 0, the mean path);
- ``energy_corr``: Pearson correlation of the generated mouth opening and the speech energy (RMS dB
  per video frame); the tracked mouth's own (``real_energy_corr``) says what a real face reaches;
- ``silent_closed``: of the frames where the voice-activity detector hears no speech, the fraction
  whose generated mouth is closed (``jaw_open`` below :data:`CLOSED_JAW` above the rest);
- ``longest_open_s``: the longest stretch the generated mouth stays open (above :data:`OPEN_JAW`)
  without closing, in seconds (speech closes the mouth many times a second);
- ``ceiling_corr``: what a model that closes the mouth in silence can reach at best: the Pearson
  correlation of the tracked mouth with itself closed (its 5th percentile) wherever the silence rule
  hears no speech (``talk.speech_mask``, weighted as the rule weights each frame). A speaker who
  pauses with parted lips, or a song the speech detector does not call speech, caps it;
  ``speech_share`` is the share of the clip's frames the rule calls speech.

Pooled figures are frame-weighted means over clips; each clip is also reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pirender.engine.audio.sources import SAMPLE_RATE_HZ
from pirender.engine.audio.vad import SILENCE_DBFS, frame_energy_dbfs
from pirender.engine.motion.retarget import frontal_rest_row
from pirender.engine.motion.space import OPEN_SPACE
from pirender.engine.talk import TalkConfig, load_talk_model, motion_for_speech, speech_mask
from pirender.training.talk_data import SpeechClip, speech_clips

_JAW = OPEN_SPACE.index("jaw_open")
#: a generated mouth is closed below this jaw_open above the rest row (lips 0.05 IOD apart)
CLOSED_JAW = 0.1
#: ... and open above this
OPEN_JAW = 0.2
MAX_LAG = 2


@dataclass(frozen=True)
class TalkEvalConfig:
    """``model``: the flow checkpoint (None: the shipped one); ``temperatures``: None = the shipped
    TalkConfig's and 0."""

    data: Path
    model: Path | None = None
    split: str = "test"
    temperatures: tuple[float, ...] | None = None
    seed: int = 0
    max_lag: int = MAX_LAG


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant."""
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def best_lag_correlation(
    generated_t: np.ndarray,
    generated: np.ndarray,
    times: np.ndarray,
    real: np.ndarray,
    fps: float,
    max_lag: int,
) -> tuple[float, int]:
    """(best Pearson r, its lag in video frames) of the generated track (values at ``generated_t``)
    read at ``times + lag / fps`` against ``real`` at ``times``, lag in -max_lag..max_lag."""
    best = (-2.0, 0)
    for lag in range(-max_lag, max_lag + 1):
        r = pearson(np.interp(times + lag / fps, generated_t, generated), real)
        if r > best[0]:
            best = (r, lag)
    return best


def frame_energy(samples: np.ndarray, times: np.ndarray, fps: float) -> np.ndarray:
    """RMS level (dBFS) of the sound of each video frame centred at ``times`` (one frame period)."""
    half = SAMPLE_RATE_HZ / fps / 2
    out = np.empty(times.size)
    for i, t in enumerate(times):
        a, b = int(max(0, t * SAMPLE_RATE_HZ - half)), int(t * SAMPLE_RATE_HZ + half)
        chunk = samples[a:b]
        out[i] = frame_energy_dbfs(chunk[None])[0] if chunk.size else SILENCE_DBFS
    return out


def longest_open_s(jaw: np.ndarray, fps: float) -> float:
    """Longest run of frames with ``jaw`` above :data:`OPEN_JAW`, in seconds."""
    longest = run = 0
    for value in jaw > OPEN_JAW:
        run = run + 1 if value else 0
        longest = max(longest, run)
    return longest / fps


def silence_ceiling(clip: SpeechClip, vad: Any) -> tuple[float, float]:
    """(``ceiling_corr``, ``speech_share``) of one clip (module docstring)."""
    real = clip.rows[:, _JAW]
    weight = speech_mask(clip.samples, int(clip.frames.max()) + 1, clip.fps, vad)[clip.frames]
    closed = np.percentile(real, 5)
    return pearson(real, closed + (real - closed) * weight), float(weight.mean())


def measure_clip(
    clip: SpeechClip, model: Any, temperatures: tuple[float, ...], config: TalkEvalConfig
) -> dict:
    """The figures of one clip (module docstring)."""
    rest = frontal_rest_row()
    times, real = clip.times_s, clip.rows[:, _JAW]
    energy = frame_energy(clip.samples, times, clip.fps)
    ceiling, speech_share = silence_ceiling(clip, TalkConfig().vad)
    out: dict[str, Any] = {
        "clip": clip.name,
        "identity": clip.identity,
        "fps": round(clip.fps, 3),
        "frames": int(times.size),
        "seconds": round(clip.samples.size / SAMPLE_RATE_HZ, 2),
        "real_energy_corr": round(pearson(real, energy), 4),
        "ceiling_corr": round(ceiling, 4),
        "speech_share": round(speech_share, 4),
    }
    for temperature in temperatures:
        talk = TalkConfig(temperature=temperature, seed=config.seed)
        motion = motion_for_speech(clip.samples, model, rest, talk)
        jaw = motion.values[:, _JAW] - rest[_JAW]
        gen_t = (np.arange(len(jaw)) + 0.5) / talk.fps
        r, lag = best_lag_correlation(gen_t, jaw, times, real, clip.fps, config.max_lag)
        at_frames = np.interp(times, gen_t, jaw)
        silent = speech_mask(clip.samples, len(jaw), talk.fps, talk.vad) == 0
        key = f"t{temperature:g}"
        out[f"corr_{key}"] = round(r, 4)
        out[f"lag_{key}"] = lag
        out[f"energy_corr_{key}"] = round(pearson(at_frames, energy), 4)
        out[f"silent_frames_{key}"] = int(silent.sum())
        out[f"silent_closed_{key}"] = (
            round(float((jaw[silent] < CLOSED_JAW).mean()), 4) if silent.any() else None
        )
        out[f"longest_open_s_{key}"] = round(longest_open_s(jaw, talk.fps), 2)
    return out


def pool_clips(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The pooled figures of :func:`measure_clip` rows: correlations and shares frame-weighted,
    ``silent_closed`` weighted by each clip's silent frames, ``longest_open_s`` the longest."""
    pooled: dict[str, Any] = {"clips": len(rows), "frames": int(sum(r["frames"] for r in rows))}
    weights = np.array([r["frames"] for r in rows], dtype=float)
    for key in rows[0] if rows else {}:
        if key.startswith(("corr_", "energy_corr_", "real_energy_corr", "ceiling_corr", "speech_share")):
            pooled[key] = round(float(np.average([r[key] for r in rows], weights=weights)), 4)
        if key.startswith("silent_closed_"):
            silent = np.array([r[key.replace("closed", "frames")] for r in rows], dtype=float)
            values = np.array([r[key] or 0.0 for r in rows])
            pooled[key] = round(float((values * silent).sum() / max(silent.sum(), 1.0)), 4)
        if key.startswith("longest_open_s_"):
            pooled[key] = max(r[key] for r in rows)
    return pooled


def evaluate_talk(config: TalkEvalConfig, *, progress: bool = True) -> dict[str, Any]:
    """Per-clip and pooled figures (module docstring) of ``config.model`` on ``config.split``."""
    from tqdm import tqdm

    model = load_talk_model(config.model)
    # the shipped temperature and 0, once each (they are the same when the default is 0)
    temperatures = config.temperatures or tuple(dict.fromkeys((TalkConfig().temperature, 0.0)))
    clips, skipped = speech_clips(config.data, config.split)
    rows = [
        measure_clip(c, model, temperatures, config) for c in tqdm(clips, unit="clip", disable=not progress)
    ]
    pooled = pool_clips(rows)
    return {
        "model": str(config.model or "shipped"),
        "temperatures": list(temperatures),
        "split": config.split,
        "per_clip": rows,
        "pooled": pooled,
        "skipped": skipped,
    }


def talk_report(metrics: dict[str, Any]) -> str:
    """A Markdown table of :func:`evaluate_talk`'s figures."""
    temps = [f"t{t:g}" for t in metrics["temperatures"]]
    head = ["clip", "identity", "fps", "s"]
    for t in temps:
        head += [f"corr {t}", f"lag {t}", f"energy corr {t}", f"silent closed {t}", f"longest open s {t}"]
    head += ["real energy corr", "ceiling", "speech share"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cells(row: dict[str, Any], name: str) -> list[str]:
        out = [name, str(row.get("identity", "")), str(row.get("fps", "")), str(row.get("seconds", ""))]
        for t in temps:
            out += [
                str(row.get(f"corr_{t}", "")),
                str(row.get(f"lag_{t}", "")),
                str(row.get(f"energy_corr_{t}", "")),
                str(row.get(f"silent_closed_{t}", "")),
                str(row.get(f"longest_open_s_{t}", "")),
            ]
        extra = ("real_energy_corr", "ceiling_corr", "speech_share")
        return [*out, *(str(row.get(key, "")) for key in extra)]

    for row in metrics["per_clip"]:
        lines.append("| " + " | ".join(cells(row, row["clip"])) + " |")
    lines.append("| " + " | ".join(cells(metrics["pooled"], "**pooled**")) + " |")
    return "\n".join(lines)


__all__ = [
    "TalkEvalConfig",
    "best_lag_correlation",
    "evaluate_talk",
    "measure_clip",
    "pearson",
    "pool_clips",
    "silence_ceiling",
    "talk_report",
]
