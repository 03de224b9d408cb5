"""Renderer training data from real talking-head videos: ``pirender prepare``.

Per clip (one person; :func:`~pirender.engine.track.clip.track_clip` follows the face, handles
shot changes and passes over other people):

- **Crop box, fixed per shot** (the First Order Motion Model preprocessing: the face moves freely
  inside a still box). For every frame with the followed face the portrait square of
  :func:`~pirender.engine.track.crop.portrait_square` (the whole head, like ``--face-crop`` frames a
  portrait) is taken; the box of a shot is the union of those squares over the shot, made square
  around the union's centre, at most the frame's shorter side and moved inside the frame (never
  padded). A shot change or a new tracker segment starts a new box. Only the person followed longest
  is kept (the clip is one identity); frames without the followed face, and frames of segments the
  tracker never calibrated on (their motion is held, not measured), are left out.
- **Frames** cropped and resized to ``size`` x ``size`` pixels (PIL bicubic), stored as JPEG (PIL's
  default quality 75, as the authors).
- **Motion** of every stored frame in the open space (``OPEN_SPACE``, 17 wide), float32.
- **Audio**: the clip's sound as a 16 kHz mono 16-bit WAV in ``audio/<video>.wav`` (a clip without
  an audio stream has none; meta says so).

Layout of a dataset folder (the authors' VoxCeleb layout where it fits, pirender-spec section 6.2)::

    DATASET/meta.json          settings, space, width, per-clip frames/fps/identity/split, skipped
    DATASET/train_list.txt     clip names of the training identities (one a line)
    DATASET/test_list.txt      clip names of the held-out identities
    DATASET/<size>/            LMDB (data.mdb): keys below
    DATASET/audio/<video>.wav

LMDB keys (values are bytes): ``<video>-length`` frame count as a 7-digit ASCII string (written last,
in the clip's final transaction: a clip is complete exactly when this key exists);
``<video>-<7-digit index>`` JPEG; ``<video>-open_motion`` (frames, 17) float32 little-endian;
``<video>-shot`` (frames,) int32 box/shot number of each frame (windows never cross a shot);
``<video>-source_frame`` (frames,) int32 the decoded frame each stored frame came from;
``<video>-info`` JSON (identity, fps, boxes, ...); ``length`` number of complete videos.

Resumable: complete clips are skipped on a rerun; an incomplete one (a crash half way) has its keys
deleted and is made again. ``meta.json`` and the lists are rebuilt from the LMDB after every clip and
written atomically, so they never name an incomplete clip. Split by identity, never by clip.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
from PIL import Image
from tqdm import tqdm

from pirender.engine.audio.sources import AudioError, load_audio
from pirender.engine.errors import PirenderError, exception_text
from pirender.engine.fileio import prepare_folder, write_atomically
from pirender.engine.motion.space import OPEN_SPACE
from pirender.engine.motion.timing import held_indices
from pirender.engine.sources.frames import VideoFileFrames
from pirender.engine.track.clip import TrackedClip, track_clip
from pirender.engine.track.crop import portrait_square
from pirender.engine.track.tracker import FaceTracker, TrackResult

from .audio_pairs import write_wav

#: version of this dataset layout (meta.json "version")
DATASET_VERSION = 1
#: video files taken from a folder
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg")
#: virtual size of the LMDB map (the file only grows as data is written)
MAP_SIZE_BYTES = 1 << 40
#: frames written per LMDB transaction
FRAMES_PER_COMMIT = 64
META_FILE = "meta.json"
TRAIN_LIST = "train_list.txt"
TEST_LIST = "test_list.txt"
MOTION_KEY = "{video}-open_motion"


@dataclass(frozen=True)
class PrepareConfig:
    """Settings of ``pirender prepare``.

    Attributes:
        size_px: side of the stored frames (pixels); the LMDB lives in a sub-folder of that name.
        holdout: identities held out for testing (``--holdout``); when empty, ``holdout_fraction``
            of the identities (at least one when there are two or more, never all) is drawn with
            ``seed``.
        holdout_fraction: 0 <= f < 1.
        seed: seed of the fraction split (same identities and seed: same split).
        max_frames: decode at most this many frames per clip (None: all).
        max_clips: prepare at most this many clips in this run (None: all; not part of the
            dataset's settings, a later run may add the rest).
        jpeg_quality: JPEG quality of the stored frames (75: PIL's default, as the authors).
    """

    size_px: int = 256
    holdout: tuple[str, ...] = ()
    holdout_fraction: float = 0.2
    seed: int = 0
    max_frames: int | None = None
    max_clips: int | None = None
    jpeg_quality: int = 75

    def __post_init__(self) -> None:
        if self.size_px < 32:
            raise PirenderError(f"--size must be at least 32 pixels, got {self.size_px}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise PirenderError(f"--holdout-fraction must be in [0, 1), got {self.holdout_fraction}")
        for name, value in (("--max-frames", self.max_frames), ("--max-clips", self.max_clips)):
            if value is not None and value < 1:
                raise PirenderError(f"{name} must be at least 1, got {value}")
        if not 1 <= self.jpeg_quality <= 95:
            raise PirenderError(f"JPEG quality must be in 1..95, got {self.jpeg_quality}")

    def settings(self) -> dict[str, Any]:
        """What a resumed run must share with the dataset (stored in meta.json "settings")."""
        return {
            "size": self.size_px,
            "space": OPEN_SPACE.name,
            "holdout": sorted(self.holdout),
            "holdout_fraction": None if self.holdout else self.holdout_fraction,
            "seed": None if self.holdout else self.seed,
            "max_frames": self.max_frames,
            "jpeg_quality": self.jpeg_quality,
            "layout_version": DATASET_VERSION,
        }


@dataclass(frozen=True)
class ClipInput:
    """One input clip: unique ``name`` (the file stem, used in the LMDB keys), ``path``, ``identity``."""

    name: str
    path: Path
    identity: str


@dataclass
class PrepareReport:
    """What a run did: clips ``prepared`` now, ``kept`` (complete from an earlier run), ``skipped``
    (name -> one-line reason)."""

    prepared: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    frames: int = 0

    def describe(self) -> str:
        return (
            f"{len(self.prepared)} clips prepared ({self.frames} frames), {len(self.kept)} already complete, "
            f"{len(self.skipped)} skipped"
        )


class ClipSkipped(PirenderError):
    """A clip that cannot be used (no face, unreadable): reported in one line and listed, never fatal."""


# --------------------------------------------------------------------------------------------------
# inputs and split


def identity_from_name(stem: str) -> str:
    """Identity of a clip of a plain folder: the file stem up to the first ``#`` or ``__``."""
    cut = min((i for i in (stem.find("#"), stem.find("__")) if i >= 0), default=len(stem))
    return stem[:cut] or stem


def read_inputs(spec: str | Path) -> list[ClipInput]:
    """Clips named by a manifest (a ``.tsv`` with columns ``file`` and ``identity``; ``file`` relative
    to the manifest's folder), a folder of videos (:data:`VIDEO_SUFFIXES`; identity from the name) or
    one video file.

    Raises:
        PirenderError: missing path, a manifest without the columns, a folder without videos, two
            clips with the same name (file stem).
    """
    path = Path(spec).expanduser()
    if not path.exists():
        raise PirenderError(f"{path}: not found (give a folder of videos, a video or a MANIFEST.tsv)")
    clips: list[ClipInput] = []
    if path.is_file() and path.suffix.lower() in (".tsv", ".csv"):
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter=delimiter))
        if not rows or not {"file", "identity"} <= set(rows[0]):
            raise PirenderError(f"{path}: a manifest needs the columns 'file' and 'identity'")
        for row in rows:
            video = (path.parent / row["file"]).resolve()
            clips.append(ClipInput(video.stem, video, row["identity"].strip() or video.stem))
    elif path.is_dir():
        videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise PirenderError(f"{path}: no videos ({', '.join(VIDEO_SUFFIXES)})")
        clips = [ClipInput(v.stem, v, identity_from_name(v.stem)) for v in videos]
    else:
        clips = [ClipInput(path.stem, path, identity_from_name(path.stem))]
    seen: dict[str, Path] = {}
    for clip in clips:
        if clip.name in seen:
            raise PirenderError(f"two clips are named {clip.name!r}: {seen[clip.name]} and {clip.path}")
        seen[clip.name] = clip.path
    return clips


def split_identities(identities: list[str], config: PrepareConfig) -> tuple[list[str], list[str]]:
    """(train, test) identities, sorted: ``config.holdout`` or a seeded fraction.

    Raises:
        PirenderError: a held-out identity that no clip has.
    """
    known = sorted(set(identities))
    if config.holdout:
        unknown = sorted(set(config.holdout) - set(known))
        if unknown:
            raise PirenderError(
                f"--holdout {','.join(unknown)}: no clip of that identity (known: {', '.join(known)})"
            )
        test = sorted(config.holdout)
    else:
        count = round(config.holdout_fraction * len(known))
        if config.holdout_fraction > 0 and len(known) >= 2:
            count = min(max(count, 1), len(known) - 1)
        order = np.random.default_rng(config.seed).permutation(len(known))
        test = sorted(known[i] for i in order[:count])
    return [i for i in known if i not in test], test


# --------------------------------------------------------------------------------------------------
# one clip


class _RecordingTracker(FaceTracker):
    """The tracker, keeping what :func:`track_clip` does not return: each frame's followed-face
    landmarks, segment and cut, and the frame size."""

    def reset(self) -> None:
        self.records: list[tuple[float, np.ndarray | None, int | None, bool]] = []
        self.frame_size: tuple[int, int] | None = None  # (width, height)
        super().reset()

    def process(self, rgb: np.ndarray, time_s: float) -> TrackResult:
        result = super().process(rgb, time_s)
        self.frame_size = (rgb.shape[1], rgb.shape[0])
        landmarks = None if result.landmarks is None else np.asarray(result.landmarks, dtype=np.float32)
        segment = result.segment if landmarks is not None else None
        self.records.append((time_s, landmarks, segment, result.cut))
        return result


@dataclass
class _ClipPlan:
    """Which decoded frame goes into which stored frame, with its box."""

    rows: np.ndarray  # (K,) motion rows
    decoded: np.ndarray  # (K,) decoded frame of each stored frame (non-decreasing)
    shots: np.ndarray  # (K,) box number of each stored frame
    boxes: list[tuple[int, int, int]]  # (left, top, side) per box number
    people_dropped: int  # frames of other people left out


def _plan(clip: TrackedClip, tracker: _RecordingTracker) -> _ClipPlan:
    records = tracker.records
    assert tracker.frame_size is not None
    width, height = tracker.frame_size
    calibrated = [s for s in clip.segments if s.neutral_frames > 0]
    per_person: dict[int, int] = {}
    for segment in calibrated:
        per_person[segment.person] = per_person.get(segment.person, 0) + segment.frames_with_face
    if not per_person:
        raise ClipSkipped("the followed face was never calibrated on (never frontal enough)")
    person = max(per_person, key=lambda p: (per_person[p], -p))
    kept_segments = {s.index for s in calibrated if s.person == person}
    dropped = sum(n for p, n in per_person.items() if p != person)
    # box groups: (shot, segment) in decoded order
    shot = 0
    groups: dict[tuple[int, int], list[int]] = {}
    group_of: dict[int, tuple[int, int]] = {}
    for index, (_, landmarks, segment, cut) in enumerate(records):
        shot += int(cut)
        if landmarks is None or segment not in kept_segments:
            continue
        assert segment is not None
        key = (shot, segment)
        groups.setdefault(key, []).append(index)
        group_of[index] = key
    if not groups:
        raise ClipSkipped("no frame of the followed face could be used")
    box_number = {key: n for n, key in enumerate(groups)}
    boxes = []
    for indices in groups.values():
        squares = np.array([portrait_square(records[i][1], width, height) for i in indices], dtype=np.float64)
        left, top = squares[:, 0].min(), squares[:, 1].min()
        right, bottom = (squares[:, 0] + squares[:, 2]).max(), (squares[:, 1] + squares[:, 2]).max()
        side = round(min(max(right - left, bottom - top), width, height))
        x = round(min(max((left + right) / 2 - side / 2, 0), width - side))
        y = round(min(max((top + bottom) / 2 - side / 2, 0), height - side))
        boxes.append((x, y, side))
    if clip.resampled_from is None:
        held = np.arange(len(records))
    else:  # variable-rate source: motion rows on a constant-rate grid, each showing a decoded frame
        held = held_indices(np.array([r[0] for r in records]), clip.open_motion.fps)
    rows = [row for row, decoded in enumerate(held) if int(decoded) in group_of]
    decoded = held[rows]
    return _ClipPlan(
        rows=np.asarray(rows, dtype=np.int64),
        decoded=np.asarray(decoded, dtype=np.int64),
        shots=np.array([box_number[group_of[int(d)]] for d in decoded], dtype=np.int32),
        boxes=boxes,
        people_dropped=dropped,
    )


def encode_frame(rgb: np.ndarray, box: tuple[int, int, int], size_px: int, quality: int) -> bytes:
    """JPEG bytes of the square ``box`` (left, top, side) of an (H, W, 3) uint8 frame, resized to
    ``size_px`` (PIL bicubic)."""
    left, top, side = box
    crop = Image.fromarray(np.ascontiguousarray(rgb[top : top + side, left : left + side]))
    resized = crop.resize((size_px, size_px), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    resized.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _delete_clip_keys(env: lmdb.Environment, name: str) -> None:
    """Remove every key of ``name`` (an incomplete clip of a crashed run)."""
    prefix = f"{name}-".encode()
    with env.begin(write=True) as txn:
        cursor = txn.cursor()
        keys = []
        if cursor.set_range(prefix):
            for key in cursor.iternext(keys=True, values=False):
                if not key.startswith(prefix):
                    break
                keys.append(bytes(key))
        for key in keys:
            # keys of another clip whose name starts with "<name>-" are not ours
            rest = key[len(prefix) :].decode(errors="replace")
            if rest.isdigit() or rest in ("length", "open_motion", "shot", "source_frame", "info"):
                txn.delete(key)


def _prepare_clip(
    clip: ClipInput,
    env: lmdb.Environment,
    out: Path,
    config: PrepareConfig,
    tracker: _RecordingTracker,
    *,
    progress: bool,
) -> int:
    """Track, crop and store one clip; returns its stored frames. Raises :class:`ClipSkipped`."""
    try:
        frames = VideoFileFrames(clip.path, max_frames=config.max_frames)
    except PirenderError as exc:
        raise ClipSkipped(str(exc)) from None
    with frames:
        try:
            tracked = track_clip(frames, tracker=tracker, progress=progress)
        except PirenderError as exc:
            raise ClipSkipped(str(exc)) from None
    plan = _plan(tracked, tracker)
    _delete_clip_keys(env, clip.name)
    wanted: dict[int, list[int]] = {}
    for k, decoded in enumerate(plan.decoded):
        wanted.setdefault(int(decoded), []).append(k)
    stored = 0
    pending: list[tuple[bytes, bytes]] = []
    bar = tqdm(
        total=len(plan.rows), unit="frame", desc=f"{clip.name}: frames", disable=not progress, leave=False
    )
    try:
        with VideoFileFrames(clip.path, max_frames=config.max_frames) as again:
            for frame in again:
                for k in wanted.get(frame.index, ()):
                    jpeg = encode_frame(
                        frame.rgb, plan.boxes[plan.shots[k]], config.size_px, config.jpeg_quality
                    )
                    pending.append((f"{clip.name}-{k:07d}".encode(), jpeg))
                    stored += 1
                    bar.update()
                if len(pending) >= FRAMES_PER_COMMIT:
                    _put(env, pending)
                    pending = []
                if frame.index >= int(plan.decoded[-1]):
                    break
    except PirenderError as exc:
        raise ClipSkipped(f"second decoding pass: {exc}") from None
    finally:
        bar.close()
    if stored != len(plan.rows):
        raise ClipSkipped(f"the second decoding pass gave {stored} of {len(plan.rows)} frames")
    seconds = None if config.max_frames is None else len(tracker.records) / tracked.open_motion.fps
    audio = _write_audio(clip, out, seconds=seconds)
    motion = np.ascontiguousarray(tracked.open_motion.values[plan.rows], dtype="<f4")
    info = {
        "identity": clip.identity,
        "source": str(clip.path),
        "fps": float(tracked.open_motion.fps),
        "frames": stored,
        "decoded_frames": len(tracker.records),
        "frame_size": list(tracker.frame_size or (0, 0)),
        "boxes": [list(b) for b in plan.boxes],
        "cuts": len(tracked.cuts_s),
        "other_people_frames_left_out": plan.people_dropped,
        "resampled_from": tracked.resampled_from,
        "audio": audio,
    }
    pending += [
        (MOTION_KEY.format(video=clip.name).encode(), motion.tobytes()),
        (f"{clip.name}-shot".encode(), plan.shots.astype("<i4").tobytes()),
        (f"{clip.name}-source_frame".encode(), plan.decoded.astype("<i4").tobytes()),
        (f"{clip.name}-info".encode(), json.dumps(info).encode()),
    ]
    with env.begin(write=True) as txn:  # the clip's last transaction: complete once -length is in
        for key, value in pending:
            txn.put(key, value)
        complete = _complete_names(txn) | {clip.name}
        txn.put(b"length", str(len(complete)).encode())
        txn.put(f"{clip.name}-length".encode(), f"{stored:07d}".encode())
    return stored


def _put(env: lmdb.Environment, items: list[tuple[bytes, bytes]]) -> None:
    with env.begin(write=True) as txn:
        for key, value in items:
            txn.put(key, value)


def _write_audio(clip: ClipInput, out: Path, *, seconds: float | None) -> str | None:
    """The clip's sound as ``audio/<name>.wav`` (16 kHz mono; cut to ``seconds`` when the frames
    were); returns the path relative to ``out``, or None when the clip has no sound."""
    try:
        samples = load_audio(clip.path, warn=False)
    except AudioError:
        return None
    if seconds is not None:
        samples = samples[: round(seconds * 16_000)]
    relative = f"audio/{clip.name}.wav"
    write_wav(out / relative, samples)
    return relative


# --------------------------------------------------------------------------------------------------
# the dataset


def _complete_names(txn: lmdb.Transaction) -> set[str]:
    names = set()
    for key in txn.cursor().iternext(keys=True, values=False):
        text = bytes(key).decode(errors="replace")
        if text.endswith("-length"):
            names.add(text[: -len("-length")])
    return names


def _complete_infos(env: lmdb.Environment) -> dict[str, dict[str, Any]]:
    with env.begin() as txn:
        infos = {}
        for name in sorted(_complete_names(txn)):
            raw = txn.get(f"{name}-info".encode())
            infos[name] = {} if raw is None else json.loads(bytes(raw))
    return infos


def _write_index(
    out: Path,
    env: lmdb.Environment,
    config: PrepareConfig,
    train_ids: list[str],
    test_ids: list[str],
    skipped: dict[str, str],
    inputs: int,
) -> dict[str, Any]:
    """meta.json and the two lists from the LMDB's complete clips, each written atomically."""
    infos = _complete_infos(env)
    test_set = set(test_ids)
    clips = {}
    for name, info in infos.items():
        split = "test" if info.get("identity") in test_set else "train"
        clips[name] = {
            "identity": info.get("identity"),
            "split": split,
            "frames": info.get("frames"),
            "fps": info.get("fps"),
            "audio": info.get("audio"),
            "source": info.get("source"),
        }
    try:
        tool = f"pirender-live {importlib.metadata.version('pirender-live')}"
    except importlib.metadata.PackageNotFoundError:
        tool = "pirender-live (not installed)"
    meta = {
        "format": "pirender-prepare",
        "version": DATASET_VERSION,
        "tool": tool,
        "settings": config.settings(),
        "space": OPEN_SPACE.to_dict(),
        "width": OPEN_SPACE.width,
        "size": config.size_px,
        "lmdb": str(config.size_px),
        "motion_key": MOTION_KEY,
        "identities": {"train": train_ids, "test": test_ids},
        "clips": clips,
        "skipped": dict(sorted(skipped.items())),
        "inputs": inputs,
    }
    for list_name, split in ((TRAIN_LIST, "train"), (TEST_LIST, "test")):
        text = "".join(f"{name}\n" for name, c in clips.items() if c["split"] == split)
        write_atomically(out / list_name, lambda h, t=text: h.write(t.encode()))
    payload = json.dumps(meta, indent=1).encode()
    write_atomically(out / META_FILE, lambda h: h.write(payload))
    return meta


def _open_output(out: Path, config: PrepareConfig, *, overwrite: bool) -> dict[str, Any] | None:
    """Check ``out`` before any work: returns the earlier meta to resume from (or None).

    Raises:
        PirenderError: ``out`` is a file; a folder with other content and no meta.json (without
            ``overwrite``); a dataset made with other settings (without ``overwrite``).
    """
    if out.exists() and not out.is_dir():
        raise PirenderError(f"{out}: is a file; --out is the dataset's folder")
    meta_path = out / META_FILE
    if overwrite:
        folders = {str(config.size_px), "audio"}
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # its LMDB (another --size)
            folders.add(str(int(json.loads(meta_path.read_text())["lmdb"])))
        for name in (META_FILE, TRAIN_LIST, TEST_LIST):
            (out / name).unlink(missing_ok=True)
        for folder in sorted(folders):
            if (out / folder).is_dir():
                shutil.rmtree(out / folder)
        return None
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise PirenderError(
                f"{meta_path}: unreadable ({exception_text(exc, with_type=False)}); add --overwrite"
            ) from None
        old = meta.get("settings", {})
        new = config.settings()
        differ = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v]
        if differ:
            raise PirenderError(
                f"{out}: a dataset made with other settings ({'; '.join(differ)}); add --overwrite to "
                "make it again, or choose another --out"
            )
        return meta
    if out.is_dir() and any(out.iterdir()):
        raise PirenderError(
            f"{out}: already exists and is not a prepared dataset (no {META_FILE}); add --overwrite"
        )
    return None


def prepare_dataset(
    inputs: str | Path | list[ClipInput],
    out: str | Path,
    config: PrepareConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareReport:
    """Prepare (or resume) a renderer training dataset in ``out`` (module docstring).

    Args:
        inputs: a manifest, folder or video (:func:`read_inputs`), or the clips themselves.
        out: the dataset folder (made if missing).
        config: settings (default :class:`PrepareConfig`).
        overwrite: remove an existing dataset's files first (otherwise an existing dataset with the
            same settings is resumed).
        progress: tqdm bars (clips; frames of each clip).

    Returns:
        What was done; clips skipped are also listed in meta.json "skipped" with their reason.

    Raises:
        PirenderError: the inputs or ``out`` are refused (:func:`read_inputs`,
            :func:`split_identities`, settings differ); never for one bad clip.
    """
    config = config or PrepareConfig()
    clips = inputs if isinstance(inputs, list) else read_inputs(inputs)
    train_ids, test_ids = split_identities([c.identity for c in clips], config)
    out = Path(out).expanduser()
    earlier = _open_output(out, config, overwrite=overwrite)
    prepare_folder(out)
    prepare_folder(out / "audio")
    env = lmdb.open(str(out / str(config.size_px)), map_size=MAP_SIZE_BYTES, subdir=True, max_dbs=0)
    report = PrepareReport()
    skipped: dict[str, str] = dict((earlier or {}).get("skipped", {}))
    try:
        _write_index(out, env, config, train_ids, test_ids, skipped, len(clips))
        with env.begin() as txn:
            done = _complete_names(txn)
        todo = [c for c in clips if c.name not in done]
        report.kept = [c.name for c in clips if c.name in done]
        if config.max_clips is not None:
            todo = todo[: config.max_clips]
        for clip in tqdm(todo, unit="clip", desc="prepare", disable=not progress):
            # a fresh tracker per clip: a reset one keeps MediaPipe's video-mode face mesh state, and
            # after a clip of another size it lost the face of most frames (measured: 1 of 25 kept)
            recording = _RecordingTracker()
            try:
                stored = _prepare_clip(clip, env, out, config, recording, progress=progress)
            except ClipSkipped as exc:
                reason = str(exc).replace("\n", " ")
                skipped[clip.name] = reason
                report.skipped[clip.name] = reason
                tqdm.write(f"skipped {clip.name}: {reason}")
                continue
            finally:
                recording.close()
            skipped.pop(clip.name, None)
            report.prepared.append(clip.name)
            report.frames += stored
            _write_index(out, env, config, train_ids, test_ids, skipped, len(clips))
        _write_index(out, env, config, train_ids, test_ids, skipped, len(clips))
    finally:
        env.close()
    return report


__all__ = [
    "ClipInput",
    "ClipSkipped",
    "PrepareConfig",
    "PrepareReport",
    "encode_frame",
    "identity_from_name",
    "prepare_dataset",
    "read_inputs",
    "split_identities",
]
