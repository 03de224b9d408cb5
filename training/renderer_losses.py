"""PIRenderer's training objective: VGG-19 perceptual + style losses (``pirender-spec.md`` §6.3).

- :func:`load_vgg19_features`: torchvision's VGG-19 ``features`` (built here with the same module
  indices, so torchvision is not needed) from a local file in torchvision's state_dict format: a full
  ``vgg19`` state dict (``features.N.weight`` ...; ``classifier.*`` ignored) or a ``features`` one
  (``N.weight`` ...). Only layers 0..29 are kept (the last tap is relu_5_1 = index 29). Frozen, eval.
- :class:`PerceptualLoss`: 4-scale pyramid, L1 of the features at the taps relu_1_1 .. relu_5_1
  (indices 1, 6, 11, 20, 29), weight 1 each; optional Gram style term at the first scale only.
- :class:`StructuralLoss`: the fallback when no VGG-19 file is given: per pyramid scale, pixel L1 plus
  (1 - SSIM) / 2 (Gaussian 11 × 11 window, sigma 1.5, images mapped to [0, 1]); no style term.
- :class:`RendererObjective`: the stage losses; :attr:`RendererObjective.description` records which
  losses were used (stored in checkpoints and logs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pirender.engine.errors import CheckpointError
from pirender.engine.renderer.checkpoint import load_weights_file

#: torchvision's VGG-19 ("E") features: conv widths, "M" = max pool
_VGG19_CFG: tuple[int | str, ...] = (
    *(64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"),
    *(512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
)
#: indices into ``features`` whose outputs are compared (after the ReLU)
VGG_TAPS: dict[str, int] = {"relu_1_1": 1, "relu_2_1": 6, "relu_3_1": 11, "relu_4_1": 20, "relu_5_1": 29}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_features(layers: int = max(VGG_TAPS.values()) + 1) -> nn.Sequential:
    """torchvision's ``vgg19().features`` (same module indices), cut to its first ``layers`` modules."""
    modules: list[nn.Module] = []
    channels = 3
    for item in _VGG19_CFG:
        if item == "M":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            modules += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = int(item)
    return nn.Sequential(*modules[:layers])


def load_vgg19_features(path: str | Path) -> nn.Sequential:
    """VGG-19 features 0..29 from a torchvision-format state dict file; frozen, eval mode.

    Raises CheckpointError (one line) for a missing file, a non-checkpoint, or missing / misshapen keys.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise CheckpointError(f"{file}: no such VGG-19 weights file (torchvision vgg19 state_dict format)")
    obj = load_weights_file(file, resave_hint="torchvision's vgg19().state_dict()")
    if not isinstance(obj, dict):
        raise CheckpointError(f"{file}: holds a {type(obj).__name__}, not a VGG-19 state dict")
    if any(str(k).startswith("features.") for k in obj):
        obj = {k[len("features.") :]: v for k, v in obj.items() if k.startswith("features.")}
    model = vgg19_features()
    expected = model.state_dict()
    missing = [k for k in expected if k not in obj]
    mismatched = [
        f"{k} {list(obj[k].shape)} != {list(v.shape)}"
        for k, v in expected.items()
        if k in obj and tuple(obj[k].shape) != tuple(v.shape)
    ]
    if missing or mismatched:
        what = f"missing {', '.join(missing[:4])}" if missing else f"shapes {', '.join(mismatched[:4])}"
        raise CheckpointError(f"{file}: not torchvision VGG-19 weights ({what})")
    model.load_state_dict({k: obj[k] for k in expected}, strict=True)
    return model.eval().requires_grad_(False)


class VGGTaps(nn.Module):
    """images (B, 3, H, W) in [-1, 1] -> the 5 tap features, after the ImageNet input mapping."""

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        taps, last = [], max(VGG_TAPS.values())
        wanted = set(VGG_TAPS.values())
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                taps.append(x)
            if index == last:
                break
        return taps


def gram(feature: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) = F Fᵀ / (C H W)."""
    b, c, h, w = feature.shape
    flat = feature.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def _half(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(
        x, scale_factor=0.5, mode="bilinear", align_corners=False, recompute_scale_factor=True
    )


class PerceptualLoss(nn.Module):
    """Σ_scales Σ_taps mean|φ(x) − φ(gt)| (+ style_weight × Σ_taps mean|G(φ(x)) − G(φ(gt))| at scale 0).

    x, gt (B, 3, H, W) in [-1, 1]; gt features are detached. Returns a scalar tensor.
    """

    def __init__(self, taps: VGGTaps, *, scales: int = 4, style_weight: float = 0.0) -> None:
        super().__init__()
        self.taps = taps
        self.scales = scales
        self.style_weight = style_weight

    def forward(self, x: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) >> (self.scales - 1) < 16:
            raise ValueError(
                f"perceptual loss: {self.scales} scales of {tuple(x.shape[-2:])} px images end below 16 px "
                "(VGG-19's relu_5_1 needs 16); use fewer scales"
            )
        total = x.new_zeros((), dtype=torch.float32)
        for scale in range(self.scales):
            if scale:
                x, gt = _half(x), _half(gt)
            fx = self.taps(x)  # in the caller's autocast dtype (bf16 where enabled)
            with torch.no_grad():
                fg = self.taps(gt)
            with torch.autocast(x.device.type, enabled=False):  # differences and Grams in float32
                for a, b in zip(fx, fg, strict=True):
                    total = total + F.l1_loss(a.float(), b.detach().float())
                if scale == 0 and self.style_weight:
                    style = sum(
                        F.l1_loss(gram(a.float()), gram(b.detach().float()))
                        for a, b in zip(fx, fg, strict=True)
                    )
                    total = total + self.style_weight * style
        return total


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """(1, 1, size, size) normalised Gaussian window of SSIM (Wang et al. 2004: 11 px, sigma 1.5)."""
    g = torch.exp(-((torch.arange(size, dtype=torch.float32) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_per_image(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor | None = None) -> torch.Tensor:
    """SSIM of each image pair, (B,): x, y (B, C, H, W) in [0, 1] (Gaussian window, constants of
    Wang et al. 2004; reflect padding, so the value covers the whole picture; channels averaged).
    The one SSIM of the project: the fallback loss and the evaluation harness use it."""
    window = gaussian_window() if window is None else window
    c1, c2 = 0.01**2, 0.03**2
    channels = x.shape[1]
    pad = window.shape[-1] // 2
    kernel = window.to(x.dtype).expand(channels, 1, *window.shape[-2:])

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (pad,) * 4, mode="reflect"), kernel, groups=channels)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return ssim.flatten(1).mean(1)


def _ssim(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of a batch of images in [0, 1]."""
    return ssim_per_image(x, y, window).mean()


class StructuralLoss(nn.Module):
    """Fallback without VGG-19: Σ_scales mean|x − gt| + (1 − SSIM(x, gt)) / 2, images in [-1, 1]
    (SSIM on (x + 1)/2; window 11 px, sigma 1.5, shrunk to the image at small scales). No style term."""

    def __init__(self, *, scales: int = 4) -> None:
        super().__init__()
        self.scales = scales
        self.register_buffer("window", gaussian_window(), persistent=False)

    def forward(self, x: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # SSIM's variances need float32
            return self._forward(x.float(), gt.detach().float())

    def _forward(self, x: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros((), dtype=torch.float32)
        for scale in range(self.scales):
            if scale:
                x, gt = _half(x), _half(gt)
            xf, gf = x.float(), gt.float()
            window = self.window
            if min(xf.shape[-2:]) <= window.shape[-1]:
                window = F.interpolate(window, size=(3, 3), mode="bilinear", align_corners=False)
                window = window / window.sum()
            total = total + F.l1_loss(xf, gf) + (1 - _ssim((xf + 1) / 2, (gf + 1) / 2, window)) / 2
        return total


class RendererObjective(nn.Module):
    """The stage losses of §1.2 on the generator's output dict.

    stage ``warp``: warp_weight × P(warp_image, gt);
    stage ``gen``: final_weight × (P + style_weight × S)(fake_image, gt) + warp_weight × P(warp_image, gt).
    P/S are VGG-19 perceptual/style (``vgg19`` given) or :class:`StructuralLoss` without style (fallback).
    """

    def __init__(
        self,
        vgg19: str | Path | nn.Sequential | None = None,
        *,
        warp_weight: float = 2.5,
        final_weight: float = 4.0,
        style_weight: float = 250.0,
        scales: int = 4,
    ) -> None:
        super().__init__()
        self.warp_weight, self.final_weight = warp_weight, final_weight
        if vgg19 is None:
            self.warp_loss: nn.Module = StructuralLoss(scales=scales)
            self.final_loss: nn.Module = self.warp_loss
            source = None
        else:
            features = vgg19 if isinstance(vgg19, nn.Sequential) else load_vgg19_features(vgg19)
            taps = VGGTaps(features.eval().requires_grad_(False))
            self.warp_loss = PerceptualLoss(taps, scales=scales)
            self.final_loss = PerceptualLoss(taps, scales=scales, style_weight=style_weight)
            source = str(vgg19) if not isinstance(vgg19, nn.Module) else "in-memory VGG-19 features"
        kind = "vgg19" if vgg19 is not None else "fallback"
        term = (
            f"VGG-19 perceptual L1 ({'/'.join(VGG_TAPS)}, weight 1 each, {scales} scales)"
            if kind == "vgg19"
            else f"pixel L1 + (1 - SSIM)/2 ({scales} scales; no VGG-19 file given)"
        )
        style = f" + {style_weight:g} x Gram style (first scale)" if kind == "vgg19" else " (no style term)"
        self.description: dict[str, Any] = {
            "kind": kind,
            "vgg19_path": source,
            "warp_stage": f"{warp_weight:g} x [{term}](warp_image, gt)",
            "gen_stage": (
                f"{final_weight:g} x [{term}{style}](fake_image, gt) "
                f"+ {warp_weight:g} x [{term}](warp_image, gt)"
            ),
        }

    def forward(
        self, out: dict[str, torch.Tensor], gt: torch.Tensor, stage: str
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(total loss, {"warp": float, "final": float (gen only), "total": float})."""
        warp = self.warp_weight * self.warp_loss(out["warp_image"], gt)
        parts = {"warp": float(warp.detach())}
        total = warp
        if stage != "warp":
            final = self.final_weight * self.final_loss(out["fake_image"], gt)
            parts["final"] = float(final.detach())
            total = total + final
        parts["total"] = float(total.detach())
        return total, parts
