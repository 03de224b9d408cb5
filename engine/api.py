"""The public Python API for embedding the engine.

Example::

    from pirender.engine import load_motion, load_renderer, load_source_image, sequence_windows

    renderer = load_renderer("result/face", device="cpu", precision="fp32")
    renderer.prepare(load_source_image("portrait.jpg"))
    motion = load_motion("coeffs.mat")
    renderer.check_motion(motion)
    windows = sequence_windows(motion.values, motion.space)   # (frames, 73, 27)
    frames = renderer.render(windows[:8]).frame                 # (8, 3, 256, 256) in [-1, 1]
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import PirenderError
from .renderer.base import Precision, Renderer, RenderMode
from .renderer.checkpoint import CheckpointInfo, build_generator, read_checkpoint
from .renderer.torch_backend import TorchRenderer

#: Renderer backends by name. ``mesh`` (weight-free), ``onnx`` and ``tensorrt`` join in later releases.
BACKENDS = ("torch",)


def load_renderer(
    checkpoint: str | Path | CheckpointInfo,
    *,
    backend: str = "torch",
    device: str | torch.device = "cpu",
    precision: Precision | str = Precision.FP32,
    mode: RenderMode | str = RenderMode.FULL,
    warp: str = "torch",
) -> Renderer:
    """Build a renderer from a local checkpoint (file, experiment folder, or an already read info)."""
    info = checkpoint if isinstance(checkpoint, CheckpointInfo) else read_checkpoint(checkpoint)
    if backend != "torch":
        raise PirenderError(f"unknown renderer backend {backend!r} (available: {', '.join(BACKENDS)})")
    try:
        chosen_precision = Precision(precision)
        chosen_mode = RenderMode(mode)
    except ValueError as exc:
        raise PirenderError(str(exc)) from None
    return TorchRenderer(
        build_generator(info),
        space=info.space,
        image_size_px=info.image_size_px,
        device=device,
        precision=chosen_precision,
        mode=chosen_mode,
        warp=warp,
    )
