"""``pirender eval``: renderers measured on real people they never saw (issue 13).

Protocol (PIRenderer section 4.1, the First Order Motion Model's reconstruction test), on the clips of
a dataset's held-out split (``pirender prepare`` splits by identity, never by clip):

* **Same-identity reconstruction.** A clip is cut into shots (one still crop box each). For every
  shot of at least :data:`MIN_SHOT_FRAMES` frames the source portrait is the shot's calmest frame
  (the frame closest to the clip's neutral: no expression, head where the neutral was; the open
  space treats a portrait as the person at rest, as a user's portrait is); every other frame of the
  shot is generated from the source and the clip's own motion, and compared with the real frame:
  L1 (mean absolute difference of [0, 1] pixels), PSNR (dB, peak 1), SSIM (Gaussian 11 px window,
  ``renderer_losses.ssim_per_image``), and PSNR / SSIM inside the mouth box and the eyes box (boxes
  from the real frame's face-mesh landmarks, padded by :data:`BOX_PAD_IOD` inter-ocular distances).
* **AED / APD by re-tracking** (the paper measures both with its 3DMM regressor; here with the
  open space's face-mesh measurement, one measure for every renderer): the generated and the real
  frame are both measured relative to the source portrait (``NeutralFace`` of the source's
  landmarks); AED = mean |difference| of the 11 expression controls (control units), APD = mean
  |difference| of pitch, yaw and roll relative to the source (degrees).
* **Cross-identity reenactment.** The source portrait of one held-out person, the motion of another
  held-out person's shot (open space: the driver's head turn relative to its calm frame put on the
  source's pose, ``motion.retarget.OpenRetargeter``; authors' space: their crop-scale rule,
  ``cross_identity_scale``): AED / APD against the driver's real frames (each measured relative to
  its own source), and the fraction of generated frames in which a face is still found.

Each renderer is driven in its own motion space: the open space from the dataset's tracked motion
(``pirender prepare``), the authors' 73-wide space from the dataset's ``coeff_3dmm`` (``prepare
--deep3d``) or from Deep3DFaceRecon run here (``--deep3d PATH``). A renderer smaller than the
dataset's frames is measured on its frames resized (bicubic) to the dataset's size: the picture a
user sees. LPIPS and FID are computed only from local backbone weights (``--lpips``, ``--fid``);
otherwise the report says they were not computed.

Outputs in ``--out``: ``metrics.json``, ``report.md`` (also printed), ``per_clip.csv`` and
``contact_sheet.png`` (source | real | each renderer, for the frames with the mouth most open, the
head most turned and the eyes most closed, plus one cross-identity frame).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from pirender.engine.errors import PirenderError, exception_text
from pirender.engine.fileio import check_output, prepare_folder, write_atomically
from pirender.engine.image import SourceImage
from pirender.engine.motion.retarget import OpenRetargeter, cross_identity_scale
from pirender.engine.motion.space import AUTHORS_SPACE, OPEN_SPACE, MotionFrame, MotionSequence, MotionSpace
from pirender.engine.motion.window import build_windows
from pirender.engine.renderer.base import Renderer
from pirender.engine.track import landmarks as lm
from pirender.engine.track.face_check import HumanFaceCheck
from pirender.engine.track.geometry import relative_euler
from pirender.engine.track.landmarks import FaceMesh, FaceMeshConfig
from pirender.engine.track.open_space import NeutralFace
from pirender.training.dataset import PairDataset
from pirender.training.renderer_losses import ssim_per_image

#: shots shorter than this are not measured (a source plus too few frames to say anything)
MIN_SHOT_FRAMES = 8
#: the mouth and eyes boxes are the landmarks' bounding box grown by this many inter-ocular distances
BOX_PAD_IOD = 0.12
#: frames rendered per call
BATCH = 8
_EXPRESSION = OPEN_SPACE.group("expression")
_POSITION = OPEN_SPACE.group("position")
_SCALE = OPEN_SPACE.index("scale")
_MOUTH_POINTS = np.array(sorted({*lm.UPPER_LIP_OUTER_RING, *lm.LOWER_LIP_OUTER_RING}))
_EYE_POINTS = np.array(
    sorted({*lm.RIGHT_UPPER_LID, *lm.RIGHT_LOWER_LID, *lm.LEFT_UPPER_LID, *lm.LEFT_LOWER_LID})
)
_METRICS = ("l1", "psnr", "ssim", "mouth_psnr", "mouth_ssim", "eyes_psnr", "eyes_ssim", "aed", "apd_deg")
_CROSS_METRICS = ("aed", "apd_deg", "face_found")
_SHEET_ROWS = ("mouth open", "head turned", "eyes closed")
#: a contact-sheet row is shown only when its most extreme held-out frame reaches this (re-tracked,
#: relative to the source): jaw_open (control units), yaw (degrees), blink (mean of both eyes)
_SHEET_MIN = {"mouth open": 0.3, "head turned": 10.0, "eyes closed": 0.5}
_SHEET_MEASURE = {
    "mouth open": "jaw_open {:.2f}",
    "head turned": "yaw {:.0f} deg",
    "eyes closed": "blink {:.2f}",
}


@dataclass(frozen=True)
class EvalConfig:
    """Settings of ``pirender eval`` (module docstring).

    Attributes:
        data: a dataset of ``pirender prepare`` or the authors' VoxCeleb folder; or videos (a folder, a
            video, a manifest), prepared first into ``out/dataset`` with every clip held out.
        renderers: ``"mesh"`` or a checkpoint path (file or run folder), each measured side by side.
        out: report folder.
        split: ``test`` (the held-out people) or ``train``.
        max_frames: frames measured per clip at most (None: all), from the clip's start.
        cross_frames: driving frames per cross-identity pair at most.
        deep3d: Deep3DFaceRecon checkpoint, for renderers of the authors' space on a dataset without
            their coefficients.
        lpips, lpips_net: LPIPS backbone weights (torchvision format) and its network.
        fid: FID Inception weights.
        device: where renderers run.
        overwrite: replace the report files of an earlier run.
    """

    data: Path
    renderers: tuple[str, ...] = ("mesh",)
    out: Path = Path("out/eval")
    split: str = "test"
    max_frames: int | None = None
    cross_frames: int = 100
    deep3d: Path | None = None
    lpips: Path | None = None
    lpips_net: str = "alex"
    fid: Path | None = None
    device: str = "cpu"
    overwrite: bool = False

    def __post_init__(self) -> None:
        if len(set(self.renderers)) != len(self.renderers):
            raise PirenderError("the same --renderer is given twice")
        if self.split not in ("train", "test"):
            raise PirenderError(f"--split must be train or test, not {self.split!r}")
        if self.max_frames is not None and self.max_frames < MIN_SHOT_FRAMES:
            raise PirenderError(f"--max-frames must be at least {MIN_SHOT_FRAMES}, got {self.max_frames}")
        if self.cross_frames < 1:
            raise PirenderError(f"--cross-frames must be at least 1, got {self.cross_frames}")


# --------------------------------------------------------------------------------------------------
# per-frame measures


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, peak 1) of each pair of (B, 3, H, W) images in [0, 1]; identical images: 100 dB."""
    mse = (a - b).pow(2).flatten(1).mean(1)
    return torch.where(mse > 0, -10.0 * torch.log10(mse.clamp_min(1e-10)), torch.full_like(mse, 100.0))


def region_box(points: np.ndarray, which: np.ndarray, size_px: int) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) pixel box of some landmarks grown by :data:`BOX_PAD_IOD` IOD,
    clipped to the picture; None when less than 8 px remain on a side."""
    right_eye, left_eye = lm.eye_centres(points)
    pad = BOX_PAD_IOD * float(np.linalg.norm((left_eye - right_eye)[:2]))
    xy = points[which, :2]
    left, top = np.floor(xy.min(0) - pad).astype(int)
    right, bottom = np.ceil(xy.max(0) + pad).astype(int)
    left, top = max(int(left), 0), max(int(top), 0)
    right, bottom = min(int(right), size_px), min(int(bottom), size_px)
    if right - left < 8 or bottom - top < 8:
        return None
    return left, top, right, bottom


def relative_pose_deg(rows: np.ndarray, source_row: np.ndarray) -> np.ndarray:
    """(N, 3) Euler angles (degrees) of each row's head rotation relative to the source's."""
    return np.degrees(relative_euler(rows, source_row))


class Retracker:
    """Face-mesh landmarks of single pictures (static mode: a fresh detection each picture, so a
    generated frame that lost its face is never carried by tracking)."""

    def __init__(self) -> None:
        self._mesh = FaceMesh(FaceMeshConfig(max_faces=1), static_images=True)
        self._human = HumanFaceCheck()

    def landmarks(self, rgb: np.ndarray, *, human: bool = False) -> np.ndarray | None:
        """(478, 3) pixel landmarks of the face in an (H, W, 3) uint8 picture, or None. ``human``:
        only a face that also passes the project's human-face rule (``track.face_check``; the face
        mesh alone finds "faces" in some noise), as generated frames are judged."""
        rgb = np.ascontiguousarray(rgb)
        faces = self._mesh.detect(rgb)
        if not faces or (human and not self._human.check(rgb, faces[0]).human):
            return None
        return faces[0]

    def close(self) -> None:
        self._mesh.close()
        self._human.close()


def _rows_relative(neutral: NeutralFace, points: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """Open-space rows (N, 17) of landmarks relative to ``neutral`` (NaN where no face) and the
    (N,) mask of frames with a face."""
    rows = np.full((len(points), OPEN_SPACE.width), np.nan, dtype=np.float64)
    found = np.zeros(len(points), dtype=bool)
    for i, p in enumerate(points):
        if p is not None:
            rows[i] = neutral.motion(p).values
            found[i] = True
    return rows, found


# --------------------------------------------------------------------------------------------------
# renderers


@dataclass
class Contender:
    """One renderer under test with its window geometry (``past`` and ``future`` frames)."""

    label: str
    renderer: Renderer
    past: int
    future: int

    @property
    def space(self) -> MotionSpace:
        return self.renderer.space

    def windows(self, rows: np.ndarray) -> np.ndarray:
        """(N, width, past + 1 + future) windows of every row of one shot (clamped to the shot)."""
        radius = max(self.past, self.future)
        full = build_windows(np.ascontiguousarray(rows, dtype=np.float32), np.arange(rows.shape[0]), radius)
        return np.ascontiguousarray(full[:, :, radius - self.past : radius + self.future + 1])


def load_contender(spec: str, device: str) -> Contender:
    """``mesh`` or a checkpoint (file or run folder) as a :class:`Contender`.

    Raises:
        PirenderError: the checkpoint cannot be read (one line naming it).
    """
    from pirender.engine.api import load_renderer
    from pirender.engine.renderer.checkpoint import read_checkpoint
    from pirender.engine.renderer.refine.renderer import is_refiner_file

    if spec == "mesh":
        return Contender("mesh", load_renderer(), 0, 0)
    if spec == "neural" or is_refiner_file(spec):
        renderer = load_renderer(None if spec == "neural" else spec, backend="neural", device=device)
        return Contender("neural" if spec == "neural" else Path(spec).stem, renderer, 0, 0)
    info = read_checkpoint(spec)
    train = dict(info.meta.get("train_config") or {})
    window = info.config.min_window_frames
    past = int(train.get("radius_past", (window - 1) // 2))
    future = int(train.get("radius_future", (window - 1) // 2))
    label = Path(spec).name if Path(spec).is_dir() else Path(spec).stem
    mode = "full"
    if info.meta.get("stage") == "warp":  # the editing net never trained: its frames would be noise
        mode = "warp"
        print(
            f"note: {label} stopped in the warp stage (step {info.iteration}): measured as its warped "
            "source (mode warp), the editing net is untrained"
        )
    renderer = load_renderer(info, device=device, mode=mode)
    return Contender(label, renderer, past, future)


def _to_unit(frames: torch.Tensor, size_px: int) -> torch.Tensor:
    """(B, 3, h, w) in [-1, 1] -> (B, 3, size, size) float32 in [0, 1] (bicubic when resized)."""
    frames = frames.detach().float().cpu()
    if frames.shape[-1] != size_px or frames.shape[-2] != size_px:
        frames = F.interpolate(frames, size=(size_px, size_px), mode="bicubic", align_corners=False)
    return ((frames + 1) / 2).clamp_(0, 1)


def _to_uint8(unit: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8."""
    return (unit * 255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _source_image(rgb: np.ndarray, size_px: int, name: str) -> SourceImage:
    if rgb.shape[0] != size_px:
        rgb = np.asarray(Image.fromarray(rgb).resize((size_px, size_px), Image.Resampling.BICUBIC))
    return SourceImage(
        rgb=np.ascontiguousarray(rgb), path=name, original_size_px=(rgb.shape[1], rgb.shape[0])
    )


# --------------------------------------------------------------------------------------------------
# the data


@dataclass
class Shot:
    """One measured shot of a held-out clip: frames (uint8), real landmarks, motion, the source."""

    clip: str
    identity: str
    numbers: np.ndarray  # (N,) the frames' numbers in the clip
    frames: list[np.ndarray | None]  # (S, S, 3) uint8 each (None: let go, see ``trimmed``)
    points: list[np.ndarray | None]  # (478, 3) real landmarks, None where no face was found
    open_rows: np.ndarray  # (N, 17): the clip's motion (relative to its neutral)
    authors_rows: np.ndarray | None  # (N, 73) or None
    source: int  # index of the source frame
    real_rows: np.ndarray = field(default_factory=lambda: np.zeros((0, OPEN_SPACE.width)))
    real_found: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def frame(self, index: int) -> np.ndarray:
        picture = self.frames[index]
        if picture is None:
            raise PirenderError(f"frame {index} of the shot of {self.clip} was let go")
        return picture

    def trimmed(self, count: int) -> Shot:
        """This shot keeping only the pictures the cross-identity test needs: the first ``count``
        frames and the source (the rest let go, so that held-out sets of any size fit in memory)."""
        keep = [f if (i < count or i == self.source) else None for i, f in enumerate(self.frames)]
        points = [p if (i < count or i == self.source) else None for i, p in enumerate(self.points)]
        return replace(self, frames=keep, points=points)

    @property
    def targets(self) -> np.ndarray:
        """Indices of the generated frames (all but the source)."""
        return np.array([i for i in range(len(self.frames)) if i != self.source], dtype=np.int64)

    def rows(self, space: MotionSpace) -> np.ndarray:
        if space.name == OPEN_SPACE.name:
            return self.open_rows
        if space.name == AUTHORS_SPACE.name and self.authors_rows is not None:
            return self.authors_rows
        raise PirenderError(f"no motion of space {space.name!r} for clip {self.clip}")


def calmest_frame(rows: np.ndarray, usable: np.ndarray) -> int:
    """Index of the row closest to the neutral: |tx| + |ty| + |scale - 1| + mean |expression|,
    among the ``usable`` rows (frames whose face the re-tracking found)."""
    score = (
        np.abs(rows[:, _POSITION.start]) + np.abs(rows[:, _POSITION.start + 1]) + np.abs(rows[:, _SCALE] - 1)
    )
    score = score + np.abs(rows[:, _EXPRESSION]).mean(1)
    score = np.where(usable, score, np.inf)
    return int(np.argmin(score))


def _authors_motion(data: Path, split: str) -> PairDataset | None:
    """The dataset's authors'-space motion reader, when it stores Deep3D coefficients."""
    try:
        return PairDataset(data, split, 0, space="authors")
    except PirenderError:
        return None


# --------------------------------------------------------------------------------------------------
# the run


@dataclass
class _Accumulator:
    values: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in _METRICS})

    def add(self, name: str, value: float) -> None:
        if math.isfinite(value):
            self.values.setdefault(name, []).append(float(value))

    def means(self, names: Sequence[str]) -> dict[str, float | None]:
        return {n: (float(np.mean(self.values[n])) if self.values.get(n) else None) for n in names}

    def count(self, name: str) -> int:
        return len(self.values.get(name, ()))


@dataclass
class _SheetEntry:
    score: float
    label: str
    source: np.ndarray
    real: np.ndarray
    generated: dict[str, np.ndarray] = field(default_factory=dict)


class Evaluation:
    """One ``pirender eval`` run (module docstring); :meth:`run` returns the metrics dict."""

    def __init__(
        self, config: EvalConfig, *, contenders: Sequence[Contender] = (), progress: bool = True
    ) -> None:
        """``contenders``: renderer objects measured besides ``config.renderers`` (from Python: any
        :class:`~pirender.engine.renderer.base.Renderer`, wrapped with its window geometry).

        Raises:
            PirenderError: bad data, a renderer that cannot load, a report that exists (no overwrite).
        """
        self.config = config
        self.progress = progress
        self.outputs = {
            name: check_output(config.out / name, overwrite=config.overwrite)
            for name in ("metrics.json", "report.md", "per_clip.csv", "contact_sheet.png")
        }
        self.contenders = [load_contender(spec, config.device) for spec in config.renderers]
        self.contenders += list(contenders)
        if not self.contenders:
            raise PirenderError("give at least one --renderer (mesh or a checkpoint)")
        if len({c.label for c in self.contenders}) != len(self.contenders):
            raise PirenderError(f"two renderers share a label: {[c.label for c in self.contenders]}")
        self.lpips = self._lpips()
        self.fid = {c.label: self._fid() for c in self.contenders} if config.fid is not None else {}
        self.data = self._dataset(config)
        self.dataset = PairDataset(self.data, config.split, 0)
        self.size_px = self.dataset.size_px
        self.authors = (
            _authors_motion(self.data, config.split) if self.dataset.space != AUTHORS_SPACE else None
        )
        for contender in self.contenders:
            if contender.space.name not in (OPEN_SPACE.name, AUTHORS_SPACE.name):
                raise PirenderError(
                    f"renderer {contender.label}: motion space {contender.space.name!r} cannot be measured "
                    f"(the harness drives {OPEN_SPACE.name} and {AUTHORS_SPACE.name})"
                )
        self.deep3d = None
        if any(c.space.name == AUTHORS_SPACE.name for c in self.contenders):
            if self.dataset.space.name == AUTHORS_SPACE.name or self.authors is not None:
                pass
            elif config.deep3d is not None:
                from pirender.engine.track.deep3d import Deep3DRegressor

                self.deep3d = Deep3DRegressor.from_checkpoint(config.deep3d)
            else:
                raise PirenderError(
                    "a renderer of the authors' 73-wide space needs their motion: pass --deep3d "
                    "PATH (Deep3DFaceRecon's epoch_20.pth) or a dataset prepared with --deep3d"
                )
        self.skipped: dict[str, str] = {}
        #: clips the dataset itself could not take (``pirender prepare`` skipped them; any split)
        self.not_prepared: dict[str, str] = {}
        if (self.data / "meta.json").is_file():
            self.not_prepared = dict(json.loads((self.data / "meta.json").read_text()).get("skipped") or {})
        self.same = {c.label: _Accumulator() for c in self.contenders}
        self.cross = {c.label: _Accumulator() for c in self.contenders}
        self.per_clip: list[dict[str, Any]] = []
        self.sheet: dict[str, _SheetEntry] = {}
        self.cross_example: _SheetEntry | None = None

    # ---- inputs
    @staticmethod
    def _dataset(config: EvalConfig) -> Path:
        data = Path(config.data).expanduser()
        if not data.exists():
            raise PirenderError(f"--data {data}: no such file or folder")
        if (data / "meta.json").is_file() or (
            data.is_dir() and any(p.name.isdigit() for p in data.iterdir())
        ):
            return data
        from pirender.training.prepare import PrepareConfig, prepare_dataset, read_inputs

        clips = read_inputs(data)
        prepared = config.out / "dataset"
        print(
            f"{data} is not a dataset: preparing its {len(clips)} clip(s) in {prepared}, all held out "
            "(without a MANIFEST.tsv each file counts as its own person)"
        )
        config_all = PrepareConfig(holdout=tuple(sorted({c.identity for c in clips})))
        prepare_dataset(clips, prepared, config_all, progress=True)
        return prepared

    def _lpips(self) -> Any:
        if self.config.lpips is None:
            return None
        from pirender.training.quality_metrics import LpipsMetric

        return LpipsMetric.from_files(self.config.lpips, net=self.config.lpips_net)

    def _fid(self) -> Any:
        from pirender.training.quality_metrics import FidMetric

        assert self.config.fid is not None
        return FidMetric.from_file(self.config.fid)

    # ---- shots
    def _shots(self, clip: int, retracker: Retracker) -> list[Shot]:
        """The measured shots of one clip (frames, real landmarks, motion, source)."""
        info = self.dataset.clips[clip]
        rows, shot_ids = self.dataset.clip_motion(clip)
        authors = None
        if self.dataset.space.name == AUTHORS_SPACE.name:
            authors, rows = rows, None
        elif self.authors is not None:
            authors = self.authors.clip_motion(_clip_index(self.authors, info.name))[0]
        budget = rows.shape[0] if rows is not None else authors.shape[0]  # type: ignore[union-attr]
        if self.config.max_frames is not None:
            budget = min(budget, self.config.max_frames)
        shots = []
        for shot_id in np.unique(shot_ids[:budget]):
            idx = np.flatnonzero(shot_ids[:budget] == shot_id)
            if idx.size < MIN_SHOT_FRAMES:
                continue
            frames = [self.dataset.rgb(clip, int(i)) for i in idx]
            points = [retracker.landmarks(f) for f in frames]
            found = np.array([p is not None for p in points])
            if found.sum() < MIN_SHOT_FRAMES:
                continue
            if rows is None:  # the authors' layout has no open-space motion: measure it here
                neutral = NeutralFace.from_landmarks([points[int(np.flatnonzero(found)[0])]])  # type: ignore[list-item]
                open_rows, _ = _rows_relative(neutral, points)
                open_rows = _hold(open_rows, found)
            else:
                open_rows = rows[idx].astype(np.float64)
            shot_authors = None
            if authors is not None:
                shot_authors = authors[idx]
            elif self.deep3d is not None:
                shot_authors = self._deep3d_rows(frames, points, found)
            source = calmest_frame(open_rows, found)
            shot = Shot(info.name, info.identity, idx, list(frames), points, open_rows, shot_authors, source)
            neutral = NeutralFace.from_landmarks([points[source]])  # type: ignore[list-item]
            shot.real_rows, shot.real_found = _rows_relative(neutral, points)
            shots.append(shot)
        return shots

    def _deep3d_rows(
        self, frames: list[np.ndarray], points: list[np.ndarray | None], found: np.ndarray
    ) -> np.ndarray:
        assert self.deep3d is not None
        rows = np.full((len(frames), AUTHORS_SPACE.width), np.nan)
        chosen = np.flatnonzero(found)
        five = np.stack([lm.five_points(points[i]) for i in chosen])  # type: ignore[arg-type]
        for start in range(0, chosen.size, 16):
            part = chosen[start : start + 16]
            rows[part] = self.deep3d.predict_batch([frames[i] for i in part], five[start : start + 16])
        return _hold(rows, found)

    # ---- same identity
    def _same_identity(self, shot: Shot, retracker: Retracker, bar: tqdm) -> None:
        targets = shot.targets
        source_rgb = shot.frame(shot.source)
        sheet_pick = self._sheet_candidates(shot, targets)
        for contender in self.contenders:
            acc = self.same[contender.label]
            clip_acc = _Accumulator()
            renderer = contender.renderer
            prepared = renderer.prepare(_source_image(source_rgb, renderer.image_size_px, shot.clip))
            windows = contender.windows(shot.rows(contender.space))
            neutral = NeutralFace.from_landmarks([shot.points[shot.source]])  # type: ignore[list-item]
            for start in range(0, targets.size, BATCH):
                part = targets[start : start + BATCH]
                with torch.inference_mode():
                    out = renderer.render(windows[part], source=prepared).frame
                fake = _to_unit(out, self.size_px)
                truth = _real_batch(shot, part)
                fake_rgb = _to_uint8(fake)
                self._measure_frames(shot, part, fake, truth, fake_rgb, neutral, retracker, (acc, clip_acc))
                if contender.label in self.fid:
                    self.fid[contender.label].update(fake * 2 - 1, real=False)
                for row_name, (frame_index, _score) in sheet_pick.items():
                    hit = np.flatnonzero(part == frame_index)
                    if hit.size:
                        self.sheet[row_name].generated[contender.label] = fake_rgb[int(hit[0])]
                bar.update(part.size)
            self.per_clip.append(
                {
                    "clip": shot.clip,
                    "identity": shot.identity,
                    "shot_first_frame": int(shot.numbers[0]),
                    "source_frame": int(shot.numbers[shot.source]),
                    "frames": int(targets.size),
                    "renderer": contender.label,
                    **{k: _round(v) for k, v in clip_acc.means(_METRICS).items()},
                }
            )
        if self.fid:  # the real frames through Inception once, their features to every renderer's FID
            first = next(iter(self.fid.values()))
            for start in range(0, targets.size, BATCH):
                features = first.extract(_real_batch(shot, targets[start : start + BATCH]) * 2 - 1)
                for metric in self.fid.values():
                    metric.add_features(features, real=True)

    def _measure_frames(
        self,
        shot: Shot,
        part: np.ndarray,
        fake: torch.Tensor,
        truth: torch.Tensor,
        fake_rgb: np.ndarray,
        neutral: NeutralFace,
        retracker: Retracker,
        accumulators: tuple[_Accumulator, _Accumulator],
    ) -> None:
        l1 = (fake - truth).abs().flatten(1).mean(1)
        psnr = psnr_db(fake, truth)
        ssim = ssim_per_image(fake, truth)
        lpips = self.lpips(fake * 2 - 1, truth * 2 - 1) if self.lpips is not None else None
        source_row = shot.real_rows[shot.source]
        for k, frame_index in enumerate(part):
            values: dict[str, float] = {"l1": float(l1[k]), "psnr": float(psnr[k]), "ssim": float(ssim[k])}
            if lpips is not None:
                values["lpips"] = float(lpips[k])
            points = shot.points[int(frame_index)]
            if points is not None:
                for region, which in (("mouth", _MOUTH_POINTS), ("eyes", _EYE_POINTS)):
                    box = region_box(points, which, self.size_px)
                    if box is None:
                        continue
                    left, top, right, bottom = box
                    a = fake[k : k + 1, :, top:bottom, left:right]
                    b = truth[k : k + 1, :, top:bottom, left:right]
                    values[f"{region}_psnr"] = float(psnr_db(a, b)[0])
                    values[f"{region}_ssim"] = float(ssim_per_image(a, b)[0])
            generated = retracker.landmarks(fake_rgb[k], human=True)
            values["face_found"] = float(generated is not None)
            if generated is not None and shot.real_found[int(frame_index)]:
                gen_row = neutral.motion(generated).values.astype(np.float64)
                real_row = shot.real_rows[int(frame_index)]
                values["aed"] = float(np.abs(gen_row[_EXPRESSION] - real_row[_EXPRESSION]).mean())
                gen_pose = relative_pose_deg(gen_row[None], source_row)[0]
                real_pose = relative_pose_deg(real_row[None], source_row)[0]
                values["apd_deg"] = float(np.abs(gen_pose - real_pose).mean())
            for acc in accumulators:
                for name, value in values.items():
                    acc.add(name, value)

    def _sheet_candidates(self, shot: Shot, targets: np.ndarray) -> dict[str, tuple[int, float]]:
        """The frames of this shot that beat the sheet's current picks: {row: (frame, score)}."""
        rows = shot.real_rows
        usable = shot.real_found[targets]
        if not usable.any():
            return {}
        chosen = targets[usable]
        jaw = rows[chosen, OPEN_SPACE.index("jaw_open")]
        turn = np.abs(relative_pose_deg(rows[chosen], rows[shot.source])[:, 1])
        blink = rows[chosen][:, [OPEN_SPACE.index("blink_right"), OPEN_SPACE.index("blink_left")]].mean(1)
        picks = {}
        for name, score in zip(_SHEET_ROWS, (jaw, turn, blink), strict=True):
            best = int(np.argmax(score))
            if name not in self.sheet or score[best] > self.sheet[name].score:
                frame_index = int(chosen[best])
                measure = _SHEET_MEASURE[name].format(float(score[best]))
                self.sheet[name] = _SheetEntry(
                    float(score[best]),
                    f"{name} ({measure}): {shot.clip} frame {int(shot.numbers[frame_index])} "
                    f"(source: frame {int(shot.numbers[shot.source])})",
                    shot.frame(shot.source),
                    shot.frame(frame_index),
                )
                picks[name] = (frame_index, float(score[best]))
        return picks

    # ---- cross identity
    def _cross_identity(self, source: Shot, driver: Shot, retracker: Retracker, bar: tqdm) -> None:
        count = min(len(driver.frames), self.config.cross_frames)
        driving = np.arange(count)
        source_neutral = NeutralFace.from_landmarks([source.points[source.source]])  # type: ignore[list-item]
        source_pose = source.real_rows[source.source]
        driver_pose = relative_pose_deg(driver.real_rows[driving], driver.real_rows[driver.source])
        example = None
        if self.cross_example is None:  # the sheet shows the first pair, at the driver's widest mouth
            jaw = np.where(driver.real_found[driving], driver.real_rows[driving, 6], -np.inf)
            example = int(np.argmax(jaw))
            self.cross_example = _SheetEntry(
                0.0,
                f"cross-identity: {source.clip} driven by {driver.clip} frame {int(driver.numbers[example])} "
                "(real: the driver)",
                source.frame(source.source),
                driver.frame(example),
            )
        for contender in self.contenders:
            acc = self.cross[contender.label]
            renderer = contender.renderer
            image = _source_image(source.frame(source.source), renderer.image_size_px, source.clip)
            prepared = renderer.prepare(image)
            windows = contender.windows(self._cross_rows(contender.space, source, driver))
            for start in range(0, count, BATCH):
                part = driving[start : start + BATCH]
                with torch.inference_mode():
                    out = renderer.render(windows[part], source=prepared).frame
                fake_rgb = _to_uint8(_to_unit(out, self.size_px))
                for k, frame_index in enumerate(part):
                    generated = retracker.landmarks(fake_rgb[k], human=True)
                    acc.add("face_found", float(generated is not None))
                    if generated is None or not driver.real_found[frame_index]:
                        continue
                    gen_row = source_neutral.motion(generated).values.astype(np.float64)
                    real_row = driver.real_rows[frame_index]
                    acc.add("aed", float(np.abs(gen_row[_EXPRESSION] - real_row[_EXPRESSION]).mean()))
                    gen_pose = relative_pose_deg(gen_row[None], source_pose)[0]
                    acc.add("apd_deg", float(np.abs(gen_pose - driver_pose[frame_index]).mean()))
                    if frame_index == example and self.cross_example is not None:
                        self.cross_example.generated[contender.label] = fake_rgb[k]
                bar.update(part.size)

    def _cross_rows(self, space: MotionSpace, source: Shot, driver: Shot) -> np.ndarray:
        if space.name == OPEN_SPACE.name:
            retarget = OpenRetargeter(driver.open_rows[driver.source], source.open_rows[source.source])
            return np.stack([retarget(row.astype(np.float32)) for row in driver.open_rows])
        driving = MotionSequence(AUTHORS_SPACE, driver.rows(space).astype(np.float32), fps=25.0)
        source_frame = MotionFrame(AUTHORS_SPACE, source.rows(space)[source.source].astype(np.float32))
        return cross_identity_scale(driving, source_frame).values

    # ---- main loop
    def run(self) -> dict[str, Any]:
        """Measure every renderer (module docstring), write the report files, return the metrics.

        Clips are read, measured and let go one by one (only what the cross-identity test needs is
        kept); a clip that cannot be measured is skipped and listed.
        """
        started = time.perf_counter()
        retracker = Retracker()
        firsts: list[Shot] = []
        measured: list[Shot] = []
        renderers = len(self.contenders)
        budgets = [self._budget(c) for c in range(len(self.dataset.clips))]
        estimate = sum(b - 1 + min(b, self.config.cross_frames) for b in budgets) * renderers
        try:
            with tqdm(total=estimate, unit="frame", desc="eval", disable=not self.progress) as bar:
                for clip, budget in enumerate(budgets):
                    name = self.dataset.clips[clip].name
                    bar.set_postfix_str(name)
                    try:
                        shots = self._shots(clip, retracker)
                    except PirenderError as exc:
                        shots, self.skipped[name] = [], exception_text(exc)
                    if not shots and name not in self.skipped:
                        self.skipped[name] = f"no shot of {MIN_SHOT_FRAMES}+ frames with a face in them"
                    bar.total += (sum(s.targets.size for s in shots) - (budget - 1)) * renderers
                    for shot in shots:
                        self._same_identity(shot, retracker, bar)
                    if shots:
                        firsts.append(shots[0].trimmed(self.config.cross_frames))
                    measured += [replace(s, frames=[], points=[]) for s in shots]
                if not measured:
                    raise PirenderError(
                        f"no clip of the {self.config.split} split could be measured "
                        f"(skipped: {'; '.join(f'{k}: {v}' for k, v in self.skipped.items()) or 'none'})"
                    )
                pairs = _cross_pairs(firsts)
                cross = sum(min(len(d.frames), self.config.cross_frames) for _, d in pairs) * renderers
                bar.total = bar.n + cross
                bar.set_postfix_str("cross-identity")
                for source, driver in pairs:
                    self._cross_identity(source, driver, retracker, bar)
        finally:
            retracker.close()
            for contender in self.contenders:
                contender.renderer.close()
        metrics = self._metrics(measured, pairs, time.perf_counter() - started)
        self._write(metrics)
        return metrics

    def _budget(self, clip: int) -> int:
        """Frames of a clip that will be read (for the progress bar's first estimate)."""
        frames = self.dataset.clips[clip].frames
        if frames < 0:  # the authors' layout does not list lengths
            frames = self.dataset.clip_motion(clip)[0].shape[0]
        return frames if self.config.max_frames is None else min(frames, self.config.max_frames)

    # ---- report
    def _sheet_entries(self) -> list[_SheetEntry]:
        """The contact sheet's rows: the extreme frames that reach :data:`_SHEET_MIN`, then the
        cross-identity example."""
        rows = [
            self.sheet[r] for r in _SHEET_ROWS if r in self.sheet and self.sheet[r].score >= _SHEET_MIN[r]
        ]
        return rows + ([self.cross_example] if self.cross_example is not None else [])

    def _metrics(self, shots: list[Shot], pairs: list[tuple[Shot, Shot]], seconds: float) -> dict[str, Any]:
        same = {}
        for label, acc in self.same.items():
            same[label] = {**acc.means(_METRICS), "face_found": acc.means(["face_found"])["face_found"]}
            if self.lpips is not None:
                same[label]["lpips"] = acc.means(["lpips"])["lpips"]
            same[label]["frames"] = acc.count("l1")
        cross = {
            label: {**acc.means(_CROSS_METRICS), "frames": acc.count("face_found")}
            for label, acc in self.cross.items()
        }
        fid = {label: _fid_value(metric) for label, metric in self.fid.items()}
        not_computed = []
        if self.lpips is None:
            not_computed.append("LPIPS (pass --lpips PATH: torchvision AlexNet/VGG-16 weights)")
        if not self.fid:
            not_computed.append("FID (pass --fid PATH: the FID Inception weights)")
        return {
            "protocol": "pirender eval v1 (training/evaluate.py docstring)",
            "data": str(self.data),
            "split": self.config.split,
            "size_px": self.size_px,
            "renderers": [
                {
                    "label": c.label,
                    "spec": spec,
                    "space": c.space.name,
                    "mode": str(c.renderer.mode),
                    "image_size_px": c.renderer.image_size_px,
                    "window": [c.past, c.future],
                }
                for c, spec in zip(
                    self.contenders,
                    [*self.config.renderers, *["(python)"] * len(self.contenders)],
                    strict=False,
                )
            ],
            "identities": sorted({s.identity for s in shots}),
            "clips": sorted({s.clip for s in shots}),
            "shots": len(shots),
            "cross_pairs": [[s.clip, d.clip] for s, d in pairs],
            "same_identity": same,
            "cross_identity": cross,
            "fid": fid or None,
            "not_computed": not_computed,
            "skipped": self.skipped,
            "not_prepared": self.not_prepared,
            "contact_sheet": [entry.label for entry in self._sheet_entries()],
            "seconds": round(seconds, 1),
        }

    def _write(self, metrics: dict[str, Any]) -> None:
        prepare_folder(self.config.out)

        def text(data: str) -> Any:
            return lambda handle: handle.write(data.encode())

        write_atomically(self.outputs["metrics.json"], text(json.dumps(metrics, indent=2) + "\n"))
        report = markdown_report(metrics)
        write_atomically(self.outputs["report.md"], text(report))
        buffer = io.StringIO()
        columns = ["clip", "identity", "shot_first_frame", "source_frame", "frames", "renderer", *_METRICS]
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.per_clip)
        write_atomically(self.outputs["per_clip.csv"], text(buffer.getvalue()))
        sheet = contact_sheet(self._sheet_entries(), [c.label for c in self.contenders])
        png = io.BytesIO()
        sheet.save(png, format="PNG")
        write_atomically(self.outputs["contact_sheet.png"], lambda handle: handle.write(png.getvalue()))


def _clip_index(dataset: PairDataset, name: str) -> int:
    for index, clip in enumerate(dataset.clips):
        if clip.name == name:
            return index
    raise PirenderError(f"clip {name!r} has no Deep3D coefficients in the dataset")


def _hold(rows: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Rows of frames without a face take the nearest earlier (else later) found row."""
    out = rows.copy()
    hits = np.flatnonzero(found)
    nearest = hits[np.clip(np.searchsorted(hits, np.arange(len(rows)), side="right") - 1, 0, hits.size - 1)]
    out[~found] = rows[nearest[~found]]
    return out


def _cross_pairs(firsts: list[Shot]) -> list[tuple[Shot, Shot]]:
    """Each clip's first shot as a source, driven by the next clip (in order) of another person."""
    pairs = []
    for i, source in enumerate(firsts):
        for step in range(1, len(firsts)):
            driver = firsts[(i + step) % len(firsts)]
            if driver.identity != source.identity:
                pairs.append((source, driver))
                break
    return pairs


def _real_batch(shot: Shot, part: np.ndarray) -> torch.Tensor:
    """(B, 3, S, S) float in [0, 1] of some real frames of a shot."""
    stacked = np.stack([shot.frame(int(i)) for i in part])
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).float().div_(255)


def _fid_value(metric: Any) -> float | str:
    try:
        return round(float(metric.compute()), 3)
    except PirenderError as exc:
        return f"not computed: {exception_text(exc)}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _cell(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_report(metrics: dict[str, Any]) -> str:
    """The Markdown tables of a metrics dict (same-identity, cross-identity, what was not computed)."""
    lines = [
        f"# pirender eval: {_count(len(metrics['identities']), 'person', 'people')}, "
        f"{_count(len(metrics['clips']), 'clip', 'clips')}, "
        f"{metrics['shots']} shots ({metrics['split']} split of {metrics['data']})",
        "",
        "Same-identity reconstruction (source: each shot's calmest frame; every other frame generated "
        "from the clip's own motion). L1 on [0, 1] pixels; PSNR in dB; AED in control units, APD in degrees "
        "(re-tracked, relative to the source); lower is better for L1, AED, APD.",
        "",
    ]
    has_lpips = any("lpips" in v for v in metrics["same_identity"].values())
    head = ["renderer", "frames", "L1", "PSNR", "SSIM", "mouth PSNR", "mouth SSIM", "eyes PSNR", "eyes SSIM"]
    head += ["AED", "APD (deg)", "face found"] + (["LPIPS"] if has_lpips else [])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, m in metrics["same_identity"].items():
        cells = [label, str(m["frames"]), _cell(m["l1"], 4), _cell(m["psnr"], 2), _cell(m["ssim"], 4)]
        cells += [_cell(m["mouth_psnr"], 2), _cell(m["mouth_ssim"], 4), _cell(m["eyes_psnr"], 2)]
        cells += [
            _cell(m["eyes_ssim"], 4),
            _cell(m["aed"], 4),
            _cell(m["apd_deg"], 2),
            _cell(m["face_found"], 3),
        ]
        if has_lpips:
            cells.append(_cell(m.get("lpips"), 4))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Cross-identity reenactment ({len(metrics['cross_pairs'])} pairs of different people): AED / APD "
        "against the driver's real frames, fraction of generated frames with a face found.",
        "",
        "| renderer | frames | AED | APD (deg) | face found |",
        "|---|---|---|---|---|",
    ]
    if not metrics["cross_pairs"]:
        lines.append("| (none: cross-identity needs at least two held-out people) | | | | |")
    for label, m in metrics["cross_identity"].items():
        if not metrics["cross_pairs"]:
            break
        lines.append(
            f"| {label} | {m['frames']} | {_cell(m['aed'], 4)} | {_cell(m['apd_deg'], 2)} "
            f"| {_cell(m['face_found'], 3)} |"
        )
    if metrics.get("fid"):
        lines += [
            "",
            "FID (generated vs real same-identity frames): "
            + ", ".join(f"{k} {v}" for k, v in metrics["fid"].items()),
        ]
    if metrics["not_computed"]:
        lines += ["", "Not computed: " + "; ".join(metrics["not_computed"]) + "."]
    if metrics["skipped"]:
        lines += ["", "Skipped clips: " + "; ".join(f"{k} ({v})" for k, v in metrics["skipped"].items())]
    if metrics.get("not_prepared"):
        skipped = "; ".join(f"{k} ({v})" for k, v in metrics["not_prepared"].items())
        lines += ["", f"Clips the dataset could not take (pirender prepare skipped them): {skipped}"]
    return "\n".join(lines) + "\n"


def contact_sheet(entries: list[_SheetEntry], labels: list[str], *, tile_px: int = 192) -> Image.Image:
    """One row per entry: source | real | each renderer, titled; (rows x (2 + renderers)) tiles."""
    font = ImageFont.load_default(size=14)
    header = 22
    columns = ["source", "real", *labels]
    height = max(1, len(entries)) * (tile_px + header) + header
    sheet = Image.new("RGB", (tile_px * len(columns), height), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(columns):
        draw.text((c * tile_px + 4, 3), name, fill="black", font=font)
    for r, entry in enumerate(entries):
        top = header + r * (tile_px + header)
        draw.text((4, top + 3), entry.label, fill="black", font=font)
        tiles = [entry.source, entry.real, *(entry.generated.get(label) for label in labels)]
        for c, tile in enumerate(tiles):
            if tile is None:
                continue
            picture = Image.fromarray(tile).resize((tile_px, tile_px), Image.Resampling.BICUBIC)
            sheet.paste(picture, (c * tile_px, top + header))
    return sheet


# --------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pirender eval",
        description="Measure renderers on held-out people: same-identity reconstruction (L1, PSNR, SSIM, "
        "mouth/eyes PSNR and SSIM, AED/APD) and cross-identity reenactment (AED/APD, face found).",
        epilog="example: pirender eval --data data/talking --renderer mesh --renderer runs/small "
        "--out out/eval",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="a dataset of pirender prepare (or the authors' VoxCeleb folder), or videos",
    )
    parser.add_argument(
        "--renderer",
        action="append",
        dest="renderers",
        help="mesh, or a checkpoint file / run folder; repeat to compare (default: mesh)",
    )
    parser.add_argument("--out", required=True, help="report folder (metrics.json, report.md, CSV, PNG)")
    parser.add_argument("--split", default="test", choices=["test", "train"], help="default: test (held out)")
    parser.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help=f"frames per clip at most (>= {MIN_SHOT_FRAMES}; default all)",
    )
    parser.add_argument("--cross-frames", type=int, default=100, help="frames per cross-identity pair (100)")
    parser.add_argument(
        "--deep3d", default=None, help="Deep3DFaceRecon checkpoint (authors'-space renderers)"
    )
    parser.add_argument(
        "--lpips", default=None, help="LPIPS backbone weights, torchvision format (local file)"
    )
    parser.add_argument("--lpips-net", default="alex", choices=["alex", "vgg"], help="LPIPS network (alex)")
    parser.add_argument("--fid", default=None, help="FID Inception weights (local file)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")
    talk = parser.add_argument_group("lip sync (--talk)")
    talk.add_argument(
        "--talk",
        action="store_true",
        help="measure the audio-to-motion model instead: generated vs tracked mouth on the held-out "
        "clips with a voice (training/talk_eval.py); writes talk_metrics.json and talk_report.md",
    )
    talk.add_argument("--model", default=None, help="with --talk: the flow checkpoint (default: the shipped)")
    talk.add_argument(
        "--temperature",
        type=float,
        action="append",
        dest="temperatures",
        help="with --talk: temperatures to measure, repeatable (default: the shipped one and 0)",
    )
    return parser


def _run_talk(args: argparse.Namespace) -> int:
    from pirender.training.talk_eval import TalkEvalConfig, evaluate_talk, talk_report

    out = Path(args.out).expanduser()
    files = {"talk_metrics.json": out / "talk_metrics.json", "talk_report.md": out / "talk_report.md"}
    if any(f.exists() for f in files.values()) and not args.overwrite:
        raise PirenderError(f"{out} holds an earlier lip-sync report; add --overwrite to replace it")
    config = TalkEvalConfig(
        data=Path(args.data),
        model=None if args.model is None else Path(args.model),
        split=args.split,
        temperatures=tuple(args.temperatures) if args.temperatures else None,
    )
    metrics = evaluate_talk(config)
    if not metrics["per_clip"]:
        raise PirenderError(f"{args.data}: no {args.split} clip with a voice to measure")
    report = talk_report(metrics)
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(files["talk_metrics.json"], lambda h: h.write(json.dumps(metrics, indent=1).encode()))
    write_atomically(files["talk_report.md"], lambda h: h.write((report + "\n").encode()))
    print(report)
    print(f"report in {out} (talk_metrics.json, talk_report.md)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``pirender eval`` (see :func:`build_parser`); 0 on success, 2 with one line on bad input."""
    args = build_parser().parse_args(argv)
    if args.talk:
        try:
            return _run_talk(args)
        except PirenderError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        config = EvalConfig(
            data=Path(args.data),
            renderers=tuple(args.renderers or ["mesh"]),
            out=Path(args.out).expanduser(),
            split=args.split,
            max_frames=args.max_frames,
            cross_frames=args.cross_frames,
            deep3d=None if args.deep3d is None else Path(args.deep3d),
            lpips=None if args.lpips is None else Path(args.lpips),
            lpips_net=args.lpips_net,
            fid=None if args.fid is None else Path(args.fid),
            device=args.device,
            overwrite=args.overwrite,
        )
        metrics = Evaluation(config).run()
    except PirenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown_report(metrics))
    print(f"report in {config.out} (metrics.json, report.md, per_clip.csv, contact_sheet.png)")
    return 0


__all__ = [
    "Contender",
    "EvalConfig",
    "Evaluation",
    "calmest_frame",
    "contact_sheet",
    "main",
    "markdown_report",
    "psnr_db",
]
