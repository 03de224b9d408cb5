"""Image-quality metrics that need pretrained networks: LPIPS and FID, from local files only.

Nothing here downloads: every weight comes from a file the caller names (or, for LPIPS's small
linear layers, from a file that an installed package ships). The networks are built here with the
reference module names, so their weight files load as they are (torchvision is not needed; its
PyPI wheels do not run on the CPU build of torch this project installs).

- :class:`LpipsMetric`: LPIPS v0.1 (Zhang et al., CVPR 2018), as the ``lpips`` package computes it
  with ``spatial=False``: the AlexNet or VGG-16 backbone from a torchvision state-dict file, the
  learned linear layers from lpips' ``weights/v0.1/{alex,vgg}.pth`` (the copy that ``torchmetrics``
  ships is used when no file is given).
- :class:`FidMetric`: FID (Heusel et al., NeurIPS 2017) with the FID Inception-v3 (the TensorFlow
  2015-12-05 graph as pytorch-fid / torch-fidelity port it), 2048-d pool features. The input
  follows torch-fidelity: images quantized to 8 bits, TensorFlow-1 bilinear resize to 299 × 299,
  then (v − 128) / 128; features agree with torch-fidelity's to ~1e-7. (torchmetrics resizes with
  an anti-aliased PyTorch bilinear instead, pytorch-fid with a plain PyTorch bilinear and 2v − 1:
  their numbers differ slightly for the same images.) :func:`frechet_distance` computes the
  distance from symmetric factorizations in float64 (torchmetrics' square root of the
  non-symmetric Σ_a Σ_b takes ~25 s a call for 2048-d on 2 CPU cores and is noisy when Σ is
  rank-deficient, as it is with fewer than 2048 images).

Accepted files (``torch.save`` / pickle checkpoints, read with a weights-only ``torch.load``):

- LPIPS backbone, ``net="alex"``: torchvision's ``alexnet().state_dict()`` (e.g. ImageNet's
  ``alexnet-owt-7be5be79.pth``); ``net="vgg"``: torchvision's ``vgg16().state_dict()`` (e.g.
  ``vgg16-397923af.pth``). ``classifier.*`` is ignored; a ``features``-only dict (``0.weight`` ...)
  is accepted too.
- LPIPS linear layers: lpips' ``weights/v0.1/alex.pth`` / ``vgg.pth`` (keys ``lin0.model.1.weight`` ..
  ``lin4.model.1.weight``, each (1, C, 1, 1)); a whole ``lpips.LPIPS`` state dict works too.
- FID: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (the same file as torch-fidelity's
  ``weights-inception-2015-12-05-6726825d.pth``): keys ``Conv2d_1a_3x3.conv.weight`` ..
  ``Mixed_7c.branch_pool.bn.*``, ``fc.weight`` (1008, 2048), ``fc.bias``. ``fc`` and the batch norms'
  ``num_batches_tracked`` may be absent; torchvision's ImageNet ``inception_v3`` weights are refused.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pirender.engine.errors import CheckpointError, ImageError, PirenderError, describe_value
from pirender.engine.renderer.checkpoint import load_weights_file

__all__ = [
    "FID_WEIGHTS_FORMAT",
    "LPIPS_BACKBONE_FORMATS",
    "LPIPS_LINEAR_FORMAT",
    "FidInceptionV3",
    "FidMetric",
    "LpipsMetric",
    "LpipsNetwork",
    "frechet_distance",
    "load_fid_inception",
    "resize_bilinear_tf1",
]

# ---------------------------------------------------------------------------------------------- LPIPS


@dataclass(frozen=True)
class _LpipsNet:
    """One LPIPS backbone: torchvision's ``features`` layout, the taps and their widths."""

    #: in torchvision's order: (out channels, kernel, stride, padding) for a conv + ReLU, "M" for a max pool
    layers: tuple[tuple[int, int, int, int] | str, ...]
    pool: tuple[int, int]  # max-pool kernel, stride
    taps: tuple[int, ...]  # indices into ``features`` (after the ReLU) that LPIPS compares
    channels: tuple[int, ...]  # widths at the taps (= the linear layers' inputs)
    min_size_px: int  # the smallest side that still reaches the last tap
    file_format: str


_ALEX = _LpipsNet(
    layers=((64, 11, 4, 2), "M", (192, 5, 1, 2), "M", (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)),
    pool=(3, 2),
    taps=(1, 4, 7, 9, 11),
    channels=(64, 192, 384, 256, 256),
    min_size_px=31,
    file_format="torchvision alexnet state dict (alexnet-owt-7be5be79.pth)",
)
_VGG16 = _LpipsNet(
    layers=(
        *((64, 3, 1, 1), (64, 3, 1, 1), "M", (128, 3, 1, 1), (128, 3, 1, 1), "M"),
        *((256, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1), "M"),
        *((512, 3, 1, 1), (512, 3, 1, 1), (512, 3, 1, 1), "M"),
        *((512, 3, 1, 1), (512, 3, 1, 1), (512, 3, 1, 1)),
    ),
    pool=(2, 2),
    taps=(3, 8, 15, 22, 29),
    channels=(64, 128, 256, 512, 512),
    min_size_px=16,
    file_format="torchvision vgg16 state dict (vgg16-397923af.pth)",
)
_NETS: dict[str, _LpipsNet] = {"alex": _ALEX, "vgg": _VGG16}

#: what each ``net`` expects as its backbone file
LPIPS_BACKBONE_FORMATS: dict[str, str] = {name: spec.file_format for name, spec in _NETS.items()}
#: what ``linear`` expects ({net} = alex | vgg)
LPIPS_LINEAR_FORMAT = "LPIPS v0.1 linear-layer state dict (lpips' weights/v0.1/{net}.pth)"
#: LPIPS v0.1 input scaling: (x - shift) / scale, per RGB channel
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
#: where installed packages keep lpips' v0.1 linear layers (package, folder inside it)
_PACKAGED_LINEAR = (("torchmetrics", ("functional", "image", "lpips_models")), ("lpips", ("weights", "v0.1")))


def _features(spec: _LpipsNet) -> nn.Sequential:
    """torchvision's ``features`` (same module indices), cut after the last tap."""
    modules: list[nn.Module] = []
    channels = 3
    for item in spec.layers:
        if isinstance(item, str):
            modules.append(nn.MaxPool2d(kernel_size=spec.pool[0], stride=spec.pool[1]))
        else:
            width, kernel, stride, padding = item
            modules += [nn.Conv2d(channels, width, kernel, stride, padding), nn.ReLU(inplace=False)]
            channels = width
    return nn.Sequential(*modules[: max(spec.taps) + 1])


def _refuse(file: Path, problem: str, expected: str) -> CheckpointError:
    return CheckpointError(f"{file}: {problem}; expected: {expected}")


def _read_state_dict(path: Path | str, expected: str) -> tuple[Path, dict[str, Any]]:
    """(resolved path, its dict) or CheckpointError naming the file and ``expected``."""
    file = Path(path).expanduser()
    if file.is_dir():
        raise _refuse(file, "is a folder, not a file", expected)
    if not file.is_file():
        raise _refuse(file, "no such file", expected)
    try:
        obj = load_weights_file(file, resave_hint="the state_dict alone")
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; expected: {expected}") from None
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise _refuse(file, f"holds a {type(obj).__name__}, not a state dict", expected)
    return file, dict(obj)


def _check_tensors(
    file: Path, given: Mapping[str, Any], wanted: Mapping[str, torch.Tensor], expected: str
) -> None:
    """Every key of ``wanted`` present in ``given`` as a tensor of the same shape, else CheckpointError."""
    missing = [k for k in wanted if k not in given]
    if missing:
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        raise _refuse(file, f"lacks {', '.join(missing[:3])}{more}", expected)
    for key, ref in wanted.items():
        value = given[key]
        if not isinstance(value, torch.Tensor):
            raise _refuse(file, f"{key} is a {type(value).__name__}, not a tensor", expected)
        if tuple(value.shape) != tuple(ref.shape):
            raise _refuse(file, f"{key} has shape {list(value.shape)}, not {list(ref.shape)}", expected)


def _load_backbone(path: Path | str, net: str) -> tuple[Path, nn.Sequential]:
    spec = _NETS[net]
    file, state = _read_state_dict(path, spec.file_format)
    # a whole torchvision model (features.N.*, classifier.* ignored) or its features alone (N.*)
    prefix = "features." if any(k.startswith("features.") for k in state) else ""
    model = _features(spec)
    wanted = {prefix + k: v for k, v in model.state_dict().items()}
    _check_tensors(file, state, wanted, spec.file_format)
    model.load_state_dict({k.removeprefix(prefix): state[k].float() for k in wanted})
    return file, model.eval().requires_grad_(False)


def _packaged_linear(net: str) -> tuple[Path, str]:
    """lpips' v0.1 linear layers as an installed package ships them: (file, description)."""
    for package, folder in _PACKAGED_LINEAR:
        spec = importlib.util.find_spec(package)  # finds the package without importing it
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            file = Path(root).joinpath(*folder, f"{net}.pth")
            if file.is_file():
                version = importlib.metadata.version(package)
                return file, f"{package} {version} ({'/'.join(folder)}/{net}.pth)"
    raise CheckpointError(
        f"no LPIPS linear layers for {net!r}: found in neither torchmetrics nor lpips (install "
        f"torchmetrics), or pass linear=PATH: {LPIPS_LINEAR_FORMAT.format(net=net)}"
    )


def _load_linear(path: Path | str, net: str) -> tuple[Path, list[torch.Tensor]]:
    expected = LPIPS_LINEAR_FORMAT.format(net=net)
    file, state = _read_state_dict(path, expected)
    weights: list[torch.Tensor] = []
    for index, width in enumerate(_NETS[net].channels):
        # lpips' NetLinLayer is Sequential(Dropout, Conv2d) (model.1), or Sequential(Conv2d) without dropout
        key = next(
            (k for k in (f"lin{index}.model.1.weight", f"lin{index}.model.0.weight") if k in state), None
        )
        if key is None:
            raise _refuse(file, f"lacks lin{index}.model.1.weight", expected)
        _check_tensors(file, state, {key: torch.empty(1, width, 1, 1)}, expected)
        weights.append(state[key].detach().float().clone())
    return file, weights


class LpipsNetwork(nn.Module):
    """LPIPS v0.1: (a, b) images (B, 3, H, W) in [-1, 1] → per-image distances (B,), float32."""

    def __init__(self, features: nn.Sequential, linear: Sequence[torch.Tensor], taps: Sequence[int]) -> None:
        super().__init__()
        self.features = features
        self.taps = tuple(taps)
        self.linear = nn.ParameterList([nn.Parameter(w, requires_grad=False) for w in linear])
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)

    def tap_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's features at the taps, each scaled to unit length over channels."""
        x = (x - self.shift) / self.scale
        out: list[torch.Tensor] = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                out.append(x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = a.new_zeros(a.shape[0])
        for fa, fb, weight in zip(self.tap_features(a), self.tap_features(b), self.linear, strict=True):
            total = total + F.conv2d((fa - fb).square(), weight).mean(dim=(1, 2, 3))
        return total


def _check_images(images: object, what: str, *, min_size_px: int = 1) -> torch.Tensor:
    """A (B, 3, H, W) floating tensor of finite values in [-1, 1] (1e-3 slack), else ImageError."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ImageError(f"{what}: expected a (B, 3, H, W) tensor, got {describe_value(images)}")
    if not images.is_floating_point():
        raise ImageError(f"{what}: expected floating-point values in [-1, 1], got {images.dtype}")
    if images.shape[0] == 0:
        raise ImageError(f"{what}: empty batch")
    if min(images.shape[-2:]) < min_size_px:
        raise ImageError(
            f"{what}: {tuple(images.shape[-2:])} px images are too small (at least {min_size_px} px a side)"
        )
    low, high = float(images.amin()), float(images.amax())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ImageError(f"{what}: holds NaN or infinite values")
    if low < -1.001 or high > 1.001:
        raise ImageError(f"{what}: values span [{low:.3g}, {high:.3g}], expected [-1, 1]")
    return images


@dataclass(frozen=True, eq=False)
class LpipsMetric:
    """LPIPS v0.1 distances between image pairs (0 = identical; larger = perceptually further).

    Build with :meth:`from_files`; call with two batches. Runs under ``torch.inference_mode`` on
    ``device`` (CPU by default), in float32.
    """

    net: str
    backbone_file: Path
    #: where the linear layers came from: a file path, or "<package> <version> (<file in it>)"
    linear_source: str
    network: LpipsNetwork
    device: torch.device

    @classmethod
    def from_files(
        cls,
        backbone: Path | str,
        *,
        net: str = "alex",
        linear: Path | str | None = None,
        device: str | torch.device = "cpu",
    ) -> LpipsMetric:
        """Load the backbone (and the linear layers) from local files; nothing is downloaded.

        Args:
            backbone: torchvision ``alexnet`` (``net="alex"``) or ``vgg16`` (``net="vgg"``) state dict
                file, e.g. ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``.
            net: ``"alex"`` (LPIPS' default) or ``"vgg"``.
            linear: lpips' ``weights/v0.1/{net}.pth``; ``None`` takes the copy that the installed
                ``torchmetrics`` (or ``lpips``) package ships.
            device: where the network runs.

        Raises:
            PirenderError: an unknown ``net``.
            CheckpointError (a PirenderError): a file that is missing, unreadable or not in the expected
                format (one line naming the file and the format expected).
        """
        if net not in _NETS:
            raise PirenderError(f"LPIPS network {net!r} is not supported (choose from {', '.join(_NETS)})")
        backbone_file, features = _load_backbone(backbone, net)
        if linear is None:
            linear_file, source = _packaged_linear(net)
        else:
            linear_file = Path(linear).expanduser()
            source = str(linear_file)
        _, weights = _load_linear(linear_file, net)
        target = torch.device(device)
        network = LpipsNetwork(features, weights, _NETS[net].taps).to(target).eval()
        return cls(net, backbone_file, source, network, target)

    @property
    def min_size_px(self) -> int:
        """The smallest image side the backbone takes (AlexNet 31 px, VGG-16 16 px)."""
        return _NETS[self.net].min_size_px

    @property
    def description(self) -> str:
        """One line for reports: the metric, the backbone file and where the linear layers came from."""
        return (
            f"LPIPS v0.1 ({self.net}; backbone {self.backbone_file.name}; linear layers {self.linear_source})"
        )

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        """Per-pair distances.

        Args:
            a, b: (B, 3, H, W) floating-point RGB in [-1, 1], same shape; H, W ≥ :attr:`min_size_px`.

        Returns:
            (B,) float64 array, ≥ 0; exactly 0 for identical images; symmetric in (a, b).

        Raises:
            ImageError (a PirenderError): tensors of another shape, dtype or range.
        """
        a = _check_images(a, "LPIPS first batch", min_size_px=self.min_size_px)
        b = _check_images(b, "LPIPS second batch", min_size_px=self.min_size_px)
        if a.shape != b.shape:
            raise ImageError(f"LPIPS: batches differ in shape ({tuple(a.shape)} vs {tuple(b.shape)})")
        with torch.inference_mode():
            out = self.network(a.to(self.device, torch.float32), b.to(self.device, torch.float32))
        return out.double().cpu().numpy()


# ------------------------------------------------------------------------------------------------ FID

FID_WEIGHTS_FORMAT = (
    "FID Inception-v3 state dict (pytorch-fid's pt_inception-2015-12-05-6726825d.pth, "
    "= torch-fidelity's weights-inception-2015-12-05-6726825d.pth)"
)
FID_INPUT_SIZE_PX = 299
FID_FEATURES = 2048
#: the classifier of the FID graph (1008 classes); torchvision's ImageNet Inception has 1000
_FID_CLASSES = 1008


class _Conv(nn.Module):
    """Conv (no bias) → batch norm (eps 0.001) → ReLU, named ``conv`` / ``bn`` as in the weight file."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's 3 × 3 average pool: padded cells are not counted."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _MixedA(nn.Module):  # 35 × 35 blocks (Mixed_5b .. 5d)
    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(c_in, 64, 1)
        self.branch5x5_1 = _Conv(c_in, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(c_in, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_avg_pool_3x3(x)),
            ],
            dim=1,
        )


class _MixedB(nn.Module):  # 35 → 17 reduction (Mixed_6a)
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(c_in, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, kernel_size=3, stride=2),
            ],
            dim=1,
        )


class _MixedC(nn.Module):  # 17 × 17 blocks with factorized 7 × 7 (Mixed_6b .. 6e)
    def __init__(self, c_in: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(c_in, 192, 1)
        self.branch7x7_1 = _Conv(c_in, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(c_in, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            double = layer(double)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
                double,
                self.branch_pool(_avg_pool_3x3(x)),
            ],
            dim=1,
        )


class _MixedD(nn.Module):  # 17 → 8 reduction (Mixed_7a)
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(c_in, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(c_in, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            seven = layer(seven)
        return torch.cat(
            [self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, kernel_size=3, stride=2)], dim=1
        )


class _MixedE(nn.Module):  # 8 × 8 blocks (Mixed_7b: average pool branch; Mixed_7c: max pool, as in the graph)
    def __init__(self, c_in: int, pool: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.branch1x1 = _Conv(c_in, 320, 1)
        self.branch3x3_1 = _Conv(c_in, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(c_in, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(c_in, 192, 1)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(single),
                self.branch3x3_2b(single),
                self.branch3x3dbl_3a(double),
                self.branch3x3dbl_3b(double),
                self.branch_pool(self.pool(x)),
            ],
            dim=1,
        )


def _max_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def resize_bilinear_tf1(x: torch.Tensor, size_px: int) -> torch.Tensor:
    """TensorFlow 1's ``resize_bilinear`` (align_corners=False, no half-pixel offset), as FID's graph did.

    x (B, C, H, W) float → (B, C, size_px, size_px). Output cell i samples input coordinate
    i · in / out, linearly between its floor and the next cell (clamped at the border).
    """

    def axis(n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        coord = torch.arange(size_px, dtype=torch.float32, device=x.device) * (n_in / size_px)
        low = coord.long().clamp_max(n_in - 1)
        return low, (low + 1).clamp_max(n_in - 1), (coord - low).to(x.dtype)

    y_low, y_high, dy = axis(x.shape[-2])
    x_low, x_high, dx = axis(x.shape[-1])
    top, bottom = x[..., y_low, :], x[..., y_high, :]
    rows = top + (bottom - top) * dy.view(-1, 1)
    left, right = rows[..., x_low], rows[..., x_high]
    return left + (right - left) * dx


class FidInceptionV3(nn.Module):
    """The FID Inception-v3 up to its 2048-d average pool, with the weight file's module names.

    forward: images (B, 3, H, W) in [-1, 1] → features (B, 2048) float32. The images are quantized to
    8 bits (as FID's reference tools read 8-bit files), resized to 299 × 299 like TensorFlow 1, and
    mapped by (v − 128) / 128. ``fc`` is kept so that the weight file loads whole; it is not used.
    """

    num_features = FID_FEATURES

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _MixedA(192, pool_features=32)
        self.Mixed_5c = _MixedA(256, pool_features=64)
        self.Mixed_5d = _MixedA(288, pool_features=64)
        self.Mixed_6a = _MixedB(288)
        self.Mixed_6b = _MixedC(768, c7=128)
        self.Mixed_6c = _MixedC(768, c7=160)
        self.Mixed_6d = _MixedC(768, c7=160)
        self.Mixed_6e = _MixedC(768, c7=192)
        self.Mixed_7a = _MixedD(768)
        self.Mixed_7b = _MixedE(1280, _avg_pool_3x3)
        self.Mixed_7c = _MixedE(2048, _max_pool_3x3)
        self.fc = nn.Linear(FID_FEATURES, _FID_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.floor((images.float().clamp(-1.0, 1.0) + 1.0) * 127.5 + 0.5)  # 8-bit levels 0..255
        x = resize_bilinear_tf1(x, FID_INPUT_SIZE_PX)
        x = (x - 128.0) / 128.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = block(x)
        return x.mean(dim=(2, 3))


def load_fid_inception(path: Path | str) -> tuple[Path, FidInceptionV3]:
    """(resolved file, frozen eval-mode network) from a :data:`FID_WEIGHTS_FORMAT` file.

    Raises CheckpointError (one line, naming the file and the format) for a missing, unreadable or
    foreign file, including torchvision's ImageNet ``inception_v3`` weights (another network).
    """
    file, state = _read_state_dict(path, FID_WEIGHTS_FORMAT)
    if any(k.startswith("AuxLogits.") for k in state) or (
        isinstance(state.get("fc.weight"), torch.Tensor) and state["fc.weight"].shape[0] != _FID_CLASSES
    ):
        raise _refuse(
            file, "looks like torchvision's ImageNet inception_v3 (another network)", FID_WEIGHTS_FORMAT
        )
    model = FidInceptionV3()
    reference = model.state_dict()
    optional = {k for k in reference if k.startswith("fc.") or k.endswith(".num_batches_tracked")}
    _check_tensors(file, state, {k: v for k, v in reference.items() if k not in optional}, FID_WEIGHTS_FORMAT)
    unexpected = sorted(k for k in state if k not in reference)
    if unexpected:
        raise _refuse(
            file, f"has keys the FID Inception lacks ({', '.join(unexpected[:3])})", FID_WEIGHTS_FORMAT
        )
    _check_tensors(file, state, {k: reference[k] for k in optional if k in state}, FID_WEIGHTS_FORMAT)
    loaded = {k: (state[k] if k.endswith(".num_batches_tracked") else state[k].float()) for k in state}
    model.load_state_dict({**reference, **loaded})
    return file, model.eval().requires_grad_(False)


def frechet_distance(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N_a, D) and (N_b, D), N ≥ 2.

    d² = |μ_a − μ_b|² + tr Σ_a + tr Σ_b − 2 tr (Σ_a Σ_b)^½, covariances with N − 1, in float64.
    tr (Σ_a Σ_b)^½ is computed exactly from symmetric factorizations (no square root of a
    non-symmetric matrix): as the nuclear norm of A_a A_bᵀ / √((N_a − 1)(N_b − 1)) (A = centred
    features) when a set is no larger than D, else from the eigenvalues of Σ_a^½ Σ_b Σ_a^½.
    Returns ≥ 0 (rounding below 0 is clipped); 0 for identical sets.
    """
    x = torch.as_tensor(a).to(torch.float64)
    y = torch.as_tensor(b).to(torch.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(x.shape[0], y.shape[0]) < 2:
        raise ValueError(f"feature sets (N ≥ 2, D) expected, got {tuple(x.shape)} and {tuple(y.shape)}")
    mean_x, mean_y = x.mean(dim=0), y.mean(dim=0)
    cx, cy = x - mean_x, y - mean_y
    dof_x, dof_y = x.shape[0] - 1, y.shape[0] - 1
    traces = cx.square().sum() / dof_x + cy.square().sum() / dof_y
    if min(x.shape[0], y.shape[0]) <= x.shape[1]:
        cross = torch.linalg.svdvals(cx @ cy.T).sum() / math.sqrt(dof_x * dof_y)
    else:
        cov_x, cov_y = cx.T @ cx / dof_x, cy.T @ cy / dof_y
        values, vectors = torch.linalg.eigh(cov_x)
        root = (vectors * values.clamp_min(0).sqrt()) @ vectors.T
        inner = root @ cov_y @ root
        cross = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    return max(0.0, float((mean_x - mean_y).square().sum() + traces - 2 * cross))


@dataclass(eq=False)
class FidMetric:
    """Fréchet Inception Distance between the "real" and the "generated" images fed to :meth:`update`.

    Build with :meth:`from_file`. Features (2048 a image, kept as float32 on the CPU: 8 KiB an image)
    are extracted in chunks of ``batch_size`` on ``device``; :meth:`compute` applies
    :func:`frechet_distance` to everything added so far. With fewer than 2048 images a side the
    covariances are rank-deficient and FID is biased upwards: compare numbers made from the same
    counts only.
    """

    weights_file: Path
    network: FidInceptionV3
    device: torch.device
    batch_size: int = 16
    _real: list[torch.Tensor] = field(default_factory=list, repr=False)
    _fake: list[torch.Tensor] = field(default_factory=list, repr=False)

    @classmethod
    def from_file(
        cls, weights: Path | str, *, device: str | torch.device = "cpu", batch_size: int = 16
    ) -> FidMetric:
        """Load the FID Inception-v3 from a local :data:`FID_WEIGHTS_FORMAT` file; nothing is downloaded.

        Raises:
            CheckpointError (a PirenderError): the file is missing, unreadable or of another format
                (one line naming the file and the format expected).
            PirenderError: ``batch_size`` < 1.
        """
        if batch_size < 1:
            raise PirenderError(f"FID batch size must be at least 1, not {batch_size}")
        file, network = load_fid_inception(weights)
        target = torch.device(device)
        return cls(file, network.to(target), target, batch_size)

    @property
    def description(self) -> str:
        """One line for reports: the metric, its weight file and the image counts so far."""
        return (
            f"FID (Inception-v3 pool 2048-d, {self.weights_file.name}; "
            f"{self.real_count} real, {self.fake_count} generated images)"
        )

    @property
    def real_count(self) -> int:
        """How many real images have been added."""
        return sum(f.shape[0] for f in self._real)

    @property
    def fake_count(self) -> int:
        """How many generated images have been added."""
        return sum(f.shape[0] for f in self._fake)

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        """Inception features of (B, 3, H, W) floating-point RGB in [-1, 1] → (B, 2048) float32, CPU.

        Raises ImageError (a PirenderError) for tensors of another shape, dtype or range.
        """
        images = _check_images(images, "FID images")
        with torch.inference_mode():
            parts = [
                self.network(c.to(self.device, torch.float32)).cpu() for c in images.split(self.batch_size)
            ]
        return torch.cat(parts).clone()  # a normal tensor (not an inference one)

    def add_features(self, features: torch.Tensor, real: bool) -> None:
        """Add (B, 2048) features made by :meth:`extract` (e.g. one real set shared by several metrics)."""
        if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[1] != FID_FEATURES:
            raise ImageError(
                f"FID features: expected a (B, {FID_FEATURES}) tensor, got {describe_value(features)}"
            )
        (self._real if real else self._fake).append(features.detach().to("cpu", torch.float32))

    def update(self, images: torch.Tensor, real: bool) -> None:
        """Add a batch: (B, 3, H, W) floating-point RGB in [-1, 1] (any H, W; resized to 299 × 299).

        ``real=True`` for reference images, ``False`` for generated ones. Raises ImageError (a
        PirenderError) for tensors of another shape, dtype or range.
        """
        self.add_features(self.extract(images), real=bool(real))

    def compute(self) -> float:
        """FID (≥ 0; 0 for identical sets) between everything added so far.

        Raises PirenderError when either side has fewer than 2 images (no covariance).
        """
        if self.real_count < 2 or self.fake_count < 2:
            raise PirenderError(
                f"FID needs at least 2 images a side (got {self.real_count} real, "
                f"{self.fake_count} generated)"
            )
        return frechet_distance(torch.cat(self._real), torch.cat(self._fake))

    def reset(self) -> None:
        """Forget every image added (both sides)."""
        self._real.clear()
        self._fake.clear()
