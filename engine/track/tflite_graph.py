"""MediaPipe's face models (TFLite flatbuffers) run with torch: no MediaPipe, no TFLite runtime.

A :class:`TFLiteGraph` reads a ``.tflite`` file (the ``tflite`` package: the generated flatbuffer
schema) and runs its one subgraph op by op with torch: NHWC in and out as TFLite declares, 4-D
activations kept NCHW inside (convolutions need no transposes). It knows the op set
of MediaPipe's face detector (BlazeFace short range) and face landmark models (plain and with
attention): CONV_2D, DEPTHWISE_CONV_2D, ADD, MUL, PRELU, RELU, MAX_POOL_2D, PAD, RESHAPE,
CONCATENATION, STRIDED_SLICE and DEQUANTIZE (the fp16 weights, expanded once at load), plus the
three MediaPipe custom ops of the attention mesh, written here from their documented semantics
(``mediapipe/util/tflite/operations``, Apache 2.0):

- ``Landmarks2TransformMatrix`` (v2): from the mesh's landmarks, the 4x4 matrix that maps a region
  (the lips, an eye: a subset of landmarks, rotated upright by two of them, scaled by ``scale_x/y``)
  onto an ``output_width x output_height`` patch;
- ``TransformTensorBilinear`` (v2): that patch sampled bilinearly from a feature map (half-pixel
  corrected; outside the map: zero);
- ``TransformLandmarks`` (v2): the patch's refined landmarks mapped back with the same matrix.

Any other op is a clear error naming it. Source: the TFLite schema (``tflite/schema.fbs``).

:func:`fast_runner` is what callers use: the same graph exported once to ONNX (torch's exporter,
cached by the model file's sha256 under ``$PIRENDER_CACHE``) and run by ONNX Runtime on one
non-spinning thread, several times faster than op-by-op torch; without ONNX Runtime, or if the export
fails, the torch runner.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PirenderError

_FLOAT32, _FLOAT16, _INT32 = 0, 1, 2
_NUMPY_TYPES = {_FLOAT32: np.float32, _FLOAT16: np.float16, _INT32: np.int32}
_ACTIVATIONS: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {
    0: lambda x: x,  # NONE
    1: F.relu,  # RELU
    3: lambda x: torch.clamp(x, 0.0, 6.0),  # RELU6
}


@dataclass
class _Op:
    name: str  # builtin op name, or "CUSTOM:<code>"
    inputs: list[int]
    outputs: list[int]
    options: Any = None  # the builtin options table, or the custom options (a dict)
    in_shapes: tuple[tuple[int, ...], ...] = ()  # the inputs' static shapes (the graph declares them)
    active: tuple[bool, ...] = ()  # which inputs are computed (not constants), set after folding


@dataclass
class TFLiteGraph:
    """The graph of one ``.tflite`` file, runnable: ``graph(input)`` gives its outputs by name.

    Raises (at load):
        PirenderError: the file is missing or not a TFLite model, or holds an op this runner lacks.
    """

    path: Path
    ops: list[_Op] = field(default_factory=list)
    shapes: dict[int, tuple[int, ...]] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    constants: dict[int, torch.Tensor] = field(default_factory=dict)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> TFLiteGraph:
        try:
            import tflite
        except ImportError:
            raise PirenderError(
                "face tracking needs the TFLite model reader: pip install 'pirender-live[track]'"
            ) from None

        path = Path(path)
        if not path.is_file():
            raise PirenderError(f"TFLite model {path} not found")
        data = path.read_bytes()
        try:
            model = tflite.Model.GetRootAsModel(data, 0)
            graph = model.Subgraphs(0) if model.SubgraphsLength() else None
        except Exception:  # a flatbuffer that does not parse
            graph = None
        if graph is None:
            raise PirenderError(f"{path} is not a TFLite model")
        names = {value: key for key, value in vars(tflite.BuiltinOperator).items() if not key.startswith("_")}
        self = cls(path)
        for index in range(graph.TensorsLength()):
            tensor = graph.Tensors(index)
            self.shapes[index] = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
            self.names[index] = tensor.Name().decode()
            buffer = model.Buffers(tensor.Buffer())
            if buffer is not None and buffer.DataLength() > 0:
                dtype = _NUMPY_TYPES.get(tensor.Type())
                if dtype is None:
                    raise PirenderError(f"{path}: tensor {self.names[index]} has an unsupported type")
                values = np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype=dtype)
                sparsity = tensor.Sparsity()
                if sparsity is not None:  # stored sparse: made dense once, here (DENSIFY is then a no-op)
                    array = _densify(sparsity, values, self.shapes[index])
                else:
                    array = values.reshape(self.shapes[index])
                self.constants[index] = torch.from_numpy(array.copy())
        for index in range(graph.OperatorsLength()):
            op = graph.Operators(index)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            options: Any = op.BuiltinOptions()
            if name == "CUSTOM":
                from flatbuffers import flexbuffers

                name = f"CUSTOM:{code.CustomCode().decode()}"
                raw = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
                options = flexbuffers.Loads(raw) if raw else {}
            if name not in _RUNNERS and name not in _NCHW_RUNNERS:
                raise PirenderError(f"{path}: op {name} is not supported by this TFLite runner")
            inputs = [int(op.Inputs(i)) for i in range(op.InputsLength())]
            outputs = [int(op.Outputs(i)) for i in range(op.OutputsLength())]
            parsed = _static_padding(_parse_options(name, options), inputs, self.shapes)
            in_shapes = tuple(self.shapes.get(i, ()) for i in inputs)
            self.ops.append(_Op(name, inputs, outputs, parsed, in_shapes))
        self.inputs = [int(graph.Inputs(i)) for i in range(graph.InputsLength())]
        self.outputs = [int(graph.Outputs(i)) for i in range(graph.OutputsLength())]
        self._fold_constants()
        return self

    def _fold_constants(self) -> None:
        """Run once every op whose inputs are all constants (the fp16 weights' DEQUANTIZE), in the
        constants' own (TFLite) layout."""
        remaining = []
        for op in self.ops:
            if op.name in _RUNNERS and all(i in self.constants for i in op.inputs if i >= 0):
                values = _RUNNERS[op.name](op, [self.constants.get(i) for i in op.inputs])
                for index, value in zip(op.outputs, values, strict=True):
                    self.constants[index] = value
            else:
                op.active = tuple(i >= 0 and i not in self.constants for i in op.inputs)
                remaining.append(op)
        self.ops = remaining

    @torch.inference_mode()
    def __call__(self, *inputs: np.ndarray) -> dict[str, np.ndarray]:
        """The outputs (by tensor name, as float32 arrays) for the inputs, in the graph's order
        (NHWC float32, the shapes the model declares)."""
        if len(inputs) != len(self.inputs):
            raise PirenderError(f"{self.path.name} takes {len(self.inputs)} input(s), got {len(inputs)}")
        for index, array in zip(self.inputs, inputs, strict=True):
            if tuple(array.shape) != self.shapes[index]:
                wanted = self.shapes[index]
                raise PirenderError(
                    f"{self.path.name}: input {self.names[index]} must be {wanted}, got {array.shape}"
                )
        tensors = [torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)) for array in inputs]
        outputs = self.run(tensors)
        return {self.names[i]: value.numpy() for i, value in zip(self.outputs, outputs, strict=True)}

    def run(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The graph on torch tensors (NHWC in and out, as TFLite declares them). Inside, 4-D
        activations are kept NCHW (torch's and ONNX's convolution layout: no transposes around
        every convolution); constants keep their TFLite layout and each op adapts them."""
        values: dict[int, torch.Tensor] = dict(self.constants)
        for index, tensor in zip(self.inputs, inputs, strict=True):
            values[index] = _nchw(tensor) if tensor.dim() == 4 else tensor
        for op in self.ops:
            results = _step(op, [values.get(i) for i in op.inputs])
            for index, value in zip(op.outputs, results, strict=True):
                values[index] = value
        return [_nhwc(values[i]) if values[i].dim() == 4 else values[i] for i in self.outputs]


def _densify(sparsity: Any, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A constant stored in TFLite's sparse format: leading dense dimensions, the last one CSR
    (segments and indices per row), in the natural traversal order, no blocks."""
    import tflite

    rank = len(shape)
    order = [int(d) for d in sparsity.TraversalOrderAsNumpy()]
    if order != list(range(rank)) or sparsity.BlockMapLength():
        raise PirenderError("sparse TFLite constants with blocks or a reordered traversal are not supported")
    formats = [sparsity.DimMetadata(d).Format() for d in range(rank)]
    if formats != [tflite.DimensionType.DENSE] * (rank - 1) + [tflite.DimensionType.SPARSE_CSR]:
        raise PirenderError("only sparse TFLite constants with one trailing CSR dimension are supported")
    last = sparsity.DimMetadata(rank - 1)

    def vector(kind: int, table: Any) -> np.ndarray:
        holder = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}[kind]()
        holder.Init(table.Bytes, table.Pos)
        return holder.ValuesAsNumpy().astype(np.int64)

    segments = vector(last.ArraySegmentsType(), last.ArraySegments())
    indices = vector(last.ArrayIndicesType(), last.ArrayIndices())
    dense = np.zeros((int(np.prod(shape[:-1])), shape[-1]), dtype=values.dtype)
    rows = np.repeat(np.arange(len(segments) - 1), np.diff(segments))
    dense[rows, indices] = values[: len(indices)]
    return dense.reshape(shape)


class _GraphModule(torch.nn.Module):
    """A loaded graph as a torch module (for the ONNX export): NHWC input -> its outputs."""

    def __init__(self, graph: TFLiteGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.graph.run([x]))


CACHE_DIR = Path(os.environ.get("PIRENDER_CACHE", Path.home() / ".cache" / "pirender")) / "tflite"


def fast_runner(path: str | Path, *, threads: int = 1) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """The model at ``path`` as a function of its one NHWC float32 input to its outputs by name: ONNX
    Runtime on the graph's ONNX export (made once, cached; ``threads`` intra-op threads, not
    spinning), or the torch runner without it.

    Raises:
        PirenderError: the model cannot be loaded (see :meth:`TFLiteGraph.load`).
    """
    graph = TFLiteGraph.load(path)
    try:
        import onnxruntime
    except ImportError:
        return graph
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    target = CACHE_DIR / f"{Path(path).stem}_{digest}.onnx"
    if not target.exists():
        try:
            _export(graph, target)
        except Exception as exc:  # an exporter that cannot: the torch runner still gives the same numbers
            warnings.warn(
                f"{Path(path).name}: ONNX export failed ({exc}); running it with torch", stacklevel=2
            )
            return graph
    options = onnxruntime.SessionOptions()
    # small models on a machine shared with the renderer and the encoder: one thread that sleeps
    # when idle (ONNX Runtime's pool spins between runs by default, taking CPU from the others)
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
    names = [graph.names[i] for i in graph.outputs]
    input_name = session.get_inputs()[0].name
    shape = graph.shapes[graph.inputs[0]]

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        if tuple(x.shape) != shape:
            raise PirenderError(f"{Path(path).name}: input must be {shape}, got {x.shape}")
        outputs = session.run(None, {input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return dict(zip(names, outputs, strict=True))

    return run


def _export(graph: TFLiteGraph, target: Path) -> None:
    """The graph as ONNX (opset 17, fixed shapes) at ``target``, written atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(graph.shapes[graph.inputs[0]])
    partial = target.with_name(f"{target.stem}.{os.getpid()}.partial")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _GraphModule(graph).eval(), (example,), str(partial), dynamo=False, opset_version=17
        )
    partial.replace(target)


# ------------------------------------------------------------------------------------------------
# options


@dataclass(frozen=True)
class _Conv:
    same: bool
    stride: tuple[int, int]
    dilation: tuple[int, int]
    activation: int
    multiplier: int = 1
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # left, right, top, bottom (SAME, from the shapes)


@dataclass(frozen=True)
class _Pool:
    same: bool
    stride: tuple[int, int]
    size: tuple[int, int]
    activation: int
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)


def _static_padding(options: Any, inputs: list[int], shapes: dict[int, tuple[int, ...]]) -> Any:
    """SAME padding worked out once from the graph's static shapes (NHWC input; OHWI or 1HWO
    kernel), so that running, and the ONNX export, carry no shape arithmetic."""
    from dataclasses import replace

    if isinstance(options, _Conv) and options.same:
        height, width = shapes[inputs[0]][1:3]
        kernel_h, kernel_w = shapes[inputs[1]][1:3]
        top, bottom = _same_padding(height, kernel_h, options.stride[0], options.dilation[0])
        left, right = _same_padding(width, kernel_w, options.stride[1], options.dilation[1])
        return replace(options, pads=(left, right, top, bottom))
    if isinstance(options, _Pool) and options.same:
        height, width = shapes[inputs[0]][1:3]
        top, bottom = _same_padding(height, options.size[0], options.stride[0], 1)
        left, right = _same_padding(width, options.size[1], options.stride[1], 1)
        return replace(options, pads=(left, right, top, bottom))
    return options


def _parse_options(name: str, table: Any) -> Any:
    import tflite

    def read(kind: Any) -> Any:
        options = kind()
        options.Init(table.Bytes, table.Pos)
        return options

    if name.startswith("CUSTOM:") or table is None:
        return table
    if name == "CONV_2D":
        o = read(tflite.Conv2DOptions)
        same = o.Padding() == tflite.Padding.SAME
        return _Conv(
            same,
            (o.StrideH(), o.StrideW()),
            (o.DilationHFactor(), o.DilationWFactor()),
            o.FusedActivationFunction(),
        )
    if name == "DEPTHWISE_CONV_2D":
        o = read(tflite.DepthwiseConv2DOptions)
        return _Conv(
            o.Padding() == tflite.Padding.SAME,
            (o.StrideH(), o.StrideW()),
            (o.DilationHFactor(), o.DilationWFactor()),
            o.FusedActivationFunction(),
            o.DepthMultiplier(),
        )
    if name == "MAX_POOL_2D":
        o = read(tflite.Pool2DOptions)
        same = o.Padding() == tflite.Padding.SAME
        return _Pool(
            same, (o.StrideH(), o.StrideW()), (o.FilterHeight(), o.FilterWidth()), o.FusedActivationFunction()
        )
    if name == "ADD":
        return read(tflite.AddOptions).FusedActivationFunction()
    if name == "MUL":
        return read(tflite.MulOptions).FusedActivationFunction()
    if name == "CONCATENATION":
        o = read(tflite.ConcatenationOptions)
        return (o.Axis(), o.FusedActivationFunction())
    if name == "RESHAPE":
        o = read(tflite.ReshapeOptions)
        return tuple(int(d) for d in o.NewShapeAsNumpy()) if o.NewShapeLength() else None
    if name == "RESIZE_BILINEAR":
        o = read(tflite.ResizeBilinearOptions)
        return (o.AlignCorners(), o.HalfPixelCenters())
    if name == "DEPTH_TO_SPACE":
        return read(tflite.DepthToSpaceOptions).BlockSize()
    if name == "STRIDED_SLICE":
        o = read(tflite.StridedSliceOptions)
        return (o.BeginMask(), o.EndMask(), o.EllipsisMask(), o.NewAxisMask(), o.ShrinkAxisMask())
    return None


# ------------------------------------------------------------------------------------------------
# builtin ops (tensors NHWC, as TFLite keeps them)


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite's SAME padding of one axis: (before, after); the extra pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _reshape(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    x = args[0]
    assert x is not None
    shape = tuple(int(d) for d in args[1].tolist()) if len(args) > 1 and args[1] is not None else op.options
    return [x.reshape(shape)]


def _concatenation(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    axis, activation = op.options
    return [_ACTIVATIONS[activation](torch.cat([a for a in args if a is not None], dim=axis))]


def _strided_slice(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    x, begin, end, strides = args
    assert x is not None and begin is not None and end is not None and strides is not None
    begin_mask, end_mask, ellipsis_mask, new_axis_mask, shrink_mask = op.options
    if ellipsis_mask or new_axis_mask:
        raise PirenderError("STRIDED_SLICE with ellipsis or new-axis masks is not supported")
    index: list[slice | int] = []
    for axis, (b, e, s) in enumerate(zip(begin.tolist(), end.tolist(), strides.tolist(), strict=True)):
        if shrink_mask >> axis & 1:
            index.append(int(b))
            continue
        start = None if begin_mask >> axis & 1 else int(b)
        stop = None if end_mask >> axis & 1 else int(e)
        index.append(slice(start, stop, int(s)))
    return [x[tuple(index)].contiguous()]


def _resize_bilinear(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    x, size = args[0], args[1]
    assert x is not None and size is not None
    align_corners, half_pixel = op.options
    height, width = (int(v) for v in size.tolist())
    nchw = x.permute(0, 3, 1, 2)
    if align_corners:
        out = F.interpolate(nchw, size=(height, width), mode="bilinear", align_corners=True)
    elif half_pixel:
        out = F.interpolate(nchw, size=(height, width), mode="bilinear", align_corners=False)
    else:  # TFLite's legacy rule: source = destination * in / out, no half-pixel shift
        out = _resize_asymmetric(nchw, height, width, op.in_shapes[0][1], op.in_shapes[0][2])
    return [out.permute(0, 2, 3, 1).contiguous()]


def _resize_asymmetric(nchw: torch.Tensor, height: int, width: int, in_h: int, in_w: int) -> torch.Tensor:
    ys = torch.arange(height, dtype=torch.float32) * (in_h / height)
    xs = torch.arange(width, dtype=torch.float32) * (in_w / width)
    y0, x0 = ys.floor().long().clamp(max=in_h - 1), xs.floor().long().clamp(max=in_w - 1)
    y1, x1 = (y0 + 1).clamp(max=in_h - 1), (x0 + 1).clamp(max=in_w - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = nchw[:, :, y0][:, :, :, x0] * (1 - fx) + nchw[:, :, y0][:, :, :, x1] * fx
    bottom = nchw[:, :, y1][:, :, :, x0] * (1 - fx) + nchw[:, :, y1][:, :, :, x1] * fx
    return top * (1 - fy) + bottom * fy


def _depth_to_space(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    x = args[0]
    assert x is not None
    block = int(op.options)
    batch, height, width, depth = op.in_shapes[0]
    out = x.reshape(batch, height, width, block, block, depth // block**2)
    out = out.permute(0, 1, 3, 2, 4, 5).reshape(batch, height * block, width * block, depth // block**2)
    return [out.contiguous()]


def _densified(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """DENSIFY: its constant was made dense at load (``_densify``)."""
    x = args[0]
    assert x is not None
    return [x]


def _relu(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    x = args[0]
    assert x is not None
    return [F.relu(x)]


def _dequantize(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    x = args[0]
    assert x is not None
    return [x.to(torch.float32)]


# ------------------------------------------------------------------------------------------------
# MediaPipe's custom ops of the attention mesh (v2 semantics)


def _rotation(angle: torch.Tensor) -> torch.Tensor:
    """The 2x2 rotation by ``angle`` (a scalar tensor, radians)."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([cos, -sin]), torch.stack([sin, cos])])


def _landmarks_to_transform_matrix(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """(1, N, 3) landmarks -> (1, 4, 4): patch pixel (x, y, 0, 1) -> landmark space."""
    landmarks = args[0]
    assert landmarks is not None
    o = op.options
    points = landmarks[0, :, :2].double()
    left, right = points[o["left_rotation_idx"]], points[o["right_rotation_idx"]]
    rotation = o.get("target_rotation_radians", 0.0) - torch.atan2(right[1] - left[1], right[0] - left[0])
    subset = points[torch.as_tensor(o["subset_idxs"], dtype=torch.long)]
    upright = subset @ _rotation(rotation).T  # the region turned to the target rotation
    low, high = upright.min(dim=0).values, upright.max(dim=0).values
    size = high - low
    center = _rotation(-rotation) @ ((low + high) / 2)  # back in landmark space
    out_w, out_h = float(o["output_width"]), float(o["output_height"])
    scale = size * torch.tensor([o["scale_x"] / out_w, o["scale_y"] / out_h], dtype=torch.float64)
    linear = _rotation(-rotation) * scale[None, :]  # rotate(-r) . diag(scale): shift . rotate . scale . shift
    shift = center - linear @ torch.tensor([out_w / 2, out_h / 2], dtype=torch.float64)
    top = torch.cat([linear, torch.zeros(2, 1, dtype=torch.float64), shift[:, None]], dim=1)
    bottom = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    return [torch.cat([top, bottom]).float()[None]]


def _transform_tensor_bilinear(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """(1, H, W, C) features sampled on an (out_h, out_w) patch through the (1, 4, 4) matrix."""
    features, matrix = args[0], args[1]
    assert features is not None and matrix is not None
    out_h, out_w = int(op.options["output_height"]), int(op.options["output_width"])
    shape = op.in_shapes[0] if op.in_shapes else tuple(features.shape)  # static: no shape ops in the export
    height, width = int(shape[1]), int(shape[2])
    m = matrix[0].double()
    ys, xs = torch.meshgrid(
        torch.arange(out_h, dtype=torch.float64), torch.arange(out_w, dtype=torch.float64), indexing="ij"
    )
    # half-pixel correction: sample at the patch pixel's centre, read at the feature pixel's
    tx = m[0, 0] * (xs + 0.5) + m[0, 1] * (ys + 0.5) + m[0, 3] - 0.5
    ty = m[1, 0] * (xs + 0.5) + m[1, 1] * (ys + 0.5) + m[1, 3] - 0.5
    inside = (tx >= 0) & (tx <= width - 1) & (ty >= 0) & (ty <= height - 1)
    x0, y0 = torch.floor(tx), torch.floor(ty)
    fx, fy = (tx - x0).float()[..., None], (ty - y0).float()[..., None]
    x0, y0 = x0.long(), y0.long()

    def read(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        valid = ((y >= 0) & (y < height) & (x >= 0) & (x < width))[..., None]
        return features[0, y.clamp(0, height - 1), x.clamp(0, width - 1)] * valid

    upper = (1 - fx) * read(y0, x0) + fx * read(y0, x0 + 1)
    lower = (1 - fx) * read(y0 + 1, x0) + fx * read(y0 + 1, x0 + 1)
    out = (fy * lower + (1 - fy) * upper) * inside[..., None]
    return [out[None].contiguous()]


def _transform_landmarks(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """(1, N, 2 or 3) patch landmarks mapped through the (1, 4, 4) matrix (z kept)."""
    landmarks, matrix = args[0], args[1]
    assert landmarks is not None and matrix is not None
    m = matrix[0]
    x, y = landmarks[..., 0], landmarks[..., 1]
    out = landmarks.clone()
    out[..., 0] = m[0, 0] * x + m[0, 1] * y + m[0, 3]
    out[..., 1] = m[1, 0] * x + m[1, 1] * y + m[1, 3]
    return [out]


# ------------------------------------------------------------------------------------------------
# running with NCHW activations: ops that have an NCHW form use it; the rest see NHWC (converted
# around them)


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2).contiguous()


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous()


def _broadcast_nchw(constant: torch.Tensor) -> torch.Tensor:
    """A constant that broadcasts against NHWC (aligned on the last axis) made to broadcast
    against the same tensor in NCHW."""
    shape = (1,) * (4 - constant.dim()) + tuple(constant.shape)
    return constant.reshape(shape).permute(0, 3, 1, 2)


def _is_activation(op: _Op, k: int, value: torch.Tensor | None) -> bool:
    return value is not None and value.dim() == 4 and bool(op.active) and op.active[k]


def _step(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """Run one op on NCHW activations (4-D computed tensors)."""
    native = _NCHW_RUNNERS.get(op.name)
    return native(op, args) if native is not None else _step_nhwc(op, args)


def _conv_nchw(op: _Op, args: list[torch.Tensor | None], depthwise: bool) -> list[torch.Tensor]:
    x, weight, bias = args[0], args[1], args[2] if len(args) > 2 else None
    assert x is not None and weight is not None
    o: _Conv = op.options
    kernel = weight.permute(3, 0, 1, 2) if depthwise else weight.permute(0, 3, 1, 2)
    groups = int(kernel.shape[0]) // o.multiplier if depthwise else 1
    if any(o.pads):
        x = F.pad(x, o.pads)
    out = F.conv2d(x, kernel, bias, stride=o.stride, dilation=o.dilation, groups=groups)
    return [_ACTIVATIONS[o.activation](out)]


def _max_pool_nchw(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    x = args[0]
    assert x is not None
    o: _Pool = op.options
    if any(o.pads):
        x = F.pad(x, o.pads, value=-math.inf)
    return [_ACTIVATIONS[o.activation](F.max_pool2d(x, o.size, o.stride))]


def _binary_nchw(
    op: _Op, args: list[torch.Tensor | None], fn: Callable[[Any, Any], torch.Tensor]
) -> list[torch.Tensor]:
    a, b = args[0], args[1]
    assert a is not None and b is not None
    if _is_activation(op, 0, a) and not _is_activation(op, 1, b):
        b = _broadcast_nchw(b)
    elif _is_activation(op, 1, b) and not _is_activation(op, 0, a):
        a = _broadcast_nchw(a)
    return [_ACTIVATIONS[op.options or 0](fn(a, b))]


def _prelu_nchw(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    x, alpha = args[0], args[1]
    assert x is not None and alpha is not None
    if _is_activation(op, 0, x):
        alpha = _broadcast_nchw(alpha)
        if alpha.shape[0] == 1 and alpha.shape[2:] == (1, 1):  # one slope per channel: PReLU itself
            return [F.prelu(x, alpha.reshape(-1))]
    return [torch.where(x >= 0, x, x * alpha)]


def _pad_nchw(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    x, paddings = args[0], args[1]
    assert x is not None and paddings is not None
    rows = paddings.tolist()
    if _is_activation(op, 0, x):
        rows = [rows[0], rows[3], rows[1], rows[2]]
    flat: list[int] = []
    for before, after in reversed(rows):
        flat += [int(before), int(after)]
    return [F.pad(x, flat)]


def _concatenation_nchw(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    axis, activation = op.options
    tensors = [a for a in args if a is not None]
    if all(_is_activation(op, k, a) for k, a in enumerate(args) if a is not None):
        axis = {0: 0, 1: 2, 2: 3, 3: 1}[axis % 4] if tensors[0].dim() == 4 else axis
    else:  # a constant among them: the NHWC way
        return _step_nhwc(op, args)
    return [_ACTIVATIONS[activation](torch.cat(tensors, dim=axis))]


def _step_nhwc(op: _Op, args: list[torch.Tensor | None]) -> list[torch.Tensor]:
    nhwc = [_nhwc(a) if a is not None and _is_activation(op, k, a) else a for k, a in enumerate(args)]
    return [_nchw(out) if out.dim() == 4 else out for out in _RUNNERS[op.name](op, nhwc)]


_NCHW_RUNNERS: dict[str, Callable[[_Op, list[torch.Tensor | None]], list[torch.Tensor]]] = {
    "CONV_2D": lambda op, args: _conv_nchw(op, args, depthwise=False),
    "DEPTHWISE_CONV_2D": lambda op, args: _conv_nchw(op, args, depthwise=True),
    "MAX_POOL_2D": _max_pool_nchw,
    "ADD": lambda op, args: _binary_nchw(op, args, torch.add),
    "MUL": lambda op, args: _binary_nchw(op, args, torch.mul),
    "PRELU": _prelu_nchw,
    "RELU": _relu,
    "PAD": _pad_nchw,
    "CONCATENATION": _concatenation_nchw,
}


_RUNNERS: dict[str, Callable[[_Op, list[torch.Tensor | None]], list[torch.Tensor]]] = {
    "RESHAPE": _reshape,
    "CONCATENATION": _concatenation,
    "STRIDED_SLICE": _strided_slice,
    "DEQUANTIZE": _dequantize,
    "DENSIFY": _densified,
    "RESIZE_BILINEAR": _resize_bilinear,
    "DEPTH_TO_SPACE": _depth_to_space,
    "CUSTOM:Landmarks2TransformMatrix": _landmarks_to_transform_matrix,
    "CUSTOM:TransformTensorBilinear": _transform_tensor_bilinear,
    "CUSTOM:TransformLandmarks": _transform_landmarks,
}
