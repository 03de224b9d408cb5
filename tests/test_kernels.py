"""The fused warp kernel: every ``.cu`` compiles (nvcc, sm_90 + PTX), its per-pixel math built for the
host matches torch's reference warp, and on a GPU the CuPy kernel matches it too (marked ``gpu``)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest
import torch

from pirender.engine.renderer.warp import torch_warp, zero_flow_source_position
from pirender.kernels.build import CUDA_SOURCES, BuildError, build_host_warp, compile_cuda, find_nvcc

#: float32 rounding of the sampling position (~1 ulp of the grid, 1.5e-5 px near pixel 256) moves a
#: white-noise sample by up to ~1e-4 (pirender-spec.md 4.3); on a smooth image the same holds only at
#: the border, where the zero padding is a sharp edge. A misplaced tap would be off by ~0.1-1.
WHITE_NOISE_TOLERANCE = 3e-4
SMOOTH_TOLERANCE = 1.5e-4

# (batch, channels, H, W, flow h, flow w, flow scale in flow pixels): the model's shape, odd sizes,
# batch > 1, no upsampling, flows far out of range, zero flow
CASES = [
    (1, 3, 256, 256, 64, 64, 3.0),
    (2, 3, 37, 53, 9, 14, 2.0),
    (3, 5, 64, 64, 64, 64, 30.0),
    (1, 2, 100, 31, 25, 8, 0.0),
    (2, 1, 17, 90, 5, 23, 12.0),
]


@pytest.fixture(scope="module")
def host_warp(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    try:
        return build_host_warp(tmp_path_factory.mktemp("kernels"))
    except BuildError as exc:
        pytest.skip(str(exc))


def _run_host(lib: ctypes.CDLL, image: torch.Tensor, flow: torch.Tensor) -> np.ndarray:
    batch, channels, height, width = image.shape
    h, w = flow.shape[2:]
    image_np = np.ascontiguousarray(image.numpy(), dtype=np.float32)
    flow_np = np.ascontiguousarray(flow.numpy(), dtype=np.float32)
    out = np.full_like(image_np, np.nan)  # poisoned: every output pixel must be written
    pointer = ctypes.POINTER(ctypes.c_float)
    lib.pirender_warp_host(
        image_np.ctypes.data_as(pointer), flow_np.ctypes.data_as(pointer), out.ctypes.data_as(pointer),
        batch, channels, height, width, h, w,
    )  # fmt: skip
    return out


def _smooth(batch: int, channels: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    coarse = torch.randn(batch, channels, 6, 6, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_host_build_of_the_kernel_math_matches_the_torch_warp(host_warp, case) -> None:  # type: ignore[no-untyped-def]
    batch, channels, height, width, h, w, scale = case
    generator = torch.Generator().manual_seed(sum(case[:6]))
    flow = scale * torch.randn(batch, 2, h, w, generator=generator)
    for image, tolerance in (
        (torch.randn(batch, channels, height, width, generator=generator), WHITE_NOISE_TOLERANCE),
        (_smooth(batch, channels, height, width, generator), SMOOTH_TOLERANCE),
    ):
        out = _run_host(host_warp, image, flow)
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out, torch_warp(image, flow).numpy(), rtol=0, atol=tolerance)


def test_host_build_keeps_the_zero_flow_convention(host_warp) -> None:  # type: ignore[no-untyped-def]
    """Zero flow is not the identity: a ramp image reads back the closed-form positions; the edges mix
    with the zero padding (half on the edge bands, a quarter in the corners of a constant image)."""
    ramp = torch.arange(256, dtype=torch.float32).repeat(1, 1, 256, 1)  # value = column
    out = _run_host(host_warp, ramp, torch.zeros(1, 2, 64, 64))
    columns = torch.arange(2, 254)
    expected = zero_flow_source_position(columns, 256, 64).numpy()
    np.testing.assert_allclose(out[0, 0, 128, 2:254], expected, atol=2e-3)
    constant = _run_host(host_warp, torch.ones(1, 1, 256, 256), torch.zeros(1, 2, 64, 64))[0, 0]
    assert constant[0, 0] == pytest.approx(0.25) and constant[0, 128] == pytest.approx(0.5)
    assert constant[128, 128] == pytest.approx(1.0)


@pytest.mark.skipif(find_nvcc() is None, reason="nvcc not found (the CUDA toolkit compiles the kernels)")
@pytest.mark.parametrize("source", CUDA_SOURCES, ids=lambda p: p.name)
def test_every_cuda_source_compiles_for_sm90_and_ptx(source: Path, tmp_path: Path) -> None:
    outputs = compile_cuda(source, tmp_path, arch="90")
    assert all(path.stat().st_size > 0 for path in outputs)
    ptx = outputs[1].read_text()
    assert ".entry pirender_warp_f32" in ptx and ".entry pirender_warp_f16" in ptx


def _cupy_ready() -> str | None:
    from pirender.kernels.cupy_warp import available

    return available()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cupy_warp_matches_the_torch_warp_on_the_gpu(case, dtype) -> None:  # type: ignore[no-untyped-def]
    missing = _cupy_ready()
    if missing:
        pytest.skip(missing)
    from pirender.kernels.cupy_warp import cupy_warp

    batch, channels, height, width, h, w, scale = case
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(batch, channels, height, width, generator=generator).cuda().to(dtype)
    flow = (scale * torch.randn(batch, 2, h, w, generator=generator)).cuda()
    poison = torch.full_like(image, float("nan"))
    del poison  # freed memory full of NaN: the kernel's output, allocated next, must overwrite it all
    out = cupy_warp(image, flow)
    expected = torch_warp(image.float(), flow)
    tolerance = WHITE_NOISE_TOLERANCE if dtype == torch.float32 else 2e-2
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, rtol=0, atol=tolerance)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_renderer_with_the_cupy_warp_matches_the_torch_warp() -> None:
    missing = _cupy_ready()
    if missing:
        pytest.skip(missing)
    from pirender.engine.motion.space import AUTHORS_SPACE
    from pirender.engine.renderer.checkpoint import random_generator
    from pirender.engine.renderer.pirender.config import TINY_CONFIG
    from pirender.engine.renderer.torch_backend import TorchRenderer

    from conftest import random_source

    windows = np.random.default_rng(0).standard_normal((2, 73, 27)).astype(np.float32)
    frames = []
    for warp in ("torch", "cupy"):
        renderer = TorchRenderer(
            random_generator(TINY_CONFIG, seed=3),
            space=AUTHORS_SPACE,
            image_size_px=64,
            device="cuda",
            warp=warp,
        )
        prepared = renderer.prepare(random_source(64))
        frames.append(renderer.render(windows, source=prepared).frame.float().cpu())
    torch.testing.assert_close(frames[1], frames[0], rtol=0, atol=1e-3)
