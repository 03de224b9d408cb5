"""FaceGenerator: the authors' generator with their exact parameter names (304 keys for the release).

``forward(source, window, stage)`` mirrors the authors' signature and outputs; renderer backends call
the sub-steps directly so that source-only work is cached (see ``renderer.torch_backend``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..warp import WarpFn, torch_warp
from .config import GeneratorConfig
from .editing import EditingNet, FineADAINResBlock2d, UpBlock2d
from .layers import LayerNorm2d
from .mapping import MappingNet
from .warping import WarpingNet


class FaceGenerator(nn.Module):
    """Mapping net -> z; warping net -> flow at 1/4 resolution -> warp; editing net -> final image."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or GeneratorConfig()
        self.mapping_net = MappingNet(
            coeff_nc=cfg.coeff_nc, descriptor_nc=cfg.descriptor_nc, layers=cfg.mapping_layers
        )
        self.warpping_net = WarpingNet(  # (sic) the authors' spelling is part of every key
            image_nc=cfg.image_nc,
            descriptor_nc=cfg.descriptor_nc,
            base_nc=cfg.warp_base_nc,
            max_nc=cfg.max_nc,
            encoder_layers=cfg.warp_encoder_layers,
            decoder_layers=cfg.warp_decoder_layers,
        )
        self.editing_net = EditingNet(
            image_nc=cfg.image_nc,
            descriptor_nc=cfg.descriptor_nc,
            base_nc=cfg.edit_base_nc,
            max_nc=cfg.max_nc,
            layers=cfg.edit_layers,
            res_blocks=cfg.edit_res_blocks,
        )

    def forward(
        self,
        source: torch.Tensor,
        window: torch.Tensor,
        stage: str | None = None,
        *,
        warp: WarpFn = torch_warp,
    ) -> dict[str, torch.Tensor]:
        """source (B, 3, H, W) in [-1, 1]; window (B, 73, 2k+1) -> dict like the authors' forward.

        stage ``"warp"``: {flow_field (B, 2, H/4, W/4), warp_image (B, 3, H, W)}; any other stage adds
        fake_image (B, 3, H, W).
        """
        z = self.mapping_net(window)  # (B, 256, 1)
        flow = self.warpping_net.flow(self.warpping_net.stem(source), z)
        out = {"flow_field": flow, "warp_image": warp(source, flow)}
        if stage != "warp":
            out["fake_image"] = self.editing_net(source, out["warp_image"], z)
        return out


def set_reference_ops(model: nn.Module, enabled: bool) -> None:
    """Run exactly the authors' operations (bit-exact results, reference timings): compute the editing
    net's dead branch, upsample before the up blocks' convs, and use PyTorch's layer_norm with the
    expanded affine (on CUDA too). Off (the default), the same function runs faster within ~1e-6."""
    for module in model.modules():
        if isinstance(module, FineADAINResBlock2d):
            module.compute_dead_branch = enabled
        if isinstance(module, LayerNorm2d):
            module.cuda_grid_reduction = not enabled
            module.separate_affine = not enabled
        if isinstance(module, UpBlock2d):
            module.form = "direct" if enabled else "phases"


@contextmanager
def upsample_form(model: nn.Module, form: str) -> Iterator[None]:
    """Temporarily compute the up blocks in ``form`` (e.g. "transposed" for a graph export); blocks in
    the authors' "direct" form (reference ops) stay as they are."""
    blocks = [m for m in model.modules() if isinstance(m, UpBlock2d) and m.form != "direct"]
    previous = [block.form for block in blocks]
    for block in blocks:
        block.form = form
    try:
        yield
    finally:
        for block, old in zip(blocks, previous, strict=True):
            block.form = old


def init_weights(model: nn.Module, *, generator: torch.Generator | None = None, std: float = 0.02) -> None:
    """The authors' initialisation: Conv/Linear weights ~ N(0, std), biases 0; norms keep 1/0."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv1d | nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                module.weight.normal_(0.0, std, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
