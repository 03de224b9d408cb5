"""The ``onnx`` backend: PIRenderer's per-frame path exported to ONNX and run with ONNX Runtime.

``export_onnx`` writes source (B, 3, H, W) + window (B, 73, T) -> frame/warped/flow at opset 18 with a
dynamic batch (the torch.export-based exporter; GridSample is a native op since opset 16). Exports are
cached on disk, keyed by the weights' hash, the size, the window length and the mode. ``OnnxRenderer``
runs the graph with ONNX Runtime (CPU, or the CUDA execution provider where installed) behind the same
renderer interface; it is fp32 (reduced precision on GPUs is the TensorRT backend's job).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import PirenderError
from ..image import SourceImage, image_to_tensor
from ..motion.space import MotionSpace
from .base import PreparedSource, Renderer, RenderMode, RenderOutput
from .pirender.generator import FaceGenerator, set_reference_ops, upsample_form

ONNX_OPSET = 18
CACHE_DIR = Path(os.environ.get("PIRENDER_CACHE", Path.home() / ".cache" / "pirender")) / "onnx"


class FramePath(nn.Module):
    """The per-frame path as one graph: (source, window) -> frame, warped, flow (full) or warped, flow."""

    def __init__(self, generator: FaceGenerator, mode: RenderMode) -> None:
        super().__init__()
        self.generator = generator
        self.mode = mode

    def forward(self, source: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.generator(source, window, "warp" if self.mode is RenderMode.WARP else None)
        if self.mode is RenderMode.WARP:
            return out["warp_image"], out["flow_field"]
        return out["fake_image"], out["warp_image"], out["flow_field"]


def weights_hash(model: nn.Module) -> str:
    """sha256 of every parameter and buffer (names, shapes, bytes): the cache key of compiled graphs."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def export_onnx(
    generator: FaceGenerator,
    *,
    image_size_px: int,
    window_frames: int = 27,
    mode: RenderMode | str = RenderMode.FULL,
    path: Path | None = None,
    max_batch: int = 64,
) -> Path:
    """Export (or reuse the cached export of) the per-frame path; returns the .onnx path."""
    chosen = RenderMode(mode)
    generator = generator.eval().float()
    set_reference_ops(generator, False)
    key = f"{weights_hash(generator)}_{image_size_px}px_{window_frames}f_{chosen.value}_opset{ONNX_OPSET}_t"
    target = path or CACHE_DIR / f"pirender_{key}.onnx"
    if target.exists():
        return target
    source = torch.zeros(2, 3, image_size_px, image_size_px)
    window = torch.zeros(2, generator.mapping_net.coeff_nc, window_frames)
    names = ["frame", "warped", "flow"] if chosen is RenderMode.FULL else ["warped", "flow"]
    with upsample_form(generator, "transposed"):  # one ConvTranspose op per up block
        return export_module(
            FramePath(generator, chosen), (source, window), target, ["source", "window"], names, max_batch
        )


def export_module(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    target: Path,
    input_names: list[str],
    output_names: list[str],
    max_batch: int = 64,
) -> Path:
    """Export ``module`` called on ``example`` (every input batched on dim 0) to ``target`` at
    :data:`ONNX_OPSET` with a dynamic batch (1..``max_batch``); returns ``target``.

    Raises:
        PirenderError: the exporter failed (its message).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    # export into a private folder, then move: the graph names its weights file relative to itself
    staging = target.parent / f".staging-{os.getpid()}"
    staging.mkdir(exist_ok=True)
    try:
        torch.onnx.export(
            module,
            example,
            str(staging / target.name),
            input_names=input_names,
            output_names=output_names,
            opset_version=ONNX_OPSET,
            dynamo=True,
            dynamic_shapes=tuple({0: batch} for _ in example),
            verbose=False,
        )
        for produced in staging.iterdir():  # the graph and (large models) its .data file
            produced.replace(target.parent / produced.name)
    except Exception as exc:  # the exporter raises many types; say what failed
        raise PirenderError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    finally:
        for left in staging.iterdir():
            left.unlink()
        staging.rmdir()
    return target


def onnx_session(path: Path, device: str = "cpu", threads: int | None = None) -> Any:
    """An ONNX Runtime session of ``path`` (all graph optimisations; the CUDA execution provider first
    for a ``cuda`` device).

    Raises:
        PirenderError: onnxruntime missing, or no CUDA execution provider for a ``cuda`` device.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise PirenderError("the onnx backend needs onnxruntime: pip install 'pirender-live[onnx]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # no busy-waiting between runs: spinning threads would steal the cores from the rest of the
    # engine (tracking, encoding, torch) between frames
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise PirenderError(
                "onnxruntime here has no CUDA execution provider (pip install onnxruntime-gpu)"
            )
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), options, providers=providers)


def onnx_operators(path: Path) -> set[str]:
    """Operator types used by an ONNX graph (for the TensorRT support check)."""
    import onnx

    return {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}


@dataclass
class ArraySource(PreparedSource):
    """A portrait prepared for an exported graph: ``source`` (1, 3, H, W) float32 in [-1, 1]."""

    source: np.ndarray


class ExportedRenderer(Renderer):
    """What the backends that run the ONNX export share: the export, the source kept as a (1, 3, H, W)
    float32 array, the checks of a call (mode, window length) and the outputs' order."""

    def __init__(
        self,
        generator: FaceGenerator,
        *,
        space: MotionSpace,
        image_size_px: int,
        mode: RenderMode | str,
        window_frames: int,
    ) -> None:
        super().__init__()
        self.space, self.image_size_px, self.mode = space, image_size_px, RenderMode(mode)
        self.min_window_frames = generator.mapping_net.min_frames
        self.window_frames = window_frames
        self.path = export_onnx(
            generator, image_size_px=image_size_px, window_frames=window_frames, mode=mode
        )

    def _prepare(self, image: SourceImage) -> PreparedSource:
        source = image_to_tensor(image.rgb).numpy().astype(np.float32)  # (1, 3, H, W)
        return ArraySource(image=image, source=source)

    def _checked_windows(self, windows: np.ndarray | torch.Tensor, mode: RenderMode) -> np.ndarray:
        """(B, width, T) float32 contiguous, after checking the graph fits the call."""
        if mode is not self.mode:
            raise PirenderError(f"this {self.name} graph was built for mode {self.mode.value!r}")
        window = np.ascontiguousarray(torch.as_tensor(windows).float().numpy())
        if window.shape[2] != self.window_frames:
            raise PirenderError(
                f"this {self.name} graph takes {self.window_frames}-frame windows, got {window.shape[2]}"
            )
        return window

    def _output(self, tensors: list[torch.Tensor], extras: bool) -> RenderOutput:
        """The graph's outputs (frame, warped, flow), or (warped, flow) in warp mode."""
        if self.mode is RenderMode.WARP:
            tensors = [tensors[0], *tensors]
        frame, warped, flow = tensors
        return RenderOutput(frame=frame, warped=warped if extras else None, flow=flow if extras else None)


class OnnxRenderer(ExportedRenderer):
    """PIRenderer through ONNX Runtime; same interface and results (fp32) as the torch backend."""

    name = "onnx"

    def __init__(
        self,
        generator: FaceGenerator,
        *,
        space: MotionSpace,
        image_size_px: int,
        mode: RenderMode | str = RenderMode.FULL,
        window_frames: int = 27,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        super().__init__(
            generator, space=space, image_size_px=image_size_px, mode=mode, window_frames=window_frames
        )
        self.session = onnx_session(self.path, device, threads)

    def _render(
        self, windows: np.ndarray | torch.Tensor, source: PreparedSource, mode: RenderMode, extras: bool
    ) -> RenderOutput:
        window = self._checked_windows(windows, mode)
        one = self.prepared_as(source, ArraySource).source  # (1, 3, H, W)
        images = np.ascontiguousarray(np.broadcast_to(one, (window.shape[0], *one.shape[1:])))
        outputs = self.session.run(None, {"source": images, "window": window})
        return self._output([torch.from_numpy(o) for o in outputs], extras)
