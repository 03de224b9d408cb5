"""Real speech for the audio-to-motion flow: the clips of a prepared dataset that have a voice.

A dataset of ``pirender prepare`` (the talking corpus: ``data/talking``) holds, per clip, the tracked
open-space motion of every stored frame, the decoded frame it came from, the clip's frame rate, its
identity, its split (by identity) and its sound (``audio/<clip>.wav``, 16 kHz mono). This module reads
those clips as :class:`SpeechClip` (motion at the video's own frame rate, the samples), skipping
clips without sound and clips whose track is silent (:data:`SILENT_DBFS`), and makes training pairs
of them: ``pirender prepare-audio DATASET --out PAIRS`` writes ``PAIRS/train`` and ``PAIRS/test``
(``<clip>.wav`` + ``<clip>.npz``), the motion resampled onto a 25 frames/s timeline (the flow's rate;
the corpus mixes 15, 22, 25 and 30 frames/s) by linear interpolation between stored frames (frames
without the face are bridged, at most :data:`MAX_GAP_S`; longer gaps cut the clip into pieces).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pirender.engine.audio.sources import SAMPLE_RATE_HZ, load_audio
from pirender.engine.audio.vad import SILENCE_DBFS, frame_energy_dbfs
from pirender.engine.errors import PirenderError
from pirender.engine.fileio import prepare_folder
from pirender.engine.motion.io import save_motion
from pirender.engine.motion.space import OPEN_SPACE, MotionSequence
from pirender.training.audio_pairs import PrepareReport, write_wav
from pirender.training.dataset import PairDataset

#: a track whose loudest second is quieter than this (RMS, dB full scale) holds no voice
SILENT_DBFS = -45.0
#: the flow's frame rate: pairs are resampled onto it
PAIR_FPS = 25.0
#: a run of frames without the face longer than this cuts a clip (shorter runs are interpolated)
MAX_GAP_S = 0.5
#: pieces shorter than this are not used
MIN_PIECE_S = 2.0


@dataclass
class SpeechClip:
    """One clip with a voice: ``rows`` (N, 17) open-space motion of its stored frames, ``frames`` (N,)
    the decoded video frame of each (``frames / fps`` = their times, s), ``samples`` the sound at
    16 kHz, float32 in [-1, 1]."""

    name: str
    identity: str
    split: str
    fps: float
    rows: np.ndarray
    frames: np.ndarray
    samples: np.ndarray = field(repr=False)

    @property
    def times_s(self) -> np.ndarray:
        return self.frames / self.fps


def loudest_second_dbfs(samples: np.ndarray) -> float:
    """RMS level (dB full scale, ``audio.vad.frame_energy_dbfs``) of the loudest whole second of
    ``samples`` (of the whole, if shorter)."""
    if samples.size == 0:
        return SILENCE_DBFS
    second = SAMPLE_RATE_HZ
    count = max(1, samples.size // second)
    blocks = samples[: count * second].reshape(count, -1) if samples.size >= second else samples[None]
    return float(frame_energy_dbfs(blocks).max())


def speech_clips(dataset: str | Path, split: str) -> tuple[list[SpeechClip], dict[str, str]]:
    """The clips of ``split`` with a voice, and {clip: why skipped} for the others.

    Raises:
        PirenderError: not a prepared dataset (``PairDataset``), or not in the open space.
    """
    root = Path(dataset).expanduser()
    data = PairDataset(root, split, 0, repeat=1)
    if data.layout != "prepare" or data.space != OPEN_SPACE:
        raise PirenderError(f"{root}: a dataset of pirender prepare (open space) is needed")
    info = json.loads((root / "meta.json").read_text())["clips"]
    clips, skipped = [], {}
    for index, clip in enumerate(data.clips):
        meta = info[clip.name]
        if not meta.get("audio"):
            skipped[clip.name] = "no audio track"
            continue
        samples = load_audio(root / meta["audio"], warn=False)
        level = loudest_second_dbfs(samples)
        if level < SILENT_DBFS:
            skipped[clip.name] = f"silent track (loudest second {level:.0f} dBFS)"
            continue
        rows, _shots = data.clip_motion(index)
        clips.append(
            SpeechClip(
                clip.name, clip.identity, split, float(meta["fps"]), rows, data.source_frames(index), samples
            )
        )
    return clips, skipped


def resample_pieces(clip: SpeechClip, fps: float = PAIR_FPS) -> list[tuple[float, np.ndarray]]:
    """The clip's motion on a ``fps`` timeline: [(start time s, (T, 17) rows)], one piece per run of
    stored frames without a gap longer than :data:`MAX_GAP_S`, each at least :data:`MIN_PIECE_S`
    long and inside the sound's duration; linear interpolation between stored frames."""
    times = clip.times_s
    duration = clip.samples.size / SAMPLE_RATE_HZ
    cuts = np.flatnonzero(np.diff(times) > MAX_GAP_S) + 1
    pieces = []
    for part in np.split(np.arange(times.size), cuts):
        if part.size < 2:
            continue
        start, end = times[part[0]], min(times[part[-1]], duration - 1.0 / fps)
        grid = start + np.arange(int(np.floor((end - start) * fps)) + 1) / fps
        if grid.size < MIN_PIECE_S * fps:
            continue
        columns = [np.interp(grid, times[part], clip.rows[part, j]) for j in range(clip.rows.shape[1])]
        rows = np.stack(columns, axis=1)
        pieces.append((float(start), rows.astype(np.float32)))
    return pieces


def make_talk_pairs(dataset: str | Path, out: str | Path, *, progress: bool = True) -> PrepareReport:
    """Write ``out/train`` and ``out/test`` (the dataset's identity split): per piece of each clip with
    a voice (:func:`resample_pieces`) ``<clip>[_<k>].wav`` (the piece's sound) and ``.npz`` (its motion
    at 25 frames/s, meta: identity, clip, source fps, start). Pairs already there are kept.

    Raises:
        PirenderError: not a prepared dataset, or no clip with a voice in the training split.
    """
    out = Path(out).expanduser()
    report = PrepareReport()
    for split in ("train", "test"):
        try:
            clips, skipped = speech_clips(dataset, split)
        except PirenderError:
            if split == "train":
                raise
            continue  # a dataset without held-out clips
        report.skipped.update(skipped)
        if split == "train" and not clips:
            raise PirenderError(f"{dataset}: no training clip with a voice")
        folder = out / split
        prepare_folder(folder)
        for clip in tqdm(clips, unit="clip", desc=split, disable=not progress):
            pieces = resample_pieces(clip)
            if not pieces:
                report.skipped[clip.name] = f"no stretch of {MIN_PIECE_S:.0f} s with the face"
                continue
            for k, (start, rows) in enumerate(pieces):
                stem = clip.name if len(pieces) == 1 else f"{clip.name}_{k}"
                wav, npz = folder / f"{stem}.wav", folder / f"{stem}.npz"
                if wav.exists() and npz.exists():
                    report.kept.append(stem)
                    continue
                first = round(start * SAMPLE_RATE_HZ)
                sound = clip.samples[first : first + round(len(rows) / PAIR_FPS * SAMPLE_RATE_HZ)]
                meta = {"identity": clip.identity, "clip": clip.name, "source_fps": clip.fps}
                meta["start_s"] = start
                save_motion(npz, MotionSequence(OPEN_SPACE, rows, fps=PAIR_FPS, meta=meta))
                write_wav(wav, sound)
                report.written.append(stem)
    return report


__all__ = ["SpeechClip", "loudest_second_dbfs", "make_talk_pairs", "resample_pieces", "speech_clips"]
