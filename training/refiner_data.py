"""Training pairs of the ``neural`` renderer's editing network, made from a prepared dataset.

For each clip of a split, each shot is cut into chunks of ``source_every`` frames; the chunk's
calmest frame (closest to the clip's neutral, as the evaluation harness picks its sources) is the
source portrait, and one frame in ``every`` is a target. The mesh renderer moves the source to the
target's tracked motion; the pair is the face box (``engine.renderer.refine.crop``) of that mesh
frame and the same box of the real target frame, with the source's own face box, the motion
features and the boxes of the mouth and eyes inside the crop (where the network may change the frame;
the mouth's also weighs more in the loss).

Stored in ``OUT/<split>/`` as NumPy arrays (``np.load(mmap_mode="r")`` reads them without loading):
``mesh.npy``, ``real.npy``, ``source.npy`` (N, crop, crop, 3) uint8; ``motion.npy`` (N, 17) float32;
``regions.npy`` (N, 3, 4) float32 (mouth, right eye, left eye: left, top, right, bottom in crop
pixels, ``crop.region_boxes``); ``index.json`` (clips,
sources, settings). A split is written to a temporary folder and renamed when complete.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pirender.engine.errors import PirenderError, exception_text
from pirender.engine.image import SourceImage
from pirender.engine.motion.limits import soft_limit
from pirender.engine.motion.space import OPEN_SPACE
from pirender.engine.renderer.base import RenderMode
from pirender.engine.renderer.mesh.renderer import MeshRenderer, MeshSource
from pirender.engine.renderer.refine.crop import (
    REGIONS,
    boxes_of,
    crop,
    face_box,
    region_boxes,
    region_indices,
    region_mask,
)
from pirender.engine.renderer.refine.renderer import motion_features
from pirender.training.dataset import PairDataset
from pirender.training.evaluate import calmest_frame

ARRAYS = ("mesh", "real", "source")


@dataclass(frozen=True)
class PairsConfig:
    """``every``: one target in this many frames; ``source_every``: a new source per this many frames
    of a shot; ``crop_px``: side of the stored boxes; ``max_frames``: frames of each clip at most."""

    every: int = 2
    source_every: int = 150
    crop_px: int = 128
    max_frames: int | None = None
    batch: int = 16


@dataclass
class _Chunk:
    clip: int
    source: int
    targets: np.ndarray


def _plan(dataset: PairDataset, config: PairsConfig) -> list[_Chunk]:
    chunks = []
    for clip in range(len(dataset.clips)):
        rows, shots = dataset.clip_motion(clip)
        limit = rows.shape[0] if config.max_frames is None else min(rows.shape[0], config.max_frames)
        for shot in np.unique(shots[:limit]):
            frames = np.flatnonzero(shots[:limit] == shot)
            for start in range(0, frames.size, config.source_every):
                part = frames[start : start + config.source_every]
                if part.size < 8:
                    continue
                source = int(part[calmest_frame(rows[part].astype(np.float64), np.ones(part.size, bool))])
                targets = part[:: config.every]
                targets = targets[targets != source]
                if targets.size:
                    chunks.append(_Chunk(clip, source, targets))
    return chunks


def _to_u8(crops: torch.Tensor) -> np.ndarray:
    return ((crops + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def make_pairs(
    dataset_dir: str | Path,
    out: str | Path,
    split: str,
    config: PairsConfig | None = None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Make (or remake) the pairs of one split; returns the index written to ``index.json``.

    Raises:
        PirenderError: not a dataset of the open space, no pairs could be made.
    """
    config = config or PairsConfig()
    dataset = PairDataset(dataset_dir, split, 0)
    if dataset.space.name != OPEN_SPACE.name:
        raise PirenderError(
            f"{dataset_dir}: the neural renderer trains in the open space, not {dataset.space.name}"
        )
    chunks = _plan(dataset, config)
    total = sum(c.targets.size for c in chunks)
    if total == 0:
        raise PirenderError(f"{dataset_dir}: no pairs in the {split} split")
    final = Path(out).expanduser() / split
    temporary = final.with_name(f".{split}.partial")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    side = config.crop_px
    arrays = {
        name: np.lib.format.open_memmap(temporary / f"{name}.npy", "w+", np.uint8, (total, side, side, 3))
        for name in ARRAYS
    }
    motion = np.zeros((total, OPEN_SPACE.width), np.float32)
    regions = np.zeros((total, 3, 4), np.float32)
    renderer = MeshRenderer(image_size_px=dataset.size_px)
    used, skipped, sources = 0, [], []
    try:
        bar = tqdm(total=total, unit="pair", desc=f"{split} pairs", disable=not progress)
        for chunk in chunks:
            name = dataset.clips[chunk.clip].name
            try:
                prepared = renderer.prepare(
                    SourceImage(dataset.rgb(chunk.clip, chunk.source), None, (dataset.size_px,) * 2)
                )
            except PirenderError as exc:
                skipped.append(f"{name} frame {chunk.source}: {exception_text(exc)}")
                bar.update(chunk.targets.size)
                continue
            rows_all = dataset.clip_motion(chunk.clip)[0]
            rest = renderer.rest_row(prepared)
            mesh = renderer.prepared_as(prepared, MeshSource)
            box = torch.from_numpy(face_box(mesh.points))[None]
            source_crop = _to_u8(crop(mesh.source32, box, side))[0]
            sources.append({"clip": name, "frame": int(chunk.source), "pairs": int(chunk.targets.size)})
            for start in range(0, chunk.targets.size, config.batch):
                part = chunk.targets[start : start + config.batch]
                rows = soft_limit(rows_all[part], OPEN_SPACE, axis=1)
                out, targets = renderer.render_rows(rows, prepared, RenderMode.FULL, False)
                boxes = boxes_of(targets)
                real = torch.stack([dataset.image(chunk.clip, int(f)) for f in part])
                n = part.size
                arrays["mesh"][used : used + n] = _to_u8(crop(out.frame, boxes, side))
                arrays["real"][used : used + n] = _to_u8(crop(real, boxes, side))
                arrays["source"][used : used + n] = source_crop
                motion[used : used + n] = motion_features(rows, rest)
                for k, target in enumerate(targets):
                    regions[used + k] = region_boxes(target, boxes[k].numpy(), side)
                used += n
                bar.update(n)
        bar.close()
    finally:
        renderer.close()
    for array in arrays.values():
        array.flush()
    del arrays
    if used == 0:
        shutil.rmtree(temporary, ignore_errors=True)
        raise PirenderError(f"{dataset_dir}: no pairs could be made ({'; '.join(skipped[:3])})")
    if used < total:  # chunks whose source had no face: keep the rows written
        for name in ARRAYS:
            kept = np.load(temporary / f"{name}.npy", mmap_mode="r")[:used]
            np.save(temporary / f"{name}.tmp.npy", kept)
            (temporary / f"{name}.tmp.npy").replace(temporary / f"{name}.npy")
    np.save(temporary / "motion.npy", motion[:used])
    np.save(temporary / "regions.npy", regions[:used])
    index = {
        "dataset": str(dataset_dir),
        "split": split,
        "pairs": used,
        "settings": asdict(config),
        "identities": dataset.identities,
        "sources": sources,
        "skipped": skipped,
    }
    (temporary / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    temporary.replace(final)
    return index


class PairArrays:
    """The stored pairs of one split, as float tensors on demand (module docstring)."""

    def __init__(self, folder: str | Path, *, in_memory: bool = True) -> None:
        root = Path(folder).expanduser()
        if not (root / "index.json").is_file():
            raise PirenderError(
                f"{root}: no refiner pairs here (make them with pirender train-refiner --data)"
            )
        mode = None if in_memory else "r"
        self.mesh, self.real, self.source = (np.load(root / f"{n}.npy", mmap_mode=mode) for n in ARRAYS)
        self.motion = np.load(root / "motion.npy")
        self.regions = np.load(root / "regions.npy")
        self.index = json.loads((root / "index.json").read_text())

    def __len__(self) -> int:
        return int(self.motion.shape[0])

    def batch(self, indices: np.ndarray, regions: tuple[str, ...] = REGIONS) -> dict[str, torch.Tensor]:
        """Items ``indices``: mesh, real, source (B, 3, S, S) in [-1, 1]; motion (B, 17); regions
        (B, 3, 4) (all of ``crop.REGIONS``: mouth, eyes); mask (B, 1, S, S) of the ``regions`` named
        (``crop.region_mask``)."""

        def images(array: np.ndarray) -> torch.Tensor:
            return (
                torch.from_numpy(np.ascontiguousarray(array[indices])).permute(0, 3, 1, 2).float() / 127.5 - 1
            )

        return {
            "mesh": images(self.mesh),
            "real": images(self.real),
            "source": images(self.source),
            "motion": torch.from_numpy(self.motion[indices]),
            "regions": torch.from_numpy(self.regions[indices]),
            "mask": region_mask(
                torch.from_numpy(self.regions[indices][:, region_indices(regions)]), self.mesh.shape[1]
            ),
        }


__all__ = ["PairArrays", "PairsConfig", "make_pairs"]
