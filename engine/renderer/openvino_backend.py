"""The ``openvino`` backend: the ONNX export compiled by OpenVINO's CPU plugin (oneDNN underneath).

On Intel CPUs it is the fastest path measured here: fp32 (``INFERENCE_PRECISION_HINT=f32``, faithful
to the reference within ~3e-4) and bf16 (the AMX path, reduced precision). The graph is the same ONNX
export as the ``onnx`` backend (cached by weights hash); OpenVINO compiles one static-shape model per
power-of-two batch bucket on first use (smaller batches are padded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import PirenderError
from ..motion.space import MotionSpace
from .base import Precision, PreparedSource, RenderMode, RenderOutput, batch_bucket
from .onnx_backend import ArraySource, ExportedRenderer
from .pirender.generator import FaceGenerator

#: precision -> OpenVINO inference precision hint
PRECISION_HINTS = {Precision.FP32: "f32", Precision.BF16: "bf16"}


def openvino_status() -> str | None:
    """None when OpenVINO can run here, else why not."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "openvino is not installed (pip install 'pirender-live[openvino]')"
    return None


class OpenVinoGraph:
    """An ONNX graph compiled by OpenVINO for the CPU, one static-shape model per power-of-two batch
    bucket (compiled on first use; smaller batches are padded with copies of their last item).

    Raises:
        PirenderError: OpenVINO missing, or a precision other than fp32 / bf16.
    """

    def __init__(
        self,
        path: Path,
        item_shapes: dict[str, tuple[int, ...]],
        *,
        precision: Precision | str = Precision.FP32,
        threads: int | None = None,
    ) -> None:
        missing = openvino_status()
        if missing is not None:
            raise PirenderError(f"the openvino backend cannot run here: {missing}")
        import openvino

        self.precision = Precision(precision)
        if self.precision not in PRECISION_HINTS:
            raise PirenderError(f"the openvino backend runs fp32 or bf16, not {self.precision.value}")
        self.path, self.item_shapes = path, dict(item_shapes)
        self._core = openvino.Core()
        self._config = {
            "INFERENCE_PRECISION_HINT": PRECISION_HINTS[self.precision],
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
        }
        self._requests: dict[int, Any] = {}  # batch bucket -> infer request

    def _request(self, bucket: int) -> Any:
        if bucket not in self._requests:
            model = self._core.read_model(str(self.path))
            model.reshape({name: [bucket, *shape] for name, shape in self.item_shapes.items()})
            compiled = self._core.compile_model(model, "CPU", self._config)
            self._requests[bucket] = compiled.create_infer_request()
        return self._requests[bucket]

    def run(self, inputs: dict[str, np.ndarray]) -> list[torch.Tensor]:
        """float32 arrays of one batch size -> the graph's outputs (copies), in the graph's order."""
        batch = next(iter(inputs.values())).shape[0]
        bucket = batch_bucket(batch)
        padded = {  # static shapes: pad with copies of the last item
            name: np.ascontiguousarray(np.concatenate([array, np.repeat(array[-1:], bucket - batch, 0)]))
            for name, array in inputs.items()
        }
        request = self._request(bucket)
        request.infer(padded)
        count = len(request.model_outputs)
        return [torch.from_numpy(request.get_output_tensor(i).data[:batch].copy()) for i in range(count)]


class OpenVinoRenderer(ExportedRenderer):
    """PIRenderer compiled by OpenVINO for the CPU; same interface as the torch backend."""

    name = "openvino"

    def __init__(
        self,
        generator: FaceGenerator,
        *,
        space: MotionSpace,
        image_size_px: int,
        mode: RenderMode | str = RenderMode.FULL,
        precision: Precision | str = Precision.FP32,
        window_frames: int = 27,
        threads: int | None = None,
    ) -> None:
        missing = openvino_status()
        if missing is not None:
            raise PirenderError(f"the openvino backend cannot run here: {missing}")
        super().__init__(
            generator, space=space, image_size_px=image_size_px, mode=mode, window_frames=window_frames
        )
        self.graph = OpenVinoGraph(
            self.path,
            {"source": (3, image_size_px, image_size_px), "window": (space.width, window_frames)},
            precision=precision,
            threads=threads,
        )
        self.precision = self.graph.precision

    def _render(
        self, windows: np.ndarray | torch.Tensor, source: PreparedSource, mode: RenderMode, extras: bool
    ) -> RenderOutput:
        window = self._checked_windows(windows, mode)
        one = self.prepared_as(source, ArraySource).source
        images = np.broadcast_to(one, (window.shape[0], *one.shape[1:]))
        return self._output(self.graph.run({"source": images, "window": window}), extras)
