"""Training the audio-to-motion flow on (audio, motion) pairs: ``pirender train-audio``.

Pairs are ``<name>.wav`` + ``<name>.npz`` (open-space motion, or the authors' 73-wide space for a
PIRenderer model; all pairs in one space), from ``training.audio_data`` (synthetic espeak-ng speech)
or ``training.audio_pairs`` (real talking-head videos). Per video frame the audio
feature is the mean of its four 10 ms log-mel frames (40 numbers at 25 fps). Training draws random
windows of ``window_frames`` frames, adds a little noise to the motion (constant slots such as
``scale`` would otherwise make the likelihood unbounded) and minimises the flow's negative
log-likelihood with Adam. Progress bar; the best checkpoint is written atomically.

Real speech (pairs of ``pirender prepare-audio DATASET``: each ``.npz`` names its speaker):

- **Motion normalised per person** (``person_norm``, on when the pairs name their speakers): each
  speaker's rows are moved onto a frontal neutral (``retarget.frontal_rest_row``) from the speaker's
  own neutral (per slot the median of the speaker's frames; ``jaw_open``: its 5th percentile, the
  closed mouth) and the expression slots are scaled by (median spread over speakers) / (the
  speaker's spread, 5th-95th percentile; the factor kept in 0.5..2), so a wide-mouthed speaker does
  not teach every avatar to gape.
- **Early stopping on the held-out measure**: every ``eval_every`` steps the model makes the mouth
  of each validation pair from its sound exactly as ``pirender talk`` does (temperature 0, the
  voice-activity gate) and the frame-weighted Pearson correlation with the pair's tracked mouth (best
  lag within +-2 frames; ``talk_eval``) decides which checkpoint is kept (without validation pairs
  with sound: the validation NLL). After training the kept model is measured at
  :data:`TEMPERATURES` and the best is recorded in the checkpoint (``training.temperature``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from pirender.engine.audio.features import FeatureConfig, FeatureNorm, video_frame_log_mel
from pirender.engine.audio.sources import load_audio
from pirender.engine.audioflow.checkpoint import load_flow, save_flow_checkpoint
from pirender.engine.audioflow.flow import AudioMotionFlow, FlowConfig
from pirender.engine.errors import PirenderError
from pirender.engine.motion.io import load_motion
from pirender.engine.motion.retarget import frontal_rest_row
from pirender.engine.motion.space import OPEN_SPACE, MotionSpace
from pirender.engine.talk import load_talk_model

#: motion noise (open-space units) added while training, and the smallest per-slot std
MOTION_NOISE = 0.01
MIN_MOTION_STD = 0.02
#: temperatures measured on the validation pairs after training (the best is recorded)
TEMPERATURES = (0.0, 0.2, 0.4, 0.6)
_JAW = OPEN_SPACE.index("jaw_open")
_EXPRESSION = OPEN_SPACE.group("expression")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1500
    batch_size: int = 16
    window_frames: int = 50  # 2 s at 25 fps
    learning_rate: float = 1e-3
    seed: int = 0
    history_frames: int = 3
    audio_lookahead_frames: int = 2  # 80 ms of added latency at 25 fps
    flow_steps: int = 6
    lstm_hidden: int = 64
    person_norm: bool = True
    eval_every: int = 100
    feature_norm: bool = False  # per-utterance features (audio.features.FeatureNorm)
    feature_prior_frames: float = 100.0  # 4 s at 25 fps


class Pair(NamedTuple):
    """One (audio, motion) pair: ``motion`` (T, width), ``audio`` (T, 40) features, the pair's
    ``name``, its speaker (``identity``: the npz meta's; "" when it names none, as synthetic pairs)
    and its ``samples`` (16 kHz)."""

    motion: np.ndarray
    audio: np.ndarray
    name: str
    identity: str
    samples: np.ndarray


def load_pairs(folders: list[Path]) -> tuple[MotionSpace, list[Pair]]:
    """(the pairs' motion space, every complete pair in the folders); every pair must be in the same
    space (open, or the authors' 73-wide)."""
    pairs = []
    space: MotionSpace | None = None
    for folder in folders:
        for npz in sorted(folder.glob("*.npz")):
            wav = npz.with_suffix(".wav")
            if not wav.exists():
                continue
            motion = load_motion(npz)
            if space is None:
                space = motion.space
            elif motion.space != space:
                raise PirenderError(
                    f"{npz}: motion space {motion.space.name!r}, the first pair's is {space.name!r}"
                )
            samples = load_audio(wav)
            audio = video_frame_log_mel(samples, len(motion), motion.fps)
            identity = str(motion.meta.get("identity", ""))
            pairs.append(Pair(motion.values.astype(np.float32), audio, npz.stem, identity, samples))
    if not pairs or space is None:
        raise PirenderError(f"no (wav, npz) pairs in {', '.join(map(str, folders))}")
    return space, pairs


def person_normalise(pairs: list[Pair]) -> tuple[list[Pair], dict[str, Any]]:
    """Open-space pairs with each speaker's motion moved onto a frontal neutral and its expression
    scaled to the speakers' median spread (module docstring); returns the pairs and the statistics."""
    by_person: dict[str, list[int]] = {}
    for index, pair in enumerate(pairs):
        if pair.identity:  # pairs that name no speaker stay as they are
            by_person.setdefault(pair.identity, []).append(index)
    if not by_person:
        return pairs, {"speakers": 0}
    neutral, spread = {}, {}
    for person, indices in by_person.items():
        rows = np.concatenate([pairs[i].motion for i in indices])
        neutral[person] = np.median(rows, axis=0)
        neutral[person][_JAW] = np.percentile(rows[:, _JAW], 5)
        spread[person] = np.maximum(np.percentile(rows, 95, axis=0) - np.percentile(rows, 5, axis=0), 1e-3)
    typical = np.median(np.stack(list(spread.values())), axis=0)
    rest = frontal_rest_row().astype(np.float32)
    out = []
    for pair in pairs:
        if not pair.identity:
            out.append(pair)
            continue
        scale = np.ones(OPEN_SPACE.width, np.float32)
        scale[_EXPRESSION] = np.clip(typical[_EXPRESSION] / spread[pair.identity][_EXPRESSION], 0.5, 2.0)
        rows = rest + (pair.motion - neutral[pair.identity]) * scale
        out.append(pair._replace(motion=rows.astype(np.float32)))
    stats = {"speakers": len(by_person), "typical_spread": [round(float(v), 4) for v in typical]}
    return out, stats


def lip_sync_correlation(
    model: AudioMotionFlow, pairs: list[Pair], temperature: float, seed: int = 0
) -> float:
    """Frame-weighted mean over ``pairs`` of the best-lag (+-2 frames) Pearson correlation between the
    mouth the model makes from each pair's sound (``engine.talk.motion_for_speech``, as ``pirender
    talk``) and the pair's own mouth (``jaw_open``)."""
    from pirender.engine.talk import TalkConfig, motion_for_speech
    from pirender.training.talk_eval import MAX_LAG, best_lag_correlation

    rest = frontal_rest_row()
    total = weight = 0.0
    model.eval()
    for pair in pairs:
        config = TalkConfig(temperature=temperature, seed=seed)
        jaw = motion_for_speech(pair.samples, model, rest, config).values[:, _JAW]
        frames = min(len(jaw), len(pair.motion))
        if frames < 8:
            continue
        times = np.arange(frames) / config.fps
        r, _ = best_lag_correlation(
            times, jaw[:frames], times, pair.motion[:frames, _JAW], config.fps, MAX_LAG
        )
        total, weight = total + r * frames, weight + frames
    return total / weight if weight else float("nan")


def _windows(pairs: list[Pair], count: int, frames: int,
             rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    motions, audios = [], []
    long_enough = [p for p in pairs if len(p[0]) >= frames]
    for index in rng.integers(0, len(long_enough), size=count):
        motion, audio = long_enough[index].motion, long_enough[index].audio
        start = int(rng.integers(0, len(motion) - frames + 1))
        motions.append(motion[start : start + frames])
        audios.append(audio[start : start + frames])
    return torch.from_numpy(np.stack(motions)), torch.from_numpy(np.stack(audios))


def train(
    train_folders: list[Path],
    out: Path,
    *,
    config: TrainConfig | None = None,
    validation_folders: list[Path] | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Train a flow and write its checkpoint to ``out``; returns the final figures."""
    cfg = config or TrainConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    space, pairs = load_pairs(train_folders)
    validation = pairs[-max(1, len(pairs) // 10) :]
    if validation_folders:
        validation_space, validation = load_pairs(validation_folders)
        if validation_space != space:
            raise PirenderError(
                f"validation pairs are in {validation_space.name!r}, training pairs in {space.name!r}"
            )
    flow_config = FlowConfig.for_space(
        space,
        audio_feature_width=40,
        history_frames=cfg.history_frames,
        audio_lookahead_frames=cfg.audio_lookahead_frames,
        steps=cfg.flow_steps,
        lstm_hidden=cfg.lstm_hidden,
    )
    # windows of window_frames, shorter when every clip is shorter (a clip shorter than a window is unused)
    window_frames = min(cfg.window_frames, *(max(len(p[0]) for p in group) for group in (pairs, validation)))
    if window_frames < cfg.history_frames + cfg.audio_lookahead_frames + 2:
        raise PirenderError(f"the pairs are too short to train on ({window_frames} frames at most)")
    norm_stats: dict[str, Any] = {"speakers": 0}
    if cfg.person_norm and space == OPEN_SPACE:
        pairs, norm_stats = person_normalise(pairs)
    by_sync = space == OPEN_SPACE  # the lip-sync measure decides (module docstring); else the NLL
    features: dict[str, Any] = {**asdict(FeatureConfig()), "fps": 25.0, "per_video_frame": "mean"}
    norm = None
    if cfg.feature_norm:  # prior = the training features; every pair normalised from its own start
        raw = np.concatenate([p.audio for p in pairs])
        norm = FeatureNorm(raw.mean(axis=0), raw.std(axis=0) + 1e-3, cfg.feature_prior_frames)
        pairs = [p._replace(audio=norm.normalise(p.audio)) for p in pairs]
        validation = [p._replace(audio=norm.normalise(p.audio)) for p in validation]
        features["cmvn"] = norm.to_features()
    model = AudioMotionFlow(config=flow_config)
    model.feature_norm = norm
    all_motion = torch.from_numpy(np.concatenate([p[0] for p in pairs]))
    mean, std = all_motion.mean(dim=0), all_motion.std(dim=0).clamp_min(MIN_MOTION_STD)
    model.set_normalisation(mean=mean, std=std)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    val_motion, val_audio = _windows(validation, 32, window_frames, np.random.default_rng(cfg.seed + 1))
    best, best_step, best_nll, best_sync = -float("inf"), 0, float("nan"), None
    history: list[dict[str, float | None]] = []

    def save(extra: dict[str, Any]) -> None:  # the best model so far: nothing is lost if stopped
        training = {**asdict(cfg), "pairs": len(pairs), "person_norm": norm_stats, "history": history}
        save_flow_checkpoint(
            out,
            model,
            space=space,
            features=features,
            training={**training, "val_nll": best_nll, "step": best_step, **extra},
        )

    started = time.perf_counter()
    bar = tqdm(range(cfg.steps), unit="step", disable=not progress, dynamic_ncols=True)
    for step in bar:
        model.train()
        motion, audio = _windows(pairs, cfg.batch_size, window_frames, rng)
        motion = motion + MOTION_NOISE * torch.randn_like(motion)
        loss = model.nll(motion, audio)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimiser.step()
        if (step + 1) % cfg.eval_every == 0 or step == cfg.steps - 1:
            model.eval()
            with torch.no_grad():
                val = float(model.nll(val_motion + MOTION_NOISE * torch.randn_like(val_motion), val_audio))
            sync = lip_sync_correlation(model, validation, 0.0, cfg.seed) if by_sync else None
            if sync is not None and not math.isfinite(sync):  # no validation pair long enough
                sync = None
            history.append({"step": step + 1, "val_nll": round(val, 4), "val_sync_t0": sync})
            bar.set_postfix(train=f"{loss.item():.3f}", val=f"{val:.3f}", sync=f"{sync or 0:.3f}")
            score = sync if sync is not None else -val
            if score > best and math.isfinite(val):
                best, best_step, best_nll, best_sync = score, step + 1, val, sync
                save({"val_sync_t0": sync})
    if best_step == 0:
        raise PirenderError("training diverged: no finite validation figure to keep a model by")
    model = load_talk_model(out, space=space) if by_sync else load_flow(out)[0]  # the kept (best) model
    temperatures = (
        {t: lip_sync_correlation(model, validation, t, cfg.seed) for t in TEMPERATURES} if by_sync else {}
    )
    temperatures = {t: r for t, r in temperatures.items() if math.isfinite(r)}
    chosen = max(temperatures, key=lambda t: temperatures[t]) if temperatures else None
    save(
        {
            "val_sync_t0": best_sync,
            "temperature": chosen,
            "val_sync_by_temperature": {str(t): round(v, 4) for t, v in temperatures.items()},
        }
    )
    return {
        "val_nll": best_nll,
        "val_sync": float("nan") if best_sync is None else best_sync,
        "temperature": float("nan") if chosen is None else chosen,
        "step": float(best_step),
        "seconds": time.perf_counter() - started,
        "pairs": float(len(pairs)),
    }
