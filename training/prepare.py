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
- **The authors' coefficients** (``--deep3d epoch_20.pth``, :attr:`PrepareConfig.deep3d`): every
  stored frame also gets Deep3DFaceRecon's 257 coefficients and the alignment's (s, t0, t1), computed
  the authors' way on the stored ``size`` x ``size`` JPEG itself (the picture the renderer sees, as
  PIRenderer fitted its VoxCeleb frames: ``deep3d-facts.md`` section 3), so the dataset reads like
  theirs (73-wide space = ``AUTHORS_COLUMNS`` of ``training.dataset``). The five alignment points
  come from the tracker's face-mesh landmarks of that frame mapped through the crop box (measured
  on the full-resolution frame, always of the followed person, present on every stored frame: a
  second face mesh on the crop could lose the face or lock onto another person in the box). A
  frame whose points cannot be aligned (degenerate, face too small/large) holds the coefficients of
  the nearest aligned frame of its shot (else of the clip), counted in the clip's info
  (``deep3d.held_frames``); a clip with no aligned frame is skipped and listed. The network runs in
  batches of :data:`DEEP3D_BATCH`.
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
``<video>-info`` JSON (identity, fps, boxes, ...); ``length`` number of complete videos; with
``--deep3d`` also ``<video>-coeff_3dmm`` (frames, 260) float32 little-endian, the authors' layout:
257 Deep3DFaceRecon coefficients then (s, t0, t1) of the stored frame (t1 upward from its bottom).
``meta.json`` ``spaces`` names the motion spaces a dataset holds (``open``; ``authors`` with
``--deep3d``), each with its key and width.

Resumable: complete clips are skipped on a rerun; an incomplete one (a crash half way) has its keys
deleted and is made again. ``meta.json`` and the lists are rebuilt from the LMDB after every clip and
written atomically, so they never name an incomplete clip. Split by identity, never by clip.
``--deep3d`` is part of the settings: a dataset prepared without it is refused by a rerun with it
(the coefficients are not added afterwards: ``--overwrite`` makes it again) and the other way
round; a rerun with another Deep3DFaceRecon checkpoint (other SHA-256) is refused too.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.metadata
import io
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
from PIL import Image
from tqdm import tqdm

from pirender.engine.audio.sources import AudioError, load_audio
from pirender.engine.errors import LandmarkError, PirenderError, exception_text
from pirender.engine.fileio import prepare_folder, write_atomically
from pirender.engine.motion.io import LMDB_ROW_WIDTH
from pirender.engine.motion.space import AUTHORS_SPACE, OPEN_SPACE
from pirender.engine.motion.timing import held_indices
from pirender.engine.sources.frames import VideoFileFrames
from pirender.engine.track.clip import TrackedClip, track_clip
from pirender.engine.track.crop import portrait_square
from pirender.engine.track.deep3d import COEFF_COUNT, Deep3DRegressor, align_face
from pirender.engine.track.landmarks import five_points
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
#: the authors' key of the (frames, 260) Deep3DFaceRecon rows (257 coefficients + s, t0, t1)
AUTHORS_KEY = "{video}-coeff_3dmm"
#: frames per Deep3DFaceRecon network call
DEEP3D_BATCH = 16
#: the keys of a clip other than its frames: ``<video>-<suffix>``
_CLIP_KEY_SUFFIXES = ("length", "open_motion", "coeff_3dmm", "shot", "source_frame", "info")


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
        deep3d: Deep3DFaceRecon checkpoint (``epoch_20.pth``): also store the authors' coefficients
            of every frame (module docstring); None: the open space only.
        device: torch device of the Deep3DFaceRecon network ("cpu", "cuda", ...; not a setting of
            the dataset).
    """

    size_px: int = 256
    holdout: tuple[str, ...] = ()
    holdout_fraction: float = 0.2
    seed: int = 0
    max_frames: int | None = None
    max_clips: int | None = None
    jpeg_quality: int = 75
    deep3d: Path | None = None
    device: str = "cpu"

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
            "deep3d": self.deep3d is not None,
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


@dataclass(frozen=True)
class _Deep3D:
    """The loaded Deep3DFaceRecon regressor, with its checkpoint's path and SHA-256 (meta.json; a
    resumed dataset must keep the same checkpoint)."""

    regressor: Deep3DRegressor
    checkpoint: Path
    sha256: str


def _load_deep3d(config: PrepareConfig) -> _Deep3D | None:
    """The regressor of ``config.deep3d`` (None without it).

    Raises:
        PirenderError: (one line, naming ``--deep3d``) the file is missing or not a Deep3DFaceRecon
            checkpoint, or the device cannot be used.
    """
    if config.deep3d is None:
        return None
    path = Path(config.deep3d).expanduser()
    try:
        regressor = Deep3DRegressor.from_checkpoint(path, device=config.device)
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except PirenderError as exc:
        raise type(exc)(f"--deep3d {exc}") from None
    except OSError as exc:
        raise PirenderError(f"--deep3d {path}: cannot read ({exc.strerror or exc})") from None
    return _Deep3D(regressor, path.resolve(), digest.hexdigest())


def crop_points(landmarks: np.ndarray, box: tuple[int, int, int], size_px: int) -> np.ndarray:
    """Deep3DFaceRecon's five alignment points of one frame, in pixels of its stored crop.

    Args:
        landmarks: (478, 2+) face-mesh landmarks in pixels of the decoded frame (x right, y down).
        box: (left, top, side) crop box in frame pixels.
        size_px: side of the stored frame.

    Returns:
        (5, 2) float64 [eye (image left), eye, nose tip, mouth corner (image left), mouth corner] in
        stored-frame pixels, y down (the crop is cut and resized: a shift and a uniform scale).
    """
    left, top, side = box
    return (five_points(landmarks) - np.array([left, top], dtype=np.float64)) * (size_px / side)


def deep3d_rows(
    regressor: Deep3DRegressor, images: list[np.ndarray], points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The authors' rows of stored frames: each aligned on its five points, one network call.

    Args:
        regressor: the Deep3DFaceRecon regressor.
        images: N stored frames, (S, S, 3) uint8 RGB each (the decoded JPEGs).
        points: (N, 5, 2) their five points, pixels, y down (:func:`crop_points`).

    Returns:
        (N, 260) float32 rows (257 coefficients, then s, t0, t1 of the frame: s no unit, t0/t1
        pixels, t1 upward from the bottom row) and (N,) bool, True where the frame was aligned (the
        others' rows are zero: degenerate points, or a face too small/large for the alignment).
    """
    rows = np.zeros((len(images), LMDB_ROW_WIDTH), dtype=np.float32)
    aligned = np.zeros(len(images), dtype=bool)
    crops = []
    for index, (image, frame_points) in enumerate(zip(images, points, strict=True)):
        try:
            face = align_face(image, frame_points)
        except LandmarkError:
            continue
        crops.append(face.crop_rgb)
        rows[index, COEFF_COUNT:] = face.crop_params
        aligned[index] = True
    if crops:
        rows[aligned, :COEFF_COUNT] = regressor.coefficients_of_crops(np.stack(crops))
    return rows, aligned


def hold_nearest(rows: np.ndarray, found: np.ndarray, shots: np.ndarray) -> np.ndarray:
    """Rows of frames without a value take the row of the nearest frame with one: of the same shot
    where it has one (the crop numbers belong to the shot's box), else of the clip; on a tie the
    earlier frame.

    Args:
        rows: (N, D) values; found: (N,) bool, at least one True; shots: (N,) shot of each frame.

    Returns:
        (N, D) copy with every row filled.
    """
    have = np.flatnonzero(found)
    filled = rows.copy()
    for frame in np.flatnonzero(~found):
        same = have[shots[have] == shots[frame]]
        pool = same if same.size else have
        filled[frame] = rows[pool[int(np.argmin(np.abs(pool - frame)))]]
    return filled


class _AuthorsRows:
    """The authors' rows of one clip's stored frames, regressed in batches of :data:`DEEP3D_BATCH`
    while the frames are encoded."""

    def __init__(self, regressor: Deep3DRegressor, frames: int) -> None:
        self.regressor = regressor
        self.rows = np.zeros((frames, LMDB_ROW_WIDTH), dtype=np.float32)
        self.aligned = np.zeros(frames, dtype=bool)
        self.seconds = 0.0
        self._pending: list[tuple[int, np.ndarray, np.ndarray]] = []

    def add(self, frame: int, jpeg: bytes, points: np.ndarray) -> int:
        """Queue stored frame ``frame`` (its JPEG bytes: the picture the renderer sees) with its (5, 2)
        points; returns how many frames were regressed now (0 until a batch is full)."""
        started = time.perf_counter()
        with Image.open(io.BytesIO(jpeg)) as picture:
            rgb = np.asarray(picture.convert("RGB"))
        self._pending.append((frame, rgb, points))
        self.seconds += time.perf_counter() - started
        return self.flush() if len(self._pending) >= DEEP3D_BATCH else 0

    def flush(self) -> int:
        """Regress the queued frames; returns how many."""
        if not self._pending:
            return 0
        started = time.perf_counter()
        frames = [frame for frame, _, _ in self._pending]
        rows, aligned = deep3d_rows(
            self.regressor, [rgb for _, rgb, _ in self._pending], np.stack([p for _, _, p in self._pending])
        )
        self.rows[frames], self.aligned[frames] = rows, aligned
        self._pending = []
        self.seconds += time.perf_counter() - started
        return len(frames)


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
            if rest.isdigit() or rest in _CLIP_KEY_SUFFIXES:
                txn.delete(key)


def _prepare_clip(
    clip: ClipInput,
    env: lmdb.Environment,
    out: Path,
    config: PrepareConfig,
    tracker: _RecordingTracker,
    *,
    progress: bool,
    deep3d: _Deep3D | None = None,
) -> int:
    """Track, crop and store one clip (with ``deep3d``, also the authors' rows); returns its stored
    frames. Raises :class:`ClipSkipped`."""
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
    authors = None if deep3d is None else _AuthorsRows(deep3d.regressor, len(plan.rows))
    bar = tqdm(
        total=len(plan.rows),
        unit="frame",
        desc=f"{clip.name}: frames" + ("" if authors is None else " + Deep3DFaceRecon"),
        disable=not progress,
        leave=False,
    )
    try:
        with VideoFileFrames(clip.path, max_frames=config.max_frames) as again:
            for frame in again:
                for k in wanted.get(frame.index, ()):
                    box = plan.boxes[plan.shots[k]]
                    jpeg = encode_frame(frame.rgb, box, config.size_px, config.jpeg_quality)
                    pending.append((f"{clip.name}-{k:07d}".encode(), jpeg))
                    stored += 1
                    if authors is None:
                        bar.update()
                    else:
                        landmarks = tracker.records[int(plan.decoded[k])][1]
                        assert landmarks is not None  # a stored frame shows the followed face
                        bar.update(authors.add(k, jpeg, crop_points(landmarks, box, config.size_px)))
                if len(pending) >= FRAMES_PER_COMMIT:
                    _put(env, pending)
                    pending = []
                if frame.index >= int(plan.decoded[-1]):
                    break
            if authors is not None:
                bar.update(authors.flush())
    except PirenderError as exc:
        raise ClipSkipped(f"second decoding pass: {exc}") from None
    finally:
        bar.close()
    if stored != len(plan.rows):
        raise ClipSkipped(f"the second decoding pass gave {stored} of {len(plan.rows)} frames")
    if authors is not None and not authors.aligned.any():
        raise ClipSkipped(
            "Deep3DFaceRecon: no stored frame could be aligned (five points degenerate, or the face too "
            "small or too large in the crop)"
        )
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
    if authors is not None:
        held = int((~authors.aligned).sum())
        info["deep3d"] = {
            "held_frames": held,
            "seconds": round(authors.seconds, 3),
            "ms_per_frame": round(1000 * authors.seconds / stored, 1),
        }
        rows = hold_nearest(authors.rows, authors.aligned, plan.shots) if held else authors.rows
        pending.append((AUTHORS_KEY.format(video=clip.name).encode(), rows.astype("<f4").tobytes()))
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
    deep3d: _Deep3D | None = None,
) -> dict[str, Any]:
    """meta.json and the two lists from the LMDB's complete clips, each written atomically.

    ``spaces`` names the motion spaces every clip holds: ``open`` always (the top-level ``space``,
    ``width`` and ``motion_key`` describe it, as before), ``authors`` with ``deep3d`` (its key, the
    stored width 260, the checkpoint and its SHA-256)."""
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
        if "deep3d" in info:
            clips[name]["deep3d_held_frames"] = info["deep3d"].get("held_frames")
    try:
        tool = f"pirender-live {importlib.metadata.version('pirender-live')}"
    except importlib.metadata.PackageNotFoundError:
        tool = "pirender-live (not installed)"
    spaces: dict[str, dict[str, Any]] = {
        "open": {"space": OPEN_SPACE.name, "key": MOTION_KEY, "width": OPEN_SPACE.width}
    }
    if deep3d is not None:
        spaces["authors"] = {
            "space": AUTHORS_SPACE.name,
            "key": AUTHORS_KEY,
            "width": AUTHORS_SPACE.width,
            "stored_width": LMDB_ROW_WIDTH,
            "layout": "257 Deep3DFaceRecon coefficients, then (s, t0, t1) of the stored frame",
            "five_points": "tracker face-mesh landmarks mapped through the crop box",
            "checkpoint": str(deep3d.checkpoint),
            "checkpoint_sha256": deep3d.sha256,
        }
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
        "spaces": spaces,
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


def _open_output(
    out: Path, config: PrepareConfig, *, overwrite: bool, deep3d_sha256: str | None = None
) -> dict[str, Any] | None:
    """Check ``out`` before any work: returns the earlier meta to resume from (or None).

    Raises:
        PirenderError: ``out`` is a file; a folder with other content and no meta.json (without
            ``overwrite``); a dataset made with other settings, with(out) ``--deep3d`` unlike this
            run, or with another Deep3DFaceRecon checkpoint than ``deep3d_sha256`` (all without
            ``overwrite``).
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
        old = {"deep3d": False, **meta.get("settings", {})}  # made before --deep3d existed: without
        new = config.settings()
        if old["deep3d"] != new["deep3d"]:
            raise PirenderError(
                f"{out}: was prepared without --deep3d (open space only), and the authors' coefficients "
                "are not added to a prepared dataset; add --overwrite to make it again with --deep3d, or "
                "choose another --out"
                if new["deep3d"]
                else f"{out}: was prepared with --deep3d (every clip holds the authors' coefficients); give "
                "the same --deep3d to resume it, or add --overwrite"
            )
        earlier_sha = meta.get("spaces", {}).get("authors", {}).get("checkpoint_sha256")
        if deep3d_sha256 is not None and earlier_sha not in (None, deep3d_sha256):
            raise PirenderError(
                f"{out}: its authors' coefficients came from another Deep3DFaceRecon checkpoint (SHA-256 "
                f"{earlier_sha[:12]}..., this --deep3d {deep3d_sha256[:12]}...); give that one, or add "
                "--overwrite"
            )
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
            :func:`split_identities`, settings differ), or ``config.deep3d`` is not a readable
            Deep3DFaceRecon checkpoint (checked before any work); never for one bad clip.
    """
    config = config or PrepareConfig()
    clips = inputs if isinstance(inputs, list) else read_inputs(inputs)
    train_ids, test_ids = split_identities([c.identity for c in clips], config)
    out = Path(out).expanduser()
    deep3d = _load_deep3d(config)  # a bad --deep3d: one line before any work
    earlier = _open_output(
        out, config, overwrite=overwrite, deep3d_sha256=None if deep3d is None else deep3d.sha256
    )
    prepare_folder(out)
    prepare_folder(out / "audio")
    env = lmdb.open(str(out / str(config.size_px)), map_size=MAP_SIZE_BYTES, subdir=True, max_dbs=0)
    report = PrepareReport()
    skipped: dict[str, str] = dict((earlier or {}).get("skipped", {}))
    try:
        _write_index(out, env, config, train_ids, test_ids, skipped, len(clips), deep3d)
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
                stored = _prepare_clip(clip, env, out, config, recording, progress=progress, deep3d=deep3d)
            except ClipSkipped as exc:
                _delete_clip_keys(env, clip.name)  # what it wrote (never complete: -length comes last)
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
            _write_index(out, env, config, train_ids, test_ids, skipped, len(clips), deep3d)
        _write_index(out, env, config, train_ids, test_ids, skipped, len(clips), deep3d)
    finally:
        env.close()
    return report


__all__ = [
    "ClipInput",
    "ClipSkipped",
    "PrepareConfig",
    "PrepareReport",
    "crop_points",
    "deep3d_rows",
    "encode_frame",
    "hold_nearest",
    "identity_from_name",
    "prepare_dataset",
    "read_inputs",
    "split_identities",
]
