"""The neural renderer's editing network through the speed issue's runtimes (compiled, ONNX Runtime,
OpenVINO; TensorRT where it exists) against eager torch, with the shipped weights on a real portrait."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from pirender.engine.api import load_renderer
from pirender.engine.errors import PirenderError
from pirender.engine.image import load_source_image
from pirender.engine.motion.space import OPEN_SPACE
from pirender.engine.renderer.onnx_backend import onnx_operators
from pirender.engine.renderer.refine.renderer import DEFAULT_WEIGHTS, read_refiner
from pirender.engine.renderer.refine.runtime import export_refiner_onnx
from pirender.engine.renderer.tensorrt_backend import TENSORRT_ONNX_OPERATORS, tensorrt_status

from conftest import shared_data


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("pirender.engine.renderer.onnx_backend.CACHE_DIR", folder / "onnx")
        patch.setattr("pirender.engine.renderer.refine.runtime.CACHE_DIR", folder / "onnx")
        yield folder


@pytest.fixture(scope="module")
def reference() -> tuple[object, np.ndarray, torch.Tensor]:
    """(portrait, rows, eager torch frames): rest, mouth open, a blink and a smile with a turn."""
    portrait = load_source_image(shared_data("portraits", "s0.jpg"))
    renderer = load_renderer(backend="neural")
    prepared = renderer.prepare(portrait)
    rest = renderer.rest_row(prepared)
    rows = np.repeat(rest[None], 3, axis=0).astype(np.float32)
    rows[1, OPEN_SPACE.index("jaw_open")] = 0.9
    rows[2, OPEN_SPACE.index("blink_left")] = 0.9
    rows[2, OPEN_SPACE.index("smile_right")] = 0.8
    rows[2, OPEN_SPACE.index("yaw")] += 0.2
    frames = renderer.render(rows[:, :, None], source=prepared).frame
    return portrait, rows, frames


@pytest.mark.parametrize(
    ("runtime", "precision", "tolerance"),
    [
        ("compiled", "fp32", 1e-4),
        ("onnx", "fp32", 1e-4),
        ("openvino", "fp32", 2e-3),
        ("openvino", "bf16", None),
    ],
)
def test_runtimes_render_what_eager_torch_renders(
    cache: Path,
    reference: tuple[object, np.ndarray, torch.Tensor],
    runtime: str,
    precision: str,
    tolerance: float | None,
) -> None:
    if runtime == "openvino":
        pytest.importorskip("openvino")
    portrait, rows, expected = reference
    renderer = load_renderer(backend="neural", runtime=runtime, precision=precision)
    prepared = renderer.prepare(portrait)  # type: ignore[arg-type]
    got = torch.cat(
        [
            renderer.render(rows[:1, :, None], source=prepared).frame,
            renderer.render(rows[1:, :, None], source=prepared).frame,
        ]
    )
    assert got.shape == expected.shape and got.dtype == torch.float32
    if tolerance is not None:
        torch.testing.assert_close(got, expected, rtol=0, atol=tolerance)
    else:  # reduced precision: close, not equal
        mse = float(((got - expected) ** 2).mean())
        assert mse > 0 and 10 * np.log10(4.0 / mse) > 35.0
    assert not torch.equal(expected[0], expected[1])  # the rows do render different frames


def test_the_export_is_cached_and_fits_tensorrts_parser(cache: Path) -> None:
    net = read_refiner(DEFAULT_WEIGHTS).build()
    first = export_refiner_onnx(net, 128)
    assert export_refiner_onnx(net, 128) == first and first.parent == cache / "onnx"
    assert onnx_operators(first) <= TENSORRT_ONNX_OPERATORS, onnx_operators(first) - TENSORRT_ONNX_OPERATORS


def test_bad_runtime_choices_give_one_line() -> None:
    with pytest.raises(PirenderError, match="unknown neural-renderer runtime 'fast'"):
        load_renderer(backend="neural", runtime="fast")
    with pytest.raises(PirenderError, match="is for the neural renderer"):
        load_renderer(backend="mesh", runtime="onnx")
    with pytest.raises(PirenderError, match="onnx runtime runs fp32"):
        load_renderer(backend="neural", runtime="onnx", precision="bf16")
    with pytest.raises(PirenderError, match="fp16 runs on CUDA only"):
        load_renderer(backend="neural", precision="fp16")


@pytest.mark.gpu
@pytest.mark.skipif(tensorrt_status() is not None, reason=f"TensorRT unavailable: {tensorrt_status()}")
def test_tensorrt_runtime_matches_torch(reference: tuple[object, np.ndarray, torch.Tensor]) -> None:
    portrait, rows, expected = reference
    renderer = load_renderer(backend="neural", runtime="tensorrt", device="cuda")
    prepared = renderer.prepare(portrait)  # type: ignore[arg-type]
    got = renderer.render(rows[:, :, None], source=prepared).frame.cpu()
    mse = float(((got - expected) ** 2).mean())
    assert 10 * np.log10(4.0 / mse) > 35.0  # fp16 engine
