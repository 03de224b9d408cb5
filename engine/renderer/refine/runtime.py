"""How the ``neural`` renderer's editing network runs: the speed issue's backends, for this network.

``torch`` (eager; fp32, or fp16 / bf16 under autocast), ``compiled`` (``torch.compile`` of the
network), ``onnx`` (ONNX Runtime, fp32, CPU or CUDA), ``openvino`` (CPU, fp32 or bf16) and
``tensorrt`` (fp16 engine, CUDA; untested on the machines this project is developed on, see
``renderer/tensorrt_backend.py``). The exported graphs (opset 18, dynamic batch) are cached on disk
keyed by the weights' hash and the crop size, like PIRenderer's.

Every runtime is a callable with one contract: mesh, source (B, 3, S, S) in [-1, 1], motion (B, 17),
mask (B, 1, S, S) in [0, 1], torch tensors on the renderer's device -> (B, 3, S, S) float32 in
[-1, 1] on the same device (``network.Refiner.forward``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import torch

from ...errors import PirenderError
from ..base import Precision
from ..onnx_backend import CACHE_DIR, ONNX_OPSET, export_module, onnx_session, weights_hash
from .network import Refiner

#: runtimes by name (module docstring)
RUNTIMES = ("torch", "compiled", "onnx", "openvino", "tensorrt")
_INPUTS = ["mesh", "source", "motion", "mask"]
T = TypeVar("T")


class RefinerRuntime(Protocol):
    """(mesh, source, motion, mask) -> frame (module docstring)."""

    name: str

    def __call__(
        self, mesh: torch.Tensor, source: torch.Tensor, motion: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor: ...


def export_refiner_onnx(net: Refiner, crop_px: int, *, path: Path | None = None, max_batch: int = 64) -> Path:
    """Export (or reuse the cached export of) ``net`` at crops of ``crop_px``; returns the .onnx path.

    Raises:
        PirenderError: the exporter failed.
    """
    net = net.eval().float()
    target = path or CACHE_DIR / f"refiner_{weights_hash(net)}_{crop_px}px_opset{ONNX_OPSET}.onnx"
    if target.exists():
        return target
    # four distinct tensors: the exporter would bind inputs given as one tensor to one graph input
    mesh, source = torch.zeros(2, 3, crop_px, crop_px), torch.zeros(2, 3, crop_px, crop_px)
    example = (mesh, source, torch.zeros(2, net.config.motion_nc), torch.zeros(2, 1, crop_px, crop_px))
    return export_module(net, example, target, _INPUTS, ["frame"], max_batch)


def _feed(convert: Callable[[torch.Tensor], T], *tensors: torch.Tensor) -> dict[str, T]:
    """The graph's named inputs: (mesh, source, motion, mask), each converted."""
    return {name: convert(t) for name, t in zip(_INPUTS, tensors, strict=True)}


def _as_array(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().float().cpu().numpy())


def _on_cuda(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(device="cuda", dtype=torch.float32).contiguous()


def _item_shapes(net: Refiner, crop_px: int) -> dict[str, tuple[int, ...]]:
    image = (3, crop_px, crop_px)
    return {"mesh": image, "source": image, "motion": (net.config.motion_nc,), "mask": (1, crop_px, crop_px)}


class TorchRefiner:
    """The network in torch, eager or ``torch.compile``-d; fp16 / bf16 through autocast."""

    def __init__(
        self,
        net: Refiner,
        *,
        device: torch.device,
        precision: Precision = Precision.FP32,
        compile: bool = False,
    ) -> None:
        self.name = "compiled" if compile else "torch"
        self.net = net.to(device).eval().requires_grad_(False)
        self.device, self.precision = device, precision
        if precision is Precision.FP16 and device.type != "cuda":
            raise PirenderError("fp16 runs on CUDA only (on the CPU: fp32 or bf16)")
        self.forward = torch.compile(self.net, dynamic=False) if compile else self.net

    def __call__(
        self, mesh: torch.Tensor, source: torch.Tensor, motion: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        reduced = self.precision in (Precision.FP16, Precision.BF16)
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=self.precision.dtype, enabled=reduced),
        ):
            return self.forward(mesh, source, motion, mask).float()


class OnnxRefiner:
    """The network's ONNX export in ONNX Runtime (fp32; CPU, or the CUDA execution provider)."""

    name = "onnx"

    def __init__(self, net: Refiner, crop_px: int, *, device: torch.device) -> None:
        self.session = onnx_session(export_refiner_onnx(net, crop_px), str(device))

    def __call__(
        self, mesh: torch.Tensor, source: torch.Tensor, motion: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        feed = _feed(_as_array, mesh, source, motion, mask)
        (frame,) = self.session.run(None, feed)
        return torch.from_numpy(frame).to(mesh.device)


class OpenVinoRefiner:
    """The network's ONNX export compiled by OpenVINO for the CPU (fp32 or bf16)."""

    name = "openvino"

    def __init__(self, net: Refiner, crop_px: int, *, precision: Precision) -> None:
        from ..openvino_backend import OpenVinoGraph

        path = export_refiner_onnx(net, crop_px)
        self.graph = OpenVinoGraph(path, _item_shapes(net, crop_px), precision=precision)

    def __call__(
        self, mesh: torch.Tensor, source: torch.Tensor, motion: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        return self.graph.run(_feed(_as_array, mesh, source, motion, mask))[0]


class TensorRTRefiner:
    """The network's ONNX export as an fp16 TensorRT engine (CUDA)."""

    name = "tensorrt"

    def __init__(self, net: Refiner, crop_px: int, *, max_batch: int = 16) -> None:
        from ..tensorrt_backend import TensorRTGraph

        path = export_refiner_onnx(net, crop_px)
        self.graph = TensorRTGraph(path, _item_shapes(net, crop_px), ["frame"], max_batch)

    def __call__(
        self, mesh: torch.Tensor, source: torch.Tensor, motion: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        return self.graph.run(_feed(_on_cuda, mesh, source, motion, mask))[0]


def refiner_runtime(
    net: Refiner,
    runtime: str = "torch",
    *,
    crop_px: int,
    device: str | torch.device = "cpu",
    precision: Precision | str = Precision.FP32,
) -> RefinerRuntime:
    """The editing network behind the named runtime (module docstring).

    Raises:
        PirenderError: an unknown runtime, a precision or device the runtime does not run, a runtime
            whose package or hardware is missing here.
    """
    chosen_device = torch.device(device)
    try:
        chosen = Precision(precision)
    except ValueError as exc:
        raise PirenderError(str(exc)) from None
    if runtime in ("torch", "compiled"):
        if chosen is Precision.TF32:
            chosen = Precision.FP32
        return TorchRefiner(net, device=chosen_device, precision=chosen, compile=runtime == "compiled")
    if runtime == "onnx":
        if chosen is not Precision.FP32:
            raise PirenderError("the onnx runtime runs fp32 (reduced precision: torch, openvino or tensorrt)")
        return OnnxRefiner(net, crop_px, device=chosen_device)
    if runtime == "openvino":
        if chosen_device.type != "cpu":
            raise PirenderError("the openvino runtime runs on the CPU")
        return OpenVinoRefiner(net, crop_px, precision=chosen)
    if runtime == "tensorrt":
        return TensorRTRefiner(net, crop_px)
    raise PirenderError(f"unknown neural-renderer runtime {runtime!r} (available: {', '.join(RUNTIMES)})")


__all__ = [
    "RUNTIMES",
    "OnnxRefiner",
    "OpenVinoRefiner",
    "RefinerRuntime",
    "TensorRTRefiner",
    "TorchRefiner",
    "export_refiner_onnx",
    "refiner_runtime",
]
