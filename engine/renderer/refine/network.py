"""The editing network of the ``neural`` renderer: it turns the mesh renderer's frame into a real-looking
one (PIRenderer's editing net, section 3.3 of the paper, re-aimed at an analytic warp).

The mesh renderer's warp is exact geometry from landmarks and generalises to any face; what a warp
cannot make (the inside of an opening mouth, teeth and lips, closing eyelids) is left to this
network. It sees the mesh frame, the source portrait (whose teeth and skin it may copy) and the
motion row, and predicts a correction added to the mesh frame:

    frame = clamp(mesh + mask * Refiner(mesh, source, motion), -1, 1)

where ``mask`` (soft, 0..1) covers the regions it was trained for, the mouth (and the eyes, for
checkpoints trained so; ``crop.region_mask``): everywhere else the
mesh frame's exact geometry and sharp skin stay as they are. (Trained without the mask, on pixel
losses, the network learned to blur the whole face wherever the warp and the real frame disagreed:
a higher PSNR, a worse picture.)

Shape: a U-Net (``levels`` stride-2 stages, skip connections), every stage modulated by the motion
through AdaIN-style feature modulation: a small MLP maps the (17,) open-space row to a per-channel
scale and shift (``x * (1 + gamma) + beta``). Unlike PIRenderer's AdaIN it does not normalise the
features first: the network is fully convolutional and local, so it trains on crops and runs on
whole frames alike. The last convolution starts at zero: an untrained network returns the mesh
frame unchanged. Causal by construction: one motion row, the current frame's.

Shapes: mesh, source (B, 3, H, W) in [-1, 1] with H, W multiples of ``2 ** levels``; motion (B, 17)
-> frame (B, 3, H, W) in [-1, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import CheckpointError


@dataclass(frozen=True)
class RefinerConfig:
    """Sizes of the editing network.

    Attributes:
        motion_nc: numbers per motion row (17: the open space).
        base_nc: channels of the full-resolution stage; stage ``i`` has ``min(base_nc * 2**i, max_nc)``.
        max_nc: channel cap.
        levels: stride-2 stages (the frame side must be a multiple of ``2 ** levels``).
        res_blocks: modulated residual blocks at the lowest resolution.
        hidden_nc: width of the motion MLP.
    """

    motion_nc: int = 17
    base_nc: int = 16
    max_nc: int = 64
    levels: int = 3
    res_blocks: int = 2
    hidden_nc: int = 64

    def __post_init__(self) -> None:
        for f in fields(self):
            if int(getattr(self, f.name)) <= 0:
                raise CheckpointError(f"refiner config: {f.name} must be positive")

    def channels(self, level: int) -> int:
        return min(self.base_nc * 2**level, self.max_nc)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RefinerConfig:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise CheckpointError(f"refiner config: unknown field(s) {', '.join(unknown)}")
        return cls(**{k: int(v) for k, v in data.items()})


class Modulation(nn.Module):
    """Per-channel scale and shift of a feature map from the motion code: x * (1 + gamma) + beta."""

    def __init__(self, code_nc: int, channels: int) -> None:
        super().__init__()
        self.affine = nn.Linear(code_nc, 2 * channels)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(code)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + gamma) + beta


class ModulatedConv(nn.Module):
    """3x3 conv (stride 1 or 2) -> modulation -> LeakyReLU(0.2)."""

    def __init__(self, in_nc: int, out_nc: int, code_nc: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_nc, out_nc, 3, stride=stride, padding=1)
        self.mod = Modulation(code_nc, out_nc)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.mod(self.conv(x), code), 0.2)


class ResBlock(nn.Module):
    """x + conv(mod(conv(x))): the lowest-resolution stage."""

    def __init__(self, channels: int, code_nc: int) -> None:
        super().__init__()
        self.first = ModulatedConv(channels, channels, code_nc)
        self.second = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return x + self.second(self.first(x, code))


class Refiner(nn.Module):
    """(mesh, source, motion) -> frame (module docstring)."""

    def __init__(self, config: RefinerConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or RefinerConfig()
        code = c.hidden_nc
        self.motion_mlp = nn.Sequential(
            nn.Linear(c.motion_nc, code), nn.LeakyReLU(0.2), nn.Linear(code, code), nn.LeakyReLU(0.2)
        )
        self.stem = ModulatedConv(6, c.channels(0), code)
        self.down = nn.ModuleList(
            ModulatedConv(c.channels(i), c.channels(i + 1), code, stride=2) for i in range(c.levels)
        )
        self.middle = nn.ModuleList(ResBlock(c.channels(c.levels), code) for _ in range(c.res_blocks))
        self.up = nn.ModuleList(
            ModulatedConv(c.channels(i + 1) + c.channels(i), c.channels(i), code)
            for i in reversed(range(c.levels))
        )
        self.out = nn.Conv2d(c.channels(0), 3, 3, padding=1)
        if self.out.bias is None:
            raise RuntimeError("the refiner's output convolution must have a bias")
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def multiple(self) -> int:
        """Frame sides must be multiples of this."""
        return 2**self.config.levels

    def forward(
        self, mesh: torch.Tensor, source: torch.Tensor, motion: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """mesh, source (B, 3, S, S) in [-1, 1]; motion (B, 17); mask (B, 1, S, S) in [0, 1] or None
        (the whole box) -> (B, 3, S, S) in [-1, 1]."""
        code = self.motion_mlp(motion)
        x = self.stem(torch.cat([mesh, source], dim=1), code)
        skips = [x]
        for stage in self.down:
            x = stage(x, code)
            skips.append(x)
        skips.pop()
        for block in self.middle:
            x = block(x, code)
        for stage in self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = stage(torch.cat([x, skips.pop()], dim=1), code)
        residual = self.out(x)
        if mask is not None:
            residual = residual * mask
        return (mesh + residual).clamp(-1.0, 1.0)


__all__ = ["Modulation", "Refiner", "RefinerConfig"]
