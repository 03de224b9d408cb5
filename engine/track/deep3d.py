"""Deep3DFaceRecon (PyTorch release) in our own code: the coefficient regressor and its alignment.

What is here (``deep3d-facts.md`` sections 1-3; ``pirender-spec.md`` section 5):

* :class:`ResNet50Backbone` / :class:`Deep3DReconNet`: a torchvision-layout ResNet-50 without its fc
  layer plus seven 1x1 conv heads; (B, 3, 224, 224) RGB in [0, 1] -> (B, 257) coefficients
  (id 80, exp 64, tex 80, angle 3, gamma 27, trans 3). State-dict keys equal the released
  ``net_recon`` entry exactly (332 keys), so the released ``epoch_20.pth`` loads strictly.
* :func:`load_deep3d_checkpoint`: reads such a checkpoint from a local file (never downloads).
* :func:`fit_pos` / :func:`align_face`: the five-point alignment that produces the 224x224 crop and
  ``trans_params`` = (W0, H0, s, t0, t1), of which PIRenderer keeps (s, t0, t1).
* :class:`Deep3DRegressor`: image + five points -> one :class:`MotionFrame` of the authors' 73 numbers.

Coordinates: callers pass image pixel coordinates with y pointing DOWN (row index); the fit works in
the y-up frame ``y_up = H0 - 1 - y`` exactly as upstream, and ``t1`` is therefore counted upward from
the bottom row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import CheckpointError, ImageError, LandmarkError, PirenderError, describe_value, exception_text
from ..motion.io import TRANSFORM_PARAMS_CROP, coeffs_to_authors
from ..motion.space import AUTHORS_SPACE, MotionFrame
from ..renderer.checkpoint import load_strictly, load_weights_file

__all__ = [
    "CANONICAL_SCALE_PX",
    "COEFF_GROUP_SIZES",
    "CROP_SIZE_PX",
    "REFERENCE_POINTS_3D",
    "AlignedFace",
    "Deep3DReconNet",
    "Deep3DRegressor",
    "LandmarkError",
    "PosFit",
    "ResNet50Backbone",
    "align_face",
    "fit_pos",
    "five_points_from_68",
    "load_deep3d_checkpoint",
]


# ---------------------------------------------------------------------------------------------------
# Constants

#: Side of the square network input / alignment crop, in pixels.
CROP_SIZE_PX = 224
#: Canonical face size of the alignment: one model unit (decimetre) becomes this many crop pixels.
CANONICAL_SCALE_PX = 102.0
#: Output channels of the seven head layers, in output order: id, exp, tex, angle, gamma, (tx, ty), tz.
COEFF_GROUP_SIZES: tuple[int, ...] = (80, 64, 80, 3, 27, 2, 1)
#: Numbers per coefficient row (sum of :data:`COEFF_GROUP_SIZES`).
COEFF_COUNT = sum(COEFF_GROUP_SIZES)
#: Channels of the pooled ResNet-50 feature.
FEATURE_CHANNELS = 2048
#: Number of alignment points.
FIVE_POINTS = 5

#: The five reference points (x, y, z) in model units (decimetres), y up, in the order
#: [eye A (image left), eye B, nose tip, mouth corner 49 (image left), mouth corner 55]; derived from
#: ``similarity_Lm3D_all.mat`` (``deep3d-facts.md`` section 3). Read-only.
REFERENCE_POINTS_3D = np.array(
    [
        [-0.311487, 0.290361, 0.133780],
        [0.309799, 0.289720, 0.131795],
        [0.003253, -0.046179, 0.552442],
        [-0.252169, -0.381339, 0.224057],
        [0.248466, -0.381282, 0.222358],
    ],
    dtype=np.float64,
)
REFERENCE_POINTS_3D.setflags(write=False)

#: 0-based iBUG-68 indices averaged into each of the five points (1-based: 37+40, 43+46, 31, 49, 55).
_FIVE_FROM_68: tuple[tuple[int, ...], ...] = ((36, 39), (42, 45), (30,), (48,), (54,))
#: Points spanning less than this (largest x or y extent, pixels) are refused as degenerate.
_MIN_POINT_SPREAD_PX = 1.0
#: Refuse alignments whose resized frame would exceed this many pixels (memory guard: a tiny face in a
#: large frame asks for a huge upscale; crop around the face first).
_MAX_RESIZED_FRAME_PIXELS = 64_000_000
#: Unknowns of the 2x4 affine camera (two 3-vectors and two offsets).
_AFFINE_UNKNOWNS = 8

#: ResNet-50: (blocks, bottleneck width) per stage; expansion 4; stages 2..4 stride 2.
_RESNET50_STAGES: tuple[tuple[int, int], ...] = ((3, 64), (4, 128), (6, 256), (3, 512))
_BOTTLENECK_EXPANSION = 4
_STEM_CHANNELS = 64
_BN_EPS = 1e-5
_BN_MOMENTUM = 0.1

#: Entry of the released checkpoint that holds the network's state dict.
_CHECKPOINT_ENTRY = "net_recon"
_MODULE_PREFIX = "module."
_MAX_LISTED = 8


# ---------------------------------------------------------------------------------------------------
# Network


class _Bottleneck(nn.Module):
    """torchvision's ResNet-50 bottleneck: 1x1 -> 3x3 (stride here) -> 1x1 (x4), identity/projection add.

    (B, in_channels, H, W) -> (B, width * 4, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out_channels = width * _BOTTLENECK_EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.conv3 = nn.Conv2d(width, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50Backbone(nn.Module):
    """torchvision's ResNet-50 without ``fc``; key names equal torchvision's (318 state-dict keys).

    Forward: (B, 3, H, W) -> (B, 2048, 1, 1), the global average pool of ``layer4``
    ((B, 2048, 7, 7) for a 224x224 input). Learnable parameters: 23,508,032.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, _STEM_CHANNELS, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(_STEM_CHANNELS, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = _STEM_CHANNELS
        stages: list[nn.Sequential] = []
        for index, (blocks, width) in enumerate(_RESNET50_STAGES):
            stride = 1 if index == 0 else 2
            layer = []
            for block in range(blocks):
                layer.append(_Bottleneck(in_channels, width, stride if block == 0 else 1))
                in_channels = width * _BOTTLENECK_EXPANSION
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x)


class Deep3DReconNet(nn.Module):
    """Deep3DFaceRecon's regressor: ResNet-50 features -> seven 1x1 conv heads -> 257 coefficients.

    Attributes:
        backbone: :class:`ResNet50Backbone`.
        final_layers: seven ``Conv2d(2048, n, 1)`` with bias, n = 80, 64, 80, 3, 27, 2, 1 (zero at
            construction, as upstream starts training; a checkpoint overwrites them).

    Forward: (B, 3, 224, 224) RGB float in [0, 1] (pixel / 255, no mean/std normalisation) ->
    (B, 257) = [id 80 | exp 64 | tex 80 | angle 3 | gamma 27 | trans x, y 2 | trans z 1].
    332 state-dict keys; 24,034,625 learnable parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = ResNet50Backbone()
        final_layers = [
            nn.Conv2d(FEATURE_CHANNELS, size, kernel_size=1, bias=True) for size in COEFF_GROUP_SIZES
        ]
        for layer in final_layers:
            if layer.bias is None:
                raise RuntimeError("the final layers must have a bias")
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.final_layers = nn.ModuleList(final_layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feature = self.backbone(images)
        outputs = [layer(feature) for layer in self.final_layers]
        return torch.flatten(torch.cat(outputs, dim=1), start_dim=1)


# ---------------------------------------------------------------------------------------------------
# Checkpoint


def load_deep3d_checkpoint(path: str | Path) -> Deep3DReconNet:
    """Load Deep3DFaceRecon weights from a local file (e.g. ``checkpoints/<name>/epoch_20.pth``).

    The file is a ``torch.save`` dict whose ``net_recon`` entry is the state dict (other entries such
    as ``opt_00``/``sched_00`` are ignored), or a bare state dict. A leading ``module.`` on every key
    is stripped. The load is strict: every missing, unexpected and wrongly shaped key is named.

    Returns:
        The network in eval mode with ``requires_grad`` False, on the CPU.

    Raises:
        CheckpointError: missing file, a folder, not a PyTorch checkpoint, no ``net_recon`` entry,
            non-tensor entries, or keys/shapes that do not match.
    """
    file = Path(path).expanduser()
    if not file.exists():
        raise CheckpointError(f"{file}: no such file (Deep3DFaceRecon checkpoint, e.g. epoch_20.pth)")
    if file.is_dir():
        found = sorted(p.name for p in file.glob("*.pth"))
        hint = f" (found: {', '.join(found[:_MAX_LISTED])})" if found else " (no .pth files in it)"
        raise CheckpointError(f"{file} is a folder; pass the Deep3DFaceRecon checkpoint file{hint}")
    obj = load_weights_file(file, resave_hint=f"it as {{'{_CHECKPOINT_ENTRY}': state_dict}}")
    if not isinstance(obj, dict):
        raise CheckpointError(f"{file}: holds a {type(obj).__name__}, not a Deep3DFaceRecon checkpoint dict")
    if _CHECKPOINT_ENTRY in obj:
        state = _as_state_dict(obj[_CHECKPOINT_ENTRY], file, _CHECKPOINT_ENTRY)
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = _as_state_dict(obj, file, "state dict")
    else:
        names = ", ".join(sorted(map(str, obj))[:_MAX_LISTED]) or "none"
        raise CheckpointError(
            f"{file}: no {_CHECKPOINT_ENTRY!r} entry (the Deep3DFaceRecon network weights); keys: {names}"
        )
    return load_strictly(Deep3DReconNet(), state, where=file, what="the Deep3DFaceRecon network")


def _as_state_dict(obj: Any, file: Path, entry: str) -> dict[str, torch.Tensor]:
    """Check that ``obj`` maps names to tensors and strip a ``module.`` prefix shared by all keys."""
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{file}: entry {entry!r} is not a state dict (got {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{file}: entry {entry!r} holds non-tensor items, e.g. {bad[0]!r}")
    if all(k.startswith(_MODULE_PREFIX) for k in obj):
        return {k[len(_MODULE_PREFIX) :]: v for k, v in obj.items()}
    return obj


# ---------------------------------------------------------------------------------------------------
# Alignment


class PosFit(NamedTuple):
    """Result of :func:`fit_pos`.

    Attributes:
        scale_pos: pixels per model unit (mean length of the two affine rows).
        t0: x of the model origin in the image, pixels, to the right.
        t1: y of the model origin in the image, pixels, upward (y-up frame).
    """

    scale_pos: float
    t0: float
    t1: float


@dataclass(frozen=True)
class AlignedFace:
    """Output of :func:`align_face`.

    Attributes:
        crop_rgb: (224, 224, 3) uint8 RGB network input (black where the crop leaves the frame).
        trans_params: (5,) float32 (W0, H0, s, t0, t1): frame size in pixels, resize factor
            s = 102 / scale_pos, model origin (t0 to the right, t1 upward) in frame pixels.
        points_crop: (5, 2) float64 the five points moved into the crop, pixels, y DOWN (upstream's
            y-up result turned into a row index as ``223 - y``).
    """

    crop_rgb: np.ndarray
    trans_params: np.ndarray
    points_crop: np.ndarray

    @property
    def crop_params(self) -> np.ndarray:
        """(3,) float32 (s, t0, t1), the numbers PIRenderer appends to the coefficients."""
        return self.trans_params[TRANSFORM_PARAMS_CROP]


def five_points_from_68(landmarks_xy: np.ndarray) -> np.ndarray:
    """The five alignment points from 68 iBUG landmarks (any y direction; it is kept).

    Args:
        landmarks_xy: (68, 2) pixel coordinates.

    Returns:
        (5, 2) float64: [mean(37, 40), mean(43, 46), 31, 49, 55] (1-based iBUG numbers).
    """
    points = _finite_points(landmarks_xy, 68, "68 landmarks")
    return np.stack([points[list(group)].mean(axis=0) for group in _FIVE_FROM_68])


def fit_pos(points_xy_up: np.ndarray, reference: np.ndarray = REFERENCE_POINTS_3D) -> PosFit:
    """Least-squares 2x4 affine camera mapping the reference 3D points to the image points ("POS").

    Solves ``x_i = R1 . P_i + t0`` and ``y_i = R2 . P_i + t1`` for R1, R2 (3-vectors) and t0, t1.

    Args:
        points_xy_up: (N, 2) image points, pixels, y UP (``y_up = H0 - 1 - row``); N >= 4.
        reference: (N, 3) model points in model units (default :data:`REFERENCE_POINTS_3D`).

    Returns:
        :class:`PosFit` with scale_pos = (|R1| + |R2|) / 2 (pixels per model unit) and (t0, t1),
        where the model origin lands in the image (pixels, y up).

    Raises:
        LandmarkError: wrong shapes, non-finite numbers, points spanning less than 1 px, a
            reference that does not determine the camera, or a non-positive scale.
    """
    ref = np.asarray(reference, dtype=np.float64) if isinstance(reference, np.ndarray) else None
    if ref is None or ref.ndim != 2 or ref.shape[1] != 3 or ref.shape[0] * 2 < _AFFINE_UNKNOWNS:
        raise LandmarkError(f"reference points must be an (N >= 4, 3) array, got {describe_value(reference)}")
    if not np.isfinite(ref).all():
        raise LandmarkError("reference points hold non-finite numbers")
    count = ref.shape[0]
    points = _finite_points(points_xy_up, count, "points_xy_up")
    spread_px = float(np.ptp(points, axis=0).max())
    if spread_px < _MIN_POINT_SPREAD_PX:
        raise LandmarkError(
            f"degenerate face points: they span {spread_px:.3g} px (need at least {_MIN_POINT_SPREAD_PX} px)"
        )
    design = np.zeros((2 * count, _AFFINE_UNKNOWNS), dtype=np.float64)
    design[0::2, 0:3] = ref
    design[0::2, 3] = 1.0
    design[1::2, 4:7] = ref
    design[1::2, 7] = 1.0
    solution, _, rank, _ = np.linalg.lstsq(design, points.reshape(-1), rcond=None)
    if rank < _AFFINE_UNKNOWNS:
        raise LandmarkError(f"reference points do not determine an affine camera (rank {rank} < 8)")
    scale_pos = float((np.linalg.norm(solution[0:3]) + np.linalg.norm(solution[4:7])) / 2.0)
    if not (np.isfinite(scale_pos) and scale_pos > 0.0):
        raise LandmarkError(f"degenerate face points: fitted scale {scale_pos} px per model unit")
    return PosFit(scale_pos, float(solution[3]), float(solution[7]))


def align_face(
    image_rgb: np.ndarray, five_points_xy: np.ndarray, reference: np.ndarray = REFERENCE_POINTS_3D
) -> AlignedFace:
    """Deep3DFaceRecon's alignment: fit, resize the whole frame by s, cut the 224x224 crop.

    Args:
        image_rgb: (H0, W0, 3) uint8 RGB frame.
        five_points_xy: (5, 2) pixel coordinates, y DOWN, order [eye A (image left), eye B, nose tip,
            mouth corner (image left), mouth corner (image right)].
        reference: (5, 3) model points (default :data:`REFERENCE_POINTS_3D`).

    Steps (``deep3d-facts.md`` section 3): y_up = H0 - 1 - y; :func:`fit_pos`; s = 102 / scale_pos;
    PIL bicubic resize of the frame to (w, h) = (int(W0 s), int(H0 s)); crop at
    left = int(w/2 - 112 + (t0 - W0/2) s), top = int(h/2 - 112 + (H0/2 - t1) s) (outside: black).
    The model origin lands near crop pixel (112, 111) (column, row).

    Raises:
        ImageError: the frame is not an (H, W, 3) uint8 array.
        LandmarkError: bad or degenerate points, or a face so small/large that the resized frame
            would be empty or exceed 64 million pixels.
    """
    frame = _check_frame(image_rgb)
    height_px, width_px = frame.shape[:2]
    points = _finite_points(five_points_xy, FIVE_POINTS, "five_points_xy")
    points_up = points.copy()
    points_up[:, 1] = height_px - 1 - points_up[:, 1]
    scale_pos, t0, t1 = fit_pos(points_up, reference)

    s = CANONICAL_SCALE_PX / scale_pos
    resized_w = int(width_px * s)
    resized_h = int(height_px * s)
    if resized_w < 1 or resized_h < 1 or resized_w * resized_h > _MAX_RESIZED_FRAME_PIXELS:
        raise LandmarkError(
            f"face scale {scale_pos:.4g} px per model unit would resize the {width_px}x{height_px} frame "
            f"to {resized_w}x{resized_h} px (allowed 1 to {_MAX_RESIZED_FRAME_PIXELS:,} pixels); "
            "the face is too small or too large in this frame"
        )
    half_crop_px = CROP_SIZE_PX / 2
    left = int(resized_w / 2 - half_crop_px + (t0 - width_px / 2) * s)
    top = int(resized_h / 2 - half_crop_px + (height_px / 2 - t1) * s)
    resized = Image.fromarray(frame, mode="RGB").resize((resized_w, resized_h), Image.Resampling.BICUBIC)
    crop = np.array(resized.crop((left, top, left + CROP_SIZE_PX, top + CROP_SIZE_PX)), dtype=np.uint8)

    # Upstream moves the y-up points continuously (no integer truncation), then we turn y into a row.
    moved_x = (points_up[:, 0] - t0 + width_px / 2) * s - (resized_w / 2 - half_crop_px)
    moved_y_up = (points_up[:, 1] - t1 + height_px / 2) * s - (resized_h / 2 - half_crop_px)
    points_crop = np.stack([moved_x, CROP_SIZE_PX - 1 - moved_y_up], axis=1)
    trans_params = np.array([width_px, height_px, s, t0, t1], dtype=np.float32)
    return AlignedFace(crop_rgb=crop, trans_params=trans_params, points_crop=points_crop)


def _check_frame(image_rgb: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 array, C-contiguous."""
    if (
        not isinstance(image_rgb, np.ndarray)
        or image_rgb.dtype != np.uint8
        or image_rgb.ndim != 3
        or image_rgb.shape[2] != 3
        or min(image_rgb.shape[:2]) < 1
    ):
        raise ImageError(f"frame must be an (H, W, 3) uint8 RGB array, got {describe_value(image_rgb)}")
    return np.ascontiguousarray(image_rgb)


def _finite_points(points: np.ndarray, count: int, what: str) -> np.ndarray:
    """A (count, 2) float64 copy of ``points``, refusing other shapes and non-finite numbers."""
    array = np.asarray(points) if isinstance(points, np.ndarray | list | tuple) else None
    if array is None or array.shape != (count, 2) or not np.issubdtype(array.dtype, np.number):
        raise LandmarkError(
            f"{what} must be a ({count}, 2) array of x, y pixels, got {describe_value(points)}"
        )
    result = np.array(array, dtype=np.float64)
    if not np.isfinite(result).all():
        row = int(np.argwhere(~np.isfinite(result))[0][0])
        raise LandmarkError(f"{what}: point {row} is not finite ({result[row].tolist()})")
    return result


# ---------------------------------------------------------------------------------------------------
# Regressor


class Deep3DRegressor:
    """Image + five points -> Deep3DFaceRecon coefficients -> the authors' 73-number motion frame.

    Args:
        net: a loaded :class:`Deep3DReconNet` (moved to ``device``, eval mode, no gradients).
        device: torch device to run on ("cpu", "cuda", ...).
    """

    def __init__(self, net: Deep3DReconNet, device: torch.device | str = "cpu") -> None:
        try:
            self.device = torch.device(device)
            self.net = net.to(self.device).eval().requires_grad_(False)
        except (RuntimeError, AssertionError, ValueError) as exc:
            raise PirenderError(
                f"cannot use device {device!r} for Deep3DFaceRecon ({exception_text(exc)})"
            ) from None

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device | str = "cpu") -> Deep3DRegressor:
        """Load :func:`load_deep3d_checkpoint` and wrap it."""
        return cls(load_deep3d_checkpoint(path), device)

    def coefficients_of_crops(self, crops_rgb: np.ndarray) -> np.ndarray:
        """Run the network on aligned crops.

        Args:
            crops_rgb: (N, 224, 224, 3) uint8 RGB crops (a (224, 224, 3) crop is one).

        Returns:
            (N, 257) float32 coefficients.
        """
        crops = np.asarray(crops_rgb)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE_PX, CROP_SIZE_PX, 3):
            raise ImageError(
                f"crops must be (N, {CROP_SIZE_PX}, {CROP_SIZE_PX}, 3) uint8, got {describe_value(crops_rgb)}"
            )
        with torch.inference_mode():
            pixels = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
            images = pixels.permute(0, 3, 1, 2).float().div_(255.0)
            coeffs = self.net(images)
        return coeffs.float().cpu().numpy()

    def predict_coefficients(
        self, image_rgb: np.ndarray, five_points_xy: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Align one frame and regress it.

        Args:
            image_rgb: (H0, W0, 3) uint8 RGB frame.
            five_points_xy: (5, 2) pixels, y down (see :func:`align_face`).

        Returns:
            coeffs (257,) float32 and trans_params (5,) float32 = (W0, H0, s, t0, t1).
        """
        aligned = align_face(image_rgb, five_points_xy)
        return self.coefficients_of_crops(aligned.crop_rgb)[0], aligned.trans_params

    def predict(self, image_rgb: np.ndarray, five_points_xy: np.ndarray) -> MotionFrame:
        """One frame's motion in ``AUTHORS_SPACE``: exp 64, angles 3, trans 3, crop (s, t0, t1)."""
        coeffs, trans_params = self.predict_coefficients(image_rgb, five_points_xy)
        rows = coeffs_to_authors(coeffs, trans_params[TRANSFORM_PARAMS_CROP], what="Deep3DFaceRecon output")
        return MotionFrame(AUTHORS_SPACE, rows[0])

    def predict_batch(self, images_rgb: Sequence[np.ndarray], five_points_xy: np.ndarray) -> np.ndarray:
        """Several frames in one network call.

        Args:
            images_rgb: N frames, each (H, W, 3) uint8 (sizes may differ).
            five_points_xy: (N, 5, 2) pixels, y down.

        Returns:
            (N, 73) float32 rows of ``AUTHORS_SPACE``.
        """
        points = np.asarray(five_points_xy)
        if points.ndim != 3 or points.shape[0] != len(images_rgb) or points.shape[1:] != (FIVE_POINTS, 2):
            raise LandmarkError(
                f"five_points_xy must be ({len(images_rgb)}, 5, 2) for {len(images_rgb)} frames, "
                f"got {describe_value(five_points_xy)}"
            )
        if not images_rgb:
            raise ImageError("predict_batch needs at least one frame")
        aligned = [
            align_face(image, frame_points) for image, frame_points in zip(images_rgb, points, strict=True)
        ]
        coeffs = self.coefficients_of_crops(np.stack([face.crop_rgb for face in aligned]))
        crops = np.stack([face.crop_params for face in aligned])
        return coeffs_to_authors(coeffs, crops, what="Deep3DFaceRecon output")
