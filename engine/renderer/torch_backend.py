"""The ``torch`` renderer backend: eager PyTorch on CPU or CUDA, fp32 / fp16 / bf16.

Per frame it runs mapping net -> warping net -> warp -> (full mode) editing net. Cached per source:
the source tensor and the hourglass's input conv (it does not depend on motion). The dead branch of
the editing res blocks is skipped (exact). Reduced precision casts the convolutions' weights; norm
statistics and the warp always run in float32 (see ``pirender.layers`` and ``renderer.warp``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import PirenderError
from ..image import SourceImage, image_to_tensor
from ..motion.space import MotionSpace
from .base import Precision, PreparedSource, Renderer, RenderMode, RenderOutput, batch_bucket
from .pirender.generator import FaceGenerator, set_reference_ops
from .warp import base_grid, get_warp


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named device (checked)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise PirenderError(f"unknown device {device!r} (use cpu, cuda, cuda:N or auto)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise PirenderError("device 'cuda' asked for, but this torch build sees no CUDA GPU")
    return resolved


@contextmanager
def _cudnn_tf32(allowed: bool) -> Iterator[None]:
    """Scope cuDNN's TF32 switch to one call (PyTorch's default is on, which is not fp32-faithful).

    The switch itself is process-wide: renderers of different precisions must not render at the same
    time on different threads (the engine renders on one thread per device).
    """
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous


@dataclass
class TorchSource(PreparedSource):
    """A portrait prepared for PIRenderer in torch: ``source32`` (1, 3, H, W) float32 in [-1, 1] (the
    warp's input), ``source`` the same in the model's dtype (the editing net's), ``stem`` (1, C, H, W)
    the warping net's stem features of it."""

    source32: torch.Tensor
    source: torch.Tensor
    stem: torch.Tensor


class TorchRenderer(Renderer):
    """PIRenderer in eager PyTorch. Takes ownership of ``generator`` (moved, cast, switched to eval).

    The mapping net stays in float32 in every precision: it is tiny (0.016 GFLOPs) and its input,
    the raw motion numbers (crop translations of ~128 px among them), would lose digits in bf16.
    Frames are returned in float32.
    """

    name = "torch"

    def __init__(
        self,
        generator: FaceGenerator,
        *,
        space: MotionSpace,
        image_size_px: int,
        device: str | torch.device = "cpu",
        precision: Precision | str = Precision.FP32,
        mode: RenderMode | str = RenderMode.FULL,
        warp: str = "torch",
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.space = space
        self.image_size_px = image_size_px
        self.device = resolve_device(device)
        self.precision = Precision(precision)
        self.mode = RenderMode(mode)
        self.dtype = self.precision.dtype
        self.min_window_frames = generator.mapping_net.min_frames
        self.warp = get_warp(warp)
        set_reference_ops(generator, False)
        self.model = generator.eval().requires_grad_(False).to(device=self.device, dtype=self.dtype)
        self.model.mapping_net.float()
        flow_px = image_size_px // generator.config.flow_downsample
        self._flow_grid = base_grid(flow_px, flow_px, device=self.device)  # (h, w, 2), reused per frame
        #: torch.compile of the per-frame path (static shapes: one graph per batch size; on CUDA with
        #: CUDA graphs, "reduce-overhead"; on CPU with frozen weights for oneDNN's fused convolutions)
        self.compiled = compile
        self._compiled_frames: dict[RenderMode, Any] = {}
        if compile:
            compile_mode = "reduce-overhead" if self.device.type == "cuda" else None  # None: the default
            for each in RenderMode:
                self._compiled_frames[each] = torch.compile(
                    _FramePath(self, each), dynamic=False, fullgraph=False, mode=compile_mode
                )

    def _prepare(self, image: SourceImage) -> PreparedSource:
        with _cudnn_tf32(self.precision is Precision.TF32), torch.inference_mode():
            return self._prepare_source(image)

    def _render(
        self, windows: np.ndarray | torch.Tensor, source: PreparedSource, mode: RenderMode, extras: bool
    ) -> RenderOutput:
        prepared = self.prepared_as(source, TorchSource)
        window = torch.as_tensor(windows).to(device=self.device, dtype=torch.float32)  # (B, width, T)
        batch = window.shape[0]
        if self.compiled:  # static shapes: batches padded to a power of two (one graph per bucket)
            bucket = batch_bucket(batch)
            window = (
                torch.cat([window, window[-1:].expand(bucket - batch, -1, -1)]) if bucket > batch else window
            )
        stem, source32, source_pixels = (
            t.expand(window.shape[0], -1, -1, -1) for t in (prepared.stem, prepared.source32, prepared.source)
        )
        with _cudnn_tf32(self.precision is Precision.TF32):
            if self.compiled:
                with torch.no_grad(), _inductor_freezing():
                    frame, warped, flow = self._compiled_frames[mode](window, stem, source32, source_pixels)
                # a CUDA graph's outputs are overwritten by its next replay: keep copies
                copy = self.device.type == "cuda" or window.shape[0] > batch
                if copy:
                    frame, warped, flow = (t[:batch].clone() for t in (frame, warped, flow))
            else:
                with torch.inference_mode():
                    frame, warped, flow = self.frame_path(window, stem, source32, source_pixels, mode)
        return RenderOutput(frame=frame, warped=warped if extras else None, flow=flow if extras else None)

    def frame_path(
        self,
        window: torch.Tensor,
        stem: torch.Tensor,
        source32: torch.Tensor,
        source: torch.Tensor,
        mode: RenderMode,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The per-frame path on batched inputs: (frame, warped, flow); what ``compile`` compiles."""
        z = self.model.mapping_net(window).to(self.dtype)  # (B, 256, 1)
        flow = self.model.warpping_net.flow(stem, z)  # (B, 2, H/4, W/4)
        warped = self.warp(source32, flow, grid=self._flow_grid)  # (B, 3, H, W), float32
        if mode is RenderMode.WARP:
            return warped, warped, flow
        frame = self.model.editing_net(source, warped.to(self.dtype), z).float()  # (B, 3, H, W)
        return frame, warped, flow

    def _prepare_source(self, image: SourceImage) -> TorchSource:
        source32 = image_to_tensor(image.rgb, device=self.device)  # (1, 3, H, W) in [-1, 1]
        source = source32.to(self.dtype)
        stem = self.model.warpping_net.stem(source)  # (1, base, H, W)
        return TorchSource(image=image, source32=source32, source=source, stem=stem)


class _FramePath(torch.nn.Module):
    """``TorchRenderer.frame_path`` for one mode as a module (what torch.compile wraps)."""

    def __init__(self, renderer: TorchRenderer, mode: RenderMode) -> None:
        super().__init__()
        self.model = renderer.model  # registered: compile sees the weights as module parameters
        self._renderer = [renderer]  # not a submodule
        self.mode = mode

    def forward(
        self, window: torch.Tensor, stem: torch.Tensor, source32: torch.Tensor, source: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._renderer[0].frame_path(window, stem, source32, source, self.mode)


@contextmanager
def _inductor_freezing() -> Iterator[None]:
    """Compile with frozen weights (constant-folded, prepacked for oneDNN); the setting is read when
    a graph is compiled, i.e. on the first call of each shape."""
    import torch._inductor.config as inductor_config

    with inductor_config.patch(freezing=True):
        yield
