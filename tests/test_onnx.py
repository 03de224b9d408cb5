"""The onnx backend against torch (CI), the ONNX graph against TensorRT's parser's operator list, and
the TensorRT backend (skipped where TensorRT is absent, which is everywhere this project is built)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from pirender.engine.errors import PirenderError
from pirender.engine.motion.space import AUTHORS_SPACE
from pirender.engine.renderer.checkpoint import random_generator
from pirender.engine.renderer.onnx_backend import OnnxRenderer, export_onnx, onnx_operators
from pirender.engine.renderer.pirender.config import TINY_CONFIG
from pirender.engine.renderer.tensorrt_backend import TENSORRT_ONNX_OPERATORS, tensorrt_status
from pirender.engine.renderer.torch_backend import TorchRenderer

from conftest import random_source

#: fp32 parity of two runtimes (different kernels, same graph): within the model's float noise
ONNX_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("pirender.engine.renderer.onnx_backend.CACHE_DIR", folder / "onnx")
        yield folder


@pytest.mark.parametrize("mode", ["full", "warp"])
def test_onnx_runtime_matches_torch_at_any_batch(cache: Path, mode: str) -> None:
    onnx = OnnxRenderer(
        random_generator(TINY_CONFIG, seed=1), space=AUTHORS_SPACE, image_size_px=64, mode=mode
    )
    reference = TorchRenderer(
        random_generator(TINY_CONFIG, seed=1), space=AUTHORS_SPACE, image_size_px=64, mode=mode
    )
    source = random_source(64)
    onnx_source = onnx.prepare(source)
    reference_source = reference.prepare(source)
    for batch in (1, 3):  # one graph, dynamic batch
        windows = np.random.default_rng(batch).standard_normal((batch, 73, 27)).astype(np.float32)
        got, expected = (
            onnx.render(windows, extras=True, source=onnx_source),
            reference.render(windows, extras=True, source=reference_source),
        )
        for name in ("frame", "warped", "flow"):
            torch.testing.assert_close(
                getattr(got, name), getattr(expected, name), rtol=0, atol=ONNX_TOLERANCE
            )
    assert onnx.path.parent == cache / "onnx" and len(list(onnx.path.parent.glob("*.onnx"))) == 1 + (
        mode == "warp"
    )
    with pytest.raises(PirenderError, match="27-frame windows"):
        onnx.render(np.zeros((1, 73, 29), np.float32), source=onnx_source)


def test_the_export_is_cached_by_weights_and_every_operator_is_one_tensorrt_parses(cache: Path) -> None:
    first = export_onnx(random_generator(TINY_CONFIG, seed=4), image_size_px=64)
    again = export_onnx(random_generator(TINY_CONFIG, seed=4), image_size_px=64)
    other = export_onnx(random_generator(TINY_CONFIG, seed=5), image_size_px=64)
    assert first == again and other != first  # same weights reuse the export; new weights do not
    import onnx

    model = onnx.load(str(first))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    operators = onnx_operators(first)
    assert "GridSample" in operators  # the warp is one native op
    assert operators <= TENSORRT_ONNX_OPERATORS, sorted(operators - TENSORRT_ONNX_OPERATORS)


@pytest.mark.gpu
@pytest.mark.skipif(tensorrt_status() is not None, reason=f"TensorRT unusable here: {tensorrt_status()}")
def test_tensorrt_engine_matches_torch_in_fp16(cache: Path) -> None:
    from pirender.engine.renderer.tensorrt_backend import TensorRTRenderer

    engine = TensorRTRenderer(random_generator(TINY_CONFIG, seed=1), space=AUTHORS_SPACE, image_size_px=64)
    reference = TorchRenderer(random_generator(TINY_CONFIG, seed=1), space=AUTHORS_SPACE, image_size_px=64)
    source = random_source(64)
    engine_source = engine.prepare(source)
    reference_source = reference.prepare(source)
    windows = np.random.default_rng(0).standard_normal((2, 73, 27)).astype(np.float32)
    got, expected = (
        engine.render(windows, source=engine_source).frame.cpu(),
        reference.render(windows, source=reference_source).frame,
    )
    mse = float(((got - expected) ** 2).mean())
    assert 10 * np.log10(4.0 / max(mse, 1e-12)) > 30.0  # PSNR on the [-1, 1] range


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_matches_torch(cache: Path, precision: str) -> None:
    pytest.importorskip("openvino")
    from pirender.engine.renderer.openvino_backend import OpenVinoRenderer

    engine = OpenVinoRenderer(
        random_generator(TINY_CONFIG, seed=1), space=AUTHORS_SPACE, image_size_px=64, precision=precision
    )
    reference = TorchRenderer(random_generator(TINY_CONFIG, seed=1), space=AUTHORS_SPACE, image_size_px=64)
    source = random_source(64)
    engine_source = engine.prepare(source)
    reference_source = reference.prepare(source)
    for batch in (1, 3):  # 3 runs padded to the bucket of 4
        windows = np.random.default_rng(batch).standard_normal((batch, 73, 27)).astype(np.float32)
        got, expected = (
            engine.render(windows, extras=True, source=engine_source),
            reference.render(windows, extras=True, source=reference_source),
        )
        assert got.frame.shape == expected.frame.shape and got.flow.shape == expected.flow.shape
        if precision == "fp32":  # faithful
            torch.testing.assert_close(got.frame, expected.frame, rtol=0, atol=1e-3)
        else:  # reduced: close, not equal
            mse = float(((got.frame - expected.frame) ** 2).mean())
            assert mse > 0 and 10 * np.log10(4.0 / mse) > 25.0
