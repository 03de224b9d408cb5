"""The generator's shapes and the torch renderer backend (modes, precisions, errors)."""

import numpy as np
import pytest
import torch

from pirender.engine.errors import MotionError, PirenderError
from pirender.engine.motion import AUTHORS_SPACE, MotionSequence, MotionSpace
from pirender.engine.motion.limits import soft_limit
from pirender.engine.renderer.base import PreparedSource
from pirender.engine.renderer.checkpoint import random_generator
from pirender.engine.renderer.pirender.config import TINY_CONFIG
from pirender.engine.renderer.pirender.generator import FaceGenerator, set_reference_ops
from pirender.engine.renderer.torch_backend import TorchRenderer

from conftest import random_source


def _windows(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 73, 27)).astype(np.float32)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return 10 * np.log10(4.0 / mse)  # peak-to-peak 2 for [-1, 1] images


@pytest.fixture(scope="module")
def full_generator() -> FaceGenerator:
    return random_generator(seed=0)


@pytest.mark.slow
def test_shapes_at_every_stage(full_generator: FaceGenerator) -> None:
    g = full_generator
    source = torch.rand(2, 3, 256, 256) * 2 - 1
    with torch.inference_mode():
        z = g.mapping_net(torch.as_tensor(_windows(2)))
        assert z.shape == (2, 256, 1)
        stem = g.warpping_net.stem(source)
        features = g.warpping_net.hourglass.encoder(stem, z)
        assert [tuple(f.shape[1:]) for f in features] == [
            (32, 256, 256),
            (64, 128, 128),
            (128, 64, 64),
            (256, 32, 32),
            (256, 16, 16),
            (256, 8, 8),
        ]
        assert g.warpping_net.hourglass.decoder(features, z).shape == (2, 256, 64, 64)
        out = g(source, torch.as_tensor(_windows(2)))
        assert out["flow_field"].shape == (2, 2, 64, 64)  # 1/4 resolution
        assert out["warp_image"].shape == out["fake_image"].shape == (2, 3, 256, 256)
        assert out["fake_image"].abs().max() < 1  # tanh
        edit_features = g.editing_net.encoder(torch.cat([source, out["warp_image"]], 1))
        assert [tuple(f.shape[1:]) for f in edit_features] == [
            (64, 256, 256),
            (128, 128, 128),
            (256, 64, 64),
            (256, 32, 32),
        ]
        warp_only = g(source, torch.as_tensor(_windows(2)), stage="warp")
        assert set(warp_only) == {"flow_field", "warp_image"}


@pytest.mark.slow
def test_renderer_matches_the_authors_structured_forward(full_generator: FaceGenerator) -> None:
    source = random_source()
    renderer = TorchRenderer(full_generator, space=AUTHORS_SPACE, image_size_px=256)
    prepared = renderer.prepare(source)
    windows = _windows(2, seed=3)
    out = renderer.render(windows, extras=True, source=prepared)
    set_reference_ops(full_generator, True)  # the authors' operations, dead branch and all
    with torch.inference_mode():
        source_tensor = torch.as_tensor(source.rgb).permute(2, 0, 1)[None].float() / 255
        # the renderer keeps motion within the documented ranges first (random angles and crops
        # reach beyond them); the generator itself is the authors' forward
        limited = soft_limit(windows, AUTHORS_SPACE, axis=1)
        source_batch = (source_tensor.expand(2, -1, -1, -1) - 0.5) / 0.5
        reference = full_generator(source_batch, torch.as_tensor(limited))
    set_reference_ops(full_generator, False)
    torch.testing.assert_close(out.flow, reference["flow_field"], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.warped, reference["warp_image"], atol=1e-4, rtol=0)
    torch.testing.assert_close(out.frame, reference["fake_image"], atol=1e-4, rtol=0)
    # batch independence: frame 1 of the batch equals frame 1 rendered alone (oneDNN picks other
    # convolution kernels for another batch size: measured up to 1.24e-4 on a 2-core Xeon, i.e. 0.016
    # of one 8-bit level)
    single = renderer.render(windows[1:2], source=prepared).frame
    torch.testing.assert_close(single[0], out.frame[1], atol=2e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize(("precision", "min_psnr_db"), [("bf16", 28.0), ("fp16", 44.0)])
def test_reduced_precision_stays_close_to_fp32(
    full_generator: FaceGenerator, precision: str, min_psnr_db: float
) -> None:
    """Stated tolerance (random weights, which exaggerate low-precision error; measured 30.2 dB / 0.11
    and 47.7 dB / 0.015): bf16 >= 28 dB PSNR and flow within 0.2 flow pixels; fp16 >= 44 dB and 0.03."""
    import copy

    source, windows = random_source(), _windows(1, seed=5)
    reference = TorchRenderer(full_generator, space=AUTHORS_SPACE, image_size_px=256)
    reference_source = reference.prepare(source)
    expected = reference.render(windows, extras=True, source=reference_source)
    low = TorchRenderer(
        copy.deepcopy(full_generator), space=AUTHORS_SPACE, image_size_px=256, precision=precision
    )
    low_source = low.prepare(source)
    got = low.render(windows, extras=True, source=low_source)
    assert got.frame.dtype == torch.float32  # frames come back in float32 whatever the precision
    assert _psnr(got.frame, expected.frame) >= min_psnr_db
    assert (got.flow.float() - expected.flow).abs().max() <= (0.2 if precision == "bf16" else 0.03)


def test_warp_mode_and_extras(tiny_generator: FaceGenerator) -> None:
    renderer = TorchRenderer(tiny_generator, space=AUTHORS_SPACE, image_size_px=64, mode="warp")
    prepared = renderer.prepare(random_source(64))
    out = renderer.render(_windows(3)[0], source=prepared)  # a single (73, 27) window is a batch of one
    assert out.frame.shape == (1, 3, 64, 64) and out.warped is None and out.flow is None
    full = renderer.render(_windows(3), mode="full", extras=True, source=prepared)
    assert full.frame.shape == (3, 3, 64, 64) and full.flow.shape == (3, 2, 16, 16)
    warp_only = renderer.render(_windows(3), extras=True, source=prepared)
    torch.testing.assert_close(warp_only.frame, full.warped)


def test_render_errors_are_clear(tiny_generator: FaceGenerator) -> None:
    renderer = TorchRenderer(tiny_generator, space=AUTHORS_SPACE, image_size_px=64)
    with pytest.raises(PirenderError, match="prepared by another renderer"):  # no portrait of its own
        renderer.render(_windows(1), source=PreparedSource(image=random_source(64)))
    with pytest.raises(PirenderError, match="works at 64x64"):
        renderer.prepare(random_source(128))
    prepared = renderer.prepare(random_source(64))
    with pytest.raises(MotionError, match="carry 70 numbers per frame"):
        renderer.render(np.zeros((1, 70, 27), dtype=np.float32), source=prepared)
    with pytest.raises(MotionError, match="needs >= 25"):
        renderer.render(np.zeros((1, 73, 20), dtype=np.float32), source=prepared)
    with pytest.raises(MotionError, match="non-finite"):
        renderer.render(np.full((1, 73, 27), np.nan, dtype=np.float32), source=prepared)
    other = MotionSequence(MotionSpace("open-pose", tuple(f"c{i}" for i in range(73))), np.zeros((4, 73)))
    with pytest.raises(MotionError, match="cannot drive a renderer of space 'pirender-3dmm-73'"):
        renderer.check_motion(other)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where no GPU exists")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(PirenderError, match="sees no CUDA"):
        TorchRenderer(random_generator(TINY_CONFIG), space=AUTHORS_SPACE, image_size_px=64, device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16", "bf16"])
def test_cuda_matches_cpu(full_generator: FaceGenerator, precision: str) -> None:
    """CUDA against the CPU fp32 result: fp32 (TF32 off) within 1e-3; reduced precisions by PSNR."""
    import copy

    source, windows = random_source(), _windows(2, seed=7)
    cpu = TorchRenderer(copy.deepcopy(full_generator), space=AUTHORS_SPACE, image_size_px=256)
    cpu_source = cpu.prepare(source)
    expected = cpu.render(windows, extras=True, source=cpu_source)
    gpu = TorchRenderer(
        copy.deepcopy(full_generator),
        space=AUTHORS_SPACE,
        image_size_px=256,
        device="cuda",
        precision=precision,
    )
    gpu_source = gpu.prepare(source)
    got = gpu.render(windows, extras=True, source=gpu_source)
    flow_err = float((got.flow.float().cpu() - expected.flow).abs().max())
    frame_err = float((got.frame.float().cpu() - expected.frame).abs().max())
    psnr = _psnr(got.frame.cpu(), expected.frame)
    print(f"cuda {precision}: flow max abs {flow_err:.2e}, frame max abs {frame_err:.2e}, PSNR {psnr:.1f} dB")
    if precision == "fp32":
        assert flow_err <= 1e-3 and frame_err <= 1e-3
    else:
        assert psnr >= {"tf32": 46.0, "fp16": 44.0, "bf16": 28.0}[precision]


def test_the_compiled_per_frame_path_matches_eager() -> None:
    """torch.compile of the per-frame path (frozen weights on CPU): same frames, any batch size."""
    source = random_source(64)
    eager = TorchRenderer(random_generator(TINY_CONFIG, seed=5), space=AUTHORS_SPACE, image_size_px=64)
    compiled = TorchRenderer(
        random_generator(TINY_CONFIG, seed=5), space=AUTHORS_SPACE, image_size_px=64, compile=True
    )
    eager_source = eager.prepare(source)
    compiled_source = compiled.prepare(source)
    for batch in (1, 3, 1):  # static graphs per power-of-two bucket (3 runs padded to 4); new inputs
        windows = _windows(batch, seed=batch)
        torch.testing.assert_close(
            compiled.render(windows, extras=True, source=compiled_source).frame,
            eager.render(windows, source=eager_source).frame,
            atol=1e-4,
            rtol=0,
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replays_new_inputs() -> None:
    """On CUDA, compile uses CUDA graphs ("reduce-overhead"): replays with new windows give new frames
    equal to eager ones, and a returned frame survives the next replay."""
    source = random_source(64)
    eager = TorchRenderer(
        random_generator(TINY_CONFIG, seed=5), space=AUTHORS_SPACE, image_size_px=64, device="cuda"
    )
    graph = TorchRenderer(
        random_generator(TINY_CONFIG, seed=5),
        space=AUTHORS_SPACE,
        image_size_px=64,
        device="cuda",
        compile=True,
    )
    eager_source = eager.prepare(source)
    graph_source = graph.prepare(source)
    frames = []
    for seed in range(4):
        windows = _windows(2, seed=seed)
        frames.append(graph.render(windows, source=graph_source).frame)
        torch.testing.assert_close(
            frames[-1], eager.render(windows, source=eager_source).frame, atol=1e-3, rtol=0
        )
    assert not torch.equal(frames[0], frames[1])
    torch.testing.assert_close(
        frames[0], eager.render(_windows(2, seed=0), source=eager_source).frame, atol=1e-3, rtol=0
    )
