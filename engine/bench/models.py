"""The model and inputs of ``pirender bench``: where the weights come from, the portrait, the motion
windows, the reference and the renderers under test, and their parameter and FLOP counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..api import build_renderer, default_portrait
from ..errors import PirenderError
from ..image import SourceImage, load_source_image
from ..motion.limits import limits_for
from ..motion.space import AUTHORS_SPACE, MotionSpace
from ..renderer.base import Renderer
from ..renderer.checkpoint import (
    AUTHORS_IMAGE_SIZE_PX,
    CheckpointInfo,
    build_generator,
    random_generator,
    read_checkpoint,
)
from ..renderer.pirender.config import GeneratorConfig
from ..renderer.pirender.generator import FaceGenerator, set_reference_ops
from ..renderer.torch_backend import TorchRenderer

SEED = 0


@dataclass
class ModelSource:
    """Where the weights come from: a fresh generator per call of :meth:`make`."""

    description: str
    config: GeneratorConfig
    space: MotionSpace
    image_size_px: int
    info: CheckpointInfo | None = None

    def make(self) -> FaceGenerator:
        if self.info is not None:
            return build_generator(self.info)
        return random_generator(self.config, seed=SEED)


def model_source(checkpoint: Path | None) -> ModelSource:
    if checkpoint is None:
        return ModelSource(
            description=f"random weights (random_generator(seed={SEED}), the authors' initialisation)",
            config=GeneratorConfig(),
            space=AUTHORS_SPACE,
            image_size_px=AUTHORS_IMAGE_SIZE_PX,
        )
    info = read_checkpoint(checkpoint)
    return ModelSource(
        description=f"checkpoint {info.path} ({info.kind}, {info.dict_key or 'bare state dict'})",
        config=info.config,
        space=info.space,
        image_size_px=info.image_size_px,
        info=info,
    )


def source_image(size_px: int, path: Path | None = None) -> tuple[SourceImage, str]:
    """The portrait at ``path``; without one the embedded default portrait when matplotlib is
    installed, else a deterministic random image. Returns it with the words that say which it is.

    Raises:
        PirenderError: ``path`` is not an image file that can be read.
    """
    if path is not None:
        return load_source_image(path, size_px=size_px), str(path)
    try:
        portrait = default_portrait()
    except PirenderError:
        rgb = np.random.default_rng(SEED).integers(0, 256, size=(size_px, size_px, 3), dtype=np.uint8)
        text = f"random uint8 image (numpy seed {SEED}; no default portrait: matplotlib is not installed)"
        return load_source_image(rgb, size_px=size_px), text
    return load_source_image(portrait, size_px=size_px), f"the default portrait ({portrait})"


def make_windows(batch: int, space: MotionSpace, frames: int, device: torch.device) -> torch.Tensor:
    """(batch, width, frames) float32 standard normal, fixed seed (batch b is a prefix of batch b+1),
    clamped into each slot's identity range (``motion.limits``) where the space has one: motion every
    renderer takes unchanged, so the reference and the renderers see the same numbers."""
    generator = torch.Generator().manual_seed(SEED)
    windows = torch.randn(batch, space.width, frames, generator=generator)
    limits = limits_for(space)
    if limits is not None:
        knee_low, knee_high = (torch.as_tensor(r, dtype=torch.float32)[:, None] for r in limits.table[1:3])
        windows = torch.maximum(torch.minimum(windows, knee_high), knee_low)
    return windows.to(device)


def make_reference(models: ModelSource, device: torch.device) -> FaceGenerator:
    """The authors' eager fp32 model: same weights, dead branch computed."""
    reference = models.make().to(device)
    set_reference_ops(reference, True)
    return reference


def make_renderer(
    models: ModelSource, precision: str, device: torch.device, *, backend: str = "torch", mode: str = "full"
) -> Renderer:
    """One backend's renderer of the same weights (raises PirenderError where it cannot run);
    ``compiled`` is the torch backend with torch.compile."""
    return build_renderer(
        models.make(),
        space=models.space,
        image_size_px=models.image_size_px,
        backend="torch" if backend == "compiled" else backend,
        device=device,
        precision=precision,
        mode=mode,
        compile=backend == "compiled",
    )


def count_flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


@dataclass
class ModelFacts:
    parameters: int  # state_dict elements
    gflops_full_ours: float  # per frame through the renderer (stem cached, dead branch skipped)
    gflops_full_eager_skipped: float  # eager forward, dead branch skipped (includes the source stem)
    gflops_full_reference: float  # eager forward, dead branch computed: the authors' cost
    gflops_warp_ours: float
    gflops_warp_reference: float
    gflops_prepare: float  # once per source: the hourglass stem


def model_facts(
    models: ModelSource,
    image: SourceImage,
    window: torch.Tensor,
    source32: torch.Tensor,
    device: torch.device,
) -> ModelFacts:
    """Parameter count and FLOPs per frame (batch 1, fp32; conv/matmul only, 2 per MAC)."""
    reference = make_reference(models, device)
    full_reference = count_flops(lambda: reference(source32, window))
    warp_reference = count_flops(lambda: reference(source32, window, "warp"))
    set_reference_ops(reference, False)
    full_skipped = count_flops(lambda: reference(source32, window))
    renderer = make_renderer(models, "fp32", device)
    assert isinstance(renderer, TorchRenderer)
    prepare = count_flops(lambda: renderer.prepare(image))
    source = renderer.prepare(image)
    full_ours = count_flops(lambda: renderer.render(window, source=source, mode="full"))
    warp_ours = count_flops(lambda: renderer.render(window, source=source, mode="warp"))
    giga = 1e-9
    return ModelFacts(
        parameters=sum(int(t.numel()) for t in reference.state_dict().values()),
        gflops_full_ours=full_ours * giga,
        gflops_full_eager_skipped=full_skipped * giga,
        gflops_full_reference=full_reference * giga,
        gflops_warp_ours=warp_ours * giga,
        gflops_warp_reference=warp_reference * giga,
        gflops_prepare=prepare * giga,
    )
