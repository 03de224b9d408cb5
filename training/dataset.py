"""Training pairs for the renderer, read from a prepared dataset or the authors' VoxCeleb LMDB.

:class:`PairDataset` samples as the paper (pirender-spec section 6.2): one item = one identity drawn
uniformly (the identity list is repeated ``repeat`` times per epoch, 100 as the authors), one random
clip of it, and two frames of that clip drawn independently (with replacement: they may coincide).
Each frame comes with its motion window, built by the project's one window rule
(:func:`~pirender.engine.motion.window.build_windows`): slot ``j`` of the window of frame ``c`` reads
frame ``clamp(c - k + j, first, newest)``. Windows stay inside the frame's shot (a prepared clip
stores one crop box per shot, ``<video>-shot``): ``first`` is the shot's first stored frame and
``newest`` its last, or with ``causal=True`` the frame ``c`` itself (a live tracker has no future
frames: the later slots repeat frame ``c``, like a live stream with lookahead 0).

Two layouts are read (found by what the folder holds):

- a dataset of ``pirender prepare`` (``meta.json``; motion ``<video>-open_motion`` in the open
  space, 17 wide; with ``prepare --deep3d`` also the authors' ``<video>-coeff_3dmm``, read as
  below; ``meta.json`` ``spaces`` says which it holds, ``space=`` picks one);
- the authors' VoxCeleb LMDB (``prepare_vox_lmdb``): the LMDB in a sub-folder named by the
  resolution (``256``), ``train_list.txt`` / ``test_list.txt`` beside it, motion
  ``<video>-coeff_3dmm`` (N, 260) float32, turned into their 73-wide space (expression columns
  80-143, angles 224-226, translation 254-256, crop 257-259); identity = video name up to the
  first ``#``; no shots (a VoxCeleb clip is one shot).

The LMDB is opened lazily, read-only and without locks, once per process: safe with any
``num_workers`` of a DataLoader (fork or spawn).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pirender.engine.errors import PirenderError
from pirender.engine.motion.io import LMDB_ROW_WIDTH
from pirender.engine.motion.space import AUTHORS_SPACE, OPEN_SPACE, MotionSpace, known_space
from pirender.engine.motion.window import DEFAULT_RADIUS, build_windows

#: columns of the authors' (N, 260) coefficients that make their 73-wide motion (spec section 5)
AUTHORS_COLUMNS = np.r_[80:144, 224:227, 254:257, 257:260]
#: the motion spaces a dataset may hold, by the short name ``space=`` takes
SPACES = ("open", "authors")
_AUTHORS_KEY = "{video}-coeff_3dmm"


@dataclass
class _Clip:
    name: str
    identity: str
    frames: int


class PairDataset(Dataset[dict[str, torch.Tensor]]):
    """(source, target) frame pairs of one clip with their motion windows.

    Args:
        dataset_dir: a folder made by ``pirender prepare``, or the authors' VoxCeleb dataset folder
            (the one holding ``train_list.txt`` and the ``256`` LMDB).
        split: ``"train"`` or ``"test"`` (clips of ``train_list.txt`` / ``test_list.txt``).
        radius: semantic radius k (windows of 2k+1 frames; 13 as the authors).
        causal: windows without future frames (slots after the centre repeat it).
        repeat: the identity list is repeated this many times per epoch (100 as the authors).
        seed: None: draws come from torch's generator (seeded per DataLoader worker by torch);
            an int: item ``i`` is a fixed function of (seed, i), so an epoch can be replayed exactly.
        size_px: frames are resized to this side (PIL bicubic) when stored at another (None: as
            stored).
        space: the motion space to read: ``"open"`` (17 wide, ``<video>-open_motion``) or
            ``"authors"`` (73 wide: ``<video>-coeff_3dmm`` (N, 260) through
            :data:`AUTHORS_COLUMNS`); None: the open space where the dataset holds it (a prepared
            dataset), else the authors' (their VoxCeleb LMDB).

    Items (dict of tensors): ``source`` and ``target`` (3, S, S) float32 in [-1, 1] (S: the
    dataset's size, 256); ``source_window`` and ``target_window`` (width, 2k+1) float32 (width 17
    for the open space, 73 for the authors'); ``clip`` () int64 index into :attr:`clips`;
    ``source_frame`` / ``target_frame`` () int64 frame numbers.

    Raises:
        PirenderError: not a dataset folder, an unknown split, a split without clips, a bad radius,
            an unknown ``space`` or one the dataset does not hold (one line; the authors' space of a
            prepared dataset needs ``pirender prepare --deep3d``).
    """

    def __init__(
        self,
        dataset_dir: str | os.PathLike[str],
        split: str = "train",
        radius: int = DEFAULT_RADIUS,
        causal: bool = False,
        *,
        repeat: int = 100,
        seed: int | None = None,
        size_px: int | None = None,
        space: str | None = None,
    ) -> None:
        self.root = Path(dataset_dir).expanduser()
        self.output_px = size_px  # frames resized to this side (PIL bicubic) when stored at another
        if split not in ("train", "test"):
            raise PirenderError(f"split must be 'train' or 'test', not {split!r}")
        if radius < 0 or repeat < 1:
            raise PirenderError(f"radius must be >= 0 and repeat >= 1 (got {radius}, {repeat})")
        if space is not None and space not in SPACES:
            raise PirenderError(f"space must be one of {', '.join(SPACES)} (or None), not {space!r}")
        self.split, self.radius, self.causal, self.repeat, self.seed = split, radius, causal, repeat, seed
        meta_path = self.root / "meta.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            names = _read_list(self.root / f"{split}_list.txt")
            self.layout = "prepare"
            spaces = _prepared_spaces(meta)
            chosen = space or ("open" if "open" in spaces else next(iter(spaces)))
            if chosen not in spaces:
                raise PirenderError(
                    f"{self.root}: holds no motion in the {chosen} space (it has: {', '.join(spaces)}); "
                    "the authors' 73-wide space needs a dataset made with pirender prepare --deep3d "
                    "epoch_20.pth"
                )
            self.space: MotionSpace = known_space(spaces[chosen]["space"])
            self.size_px = int(meta["size"])
            self.lmdb_path = self.root / str(meta["lmdb"])
            self.motion_key = str(spaces[chosen]["key"])
            info = meta["clips"]
            self.clips = [
                _Clip(n, str(info[n]["identity"]), int(info[n]["frames"])) for n in names if n in info
            ]
        else:
            folders = (
                sorted(p for p in self.root.iterdir() if p.is_dir() and p.name.isdigit())
                if self.root.is_dir()
                else []
            )
            if not folders:
                raise PirenderError(
                    f"{self.root}: not a dataset (no meta.json of pirender prepare, no LMDB sub-folder "
                    "named by its resolution as the authors')"
                )
            if space == "open":
                raise PirenderError(
                    f"{self.root}: the authors' VoxCeleb LMDB holds their 73-wide space only "
                    "(space='authors')"
                )
            names = _read_list(self.root / f"{split}_list.txt")
            self.layout = "authors"
            self.space = AUTHORS_SPACE
            self.size_px = int(folders[0].name)
            self.lmdb_path = folders[0]
            self.motion_key = _AUTHORS_KEY
            self.clips = [_Clip(n, n.split("#")[0], -1) for n in names]
        if not self.clips:
            raise PirenderError(f"{self.root}: no clips in the {split} split")
        self.identities = sorted({c.identity for c in self.clips})
        self._by_identity = {
            i: [n for n, c in enumerate(self.clips) if c.identity == i] for i in self.identities
        }
        self._env: lmdb.Environment | None = None
        self._pid = -1
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def width(self) -> int:
        """Motion numbers per frame."""
        return self.space.width

    def __len__(self) -> int:
        return len(self.identities) * self.repeat

    def __getstate__(self) -> dict[str, Any]:  # workers open their own LMDB
        state = self.__dict__.copy()
        state["_env"], state["_pid"], state["_cache"] = None, -1, {}
        return state

    def _txn(self) -> lmdb.Transaction:
        if self._env is None or self._pid != os.getpid():
            self._env = _open_readonly(self.lmdb_path)
            self._pid = os.getpid()
            self._cache = {}
        return self._env.begin(buffers=False)

    def clip_motion(self, clip: int) -> tuple[np.ndarray, np.ndarray]:
        """(frames, width) float32 motion and (frames,) int32 shot numbers of clip ``clip``."""
        cached = self._cache.get(clip)
        if cached is not None:
            return cached
        name = self.clips[clip].name
        with self._txn() as txn:
            raw = txn.get(self.motion_key.format(video=name).encode())
            length = txn.get(f"{name}-length".encode())
            shot_raw = txn.get(f"{name}-shot".encode())
        if raw is None or length is None:
            raise PirenderError(f"{self.lmdb_path}: clip {name!r} is incomplete (no motion or length)")
        frames = int(length)
        values = np.frombuffer(raw, dtype="<f4")
        if self.space.name == AUTHORS_SPACE.name:  # (N, 260) rows of either layout
            values = values.reshape(-1, LMDB_ROW_WIDTH)[:, AUTHORS_COLUMNS]
        else:
            values = values.reshape(-1, self.width)
        if values.shape[0] != frames:
            raise PirenderError(
                f"{self.lmdb_path}: clip {name!r} has {values.shape[0]} motion rows, {frames} frames"
            )
        shots = np.zeros(frames, np.int32) if shot_raw is None else np.frombuffer(shot_raw, dtype="<i4")
        result = (np.ascontiguousarray(values, dtype=np.float32), shots)
        self._cache[clip] = result
        return result

    def source_frames(self, clip: int) -> np.ndarray:
        """(frames,) int32: the decoded video frame each stored frame of clip ``clip`` came from (frames
        without the followed face are not stored; a dataset of the authors' layout: 0, 1, 2, ...)."""
        name = self.clips[clip].name
        with self._txn() as txn:
            raw = txn.get(f"{name}-source_frame".encode())
        if raw is None:
            return np.arange(self.clip_motion(clip)[0].shape[0], dtype=np.int32)
        return np.frombuffer(raw, dtype="<i4").copy()

    def window(self, clip: int, frame: int) -> np.ndarray:
        """(width, 2k+1) float32 window of ``frame`` of clip ``clip`` (module docstring)."""
        values, shots = self.clip_motion(clip)
        same = np.flatnonzero(shots == shots[frame])
        first, last = int(same[0]), int(same[-1])
        newest = frame if self.causal else last
        return build_windows(values[first : newest + 1], frame - first, self.radius)[0]

    def image(self, clip: int, frame: int) -> torch.Tensor:
        """(3, S, S) float32 in [-1, 1] of a stored frame (S: the ``size_px`` asked for, else as stored)."""
        rgb = self.rgb(clip, frame)
        return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(127.5).sub_(1.0)

    def rgb(self, clip: int, frame: int) -> np.ndarray:
        """(S, S, 3) uint8 RGB of a stored frame (S as in :meth:`image`)."""
        name = self.clips[clip].name
        with self._txn() as txn:
            jpeg = txn.get(f"{name}-{frame:07d}".encode())
        if jpeg is None:
            raise PirenderError(f"{self.lmdb_path}: no frame {frame} of clip {name!r}")
        with Image.open(io.BytesIO(jpeg)) as picture:
            converted = picture.convert("RGB")
            if self.output_px is not None and converted.size != (self.output_px, self.output_px):
                converted = converted.resize((self.output_px, self.output_px), Image.Resampling.BICUBIC)
            return np.array(converted)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = None
        if self.seed is not None:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(index))
        identity = self.identities[int(index) % len(self.identities)]
        choices = self._by_identity[identity]
        clip = choices[int(torch.randint(len(choices), (1,), generator=generator))]
        frames = self.clip_motion(clip)[0].shape[0]
        source, target = (int(v) for v in torch.randint(frames, (2,), generator=generator))
        return {
            "source": self.image(clip, source),
            "target": self.image(clip, target),
            "source_window": torch.from_numpy(self.window(clip, source)),
            "target_window": torch.from_numpy(self.window(clip, target)),
            "clip": torch.tensor(clip),
            "source_frame": torch.tensor(source),
            "target_frame": torch.tensor(target),
        }


#: read-only LMDB handles of this process by path: py-lmdb refuses to open one environment twice
#: in a process, and several datasets (train and test, causal and not) may read the same one. The
#: process id is part of the key: a forked DataLoader worker opens its own.
_READERS: dict[tuple[str, int], lmdb.Environment] = {}


def _open_readonly(path: Path) -> lmdb.Environment:
    key = (os.path.realpath(path), os.getpid())
    env = _READERS.get(key)
    if env is None:
        for other in [k for k in _READERS if k[0] == key[0]]:  # the parent's, inherited by a fork
            _READERS.pop(other).close()  # (closes this process's copy only; py-lmdb allows one)
        env = _READERS[key] = lmdb.open(
            key[0], readonly=True, lock=False, readahead=False, meminit=False, max_readers=512
        )
    return env


def _prepared_spaces(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The spaces of a prepared dataset's meta.json: short name -> {"space": full name, "key": LMDB
    key pattern}; meta.json of before ``--deep3d`` names only its one (open) space."""
    spaces = meta.get("spaces")
    if isinstance(spaces, dict) and spaces:
        return {str(name): dict(entry) for name, entry in spaces.items()}
    name = str(meta["space"]["name"])
    short = "open" if name == OPEN_SPACE.name else "authors" if name == AUTHORS_SPACE.name else name
    return {short: {"space": name, "key": str(meta["motion_key"])}}


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise PirenderError(f"{path}: missing (a dataset lists its clips in train_list.txt / test_list.txt)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


__all__ = ["AUTHORS_COLUMNS", "SPACES", "PairDataset"]
