"""Real speech pairs from a prepared dataset (training/talk_data.py) and the lip-sync measure
(training/talk_eval.py, ``pirender eval --talk``) on real clips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pirender.engine.audio.sources import SAMPLE_RATE_HZ, load_audio
from pirender.engine.motion.io import load_motion
from pirender.engine.motion.space import OPEN_SPACE
from pirender.training import talk_data, talk_eval
from pirender.training.cli import main
from pirender.training.evaluate import main as eval_main

from conftest import prepared_people, shared_data

_JAW = OPEN_SPACE.index("jaw_open")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two GRID speakers (LipNet clips, 25 fps, with a voice; one held out) and d18 (a silent track)."""
    clips = [
        (shared_data("talking", "LipNet__lbax4n.mpg"), "A"),
        (shared_data("talking", "LipNet__bbaf2n.mpg"), "B"),
        (shared_data("driving", "d18.mp4"), "C"),
    ]
    return prepared_people(tmp_path_factory.mktemp("talk"), clips, holdout=("B",), max_frames=75)


def test_pairs_keep_the_identity_split_skip_silence_and_run_at_25_fps(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs"
    assert main(["prepare-audio", str(dataset), "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "train").iterdir()) == ["LipNet__lbax4n.npz", "LipNet__lbax4n.wav"]
    assert sorted(p.name for p in (out / "test").iterdir()) == ["LipNet__bbaf2n.npz", "LipNet__bbaf2n.wav"]
    motion = load_motion(out / "test" / "LipNet__bbaf2n.npz")
    sound = load_audio(out / "test" / "LipNet__bbaf2n.wav")
    assert motion.fps == 25.0 and motion.meta["identity"] == "B"
    assert abs(len(sound) / SAMPLE_RATE_HZ - len(motion) / 25.0) < 0.05  # the sound covers the motion
    clips, skipped = talk_data.speech_clips(dataset, "train")
    assert [c.name for c in clips] == ["LipNet__lbax4n"] and "silent" in skipped["d18"]
    assert main(["prepare-audio", str(dataset), "--out", str(out)]) == 0  # a rerun keeps the pairs


def test_resampling_interpolates_and_cuts_at_long_gaps() -> None:
    fps = 30.0
    frames = np.r_[np.arange(0, 90), np.arange(120, 210)]  # a 1 s gap without the face
    rows = np.zeros((frames.size, OPEN_SPACE.width), np.float32)
    rows[:, _JAW] = frames / fps  # jaw = time: linear, so interpolation is exact
    clip = talk_data.SpeechClip(
        "x", "X", "train", fps, rows, frames, np.zeros(SAMPLE_RATE_HZ * 8, np.float32)
    )
    pieces = talk_data.resample_pieces(clip)
    assert [round(start, 3) for start, _ in pieces] == [0.0, 4.0]
    for start, part in pieces:
        times = start + np.arange(len(part)) / 25.0
        assert np.allclose(part[:, _JAW], times, atol=1e-5)
        assert len(part) >= talk_data.MIN_PIECE_S * 25


def test_the_best_lag_is_found_and_correlation_is_scale_free() -> None:
    fps = 25.0
    times = np.arange(200) / fps
    real = np.sin(times * 7.0) + 0.3 * np.sin(times * 2.3)
    generated_t = times
    late = np.interp(times - 2 / fps, times, real)  # the generated mouth two frames late
    r, lag = talk_eval.best_lag_correlation(generated_t, 3 * late + 1, times, real, fps, 2)
    assert lag == 2 and r > 0.99
    r0, _ = talk_eval.best_lag_correlation(generated_t, late, times, real, fps, 0)
    assert r0 < r
    assert talk_eval.pearson(np.ones(5), np.arange(5.0)) == 0.0
    assert talk_eval.longest_open_s(np.r_[np.zeros(5), np.full(30, 0.5), np.zeros(5)], fps) == pytest.approx(
        1.2
    )


def test_eval_talk_measures_the_shipped_model_on_held_out_speech(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert eval_main(["--talk", "--data", str(dataset), "--out", str(out), "--temperature", "0"]) == 0
    metrics = json.loads((out / "talk_metrics.json").read_text())
    (clip,) = metrics["per_clip"]
    assert clip["clip"] == "LipNet__bbaf2n" and clip["frames"] == 75 and -2 <= clip["lag_t0"] <= 2
    assert -1 <= clip["corr_t0"] <= 1 and 0 <= clip["silent_closed_t0"] <= 1
    # the tracked mouth of a real speaker follows the voice's energy: the harness's own sanity check
    assert clip["real_energy_corr"] > 0.2
    assert "corr t0" in (out / "talk_report.md").read_text()
    assert eval_main(["--talk", "--data", str(dataset), "--out", str(out)]) == 2  # no silent overwrite


def _pair(name: str, identity: str, frames: int) -> Any:
    from pirender.training.audio_trainer import Pair

    motion = np.zeros((frames, OPEN_SPACE.width), np.float32)
    return Pair(motion, np.zeros((frames, 40), np.float32), name, identity, np.zeros(1, np.float32), name)


def test_people_are_dealt_into_folds_of_similar_speech_and_held_out_whole() -> None:
    from pirender.engine.errors import PirenderError
    from pirender.training.audio_trainer import deal_people, hold_out_people

    pairs = [_pair(f"c{i}", f"p{i % 7}", 100 + 10 * i) for i in range(20)]
    folds = deal_people(pairs, 3, seed=0)
    assert sorted(p for g in folds for p in g) == [f"p{i}" for i in range(7)]  # each once
    speech = [sum(len(p.motion) for p in pairs if p.identity in g) for g in folds]
    largest = max(sum(len(p.motion) for p in pairs if p.identity == f"p{i}") for i in range(7))
    assert max(speech) - min(speech) <= largest  # as equal as whole people allow
    assert deal_people(pairs, 3, seed=0) == folds  # the seed decides
    train, validation = hold_out_people(pairs, 0.3, seed=1)
    held = {p.identity for p in validation}
    assert len(held) == 2 and not held & {p.identity for p in train}  # whole people, never in both
    assert len(train) + len(validation) == len(pairs)
    synthetic = [_pair(f"s{i}", "", 50) for i in range(20)]
    assert hold_out_people(synthetic, 0.3, seed=1) == (synthetic, synthetic[-2:])  # no people: as before
    with pytest.raises(PirenderError, match="name their speaker"):
        deal_people(pairs + synthetic[:1], 3, seed=0)
    with pytest.raises(PirenderError, match="cannot fill"):
        deal_people(pairs, 8, seed=0)


def test_the_silence_ceiling_says_what_closing_the_mouth_in_silence_allows() -> None:
    from pirender.engine.talk import TalkConfig, speech_mask

    speech = load_audio(shared_data("talking", "LipNet__bbaf2n.mpg"))
    fps, vad = 25.0, TalkConfig().vad
    frames = np.arange(int(len(speech) / SAMPLE_RATE_HZ * fps))
    voiced = speech_mask(speech, len(frames), fps, vad)
    assert 0.2 < voiced.mean() < 0.8  # GRID: speech between silences

    def clip(jaw: np.ndarray) -> talk_data.SpeechClip:
        rows = np.zeros((len(frames), OPEN_SPACE.width), np.float32)
        rows[:, _JAW] = jaw
        return talk_data.SpeechClip("x", "X", "test", fps, rows, frames, speech)

    syllables = 0.1 + 0.2 * np.abs(np.sin(frames / 2.0))
    ceiling, share = talk_eval.silence_ceiling(clip(0.1 + (syllables - 0.1) * voiced), vad)
    assert ceiling > 0.99 and share == pytest.approx(voiced.mean())  # closed in silence already
    parted = talk_eval.silence_ceiling(clip(0.1 + 0.2 * (1 - voiced) + 0.02 * np.sin(frames)), vad)[0]
    assert parted < 0.0  # lips parted only in the pauses: no model that closes them can follow


def test_cross_validation_holds_each_speaker_out_once_and_resumes(tmp_path: Path) -> None:
    from pirender.engine.audioflow.checkpoint import read_flow_checkpoint

    people = [("LipNet__lbax4n.mpg", "A"), ("LipNet__bbaf2n.mpg", "B"), ("LipNet__lbbc2a.mpg", "C")]
    dataset = prepared_people(
        tmp_path, [(shared_data("talking", f), p) for f, p in people], holdout=("B",), max_frames=75
    )
    pairs = tmp_path / "pairs"
    assert main(["prepare-audio", str(dataset), "--out", str(pairs)]) == 0
    out = tmp_path / "cv"
    recipe = ["--steps", "4", "--eval-every", "2", "--lstm-hidden", "8"]
    command = ["train-audio", str(pairs / "train"), str(pairs / "test"), "--cross-validate", "3"]
    assert main([*command, "--data", str(dataset), "--out", str(out), *recipe]) == 0
    metrics = json.loads((out / "cross_validation.json").read_text())
    clips = {row["identity"]: row for row in metrics["per_clip"]}
    assert sorted(clips) == ["A", "B", "C"] and len({row["fold"] for row in clips.values()}) == 3
    for fold in metrics["folds"]:
        (held,) = fold["held_out"]
        assert held not in fold["validation_people"] and clips[held]["fold"] == fold["fold"]
        trained = read_flow_checkpoint(out / f"fold_{fold['fold']}.pt").training
        assert trained["pairs"] == 1  # the third person validated; the held-out one unheard
    for row in clips.values():
        assert -1 <= row["corr_t0"] <= 1 and -1 <= row["ceiling_corr"] <= 1 and row["frames"] == 75
    assert (
        metrics["pooled"]["clips"] == 3 and "3 clips of 3 people" in (out / "cross_validation.md").read_text()
    )
    stamps = [(out / f"fold_{k}.pt").stat().st_mtime_ns for k in range(3)]
    assert main([*command, "--data", str(dataset), "--out", str(out), *recipe]) == 0  # resumes: no training
    assert [(out / f"fold_{k}.pt").stat().st_mtime_ns for k in range(3)] == stamps
    other = ["--steps", "4", "--eval-every", "2", "--lstm-hidden", "16"]
    assert main([*command, "--data", str(dataset), "--out", str(out), *other]) == 2  # another recipe
    assert main([*command, "--out", str(out), *recipe]) == 2  # no --data
