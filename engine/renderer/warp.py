"""The warp: the only place that samples an image with a flow field.

The authors' exact convention (``pirender-spec.md`` section 4.2 steps 5-7 and 4.3):

1. the flow (B, 2, h, w) is in pixels of the h x w flow grid, channel 0 = x (columns), 1 = y (rows, down);
   it is normalised as ``2 * (flow_x / (w - 1))`` and ``2 * (flow_y / (h - 1))``;
2. it is added to a corner-aligned base grid (column c -> ``2 * (c / (w - 1)) - 1``), giving an
   *absolute* sampling position per flow-grid cell (a backward warp);
3. that absolute grid (not the flow) is resized to the image size with bilinear,
   ``align_corners=False`` interpolation;
4. the image is sampled with ``grid_sample`` (bilinear, zero padding, ``align_corners=False``).

The mixed conventions mean that zero flow is *not* the identity (edge rows/columns mix with the zero
padding, interior samples drift by up to ~2 px). The released weights were trained with this warp, so
every implementation (this torch reference, the CUDA kernel selected by name later) must match it.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from ..errors import PirenderError


class WarpFn(Protocol):
    """warp(image (B, C, H, W), flow (B, 2, h, w), grid=base_grid(h, w)) -> warped image (B, C, H, W).

    ``grid`` lets a caller pass the flow grid's base coordinates once instead of per frame.
    """

    def __call__(
        self, image: torch.Tensor, flow: torch.Tensor, *, grid: torch.Tensor | None = None
    ) -> torch.Tensor: ...


def base_grid(height: int, width: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """Corner-aligned normalised coordinates (height, width, 2), last dim (x, y), float32.

    Computed from the integer index exactly as the authors do, for bit-exact results.
    """
    xs = torch.arange(width, device=device, dtype=torch.float32)
    ys = torch.arange(height, device=device, dtype=torch.float32)
    xs = 2 * (xs / (width - 1)) - 1
    ys = 2 * (ys / (height - 1)) - 1
    return torch.stack([xs[None, :].expand(height, width), ys[:, None].expand(height, width)], dim=-1)


def flow_to_deformation(flow: torch.Tensor, grid: torch.Tensor | None = None) -> torch.Tensor:
    """Flow (B, 2, h, w) in flow-grid pixels -> absolute sampling grid (B, h, w, 2), float32."""
    _, _, h, w = flow.shape
    flow32 = flow.float()
    if grid is None:
        grid = base_grid(h, w, device=flow.device)
    flow_norm = torch.cat([2 * (flow32[:, :1] / (w - 1)), 2 * (flow32[:, 1:] / (h - 1))], dim=1)
    return grid[None] + flow_norm.permute(0, 2, 3, 1)


def torch_warp(image: torch.Tensor, flow: torch.Tensor, *, grid: torch.Tensor | None = None) -> torch.Tensor:
    """Reference warp: image (B, C, H, W) sampled by flow (B, 2, h, w) -> (B, C, H, W).

    Always computed in float32 (a bf16 sampling grid would misplace samples by whole pixels); the
    result is returned in the image's dtype.
    """
    if flow.shape[1] != 2 or flow.shape[0] != image.shape[0]:
        raise PirenderError(f"warp: flow {tuple(flow.shape)} does not fit image {tuple(image.shape)}")
    _, _, height, width = image.shape
    deformation = flow_to_deformation(flow, grid)  # (B, h, w, 2)
    if deformation.shape[1:3] != (height, width):
        deformation = F.interpolate(
            deformation.permute(0, 3, 1, 2), size=(height, width), mode="bilinear", align_corners=False
        ).permute(0, 2, 3, 1)
    warped = F.grid_sample(
        image.float(), deformation, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return warped.to(image.dtype)


def zero_flow_source_position(index: torch.Tensor | float, image_px: int, flow_px: int) -> torch.Tensor:
    """Closed form of where zero flow samples: source pixel coordinate (pixel k centred at k).

    ``clamp((j + 0.5) * flow_px / image_px - 0.5, 0, flow_px - 1) * image_px / (flow_px - 1) - 0.5``.
    """
    j = torch.as_tensor(index, dtype=torch.float64)
    cell = ((j + 0.5) * flow_px / image_px - 0.5).clamp(0, flow_px - 1)
    return cell * image_px / (flow_px - 1) - 0.5


WARP_NAMES = ("torch", "cupy")


def get_warp(name: str = "torch") -> WarpFn:
    """The warp implementation called ``name``: ``"torch"`` (the reference, any device) or ``"cupy"``
    (the fused CUDA kernel of ``pirender.kernels``; same results within float rounding)."""
    if name == "torch":
        return torch_warp
    if name == "cupy":
        from pirender.kernels.cupy_warp import available, cupy_warp

        missing = available()
        if missing is not None:
            raise PirenderError(f"the cupy warp cannot run here: {missing}")
        return cupy_warp
    raise PirenderError(f"unknown warp {name!r} (available: {', '.join(WARP_NAMES)})")
