"""Mapping net: motion window (B, 73, 2k+1) -> latent motion descriptor z (B, 256, 1).

Spec section 2.2: an unpadded Conv1d(73 -> 256, k 7), then ``mapping_layers`` residual stages
(LReLU -> Conv1d(256 -> 256, k 3, dilation 3, no padding)) whose skip is the stage input centre-cropped
by 3 frames at each end, then an average over the remaining frames. Windows need >= 25 frames.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import MotionError
from .layers import LReLU

_STAGE_CROP = 3  # frames lost at each end by one dilated k3 conv (dilation 3)


def min_window_frames(layers: int) -> int:
    """Shortest window the mapping net accepts: its receptive field, 7 + 6 per stage (25 for 3)."""
    return 7 + 2 * _STAGE_CROP * layers


class MappingNet(nn.Module):
    def __init__(self, *, coeff_nc: int = 73, descriptor_nc: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.coeff_nc = coeff_nc  # the motion window's channels (B, coeff_nc, T)
        self.layers = layers
        self.first = nn.Sequential(nn.Conv1d(coeff_nc, descriptor_nc, kernel_size=7, padding=0, bias=True))
        for i in range(layers):
            stage = nn.Sequential(
                LReLU(), nn.Conv1d(descriptor_nc, descriptor_nc, kernel_size=3, padding=0, dilation=3)
            )
            setattr(self, f"encoder{i}", stage)
        self.pooling = nn.AdaptiveAvgPool1d(1)
        self.min_frames = min_window_frames(layers)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        # window: (B, coeff_nc, T) with T >= min_frames -> z: (B, descriptor_nc, 1)
        if window.shape[-1] < self.min_frames:
            raise MotionError(
                f"motion window has {window.shape[-1]} frames; the mapping net needs >= {self.min_frames}"
            )
        out = self.first(window)  # (B, 256, T - 6)
        for i in range(self.layers):
            stage: nn.Module = getattr(self, f"encoder{i}")
            out = stage(out) + out[:, :, _STAGE_CROP:-_STAGE_CROP]  # (B, 256, length - 6)
        return self.pooling(out)  # (B, 256, 1)
