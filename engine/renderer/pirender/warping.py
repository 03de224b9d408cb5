"""Warping net: AdaIN hourglass on the source image -> flow field at 1/4 resolution.

Spec section 2.2. Pre-activation blocks (AdaIN -> LReLU -> conv). Encoder: a 7x7 input conv, then
``encoder_layers`` blocks that halve H and W. Decoder: ``decoder_layers`` blocks (named by encoder
level, run deepest first) that double H and W with transposed convs and a learned shortcut; after each,
the block output is concatenated with the encoder feature of the same size ([new, skip] order).
The flow head is LN2d -> LReLU -> 7x7 conv to 2 channels (x, y displacement in flow-grid pixels).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import AdaIN, LayerNorm2d, LReLU, channel_width, lrelu


class ADAINEncoderBlock(nn.Module):
    """AdaIN -> LReLU -> conv 4/2/1 (halves H, W) -> AdaIN -> LReLU -> conv 3/1/1."""

    def __init__(self, in_nc: int, out_nc: int, *, descriptor_nc: int) -> None:
        super().__init__()
        self.norm_0 = AdaIN(in_nc, descriptor_nc=descriptor_nc)
        self.conv_0 = nn.Conv2d(in_nc, out_nc, kernel_size=4, stride=2, padding=1)
        self.norm_1 = AdaIN(out_nc, descriptor_nc=descriptor_nc)
        self.conv_1 = nn.Conv2d(out_nc, out_nc, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # (B, in, H, W) -> (B, out, H/2, W/2)
        x = self.conv_0(lrelu(self.norm_0(x, z)))
        return self.conv_1(lrelu(self.norm_1(x, z)))


class ADAINDecoderBlock(nn.Module):
    """Upsampling residual block: transposed conv 3/2/1/op1 on both the main path and the shortcut."""

    def __init__(self, in_nc: int, out_nc: int, *, descriptor_nc: int) -> None:
        super().__init__()
        hidden_nc = out_nc
        self.conv_0 = nn.Conv2d(in_nc, hidden_nc, kernel_size=3, stride=1, padding=1)
        self.conv_1 = nn.ConvTranspose2d(
            hidden_nc, out_nc, kernel_size=3, stride=2, padding=1, output_padding=1
        )
        self.norm_0 = AdaIN(in_nc, descriptor_nc=descriptor_nc)
        self.norm_1 = AdaIN(hidden_nc, descriptor_nc=descriptor_nc)
        self.conv_s = nn.ConvTranspose2d(in_nc, out_nc, kernel_size=3, stride=2, padding=1, output_padding=1)
        self.norm_s = AdaIN(in_nc, descriptor_nc=descriptor_nc)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # (B, in, H, W) -> (B, out, 2H, 2W)
        shortcut = self.conv_s(lrelu(self.norm_s(x, z)))
        main = self.conv_0(lrelu(self.norm_0(x, z)))
        main = self.conv_1(lrelu(self.norm_1(main, z)))
        return shortcut + main


class ADAINEncoder(nn.Module):
    def __init__(self, *, image_nc: int, base_nc: int, max_nc: int, layers: int, descriptor_nc: int) -> None:
        super().__init__()
        self.layers = layers
        self.input_layer = nn.Conv2d(image_nc, base_nc, kernel_size=7, stride=1, padding=3)
        for i in range(layers):
            block = ADAINEncoderBlock(
                channel_width(base_nc, i, max_nc),
                channel_width(base_nc, i + 1, max_nc),
                descriptor_nc=descriptor_nc,
            )
            setattr(self, f"encoder{i}", block)

    def forward(self, stem: torch.Tensor, z: torch.Tensor) -> list[torch.Tensor]:
        """``stem`` = input_layer(source image), which depends on the source only (cacheable).

        Returns [stem (base, H), encoder0 out (H/2), ..., encoder{L-1} out (H/2**L)].
        """
        out = stem
        features = [out]
        for i in range(self.layers):
            out = getattr(self, f"encoder{i}")(out, z)
            features.append(out)
        return features


class ADAINDecoder(nn.Module):
    def __init__(
        self, *, base_nc: int, max_nc: int, encoder_layers: int, decoder_layers: int, descriptor_nc: int
    ) -> None:
        super().__init__()
        self.levels = list(range(encoder_layers - decoder_layers, encoder_layers))[::-1]  # e.g. 4, 3, 2
        for i in self.levels:
            in_nc = channel_width(base_nc, i + 1, max_nc)
            if i != encoder_layers - 1:
                in_nc *= 2  # concatenated skip
            block = ADAINDecoderBlock(in_nc, channel_width(base_nc, i, max_nc), descriptor_nc=descriptor_nc)
            setattr(self, f"decoder{i}", block)

    def forward(self, features: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        # features: the encoder list; returns (B, 2 * width(level 2), H/4, W/4) for the authors' sizes
        out = features[-1]
        for depth, i in enumerate(self.levels):
            out = getattr(self, f"decoder{i}")(out, z)
            out = torch.cat([out, features[-2 - depth]], dim=1)
        return out


class ADAINHourglass(nn.Module):
    def __init__(
        self,
        *,
        image_nc: int,
        base_nc: int,
        max_nc: int,
        encoder_layers: int,
        decoder_layers: int,
        descriptor_nc: int,
    ) -> None:
        super().__init__()
        self.encoder = ADAINEncoder(
            image_nc=image_nc,
            base_nc=base_nc,
            max_nc=max_nc,
            layers=encoder_layers,
            descriptor_nc=descriptor_nc,
        )
        self.decoder = ADAINDecoder(
            base_nc=base_nc,
            max_nc=max_nc,
            encoder_layers=encoder_layers,
            decoder_layers=decoder_layers,
            descriptor_nc=descriptor_nc,
        )
        self.output_nc = 2 * channel_width(base_nc, encoder_layers - decoder_layers, max_nc)

    def forward(self, stem: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(stem, z), z)


class WarpingNet(nn.Module):
    """Source image + z -> flow field (B, 2, H/4, W/4). The warp itself lives in ``renderer.warp``."""

    def __init__(
        self,
        *,
        image_nc: int = 3,
        descriptor_nc: int = 256,
        base_nc: int = 32,
        max_nc: int = 256,
        encoder_layers: int = 5,
        decoder_layers: int = 3,
    ) -> None:
        super().__init__()
        self.hourglass = ADAINHourglass(
            image_nc=image_nc,
            base_nc=base_nc,
            max_nc=max_nc,
            encoder_layers=encoder_layers,
            decoder_layers=decoder_layers,
            descriptor_nc=descriptor_nc,
        )
        out_nc = self.hourglass.output_nc
        self.flow_out = nn.Sequential(
            LayerNorm2d(out_nc), LReLU(), nn.Conv2d(out_nc, 2, kernel_size=7, stride=1, padding=3)
        )

    def stem(self, source: torch.Tensor) -> torch.Tensor:
        """The part that depends on the source image only: (B, 3, H, W) -> (B, base, H, W)."""
        return self.hourglass.encoder.input_layer(source)

    def flow(self, stem: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Flow field (B, 2, H/4, W/4) in flow-grid pixels; channel 0 = x (columns), 1 = y (rows)."""
        return self.flow_out(self.hourglass(stem, z))
