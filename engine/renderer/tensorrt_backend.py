"""The ``tensorrt`` backend: an fp16 TensorRT engine built from the ONNX export, on NVIDIA GPUs.

Written from TensorRT's documented Python API (``tensorrt.Builder``, ``OnnxParser``, optimisation
profiles, ``IExecutionContext.set_tensor_address`` / ``execute_async_v3``). TensorRT cannot be
installed on the machines this project is developed on (its PyPI ``-libs`` wheels download from an
unreachable host), so this path is untested here: ``pirender doctor`` says whether it is usable and
its tests skip with that reason. Engines are cached on disk keyed by the weights' hash, the GPU, the
TensorRT version and the shapes; inputs and outputs are torch CUDA tensors bound by address and the
engine runs on torch's current stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ..errors import PirenderError
from ..fileio import write_atomically
from ..image import SourceImage, image_to_tensor
from ..motion.space import MotionSpace
from .base import PreparedSource, RenderMode, RenderOutput
from .onnx_backend import CACHE_DIR, ExportedRenderer
from .pirender.generator import FaceGenerator

#: ONNX operators TensorRT's ONNX parser supports (onnx-tensorrt ``docs/operators.md``, TensorRT 10):
#: the subset relevant to convolutional generators. 4-D GridSample is native from opset 16.
TENSORRT_ONNX_OPERATORS = frozenset(
    {
        "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant",
        "ConstantOfShape", "Conv", "ConvTranspose", "Div", "Equal", "Erf", "Exp", "Expand", "Flatten",
        "Gather", "Gemm", "GlobalAveragePool", "GridSample", "Identity", "InstanceNormalization",
        "LayerNormalization", "LeakyRelu", "Less", "Log", "MatMul", "Max", "MaxPool", "Min", "Mul", "Neg",
        "Pad", "Pow", "Range", "Reciprocal", "ReduceMax", "ReduceMean", "ReduceSum", "Relu", "Reshape",
        "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Tanh",
        "Tile", "Transpose", "Unsqueeze", "Where",
    }
)  # fmt: skip


def tensorrt_status() -> str | None:
    """None when TensorRT can run here, else why not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return (
            "the tensorrt package is not installed (its PyPI wheels need NVIDIA's download host; "
            "install TensorRT 10 from NVIDIA)"
        )
    if not torch.cuda.is_available():
        return "no CUDA device"
    return None


def build_engine(
    onnx_path: Path, *, item_shapes: dict[str, tuple[int, ...]], max_batch: int, cache_key: str
) -> Path:
    """Build (or reuse) a serialized fp16 engine of ``onnx_path`` with one dynamic-batch profile
    (1 .. ``max_batch``, optimum ``max_batch // 2``) over the inputs' per-item shapes."""
    import tensorrt as trt

    gpu = torch.cuda.get_device_name().replace(" ", "_")
    target = CACHE_DIR.parent / "tensorrt" / f"{cache_key}_{gpu}_trt{trt.__version__}_b{max_batch}.engine"
    if target.exists():
        return target
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise PirenderError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    optimum = max(1, max_batch // 2)
    for name, shape in item_shapes.items():
        profile.set_shape(name, (1, *shape), (optimum, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise PirenderError("TensorRT failed to build the engine (see its log above)")
    target.parent.mkdir(parents=True, exist_ok=True)
    engine = bytes(serialized)  # a fresh hidden name per build: builds in parallel never mix

    def write_engine(handle: BinaryIO) -> None:
        handle.write(engine)

    write_atomically(target, write_engine)
    return target


class TensorRTGraph:
    """An ONNX graph as an fp16 TensorRT engine (built once, cached): float32 CUDA tensors in, bound by
    address, run on torch's current stream.

    Raises:
        PirenderError: TensorRT or CUDA missing (:func:`tensorrt_status`), the graph does not parse.
    """

    def __init__(
        self,
        onnx_path: Path,
        item_shapes: dict[str, tuple[int, ...]],
        outputs: list[str],
        max_batch: int = 16,
    ) -> None:
        missing = tensorrt_status()
        if missing is not None:
            raise PirenderError(f"the tensorrt backend cannot run here: {missing}")
        import tensorrt as trt

        self.max_batch, self.outputs = max_batch, list(outputs)
        # the export's name already holds the weights' hash and shapes
        engine_path = build_engine(
            onnx_path, item_shapes=item_shapes, max_batch=max_batch, cache_key=onnx_path.stem
        )
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine: Any = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        self.context: Any = self.engine.create_execution_context()

    def run(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Contiguous float32 CUDA tensors of one batch size (<= ``max_batch``) -> the outputs."""
        for name, tensor in inputs.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        results = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            results.append(torch.empty(shape, device="cuda", dtype=torch.float32))
            self.context.set_tensor_address(name, results[-1].data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise PirenderError("TensorRT execution failed")
        return results


@dataclass
class CudaSource(PreparedSource):
    """A portrait prepared for a TensorRT engine: ``source`` (1, 3, H, W) float32 CUDA tensor."""

    source: torch.Tensor


class TensorRTRenderer(ExportedRenderer):
    """PIRenderer as an fp16 TensorRT engine; same interface as the torch backend (CUDA tensors)."""

    name = "tensorrt"

    def __init__(
        self,
        generator: FaceGenerator,
        *,
        space: MotionSpace,
        image_size_px: int,
        mode: RenderMode | str = RenderMode.FULL,
        window_frames: int = 27,
        max_batch: int = 16,
    ) -> None:
        missing = tensorrt_status()
        if missing is not None:
            raise PirenderError(f"the tensorrt backend cannot run here: {missing}")
        super().__init__(
            generator, space=space, image_size_px=image_size_px, mode=mode, window_frames=window_frames
        )
        self.max_batch = max_batch
        outputs = ["frame", "warped", "flow"] if self.mode is RenderMode.FULL else ["warped", "flow"]
        shapes = {"source": (3, image_size_px, image_size_px), "window": (space.width, window_frames)}
        self.graph = TensorRTGraph(self.path, shapes, outputs, max_batch)

    def _prepare(self, image: SourceImage) -> CudaSource:
        source = image_to_tensor(image.rgb, device="cuda")  # (1, 3, H, W) float32
        return CudaSource(image=image, source=source)

    def _render(
        self, windows: np.ndarray | torch.Tensor, source: PreparedSource, mode: RenderMode, extras: bool
    ) -> RenderOutput:
        window = torch.as_tensor(windows).to(device="cuda", dtype=torch.float32).contiguous()
        batch = window.shape[0]
        if batch > self.max_batch or window.shape[2] != self.window_frames or mode is not self.mode:
            raise PirenderError(
                f"this engine takes batches <= {self.max_batch} of {self.window_frames}-frame windows in "
                f"mode {self.mode.value!r}"
            )
        images = self.prepared_as(source, CudaSource).source.expand(batch, -1, -1, -1).contiguous()
        return self._output(self.graph.run({"source": images, "window": window}), extras)
