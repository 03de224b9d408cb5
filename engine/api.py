"""The public Python API for embedding the engine.

Example::

    from pirender.engine import load_motion, load_renderer, load_source_image, sequence_windows

    renderer = load_renderer("result/face", device="cpu", precision="fp32")  # or load_renderer() for mesh
    portrait = renderer.prepare(load_source_image("portrait.jpg"))
    motion = load_motion("coeffs.mat")
    renderer.check_motion(motion)
    windows = sequence_windows(motion.values, motion.space)     # (frames, 73, 27)
    frames = renderer.render(windows[:8], source=portrait).frame  # (8, 3, 256, 256) in [-1, 1]
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import PirenderError
from .motion.space import MotionSpace
from .renderer.base import Precision, Renderer, RenderMode
from .renderer.checkpoint import CheckpointInfo, build_generator, read_checkpoint
from .renderer.mesh.renderer import MeshRenderer
from .renderer.pirender.generator import FaceGenerator
from .renderer.torch_backend import TorchRenderer

#: Renderer backends by name: ``mesh`` (weight-free, the default without a checkpoint), ``neural``
#: (the mesh warp + an editing network trained on real people; default weights shipped, or a refiner
#: checkpoint), and PIRenderer from a checkpoint through ``torch`` (the default with one), ``onnx``,
#: ``openvino`` or ``tensorrt``.
BACKENDS = ("mesh", "neural", "torch", "onnx", "openvino", "tensorrt")
#: The renderers of the open motion space (no checkpoint needed), and the one the commands use by
#: default (``--renderer``): chosen by the held-out numbers (README, benchmarks/RESULTS.md).
OPEN_RENDERERS = ("mesh", "neural")
DEFAULT_OPEN_RENDERER = "neural"
#: ``pirender serve``'s default: the server renders every stream plus the audio flow, encoding and
#: signaling on the same CPU; on a 2-core CPU the neural renderer's talk mode ran at ~20 frames/s with
#: dropped frames and a degraded returned voice (benchmarks/RESULTS.md), the mesh one at 25.
DEFAULT_SERVER_RENDERER = "mesh"


def default_portrait() -> Path:
    """The embedded default portrait of ``demo`` and ``serve``: Grace Hopper, from matplotlib's sample
    data (public domain).

    Raises:
        PirenderError: matplotlib is not installed (``pip install 'pirender-live[demo]'``).
    """
    try:
        from matplotlib import cbook
    except ImportError:
        raise PirenderError(
            "the default portrait ships with matplotlib: pip install 'pirender-live[demo]' or give a "
            "portrait (--source)"
        ) from None
    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def open_space_renderer(
    name: str = DEFAULT_OPEN_RENDERER,
    *,
    image_size_px: int = 256,
    mode: RenderMode | str = RenderMode.FULL,
    device: str = "cpu",
) -> MeshRenderer:
    """The ``mesh`` or ``neural`` renderer (a :class:`MeshRenderer`: same preparation and rest row);
    ``device``: where the neural renderer's editing network runs (``cpu``, ``cuda``, ``cuda:1``; the
    mesh renderer runs on the CPU).

    Raises:
        PirenderError: an unknown name, or a GPU asked of the mesh renderer.
    """
    if name not in OPEN_RENDERERS:
        raise PirenderError(f"unknown renderer {name!r} (open-space renderers: {', '.join(OPEN_RENDERERS)})")
    if name == "mesh" and device != "cpu":
        raise PirenderError(f"the mesh renderer runs on the CPU (device {device!r} is for the neural one)")
    renderer = load_renderer(backend=name, image_size_px=image_size_px, mode=mode, device=device)
    assert isinstance(renderer, MeshRenderer)
    return renderer


def load_renderer(
    checkpoint: str | Path | CheckpointInfo | None = None,
    *,
    backend: str | None = None,
    device: str | torch.device = "cpu",
    precision: Precision | str = Precision.FP32,
    mode: RenderMode | str = RenderMode.FULL,
    warp: str = "torch",
    image_size_px: int | None = None,
    compile: bool = False,
    runtime: str = "torch",
) -> Renderer:
    """A renderer: PIRenderer (``torch``) from a local checkpoint, or the weight-free ``mesh`` renderer.

    ``backend`` defaults to ``torch`` when a checkpoint is given and ``mesh`` otherwise; ``onnx``,
    ``openvino`` and ``tensorrt`` run the same weights through an ONNX export (see ``renderer/``).
    ``compile`` (torch backend) compiles the per-frame path.
    ``runtime`` (``neural`` only) runs its editing network in ``torch``, ``compiled``, ``onnx``,
    ``openvino`` or ``tensorrt`` (``renderer.refine.runtime``), at ``precision``.
    ``image_size_px`` applies to the mesh renderer (256 or 512; PIRenderer's size is its checkpoint's).
    """
    chosen = backend or ("torch" if checkpoint is not None else "mesh")
    if chosen not in BACKENDS:
        raise PirenderError(f"unknown renderer backend {chosen!r} (available: {', '.join(BACKENDS)})")
    try:
        chosen_precision = Precision(precision)
        chosen_mode = RenderMode(mode)
    except ValueError as exc:
        raise PirenderError(str(exc)) from None
    if runtime != "torch" and chosen != "neural":
        raise PirenderError(f"runtime {runtime!r} is for the neural renderer (PIRenderer: pick a backend)")
    if chosen == "mesh":
        if checkpoint is not None:
            raise PirenderError("the mesh renderer is weight-free: it takes no checkpoint")
        return MeshRenderer(image_size_px=image_size_px or 256, mode=chosen_mode, warp=warp)
    if chosen == "neural":
        from .renderer.refine.renderer import DEFAULT_WEIGHTS, NeuralRenderer, read_refiner

        weights = DEFAULT_WEIGHTS if checkpoint is None else checkpoint
        if isinstance(weights, CheckpointInfo):
            raise PirenderError("the neural renderer takes a refiner checkpoint, not a PIRenderer one")
        return NeuralRenderer(
            read_refiner(weights),
            image_size_px=image_size_px or 256,
            mode=chosen_mode,
            warp=warp,
            device=device,
            runtime="compiled" if compile and runtime == "torch" else runtime,
            precision=chosen_precision,
        )
    if checkpoint is None:
        raise PirenderError(f"the {chosen} (PIRenderer) backend needs a checkpoint")
    info = checkpoint if isinstance(checkpoint, CheckpointInfo) else read_checkpoint(checkpoint)
    if image_size_px is not None and image_size_px != info.image_size_px:
        raise PirenderError(
            f"{info.path}: this checkpoint renders {info.image_size_px} px, not {image_size_px}"
        )
    return build_renderer(
        build_generator(info),
        space=info.space,
        image_size_px=info.image_size_px,
        backend=chosen,
        device=device,
        precision=chosen_precision,
        mode=chosen_mode,
        warp=warp,
        compile=compile,
    )


def build_renderer(
    generator: FaceGenerator,
    *,
    space: MotionSpace,
    image_size_px: int,
    backend: str = "torch",
    device: str | torch.device = "cpu",
    precision: Precision | str = Precision.FP32,
    mode: RenderMode | str = RenderMode.FULL,
    warp: str = "torch",
    compile: bool = False,
) -> Renderer:
    """PIRenderer of ``generator`` (which it takes over) through the named backend: ``torch``
    (``compile`` for torch.compile), ``onnx``, ``openvino`` (CPU) or ``tensorrt`` (CUDA)."""
    chosen_precision, chosen_mode = Precision(precision), RenderMode(mode)
    if backend == "onnx":
        from .renderer.onnx_backend import OnnxRenderer

        if chosen_precision is not Precision.FP32:
            raise PirenderError("the onnx backend runs fp32 (reduced precision: openvino, torch or tensorrt)")
        return OnnxRenderer(
            generator, space=space, image_size_px=image_size_px, mode=chosen_mode, device=str(device)
        )
    if backend == "openvino":
        from .renderer.openvino_backend import OpenVinoRenderer

        if str(device).startswith("cuda"):
            raise PirenderError("the openvino backend runs on the CPU")
        return OpenVinoRenderer(
            generator, space=space, image_size_px=image_size_px, mode=chosen_mode, precision=chosen_precision
        )
    if backend == "tensorrt":
        from .renderer.tensorrt_backend import TensorRTRenderer

        return TensorRTRenderer(generator, space=space, image_size_px=image_size_px, mode=chosen_mode)
    if backend != "torch":
        raise PirenderError(f"unknown PIRenderer backend {backend!r} (torch, onnx, openvino, tensorrt)")
    return TorchRenderer(
        generator,
        space=space,
        image_size_px=image_size_px,
        device=device,
        precision=chosen_precision,
        mode=chosen_mode,
        warp=warp,
        compile=compile,
    )
