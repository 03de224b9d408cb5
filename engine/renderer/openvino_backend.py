"""The ``openvino`` backend: the ONNX export compiled by OpenVINO's CPU plugin (oneDNN underneath).

On Intel CPUs it is the fastest path measured here: fp32 (``INFERENCE_PRECISION_HINT=f32``, faithful
to the reference within ~3e-4) and bf16 (the AMX path, reduced precision). The graph is the same ONNX
export as the ``onnx`` backend (cached by weights hash); OpenVINO compiles one static-shape model per
power-of-two batch bucket on first use (smaller batches are padded).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import PirenderError
from ..motion.space import MotionSpace
from .base import Precision, PreparedSource, RenderMode, RenderOutput, batch_bucket
from .onnx_backend import ExportedRenderer
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
        import openvino

        self.precision = Precision(precision)
        if self.precision not in PRECISION_HINTS:
            raise PirenderError(f"the openvino backend runs fp32 or bf16, not {self.precision.value}")
        super().__init__(
            generator, space=space, image_size_px=image_size_px, mode=mode, window_frames=window_frames
        )
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
            model.reshape(
                {
                    "source": [bucket, 3, self.image_size_px, self.image_size_px],
                    "window": [bucket, self.space.width, self.window_frames],
                }
            )
            compiled = self._core.compile_model(model, "CPU", self._config)
            self._requests[bucket] = compiled.create_infer_request()
        return self._requests[bucket]

    def _render(
        self, windows: np.ndarray | torch.Tensor, source: PreparedSource, mode: RenderMode, extras: bool
    ) -> RenderOutput:
        window = self._checked_windows(windows, mode)
        batch = window.shape[0]
        bucket = batch_bucket(batch)
        if bucket > batch:  # pad with copies of the last window (static shapes)
            window = np.concatenate([window, np.repeat(window[-1:], bucket - batch, axis=0)])
        one = source.cache["source"]
        images = np.ascontiguousarray(np.broadcast_to(one, (bucket, *one.shape[1:])))
        request = self._request(bucket)
        request.infer({"source": images, "window": window})
        count = len(request.model_outputs)
        return self._output(
            [torch.from_numpy(request.get_output_tensor(i).data[:batch].copy()) for i in range(count)], extras
        )
