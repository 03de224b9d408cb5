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
- **The mouth readout** (``mouth_readout``, on by default for open-space pairs;
  ``engine.audioflow.readout``): the mouth controls come from a ridge regression on the same audio
  window the flow reads, closed below a share of its training speech (``fit_mouth_readout``: the
  penalty and the share chosen by folds of the training speakers), fitted after the flow. The flow,
  which then makes the rest of the motion, is kept by its validation NLL.
- **Early stopping on the held-out measure** (without the readout): every ``eval_every`` steps the
  model makes the mouth of each validation pair from its sound exactly as ``pirender talk`` does
  (temperature 0, the voice-activity gate) and the frame-weighted Pearson correlation with the
  pair's tracked mouth (best lag within +-2 frames; ``talk_eval``) decides which checkpoint is kept
  (without validation pairs with sound: the validation NLL).
- **Validation people**: the pairs of ``--validation``, else :data:`VALIDATION_PEOPLE` of the
  training speakers held out whole (``hold_out_people``), never the people a model is measured on.

Without the readout, the kept model is then measured at :data:`TEMPERATURES` and the best is recorded
in the checkpoint (``training.temperature``; with it the mouth does not depend on the temperature:
None).
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
from pirender.engine.audioflow.flow import AudioMotionFlow, FlowConfig, audio_windows
from pirender.engine.audioflow.readout import MouthReadout, fit_ridge
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
#: share of the speakers held out to validate on when no validation pairs are given
VALIDATION_PEOPLE = 0.15
#: ridge penalties of the mouth readout tried, per training frame (``fit_mouth_readout`` keeps the
#: one whose mouths follow held-out speakers best)
READOUT_RIDGE_PER_FRAME = (0.1, 0.3, 1.0, 3.0)
#: shares of the training speech the readout's mouth is closed on, tried (the same way)
READOUT_CLOSED_SHARES = (0.0, 0.2, 0.4, 0.6, 0.8)
#: softness of the readout's threshold tried (times its map's standard deviation): the one whose mouth
#: closes during the training speech as often as the training speakers' mouths is used
READOUT_SOFTNESS = (0.0, 0.25, 0.5, 1.0, 2.0)
#: a mouth below this jaw_open (above the speaker's closed mouth, the frontal rest's 0) counts as closed
READOUT_CLOSED_JAW = 0.05
#: folds of the training speakers the readout's penalty is chosen with
READOUT_FOLDS = 5
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
    mouth_readout: bool = True  # the mouth from a ridge map of the audio window (audioflow.readout)


class Pair(NamedTuple):
    """One (audio, motion) pair: ``motion`` (T, width), ``audio`` (T, 40) features, the pair's
    ``name``, its speaker (``identity``: the npz meta's; "" when it names none, as synthetic pairs),
    its ``samples`` (16 kHz) and the ``clip`` of the prepared dataset it was cut from (the meta's;
    else the name)."""

    motion: np.ndarray
    audio: np.ndarray
    name: str
    identity: str
    samples: np.ndarray
    clip: str = ""


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
            clip = str(motion.meta.get("clip", npz.stem))
            pairs.append(Pair(motion.values.astype(np.float32), audio, npz.stem, identity, samples, clip))
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


def readout_mouths(readout: MouthReadout, windows: np.ndarray, speaking: np.ndarray) -> np.ndarray:
    """(T, S) the mouth slots ``engine.talk.SpeechMotion`` makes with ``readout`` from a voice's
    (T, F) flattened audio windows and (T,) speaking weights (``talk.speech_mask``): the readout
    through the one silence rule (``talk.gated_mouth``), on the frontal rest row (a test holds the two
    equal)."""
    from pirender.engine.talk import gated_mouth

    return gated_mouth(readout.predict(windows), speaking)


def fit_mouth_readout(
    model: AudioMotionFlow, pairs: list[Pair], validation: list[Pair], seed: int
) -> tuple[MouthReadout, dict[str, Any]]:
    """The mouth readout (``audioflow.readout``) of ``model``'s audio window: a ridge regression of
    the mouth slots of ``pairs`` (person-normalised, as the flow's) on their windows, over the frames
    where the silence rule hears speech (the rule closes the mouth elsewhere), then closed on a share
    of them (``MouthReadout.closing``) with the softness (:data:`READOUT_SOFTNESS`) whose mouths close
    during that speech as often as the real ones (below :data:`READOUT_CLOSED_JAW`). The penalty
    (:data:`READOUT_RIDGE_PER_FRAME`, times the frames fitted) and the closed share
    (:data:`READOUT_CLOSED_SHARES`) are the pair whose mouths
    follow people the fit did not hear best: the speakers of ``pairs`` in :data:`READOUT_FOLDS`
    folds, each measured with a fit on the others (``talk_eval``'s best-lag Pearson r of the jaw the
    talk path makes, ``readout_mouths``, against the tracked jaw; frame-weighted over all); pairs
    that name no speaker are judged on ``validation`` instead. The readout returned is fitted on all
    of ``pairs``; the figures: ``readout_ridge``, ``readout_closed_share``, ``readout_sync`` (per
    penalty and share) and ``val_sync_t0`` (the chosen pair's: a held-out figure).
    """
    from pirender.engine.talk import MOUTH_SLOTS, TalkConfig, speech_mask
    from pirender.training.talk_eval import MAX_LAG, best_lag_correlation

    cfg, vad, fps = model.config, TalkConfig().vad, 25.0
    jaw = MOUTH_SLOTS.index(_JAW)
    windows, speaking = {}, {}
    for pair in {p.name: p for p in [*pairs, *validation]}.values():  # validation people may be in pairs
        window = audio_windows(
            torch.from_numpy(pair.audio)[None],
            history_frames=cfg.history_frames,
            lookahead_frames=cfg.audio_lookahead_frames,
        )[0]
        windows[pair.name] = window.reshape(len(pair.audio), -1).numpy()
        speaking[pair.name] = speech_mask(pair.samples, len(pair.audio), fps, vad)

    def speech(group: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
        voiced = [speaking[p.name] > 0.5 for p in group]
        x = np.concatenate([windows[p.name][v] for p, v in zip(group, voiced, strict=True)])
        y = np.concatenate([p.motion[v][:, list(MOUTH_SLOTS)] for p, v in zip(group, voiced, strict=True)])
        return x, y

    def closing(linear: MouthReadout, x: np.ndarray, y: np.ndarray, share: float) -> MouthReadout:
        """``linear`` closed on ``share`` of the speech ``x``, with the softness whose mouths close as
        often as the real ones ``y`` do there."""
        real = float(np.mean(y[:, jaw] < READOUT_CLOSED_JAW))
        made = [linear.closing(x, y, share, soft) for soft in READOUT_SOFTNESS]
        shut = [abs(float(np.mean(r.predict(x)[:, jaw] < READOUT_CLOSED_JAW)) - real) for r in made]
        return made[int(np.argmin(shut))]

    def sync(readout: MouthReadout, group: list[Pair]) -> tuple[float, float]:
        total = weight = 0.0
        for pair in group:
            made = readout_mouths(readout, windows[pair.name], speaking[pair.name])[:, jaw]
            times = np.arange(len(made)) / fps
            r, _ = best_lag_correlation(times, made, times, pair.motion[:, _JAW], fps, MAX_LAG)
            total, weight = total + r * len(made), weight + len(made)
        return total, weight

    people = {p.identity for p in pairs}
    if len(people) >= 2 and "" not in people:  # folds of speakers, each measured with a fit on the rest
        folds = deal_people(pairs, min(READOUT_FOLDS, len(people)), seed)
        trials = [
            ([p for p in pairs if p.identity not in g], [p for p in pairs if p.identity in g]) for g in folds
        ]
    else:  # pairs without speakers (synthetic speech): the validation pairs judge
        trials = [(pairs, validation)]
    scores: dict[tuple[float, float], list[float]] = {}
    for fitted_on, measured in trials:
        x, y = speech(fitted_on)
        for per_frame in READOUT_RIDGE_PER_FRAME:
            linear = fit_ridge(x, y, MOUTH_SLOTS, per_frame * len(x))
            for share in READOUT_CLOSED_SHARES:
                total, weight = sync(closing(linear, x, y, share), measured)
                tally = scores.setdefault((per_frame, share), [0.0, 0.0])
                tally[0] += total
                tally[1] += weight
    figures = {key: total / weight for key, (total, weight) in scores.items() if weight}
    if not figures:
        raise PirenderError("no pairs to choose the mouth readout with")
    per_frame, share = max(figures, key=lambda key: figures[key])
    x, y = speech(pairs)
    readout = closing(fit_ridge(x, y, MOUTH_SLOTS, per_frame * len(x)), x, y, share)
    return readout, {
        "readout_ridge": readout.ridge,
        "readout_closed_share": share,
        "readout_softness": [round(float(v), 5) for v in readout.softness],
        "readout_sync": {f"{k[0]:g}/{k[1]:g}": round(v, 4) for k, v in figures.items()},
        "val_sync_t0": figures[(per_frame, share)],
    }


def deal_people(pairs: list[Pair], folds: int, seed: int) -> list[list[str]]:
    """The speakers of ``pairs`` in ``folds`` groups of about equal speech: shuffled with ``seed``, the
    speakers of most speech dealt first, each to the group with the least so far.

    Raises:
        PirenderError: a pair names no speaker, or there are fewer speakers than folds.
    """
    unnamed = [p.name for p in pairs if not p.identity]
    if unnamed:
        raise PirenderError(
            f"holding people out needs pairs that name their speaker, but {len(unnamed)} do not "
            f"(e.g. {unnamed[0]}): use the pairs of pirender prepare-audio DATASET"
        )
    frames: dict[str, int] = {}
    for pair in pairs:
        frames[pair.identity] = frames.get(pair.identity, 0) + len(pair.motion)
    if len(frames) < folds:
        raise PirenderError(f"{len(frames)} speakers cannot fill {folds} folds")
    people = [str(p) for p in np.random.default_rng(seed).permutation(sorted(frames))]
    people.sort(key=lambda p: -frames[p])  # stable: ties keep the shuffled order
    groups: list[list[str]] = [[] for _ in range(folds)]
    load = [0] * folds
    for person in people:
        k = int(np.argmin(load))
        groups[k].append(person)
        load[k] += frames[person]
    return [sorted(g) for g in groups]


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


def hold_out_people(pairs: list[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(training pairs, validation pairs): the pairs of ``fraction`` of the speakers (at least one,
    drawn with ``seed``; never all) held out whole, so validation measures people the model never
    heard. Pairs that name no speaker (synthetic speech) stay in training; without two named
    speakers the last tenth of the pairs validates and also trains (the synthetic recipe).
    """
    people = sorted({p.identity for p in pairs if p.identity})
    if len(people) < 2:
        return pairs, pairs[-max(1, len(pairs) // 10) :]
    count = min(len(people) - 1, max(1, round(fraction * len(people))))
    held = set(np.random.default_rng(seed).permutation(people)[:count].tolist())
    return [p for p in pairs if p.identity not in held], [p for p in pairs if p.identity in held]


def train(
    train_folders: list[Path],
    out: Path,
    *,
    config: TrainConfig | None = None,
    validation_folders: list[Path] | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Train a flow on the pairs of ``train_folders`` and write its checkpoint to ``out``; returns the
    final figures. Validation: the pairs of ``validation_folders``, else :data:`VALIDATION_PEOPLE`
    of the speakers held out (:func:`hold_out_people`)."""
    cfg = config or TrainConfig()
    space, pairs = load_pairs(train_folders)
    readout_pairs = pairs  # the mouth readout chooses by folds of its own: all the training people
    if validation_folders:
        validation_space, validation = load_pairs(validation_folders)
        if validation_space != space:
            raise PirenderError(
                f"validation pairs are in {validation_space.name!r}, training pairs in {space.name!r}"
            )
    else:
        pairs, validation = hold_out_people(pairs, VALIDATION_PEOPLE, cfg.seed)
    return train_on_pairs(
        space, pairs, validation, out, config=cfg, readout_pairs=readout_pairs, progress=progress
    )


def train_on_pairs(
    space: MotionSpace,
    pairs: list[Pair],
    validation: list[Pair],
    out: Path,
    *,
    config: TrainConfig | None = None,
    readout_pairs: list[Pair] | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Train a flow on ``pairs`` (in ``space``), keep the checkpoint that does best on ``validation``
    (module docstring) in ``out``; returns the final figures (``val_nll``, ``val_sync``,
    ``temperature``, ``step``, ``seconds``, ``pairs``). The mouth readout is fitted on
    ``readout_pairs`` (default ``pairs``; it chooses its penalty by folds of its own speakers, so
    they may include validation people carved out of the training data, never people measured later).

    Raises:
        PirenderError: the pairs are too short to train on, or training diverged.
    """
    cfg = config or TrainConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
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
    readout_pairs = list(readout_pairs or pairs)
    if cfg.person_norm and space == OPEN_SPACE:
        pairs, norm_stats = person_normalise(pairs)
        readout_pairs = person_normalise(readout_pairs)[0]
    measurable = space == OPEN_SPACE  # the lip-sync measure exists (the mouth is one slot)
    with_readout = measurable and cfg.mouth_readout
    by_sync = measurable and not with_readout  # keeps the flow when the flow makes the mouth; else NLL
    features: dict[str, Any] = {**asdict(FeatureConfig()), "fps": 25.0, "per_video_frame": "mean"}
    norm = None
    if cfg.feature_norm:  # prior = the training features; every pair normalised from its own start
        raw = np.concatenate([p.audio for p in pairs])
        norm = FeatureNorm(raw.mean(axis=0), raw.std(axis=0) + 1e-3, cfg.feature_prior_frames)
        pairs = [p._replace(audio=norm.normalise(p.audio)) for p in pairs]
        validation = [p._replace(audio=norm.normalise(p.audio)) for p in validation]
        readout_pairs = [p._replace(audio=norm.normalise(p.audio)) for p in readout_pairs]
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
            shown = {"train": f"{loss.item():.3f}", "val": f"{val:.3f}"}
            bar.set_postfix(shown if sync is None else {**shown, "sync": f"{sync:.3f}"})
            score = sync if sync is not None else -val
            if score > best and math.isfinite(val):
                best, best_step, best_nll, best_sync = score, step + 1, val, sync
                save({"val_sync_t0": sync})
    if best_step == 0:
        raise PirenderError("training diverged: no finite validation figure to keep a model by")
    model = load_talk_model(out, space=space) if measurable else load_flow(out)[0]  # the kept (best) model
    readout_figures: dict[str, Any] = {}
    if with_readout:
        model.mouth_readout, readout_figures = fit_mouth_readout(model, readout_pairs, validation, cfg.seed)
        features["mouth_readout"] = model.mouth_readout.to_features()
        best_sync = readout_figures["val_sync_t0"]
    temperatures = (
        {t: lip_sync_correlation(model, validation, t, cfg.seed) for t in TEMPERATURES}
        if by_sync  # the readout's mouth does not depend on the temperature
        else {}
    )
    temperatures = {t: r for t, r in temperatures.items() if math.isfinite(r)}
    chosen = max(temperatures, key=lambda t: temperatures[t]) if temperatures else None
    save(
        {
            "val_sync_t0": best_sync,
            "temperature": chosen,
            "val_sync_by_temperature": {str(t): round(v, 4) for t, v in temperatures.items()},
            **readout_figures,
        }
    )
    return {
        "val_nll": best_nll,
        "val_sync": float("nan") if best_sync is None else best_sync,
        "temperature": float("nan") if chosen is None else chosen,
        "step": float(best_step),
        "seconds": time.perf_counter() - started,
        "pairs": float(len(pairs)),
        "readout_ridge": float(readout_figures.get("readout_ridge", float("nan"))),
    }
