"""The ``neural`` renderer: the mesh renderer's exact warp, then an editing network trained on real
people (``network.Refiner``) that makes what a warp cannot: the inside of an opening mouth, teeth,
lips, closing eyelids.

Per frame: the mesh renderer moves the source to the motion row and says where the face's landmarks
went; the face box around them (``crop.face_box``: eyes and mouth at one scale) is cut out of the
mesh frame, the editing network corrects it (seeing the source's own face box and the motion), and
the result is pasted back with a soft border. Everything outside the box is the mesh frame; inside
it the network changes only its checkpoint's regions (the shipped one: the mouth, between the lip
corners, ``crop.spare_mouth_corners``), faded in as the mouth leaves the source's rest
(:func:`mouth_gate`), and the eyelids, faded in as an eye closes beyond the source's rest
(:func:`eye_gate`; open eyes, gaze and brows stay the mesh frame's).

Causal: one motion row per frame (window 1). Open motion space, 256 or 512 px (the box is resampled
to the network's ``crop_px``). The network runs in eager torch by default, or through the speed
issue's backends (``runtime``: compiled, onnx, openvino, tensorrt; ``refine.runtime``).

Checkpoint file (``torch.save`` dict, written by ``training/refiner_trainer.py``): ``format``
("pirender-refiner"), ``version``, ``config`` (:class:`RefinerConfig` fields), ``crop_px``,
``state_dict`` (the EMA weights) and free ``meta`` (data, losses, steps, held-out figures).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import CheckpointError, exception_text
from ...image import SourceImage
from ...motion.space import OPEN_SPACE
from ...track.geometry import relative_euler
from ..base import Precision, PreparedSource, RenderMode, RenderOutput
from ..checkpoint import load_weights_file
from ..mesh.renderer import MeshRenderer, MeshSource
from ..torch_backend import resolve_device
from .crop import (
    REGIONS,
    boxes_of,
    crop,
    face_box,
    paste,
    region_boxes,
    region_indices,
    region_mask,
    spare_mouth_corners,
)
from .network import Refiner, RefinerConfig
from .runtime import refiner_runtime

FORMAT = "pirender-refiner"
VERSION = 1
#: the weights shipped with the engine (``make train-renderer`` reproduces them)
DEFAULT_WEIGHTS = Path(__file__).with_name("default_refiner.pt")
_SCALE = OPEN_SPACE.index("scale")
#: the network's mouth fades in as the motion moves the mouth away from the source's rest: fully from
#: this much change of any mouth control (jaw_open 0.2: the lips 0.1 inter-ocular distances further
#: apart). At rest the mesh frame's mouth is the source's own, exact: nothing to make.
MOUTH_GATE = 0.2
_MOUTH_CONTROLS = [OPEN_SPACE.index(n) for n in ("jaw_open", "smile_right", "smile_left", "lip_pucker")]
_MOUTH = REGIONS.index("mouth")
#: the network's eyelids fade in as an eye closes beyond the source's rest: fully from this much more
#: blink (the mesh warp's lids meet on its 1/4-size flow grid, so a closed eye shows iris and white
#: between them; the network makes the closed lid). An open or opening eye stays the mesh frame's.
EYE_GATE = 0.3
_EYE_BLINKS = {
    REGIONS.index("right eye"): OPEN_SPACE.index("blink_right"),
    REGIONS.index("left eye"): OPEN_SPACE.index("blink_left"),
}


@dataclass
class RefinerCheckpoint:
    """A loaded editing-network checkpoint."""

    path: Path
    config: RefinerConfig
    crop_px: int
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    regions: tuple[str, ...] = REGIONS

    def build(self) -> Refiner:
        net = Refiner(self.config)
        try:
            net.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{self.path}: weights do not fit the refiner ({exception_text(exc)})"
            ) from None
        return net.eval().requires_grad_(False)


def is_refiner_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def is_refiner_file(path: str | Path) -> bool:
    """True when ``path`` is a file holding a refiner checkpoint (it is read to tell)."""
    file = Path(path).expanduser()
    if not file.is_file():
        return False
    try:
        return is_refiner_checkpoint(load_weights_file(file))
    except CheckpointError:
        return False


def read_refiner(path: str | Path) -> RefinerCheckpoint:
    """Read a refiner checkpoint (never downloads).

    Raises:
        CheckpointError: missing file, another format, a newer version, malformed fields.
    """
    file = Path(path).expanduser()
    obj = load_weights_file(file)
    if not is_refiner_checkpoint(obj):
        raise CheckpointError(
            f"{file}: not a neural-renderer (refiner) checkpoint (format {FORMAT!r} expected)"
        )
    if int(obj.get("version", 0)) > VERSION:
        raise CheckpointError(f"{file}: refiner checkpoint version {obj['version']} is newer than {VERSION}")
    try:
        config = RefinerConfig.from_dict(dict(obj["config"]))
        crop_px = int(obj["crop_px"])
        state = dict(obj["state_dict"])
        regions = tuple(str(r) for r in obj.get("regions", REGIONS))
        region_indices(regions)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{file}: malformed refiner checkpoint ({exception_text(exc)})") from None
    if crop_px % (2**config.levels):
        raise CheckpointError(f"{file}: crop_px {crop_px} is not a multiple of {2**config.levels}")
    return RefinerCheckpoint(file, config, crop_px, state, dict(obj.get("meta") or {}), regions)


def refiner_state(
    net: Refiner,
    *,
    crop_px: int,
    regions: tuple[str, ...] = REGIONS,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict of ``net`` (the caller writes it, atomically, with ``torch.save``)."""
    region_indices(regions)
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": net.config.to_dict(),
        "crop_px": int(crop_px),
        "regions": list(regions),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
        "meta": dict(meta or {}),
    }


def motion_features(rows: np.ndarray, source_rest: np.ndarray) -> np.ndarray:
    """(B, 17) open-space rows -> (B, 17) float32 network input: the head's turn relative to the
    source's own pose (Euler, radians), tx, ty, scale - 1, and the 11 expression controls."""
    out = np.array(rows, dtype=np.float32, copy=True)
    out[:, :3] = relative_euler(rows, source_rest)
    out[:, _SCALE] -= 1.0
    return out


def mouth_gate(rows: np.ndarray, source_rest: np.ndarray) -> np.ndarray:
    """(B, 17) open-space rows -> (B,) float32 in [0, 1]: how much of the network's mouth is used
    (:data:`MOUTH_GATE`; 0 where the mouth controls equal the source's rest row)."""
    change = np.abs(rows[:, _MOUTH_CONTROLS] - source_rest[_MOUTH_CONTROLS]).max(axis=1)
    return np.clip(change / MOUTH_GATE, 0.0, 1.0).astype(np.float32)


def eye_gate(rows: np.ndarray, source_rest: np.ndarray, region: int) -> np.ndarray:
    """(B, 17) open-space rows -> (B,) float32 in [0, 1]: how much of the network's eye ``region``
    (index in ``crop.REGIONS``: right or left eye) is used (:data:`EYE_GATE`; 0 unless that eye's
    blink is above the source's rest)."""
    blink = _EYE_BLINKS[region]
    return np.clip((rows[:, blink] - source_rest[blink]) / EYE_GATE, 0.0, 1.0).astype(np.float32)


@dataclass
class NeuralSource(MeshSource):
    """A portrait prepared for the neural renderer: the mesh warp's state, its face box crop
    ``refine_source`` (1, 3, crop, crop) on the network's device, and ``refine_rest`` its rest row (the
    motion features and gates are relative to it)."""

    refine_source: torch.Tensor
    refine_rest: np.ndarray


class NeuralRenderer(MeshRenderer):
    """Mesh warp + trained editing network (module docstring). A :class:`MeshRenderer` (same source
    preparation, rest row and close) whose frames are corrected in the face box."""

    name = "neural"

    def __init__(
        self,
        checkpoint: RefinerCheckpoint,
        *,
        image_size_px: int = 256,
        mode: RenderMode | str = RenderMode.FULL,
        warp: str = "torch",
        device: str | torch.device = "cpu",
        runtime: str = "torch",
        precision: Precision | str = Precision.FP32,
    ) -> None:
        super().__init__(image_size_px=image_size_px, mode=mode, warp=warp)
        self.device = resolve_device(device)
        self.checkpoint = checkpoint
        self.crop_px = checkpoint.crop_px
        self.regions = region_indices(checkpoint.regions)
        self.refiner = refiner_runtime(
            checkpoint.build(), runtime, crop_px=self.crop_px, device=self.device, precision=precision
        )

    def _prepare(self, image: SourceImage) -> NeuralSource:
        mesh = self.prepared_as(super()._prepare(image), MeshSource)
        box = torch.from_numpy(face_box(mesh.points))[None]
        return NeuralSource(
            **{f.name: getattr(mesh, f.name) for f in fields(mesh)},
            refine_source=crop(mesh.source32, box, self.crop_px).to(self.device),
            refine_rest=mesh.neutral.rest_row(),
        )

    def _render(
        self, windows: np.ndarray | torch.Tensor, source: PreparedSource, mode: RenderMode, extras: bool
    ) -> RenderOutput:
        prepared = self.prepared_as(source, NeuralSource)
        rows = np.asarray(windows, dtype=np.float32)[:, :, windows.shape[2] // 2]  # (B, 17), causal
        if mode is RenderMode.WARP:  # the warped source only, as the mesh renderer's warp mode
            return self.render_rows(rows, source, RenderMode.WARP, extras)[0]
        out, targets = self.render_rows(rows, source, RenderMode.FULL, extras)
        boxes = boxes_of(targets)
        regions = spare_mouth_corners(
            np.stack([region_boxes(t, b, self.crop_px) for t, b in zip(targets, boxes.numpy(), strict=True)]),
            self.crop_px,
        )
        weights = np.ones((len(rows), len(self.regions)), np.float32)
        rest = prepared.refine_rest
        for column, region in enumerate(self.regions):
            weights[:, column] = mouth_gate(rows, rest) if region == _MOUTH else eye_gate(rows, rest, region)
        mask = region_mask(
            torch.from_numpy(regions[:, self.regions]), self.crop_px, torch.from_numpy(weights)
        ).to(self.device)
        boxes = boxes.to(self.device)
        frames = out.frame.to(self.device)
        features = torch.from_numpy(motion_features(rows, rest)).to(self.device)
        sources = prepared.refine_source.expand(len(rows), -1, -1, -1)
        refined = self.refiner(crop(frames, boxes, self.crop_px), sources, features, mask)
        with torch.inference_mode():
            frame = paste(frames, refined.to(frames.device), boxes)
        return RenderOutput(frame=frame, warped=out.warped, flow=out.flow)


__all__ = [
    "DEFAULT_WEIGHTS",
    "NeuralRenderer",
    "RefinerCheckpoint",
    "eye_gate",
    "is_refiner_checkpoint",
    "is_refiner_file",
    "motion_features",
    "mouth_gate",
    "read_refiner",
    "refiner_state",
]
