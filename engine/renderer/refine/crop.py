"""The face box the editing network works in: a square around the eyes and mouth, scaled to the face.

The network always sees the face at one scale (``CROP_IOD`` inter-ocular distances across
``crop_px`` pixels), whatever the frame's size or the person's distance, and at full detail: the
box of a 256 px frame's face is about as many pixels as the crop. ``crop`` samples the box out of
frames; ``paste`` puts a crop back, blended with a soft border so no seam shows.

Boxes are (B, 3) float tensors: centre x, centre y, side, in pixels of the frame (x right, y down).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...track import landmarks as lm

#: side of the box in inter-ocular distances (eyes, brows' lower half, mouth and chin fit)
CROP_IOD = 2.6
#: the box centre lies this far from the eyes' midpoint toward the mouth (0: at the eyes, 1: mouth)
CENTRE_TOWARD_MOUTH = 0.55
#: width of the blended border of a pasted crop, as a part of its side
FEATHER = 0.12
#: the regions whose boxes are measured (``region_boxes``), in this order; a network is trained to
#: change some of them (its checkpoint's ``regions``; the shipped one: all three)
REGIONS = ("mouth", "right eye", "left eye")
#: each region is its landmarks' box grown by this many inter-ocular distances
REGION_PAD_IOD = 0.15
#: soft edge of a region, in inter-ocular distances
REGION_FEATHER_IOD = 0.1
_REGION_POINTS = (
    np.array(sorted({*lm.UPPER_LIP_OUTER_RING, *lm.LOWER_LIP_OUTER_RING})),
    np.array(sorted({*lm.RIGHT_UPPER_LID, *lm.RIGHT_LOWER_LID})),
    np.array(sorted({*lm.LEFT_UPPER_LID, *lm.LEFT_LOWER_LID})),
)


def face_box(points: np.ndarray) -> np.ndarray:
    """(3,) float32 box (centre x, centre y, side; pixels) of (478, 2+) face-mesh landmarks."""
    right, left = lm.eye_centres(points[:, :2])
    eyes = (right + left) / 2
    mouth = (points[lm.MOUTH_RIGHT, :2] + points[lm.MOUTH_LEFT, :2]) / 2
    centre = eyes + CENTRE_TOWARD_MOUTH * (mouth - eyes)
    side = CROP_IOD * float(np.linalg.norm(left - right))
    return np.array([centre[0], centre[1], max(side, 8.0)], dtype=np.float32)


def _grid(boxes: torch.Tensor, height: int, width: int, size: int) -> torch.Tensor:
    """(B, size, size, 2) grid_sample coordinates (align_corners=False) of each box's pixels."""
    steps = (torch.arange(size, dtype=torch.float32, device=boxes.device) + 0.5) / size - 0.5  # (-0.5, 0.5)
    cx, cy, side = boxes[:, 0, None], boxes[:, 1, None], boxes[:, 2, None]
    xs = (cx + side * steps[None]) * (2.0 / width) - 1.0 + 1.0 / width  # pixel centres -> [-1, 1]
    ys = (cy + side * steps[None]) * (2.0 / height) - 1.0 + 1.0 / height
    grid_x = xs[:, None, :].expand(-1, size, -1)
    grid_y = ys[:, :, None].expand(-1, -1, size)
    return torch.stack([grid_x, grid_y], dim=-1)


def crop(frames: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) frames, (B, 3) boxes -> (B, C, size, size) crops (bilinear; border pixels repeat)."""
    grid = _grid(boxes.to(frames.dtype), frames.shape[-2], frames.shape[-1], size).to(frames.dtype)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)


def paste(frames: torch.Tensor, crops: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Put (B, C, s, s) crops back into (B, C, H, W) frames at their (B, 3) boxes, blended over a
    border of :data:`FEATHER` of the side (a new tensor; ``frames`` is not changed)."""
    height, width = frames.shape[-2:]
    ys = torch.arange(height, dtype=frames.dtype, device=frames.device)
    xs = torch.arange(width, dtype=frames.dtype, device=frames.device)
    boxes = boxes.to(frames.dtype)
    cx, cy, side = boxes[:, 0, None], boxes[:, 1, None], boxes[:, 2, None]
    u = (xs[None] - cx) / side  # (B, W): -0.5..0.5 inside the box
    v = (ys[None] - cy) / side  # (B, H)
    grid = torch.stack(
        [(2 * u)[:, None, :].expand(-1, height, -1), (2 * v)[:, :, None].expand(-1, -1, width)], dim=-1
    )  # crop coordinates in [-1, 1] (align_corners=False: pixel centres at (2k + 1)/s - 1)
    back = F.grid_sample(crops, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def ramp(t: torch.Tensor) -> torch.Tensor:  # 1 inside, 0 outside, smooth over the feather
        inside = (0.5 - t.abs()) / FEATHER
        return (0.5 - 0.5 * torch.cos(torch.pi * inside.clamp(0.0, 1.0))).to(frames.dtype)

    mask = (ramp(v)[:, :, None] * ramp(u)[:, None, :])[:, None]  # (B, 1, H, W)
    return frames * (1 - mask) + back * mask


def region_boxes(points: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """(3, 4) float32 boxes (left, top, right, bottom) of :data:`REGIONS` in the pixels of the face
    box ``box`` sampled at ``size`` (``crop``), grown by :data:`REGION_PAD_IOD`."""
    cx, cy, side = (float(v) for v in box)
    scale = size / side
    right, left = lm.eye_centres(points[:, :2])
    pad = REGION_PAD_IOD * float(np.linalg.norm(left - right)) * scale
    out = np.empty((len(_REGION_POINTS), 4), np.float32)
    for i, which in enumerate(_REGION_POINTS):
        xy = (points[which, :2] - [cx - side / 2, cy - side / 2]) * scale
        out[i] = [*(xy.min(0) - pad), *(xy.max(0) + pad)]
    return out


def spare_mouth_corners(regions: np.ndarray, size: int) -> np.ndarray:
    """(..., R, 4) region boxes (crop pixels of a ``size`` crop, ``region_boxes``) with the mouth's
    narrowed to end at the lip corners, so that :func:`region_mask` fades to zero there: the mesh
    frame's lip corners (exact geometry, where a smile and a pucker are read) stay as they are, and
    the network makes the lips and the inside of the mouth between them. Measured on held-out people
    (README, benchmarks/RESULTS.md): the re-tracked expression error (AED) of the neural renderer
    drops from above the mesh renderer's to below it."""
    out = np.array(regions, dtype=np.float32, copy=True)
    pad = REGION_PAD_IOD * size / CROP_IOD  # the box's padding beyond the corners, in crop pixels
    out[..., 0, 0] += pad
    out[..., 0, 2] -= pad
    return out


def region_mask(regions: torch.Tensor, size: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 1, size, size) soft union (0..1) of (B, R, 4) boxes in crop pixels, with a cosine edge of
    :data:`REGION_FEATHER_IOD` inter-ocular distances inside each box's border; each box scaled by
    its (B, R) ``weights`` in [0, 1] when given."""
    edge = REGION_FEATHER_IOD * size / CROP_IOD
    centres = torch.arange(size, dtype=torch.float32, device=regions.device) + 0.5

    def ramp(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:  # (B, R, size)
        inside = torch.minimum(centres - low[..., None], high[..., None] - centres) / edge
        return 0.5 - 0.5 * torch.cos(torch.pi * inside.clamp(0.0, 1.0))

    across = ramp(regions[..., 0], regions[..., 2])  # (B, R, W)
    down = ramp(regions[..., 1], regions[..., 3])  # (B, R, H)
    boxes = down[..., :, None] * across[..., None, :]  # (B, R, H, W)
    if weights is not None:
        boxes = boxes * weights[..., None, None].to(boxes.dtype)
    return boxes.amax(dim=1, keepdim=True)


def region_indices(names: tuple[str, ...] | list[str]) -> list[int]:
    """Positions in :data:`REGIONS` of ``names`` ("eyes" stands for both eyes).

    Raises:
        ValueError: an unknown or repeated region, or none.
    """
    expanded = [n for name in names for n in (("right eye", "left eye") if name == "eyes" else (name,))]
    unknown = sorted(set(expanded) - set(REGIONS))
    if unknown or not expanded or len(set(expanded)) != len(expanded):
        raise ValueError(f"regions must be some of {', '.join(REGIONS)} (or eyes), each once: got {names}")
    return [REGIONS.index(n) for n in expanded]


def boxes_of(points: list[np.ndarray]) -> torch.Tensor:
    """(B, 3) float32 boxes of several landmark sets."""
    return torch.from_numpy(np.stack([face_box(p) for p in points]))


__all__ = [
    "CROP_IOD",
    "FEATHER",
    "REGIONS",
    "boxes_of",
    "crop",
    "face_box",
    "paste",
    "region_boxes",
    "region_indices",
    "region_mask",
    "spare_mouth_corners",
]
