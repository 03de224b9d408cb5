"""Cross-validation of the audio-to-motion recipe by speaker: ``pirender train-audio --cross-validate K``.

Six held-out clips (one a song) say little about how the recipe does on people it never heard, and a
model kept by its figure on those clips reports that figure too well. Cross-validation by identity
uses every clip with a voice as a held-out clip once:

1. the speakers of all the pairs (``training.audio_trainer.load_pairs``; each ``.npz`` names its
   speaker and its clip) are dealt into ``folds`` groups (shuffled with ``seed``, the speakers of
   most speech dealt first so the folds hold about as much speech each);
2. per fold, a model is trained (``audio_trainer.train_on_pairs``, the recipe of ``TrainConfig``) on
   the other folds' speakers and validated on a share of *those* speakers (``hold_out_people``), as
   ``train-audio`` without ``--validation`` does: the fold's people decide nothing;
3. each of the fold's clips is measured as ``pirender eval --talk`` measures (``talk_eval.measure_clip``
   at the video's own frames, temperature 0), with its silence ceiling.

Writes ``OUT/fold_<k>.pt``, ``OUT/cross_validation.json`` (per clip, per fold, pooled) and
``OUT/cross_validation.md`` (the table). A fold already trained with the same recipe (its finished
checkpoint there) is measured, not trained again, so a stopped run resumes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pirender.engine.audioflow.checkpoint import read_flow_checkpoint
from pirender.engine.errors import PirenderError
from pirender.engine.fileio import write_atomically
from pirender.engine.motion.space import OPEN_SPACE
from pirender.engine.talk import load_talk_model
from pirender.training.audio_trainer import (
    VALIDATION_PEOPLE,
    TrainConfig,
    deal_people,
    hold_out_people,
    load_pairs,
    train_on_pairs,
)
from pirender.training.talk_data import SpeechClip, speech_clips
from pirender.training.talk_eval import TalkEvalConfig, measure_clip, pool_clips, talk_report

#: a clip with at least this correlation follows its speaker (issue 15's bar)
BAR = 0.5


@dataclass(frozen=True)
class CrossValidationConfig:
    """``folds``: groups of speakers, each held out once (2 or more); ``seed``: the deal."""

    folds: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise PirenderError(f"--cross-validate needs at least 2 folds, got {self.folds}")


def cross_validate(
    pair_folders: list[Path],
    dataset: Path,
    out: Path,
    *,
    train_config: TrainConfig | None = None,
    config: CrossValidationConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Cross-validate the recipe ``train_config`` by speaker (module docstring); ``dataset`` is the
    prepared dataset the pairs were made from (``pirender prepare-audio DATASET``), whose clips are
    measured at their own frame rate. Returns what ``cross_validation.json`` holds.

    Raises:
        PirenderError: pairs without speakers, too few speakers, not open-space pairs, or a pair whose
            clip is not in ``dataset``.
    """
    cfg = config or CrossValidationConfig()
    recipe = train_config or TrainConfig()
    space, pairs = load_pairs(pair_folders)
    if space != OPEN_SPACE:
        raise PirenderError("cross-validation measures the mouth of open-space pairs only")
    folds = deal_people(pairs, cfg.folds, cfg.seed)
    clips: dict[str, SpeechClip] = {}
    for split in ("train", "test"):
        clips.update({c.name: c for c in speech_clips(dataset, split)[0]})
    missing = sorted({p.clip for p in pairs} - set(clips))
    if missing:
        raise PirenderError(f"{dataset}: no clip with a voice named {missing[0]} (pairs of another dataset?)")
    out.mkdir(parents=True, exist_ok=True)
    measure = TalkEvalConfig(data=dataset)
    rows: list[dict[str, Any]] = []
    fold_figures: list[dict[str, Any]] = []
    for k, held in enumerate(tqdm(folds, unit="fold", disable=not progress)):
        checkpoint = out / f"fold_{k}.pt"
        rest = [p for p in pairs if p.identity not in held]
        train, validation = hold_out_people(rest, VALIDATION_PEOPLE, recipe.seed + k)
        trained: dict[str, Any] = {"fold": k, "held_out": held}
        if not _finished(checkpoint, recipe):
            result = train_on_pairs(
                space, train, validation, checkpoint, config=recipe, readout_pairs=rest, progress=progress
            )
            trained.update(step=int(result["step"]), val_sync=round(result["val_sync"], 4))
        trained["validation_people"] = sorted({p.identity for p in validation})
        model = load_talk_model(checkpoint)
        names = sorted({p.clip for p in pairs if p.identity in held})
        fold_rows = [{**measure_clip(clips[n], model, (0.0,), measure), "fold": k} for n in names]
        trained["corr_t0"] = pool_clips(fold_rows)["corr_t0"]
        rows += fold_rows
        fold_figures.append(trained)
    metrics = {
        "recipe": asdict(recipe),
        "cross_validation": asdict(cfg),
        "temperatures": [0.0],
        "folds": fold_figures,
        "per_clip": rows,
        "pooled": _pooled(rows),
    }
    for name, text in (
        ("cross_validation.json", json.dumps(metrics, indent=1)),
        ("cross_validation.md", cross_validation_report(metrics)),
    ):
        write_atomically(out / name, lambda handle, text=text: handle.write(f"{text}\n".encode()))
    return metrics


def _finished(checkpoint: Path, recipe: TrainConfig) -> bool:
    """Whether ``checkpoint`` is a fold trained to the end (its temperature chosen) with ``recipe``.

    Raises:
        PirenderError: it was trained with another recipe (its figures would be mixed with these).
    """
    if not checkpoint.exists():
        return False
    training = read_flow_checkpoint(checkpoint).training
    if "temperature" not in training:  # stopped half way: trained again
        return False
    recorded = dict(training)
    if isinstance(recorded.get("person_norm"), dict):  # the trainer records its statistics there
        recorded["person_norm"] = recorded["person_norm"].get("speakers", 0) > 0
    other = {k: v for k, v in asdict(recipe).items() if recorded.get(k) != v}
    if other:
        raise PirenderError(
            f"{checkpoint}: trained with another recipe ({', '.join(sorted(other))}); use another --out "
            "or --overwrite"
        )
    return True


def _pooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``talk_eval.pool_clips``'s figures, and the people, the median clip and the clips at the bar."""
    corr = np.array([r["corr_t0"] for r in rows])
    return {
        **pool_clips(rows),
        "people": len({r["identity"] for r in rows}),
        "median_corr_t0": round(float(np.median(corr)), 4),
        "clips_at_bar": int((corr >= BAR).sum()),
        "clips_with_ceiling_at_bar": int(sum(r["ceiling_corr"] >= BAR for r in rows)),
    }


def cross_validation_report(metrics: dict[str, Any]) -> str:
    """The per-clip table (``talk_eval.talk_report``'s columns plus the fold) and the pooled figures."""
    pooled = metrics["pooled"]
    table = talk_report(metrics)
    return (
        f"{table}\n\n{pooled['clips']} clips of {pooled['people']} people, each held out once "
        f"({len(metrics['folds'])} folds by speaker): frame-weighted r {pooled['corr_t0']}, median "
        f"{pooled['median_corr_t0']}; {pooled['clips_at_bar']} clips at r >= {BAR} "
        f"({pooled['clips_with_ceiling_at_bar']} whose silence ceiling allows it); silent frames closed "
        f"{pooled['silent_closed_t0']}; longest open stretch {pooled['longest_open_s_t0']} s."
    )


__all__ = ["BAR", "CrossValidationConfig", "cross_validate", "cross_validation_report"]
