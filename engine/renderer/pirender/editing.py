"""Editing net: [source, warped image] + z -> the final image (B, 3, H, W) in (-1, 1).

Spec section 2.2. Post-activation blocks (conv -> LN2d -> LReLU). Encoder: a 7x7 first block on the
6-channel concatenation [source, warp_image], then ``layers`` down blocks (conv, norm, act, 2x2 average
pool). Decoder, levels run deepest first: AdaIN residual blocks -> nearest x2 upsample + conv block ->
add the Jump-processed encoder skip of that size. A 7x7 conv and tanh give the image.

The residual blocks' ``conv1``/``norm1`` are a dead branch in the authors' code (computed, then
discarded). They stay as parameters for strict loading; skipping them is exact and saves ~18% of the
FLOPs. ``compute_dead_branch = True`` (see ``generator.set_reference_ops``) reproduces the authors' cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import AdaIN, LayerNorm2d, LReLU, channel_width, lrelu


def _conv_norm_act(in_nc: int, out_nc: int, kernel_px: int) -> list[nn.Module]:
    return [nn.Conv2d(in_nc, out_nc, kernel_px, 1, kernel_px // 2), LayerNorm2d(out_nc), LReLU()]


class FirstBlock2d(nn.Module):
    """conv 7/1/3 -> LN2d -> LReLU. Keys ``model.0`` (conv), ``model.1`` (norm)."""

    def __init__(self, in_nc: int, out_nc: int) -> None:
        super().__init__()
        self.model = nn.Sequential(*_conv_norm_act(in_nc, out_nc, 7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DownBlock2d(nn.Module):
    """conv 3/1/1 -> LN2d -> LReLU -> 2x2 average pool (halves H, W)."""

    def __init__(self, in_nc: int, out_nc: int) -> None:
        super().__init__()
        self.model = nn.Sequential(*_conv_norm_act(in_nc, out_nc, 3), nn.AvgPool2d(kernel_size=2, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def subpixel_weights(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 conv after nearest x2 upsampling as four 2x2 convs on the small input, one per output
    phase (row parity, column parity): (O, I, 3, 3) -> (4 * O, I, 2, 2), phases 00, 01, 10, 11.

    Output row 2i reads upsampled rows 2i-1, 2i, 2i+1 = small rows i-1, i, i (taps k0 | k1 + k2);
    row 2i+1 reads small rows i, i, i+1 (taps k0 + k1 | k2); columns likewise.
    """
    even_rows = torch.stack([weight[:, :, 0], weight[:, :, 1] + weight[:, :, 2]], dim=2)  # (O, I, 2, 3)
    odd_rows = torch.stack([weight[:, :, 0] + weight[:, :, 1], weight[:, :, 2]], dim=2)

    def columns(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        even = torch.stack([rows[..., 0], rows[..., 1] + rows[..., 2]], dim=-1)
        odd = torch.stack([rows[..., 0] + rows[..., 1], rows[..., 2]], dim=-1)
        return even, odd

    return torch.cat([*columns(even_rows), *columns(odd_rows)], dim=0)


def upsample_conv(x: torch.Tensor, phase_weights: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """conv3x3(nearest_upsample_x2(x), weight, bias, padding 1) with 4/9 of the multiplies, given
    ``phase_weights = subpixel_weights(weight)`` (4O, I, 2, 2).

    x (B, I, h, w) -> (B, O, 2h, 2w); equal to the direct form up to float rounding (~1e-6).
    """
    out_nc, (h, w) = phase_weights.shape[0] // 4, x.shape[2:]
    phase_bias = None if bias is None else bias.repeat(4)
    phases = F.conv2d(F.pad(x, (1, 1, 1, 1)), phase_weights, phase_bias)  # (B, 4O, h+1, w+1)
    p00, p01 = phases[:, :out_nc, :h, :w], phases[:, out_nc : 2 * out_nc, :h, 1:]
    p10, p11 = phases[:, 2 * out_nc : 3 * out_nc, 1:, :w], phases[:, 3 * out_nc :, 1:, 1:]
    rows = torch.stack([torch.stack([p00, p01], dim=-1), torch.stack([p10, p11], dim=-1)], dim=3)
    return rows.reshape(x.shape[0], out_nc, 2 * h, 2 * w)  # (B, O, h, 2, w, 2) -> interleaved


def transposed_weights(weight: torch.Tensor) -> torch.Tensor:
    """The same up convolution as one stride-2 transposed convolution (4x4 kernel, padding 1):
    (O, I, 3, 3) -> (I, O, 4, 4). Even outputs take taps k1 + k2 (own pixel) and k0 (the one before),
    odd outputs k0 + k1 (own) and k2 (the one after): kernel index 0..3 = k2, k1 + k2, k0 + k1, k0."""
    k0, k1, k2 = weight.unbind(2)  # rows
    rows = torch.stack([k2, k1 + k2, k0 + k1, k0], dim=2)  # (O, I, 4, 3)
    c0, c1, c2 = rows.unbind(3)
    return torch.stack([c2, c1 + c2, c0 + c1, c0], dim=3).transpose(0, 1)  # (I, O, 4, 4)


#: forms of the up blocks' upsample + conv: the authors' ("direct"), four phase convolutions
#: ("phases", fastest in PyTorch) or one transposed convolution ("transposed", one graph op for
#: ONNX Runtime / OpenVINO / TensorRT); the last two need 4/9 of the multiplies
UPSAMPLE_FORMS = ("direct", "phases", "transposed")


class UpBlock2d(nn.Module):
    """nearest x2 upsample -> conv 3/1/1 -> LN2d -> LReLU (doubles H, W).

    ``form`` (one of ``UPSAMPLE_FORMS``) picks how upsample + conv is computed; all are equal up to
    float rounding (~1e-6). Derived weights are cached while the conv's weights stay the same.
    """

    def __init__(self, in_nc: int, out_nc: int) -> None:
        super().__init__()
        self.model = nn.Sequential(*_conv_norm_act(in_nc, out_nc, 3))
        self.form = "phases"
        self._derived: tuple[tuple[object, ...], torch.Tensor] | None = None  # (key, derived weights)

    def _conv(self) -> nn.Conv2d:
        """The block's conv (key ``model.0``)."""
        conv = self.model[0]
        if not isinstance(conv, nn.Conv2d):  # nn.Sequential's items are typed as plain Modules
            raise TypeError(f"UpBlock2d.model[0] must be an nn.Conv2d, got {type(conv).__name__}")
        return conv

    def _weights(self) -> torch.Tensor:
        weight = self._conv().weight
        derive = subpixel_weights if self.form == "phases" else transposed_weights
        if torch.compiler.is_compiling() or (torch.is_grad_enabled() and weight.requires_grad):
            return derive(weight)  # traced or trained: part of the graph
        version = -1 if weight.is_inference() else weight._version  # inference tensors have none
        key = (self.form, weight.data_ptr(), version, weight.dtype, weight.device)
        if self._derived is None or self._derived[0] != key:
            with torch.no_grad():
                self._derived = (key, derive(weight).contiguous())
        return self._derived[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self._conv()
        if self.form == "direct":
            out = conv(F.interpolate(x, scale_factor=2))
        elif self.form == "phases":
            out = upsample_conv(x, self._weights(), conv.bias)
        elif self.form == "transposed":
            out = F.conv_transpose2d(x, self._weights(), conv.bias, stride=2, padding=1)
        else:
            raise ValueError(f"unknown upsample form {self.form!r} (one of {', '.join(UPSAMPLE_FORMS)})")
        return self.model[2](self.model[1](out))


class Jump(nn.Module):
    """conv 3/1/1 -> LN2d -> LReLU on an encoder skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(*_conv_norm_act(channels, channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class FinalBlock2d(nn.Module):
    """conv 7/1/3 -> tanh."""

    def __init__(self, in_nc: int, out_nc: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(in_nc, out_nc, 7, 1, 3), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class FineADAINResBlock2d(nn.Module):
    """x + AdaIN(conv2(x), z). ``conv1``/``norm1`` are the authors' dead branch (see module doc)."""

    def __init__(self, channels: int, *, descriptor_nc: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.norm1 = AdaIN(channels, descriptor_nc=descriptor_nc)
        self.norm2 = AdaIN(channels, descriptor_nc=descriptor_nc)
        self.compute_dead_branch = False

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.compute_dead_branch:
            lrelu(self.norm1(self.conv1(x), z))  # discarded, exactly as the authors' forward does
        return self.norm2(self.conv2(x), z) + x


class FineADAINResBlocks(nn.Module):
    def __init__(self, count: int, channels: int, *, descriptor_nc: int) -> None:
        super().__init__()
        self.count = count
        for i in range(count):
            setattr(self, f"res{i}", FineADAINResBlock2d(channels, descriptor_nc=descriptor_nc))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        for i in range(self.count):
            x = getattr(self, f"res{i}")(x, z)
        return x


class FineEncoder(nn.Module):
    def __init__(self, *, in_nc: int, base_nc: int, max_nc: int, layers: int) -> None:
        super().__init__()
        self.layers = layers
        self.first = FirstBlock2d(in_nc, base_nc)
        for i in range(layers):
            setattr(
                self,
                f"down{i}",
                DownBlock2d(channel_width(base_nc, i, max_nc), channel_width(base_nc, i + 1, max_nc)),
            )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # (B, 6, H, W) -> [first (base, H), down0 (H/2), ..., down{L-1} (H/2**L)]
        out = self.first(x)
        features = [out]
        for i in range(self.layers):
            out = getattr(self, f"down{i}")(out)
            features.append(out)
        return features


class FineDecoder(nn.Module):
    def __init__(
        self, *, image_nc: int, base_nc: int, max_nc: int, layers: int, res_blocks: int, descriptor_nc: int
    ) -> None:
        super().__init__()
        self.levels = list(range(layers))[::-1]  # 2, 1, 0
        for i in self.levels:
            in_nc = channel_width(base_nc, i + 1, max_nc)
            out_nc = channel_width(base_nc, i, max_nc)
            setattr(self, f"up{i}", UpBlock2d(in_nc, out_nc))
            setattr(self, f"res{i}", FineADAINResBlocks(res_blocks, in_nc, descriptor_nc=descriptor_nc))
            setattr(self, f"jump{i}", Jump(out_nc))
        self.final = FinalBlock2d(base_nc, image_nc)

    def forward(self, features: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        out = features[-1]
        for depth, i in enumerate(self.levels):
            out = getattr(self, f"res{i}")(out, z)
            out = getattr(self, f"up{i}")(out)
            out = getattr(self, f"jump{i}")(features[-2 - depth]) + out
        return self.final(out)


class EditingNet(nn.Module):
    def __init__(
        self,
        *,
        image_nc: int = 3,
        descriptor_nc: int = 256,
        base_nc: int = 64,
        max_nc: int = 256,
        layers: int = 3,
        res_blocks: int = 2,
    ) -> None:
        super().__init__()
        self.encoder = FineEncoder(in_nc=2 * image_nc, base_nc=base_nc, max_nc=max_nc, layers=layers)
        self.decoder = FineDecoder(
            image_nc=image_nc,
            base_nc=base_nc,
            max_nc=max_nc,
            layers=layers,
            res_blocks=res_blocks,
            descriptor_nc=descriptor_nc,
        )

    def forward(self, source: torch.Tensor, warped: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # source, warped: (B, 3, H, W); z: (B, 256, 1) -> (B, 3, H, W) in (-1, 1)
        return self.decoder(self.encoder(torch.cat([source, warped], dim=1)), z)
