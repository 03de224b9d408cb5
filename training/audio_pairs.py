"""(audio, motion) training pairs from real talking-head videos: the audio track and the tracked face.

``prepare_pairs(videos, out)`` writes ``<video stem>.wav`` (16 kHz mono) and ``<video stem>.npz``
(open-space motion at the video's frame rate; with the Deep3DFaceRecon regressor, PIRenderer's 73-wide
authors' space instead) per video; resumable (finished pairs are skipped; each file is written
beside its name and moved into place when complete, so a pair that is there is whole), with a
progress bar; a video without a face or without audio is reported and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from pirender.engine.audio.sources import SAMPLE_RATE_HZ, load_audio
from pirender.engine.errors import PirenderError
from pirender.engine.fileio import prepare_folder, staged_output
from pirender.engine.motion.io import save_motion
from pirender.engine.sources.frames import open_frames
from pirender.engine.track.clip import track_clip
from pirender.engine.track.deep3d import Deep3DRegressor

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


@dataclass
class PrepareReport:
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # video -> why

    def describe(self) -> str:
        why = "; ".join(f"{name}: {reason}" for name, reason in self.skipped.items())
        return (
            f"{len(self.written)} pairs written, {len(self.kept)} already there, {len(self.skipped)} skipped"
            + (f" ({why})" if why else "")
        )


def write_wav(path: Path, samples: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
    """Mono float32 samples -> 16-bit PCM WAV, written beside ``path`` and moved into place when
    complete (an interrupted write leaves no file)."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)[None]
    with staged_output(path, on_interrupt="discard") as staged, av.open(str(staged), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=sample_rate_hz, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = sample_rate_hz
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def prepare_pairs(
    videos: Path,
    out: Path,
    *,
    regressor: Deep3DRegressor | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> PrepareReport:
    """Track every video of a folder (or one video file) into pairs in ``out``: open-space motion, or
    the authors' space with a Deep3DFaceRecon ``regressor`` (a flow for the neural renderer).

    ``out`` is made first; pairs already there are kept (``overwrite=True``: made again).

    Raises:
        PirenderError: ``out`` cannot be made (a file is in the way), no videos, or a pair file
            cannot be written.
    """
    prepare_folder(out)
    files = (
        [videos]
        if videos.is_file()
        else sorted(p for p in videos.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    )
    if not files:
        raise PirenderError(f"{videos}: no videos ({', '.join(VIDEO_SUFFIXES)})")
    report = PrepareReport()
    for video in tqdm(files, unit="video", disable=not progress):
        wav, npz = out / f"{video.stem}.wav", out / f"{video.stem}.npz"
        if wav.exists() and npz.exists() and not overwrite:
            report.kept.append(video.name)
            continue
        try:
            samples = load_audio(video)
            with open_frames(str(video)) as frames:
                clip = track_clip(frames, regressor=regressor, progress=False)
        except PirenderError as exc:
            report.skipped[video.name] = str(exc)
            continue
        motion = clip.authors_motion if regressor is not None else clip.open_motion
        assert motion is not None
        motion.meta["video"] = video.name
        save_motion(npz, motion)
        write_wav(wav, samples)
        report.written.append(video.name)
    return report
