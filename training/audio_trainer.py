"""Training the audio-to-motion flow on (audio, motion) pairs: ``pirender train-audio``.

Pairs are ``<name>.wav`` + ``<name>.npz`` (open-space motion, or the authors' 73-wide space for a
PIRenderer model; all pairs in one space), from ``training.audio_data`` (synthetic espeak-ng speech)
or ``training.audio_pairs`` (real talking-head videos). Per video frame the audio
feature is the mean of its four 10 ms log-mel frames (40 numbers at 25 fps). Training draws random
windows of ``window_frames`` frames, adds a little noise to the motion (constant slots such as
``scale`` would otherwise make the likelihood unbounded) and minimises the flow's negative
log-likelihood with Adam. Progress bar; the best checkpoint (validation NLL) is written atomically.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pirender.engine.audio.features import FeatureConfig, video_frame_log_mel
from pirender.engine.audio.sources import load_audio
from pirender.engine.audioflow.checkpoint import save_flow_checkpoint
from pirender.engine.audioflow.flow import AudioMotionFlow, FlowConfig
from pirender.engine.errors import PirenderError
from pirender.engine.motion.io import load_motion
from pirender.engine.motion.space import MotionSpace

#: motion noise (open-space units) added while training, and the smallest per-slot std
MOTION_NOISE = 0.01
MIN_MOTION_STD = 0.02


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


def load_pairs(folders: list[Path]) -> tuple[MotionSpace, list[tuple[np.ndarray, np.ndarray, str]]]:
    """(the pairs' motion space, [(motion (T, width), audio (T, 40), name)]) of every complete pair in
    the folders; every pair must be in the same space (open, or the authors' 73-wide)."""
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
            audio = video_frame_log_mel(load_audio(wav), len(motion), motion.fps)
            pairs.append((motion.values.astype(np.float32), audio, npz.stem))
    if not pairs or space is None:
        raise PirenderError(f"no (wav, npz) pairs in {', '.join(map(str, folders))}")
    return space, pairs


def _windows(pairs: list[tuple[np.ndarray, np.ndarray, str]], count: int, frames: int,
             rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    motions, audios = [], []
    long_enough = [p for p in pairs if len(p[0]) >= frames]
    for index in rng.integers(0, len(long_enough), size=count):
        motion, audio, _ = long_enough[index]
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
    model = AudioMotionFlow(config=flow_config)
    all_motion = torch.from_numpy(np.concatenate([p[0] for p in pairs]))
    mean, std = all_motion.mean(dim=0), all_motion.std(dim=0).clamp_min(MIN_MOTION_STD)
    model.set_normalisation(mean=mean, std=std)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    val_motion, val_audio = _windows(validation, 32, window_frames, np.random.default_rng(cfg.seed + 1))
    best = float("inf")
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
        if step % 100 == 99 or step == cfg.steps - 1:
            model.eval()
            with torch.no_grad():
                val = float(model.nll(val_motion + MOTION_NOISE * torch.randn_like(val_motion), val_audio))
            bar.set_postfix(train=f"{loss.item():.3f}", val=f"{val:.3f}")
            if val < best:
                best = val
                save_flow_checkpoint(
                    out,
                    model,
                    space=space,
                    features={**asdict(FeatureConfig()), "fps": 25.0, "per_video_frame": "mean"},
                    training={**asdict(cfg), "val_nll": val, "pairs": len(pairs), "step": step + 1},
                )
    return {"val_nll": best, "seconds": time.perf_counter() - started, "pairs": float(len(pairs))}
