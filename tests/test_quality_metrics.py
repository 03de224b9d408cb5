"""LPIPS and FID from local weight files (training/quality_metrics.py).

The weight files are random tensors in the exact layouts of the real ones: torchvision's alexnet /
vgg16 state dicts (keys and shapes written out here, not taken from our model), lpips' v0.1 linear
layers, and the FID Inception (its key/shape list checked against torch-fidelity's by a digest).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from pirender.engine.errors import CheckpointError, ImageError, PirenderError
from pirender.training.quality_metrics import (
    FidInceptionV3,
    FidMetric,
    LpipsMetric,
    frechet_distance,
    resize_bilinear_tf1,
)

#: torchvision alexnet(): features conv index -> (out, in, kernel); classifier index -> (out, in)
ALEX_CONVS = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
ALEX_CLASSIFIER = {1: (4096, 9216), 4: (4096, 4096), 6: (1000, 4096)}
#: torchvision vgg16()
VGG16_CONVS = {
    i: (o, c, 3)
    for i, (o, c) in {
        0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256),
        14: (256, 256), 17: (512, 256), 19: (512, 512), 21: (512, 512), 24: (512, 512),
        26: (512, 512), 28: (512, 512),
    }.items()
}  # fmt: skip
VGG16_CLASSIFIER = {0: (4096, 25088), 3: (4096, 4096), 6: (1000, 4096)}
LPIPS_WIDTHS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
#: sha256 of "key (shape)" lines (sorted) of torch-fidelity 0.4.0's FeatureExtractorInceptionV3,
#: whose load is strict: the layout of weights-inception-2015-12-05-6726825d.pth (566 keys)
FID_LAYOUT_SHA256 = "760681d791cb624e1bf7a2e802a68933dd17aa5e3109fcf498d9dfa521bc10d7"


def torchvision_state_dict(
    convs: dict[int, tuple[int, int, int]], classifier: dict[int, tuple[int, int]], seed: int
) -> dict[str, torch.Tensor]:
    """Random weights in torchvision's layout; the (unused) classifier as stride-0 views, so tiny on disk."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for index, (c_out, c_in, k) in convs.items():
        state[f"features.{index}.weight"] = (
            torch.randn(c_out, c_in, k, k, generator=gen) * (2 / (c_in * k * k)) ** 0.5
        )
        state[f"features.{index}.bias"] = torch.randn(c_out, generator=gen) * 0.01
    for index, (c_out, c_in) in classifier.items():
        state[f"classifier.{index}.weight"] = torch.zeros(1, 1).expand(c_out, c_in)
        state[f"classifier.{index}.bias"] = torch.zeros(1).expand(c_out)
    return state


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("quality_weights")
    torch.save(torchvision_state_dict(ALEX_CONVS, ALEX_CLASSIFIER, seed=1), folder / "alexnet.pth")
    torch.save(torchvision_state_dict(VGG16_CONVS, VGG16_CLASSIFIER, seed=2), folder / "vgg16.pth")
    gen = torch.Generator().manual_seed(3)
    for net, widths in LPIPS_WIDTHS.items():
        linear = {
            f"lin{k}.model.1.weight": torch.rand(1, w, 1, 1, generator=gen) for k, w in enumerate(widths)
        }
        torch.save(linear, folder / f"linear_{net}.pth")
    (folder / "notes.txt").write_text("not a checkpoint\n")
    return folder


@pytest.fixture(scope="module")
def fid_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random FID Inception weights that keep activations O(1) (so that features differ between images)."""
    model = FidInceptionV3()
    gen = torch.Generator().manual_seed(4)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=gen)
        elif isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.1, generator=gen)
            module.running_var.uniform_(0.5, 2.0, generator=gen)
            module.weight.data.uniform_(0.5, 1.5, generator=gen)
            module.bias.data.normal_(0.0, 0.1, generator=gen)
    path = tmp_path_factory.mktemp("fid_weights") / "pt_inception-2015-12-05-random.pth"
    torch.save(model.state_dict(), path)
    return path


def images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def assert_one_line(exc: pytest.ExceptionInfo[BaseException], *parts: str) -> None:
    text = str(exc.value)
    assert "\n" not in text
    for part in parts:
        assert part in text, text


# ---------------------------------------------------------------------------------------------- LPIPS


def reference_alex_lpips(state: dict, linear: dict, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 written out with functional ops straight from the two state dicts."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - shift) / scale
        out = []
        for index, (stride, pad, pool) in {0: (4, 2, False), 3: (1, 2, True), 6: (1, 1, True)}.items():
            x = F.max_pool2d(x, 3, 2) if pool else x
            x = F.relu(
                F.conv2d(x, state[f"features.{index}.weight"], state[f"features.{index}.bias"], stride, pad)
            )
            out.append(x)
        for index in (8, 10):
            x = F.relu(F.conv2d(x, state[f"features.{index}.weight"], state[f"features.{index}.bias"], 1, 1))
            out.append(x)
        return out

    total = torch.zeros(a.shape[0])
    for k, (fa, fb) in enumerate(zip(taps(a), taps(b), strict=True)):
        fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total += ((fa - fb) ** 2 * linear[f"lin{k}.model.1.weight"]).sum(1).mean((1, 2))
    return total


def test_lpips_alex_matches_the_formula_is_zero_on_equal_images_and_symmetric(weights_dir: Path) -> None:
    metric = LpipsMetric.from_files(weights_dir / "alexnet.pth", linear=weights_dir / "linear_alex.pth")
    x, y = images(3, seed=1), images(3, seed=2)
    d_xy, d_yx, d_xx = metric(x, y), metric(y, x), metric(x, x)
    assert d_xy.shape == (3,) and d_xy.dtype == np.float64
    assert np.all(d_xx == 0.0)
    assert np.all(d_xy > 0) and np.array_equal(d_xy, d_yx)
    state = torch.load(weights_dir / "alexnet.pth", weights_only=True)
    linear = torch.load(weights_dir / "linear_alex.pth", weights_only=True)
    expected = reference_alex_lpips(state, linear, x, y).double().numpy()
    np.testing.assert_allclose(d_xy, expected, rtol=1e-5)
    # each pair is measured on its own: a batch gives what single pairs give
    np.testing.assert_allclose(metric(x[1:2], y[1:2]), d_xy[1:2], rtol=1e-5)
    # closer images are closer
    assert np.all(metric(x, (x + 0.05 * y).clamp(-1, 1)) < d_xy)


def test_lpips_vgg_and_the_packaged_linear_layers(weights_dir: Path) -> None:
    metric = LpipsMetric.from_files(
        weights_dir / "vgg16.pth", net="vgg", linear=weights_dir / "linear_vgg.pth"
    )
    x, y = images(2, size=32, seed=3), images(2, size=32, seed=4)
    d = metric(x, y)
    assert d.shape == (2,) and np.all(d > 0) and np.all(metric(y, y) == 0.0)
    assert "vgg16.pth" in metric.description and "linear_vgg.pth" in metric.description
    # without a linear file: the copy of lpips' v0.1 layers that torchmetrics (a dependency) ships
    default = LpipsMetric.from_files(weights_dir / "alexnet.pth")
    assert "torchmetrics" in default.linear_source and "alex.pth" in default.linear_source
    assert default(x, y).shape == (2,)
    smallest = images(1, size=default.min_size_px)  # AlexNet's 31 px still reach its last tap
    assert default(smallest, -smallest).shape == (1,)


def test_lpips_files_that_are_missing_or_of_another_format_are_one_line(weights_dir: Path) -> None:
    alex = "torchvision alexnet state dict (alexnet-owt-7be5be79.pth)"
    with pytest.raises(CheckpointError) as exc:
        LpipsMetric.from_files(weights_dir / "absent.pth")
    assert_one_line(exc, "absent.pth", "no such file", alex)
    with pytest.raises(CheckpointError) as exc:
        LpipsMetric.from_files(weights_dir / "notes.txt")
    assert_one_line(exc, "notes.txt", "not a PyTorch checkpoint", alex)
    with pytest.raises(CheckpointError) as exc:
        LpipsMetric.from_files(weights_dir)
    assert_one_line(exc, "folder", alex)
    with pytest.raises(CheckpointError) as exc:  # VGG-16 weights for AlexNet
        LpipsMetric.from_files(weights_dir / "vgg16.pth", linear=weights_dir / "linear_alex.pth")
    assert_one_line(exc, "vgg16.pth", "features.3.weight", alex)
    with pytest.raises(CheckpointError) as exc:  # AlexNet weights for VGG-16
        LpipsMetric.from_files(weights_dir / "alexnet.pth", net="vgg", linear=weights_dir / "linear_vgg.pth")
    assert_one_line(exc, "alexnet.pth", "torchvision vgg16 state dict (vgg16-397923af.pth)")
    with pytest.raises(CheckpointError) as exc:  # VGG's linear layers for AlexNet
        LpipsMetric.from_files(weights_dir / "alexnet.pth", linear=weights_dir / "linear_vgg.pth")
    assert_one_line(exc, "linear_vgg.pth", "lin1.model.1.weight", "weights/v0.1/alex.pth")
    with pytest.raises(CheckpointError) as exc:  # a backbone where the linear layers belong
        LpipsMetric.from_files(weights_dir / "alexnet.pth", linear=weights_dir / "alexnet.pth")
    assert_one_line(exc, "alexnet.pth", "lacks lin0.model.1.weight", "LPIPS v0.1 linear-layer state dict")
    with pytest.raises(PirenderError) as exc:
        LpipsMetric.from_files(weights_dir / "alexnet.pth", net="squeeze")
    assert_one_line(exc, "squeeze", "alex, vgg")


def test_lpips_refuses_images_it_cannot_measure(weights_dir: Path) -> None:
    metric = LpipsMetric.from_files(weights_dir / "alexnet.pth", linear=weights_dir / "linear_alex.pth")
    x = images(2)
    bad = [
        (x[:, :1], "(B, 3, H, W)"),
        ((x * 127.5 + 127.5).to(torch.uint8), "floating-point"),
        (x * 255, "expected [-1, 1]"),
        (images(2, size=16), "too small"),
    ]
    for tensor, message in bad:
        with pytest.raises(ImageError) as exc:
            metric(tensor, tensor)
        assert_one_line(exc, message)
    with pytest.raises(ImageError) as exc:
        metric(x, images(1))
    assert_one_line(exc, "differ in shape")


# ------------------------------------------------------------------------------------------------ FID


def test_fid_network_has_the_reference_weight_layout() -> None:
    state = FidInceptionV3().state_dict()
    lines = "\n".join(f"{k} {tuple(v.shape)}" for k, v in sorted(state.items()))
    assert len(state) == 566
    assert hashlib.sha256(lines.encode()).hexdigest() == FID_LAYOUT_SHA256


def test_tf1_resize_samples_without_half_pixel_offsets() -> None:
    x = torch.tensor([[[[0.0, 4.0]]]]).expand(1, 1, 2, 2)
    assert torch.equal(resize_bilinear_tf1(x, 4)[0, 0, 0], torch.tensor([0.0, 2.0, 4.0, 4.0]))
    y = torch.rand(2, 3, 299, 299)
    assert torch.equal(resize_bilinear_tf1(y, 299), y)


def test_frechet_distance_matches_the_sqrtm_formula() -> None:
    rng = np.random.default_rng(0)

    def reference(a: np.ndarray, b: np.ndarray) -> float:
        sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        root = scipy.linalg.sqrtm(sa @ sb).real
        return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa + sb - 2 * root))

    for n, d in ((200, 16), (12, 16)):  # more images than dimensions, and fewer
        a = rng.normal(size=(n, d))
        b = rng.normal(size=(n + 5, d)) * 1.3 + 0.2
        assert frechet_distance(a, b) == pytest.approx(reference(a, b), rel=1e-6)
        assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
        assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_fid_is_zero_for_one_set_and_positive_for_two(fid_file: Path) -> None:
    metric = FidMetric.from_file(fid_file, batch_size=2)
    real, other = images(3, seed=5), (images(3, seed=5) * 0.5 + 0.3).clamp(-1, 1)
    real_features = metric.extract(real)  # chunks of 2 + 1
    assert real_features.shape == (3, 2048) and real_features.dtype == torch.float32
    metric.add_features(real_features, real=True)
    metric.add_features(real_features, real=False)
    assert (metric.real_count, metric.fake_count) == (3, 3)
    assert metric.compute() == pytest.approx(0.0, abs=1e-6)
    metric.reset()
    metric.add_features(real_features, real=True)
    other_features = metric.extract(other)
    metric.add_features(other_features, real=False)
    assert metric.compute() > 1e-3
    assert "3 real, 3 generated" in metric.description
    # one chunk instead of two gives the same features
    metric.batch_size = 16
    torch.testing.assert_close(metric.extract(other[:2]), other_features[:2], rtol=1e-4, atol=1e-5)


def test_fid_refuses_fewer_than_two_images_a_side(fid_file: Path) -> None:
    metric = FidMetric.from_file(fid_file)
    with pytest.raises(PirenderError) as exc:
        metric.compute()
    assert_one_line(exc, "at least 2 images a side", "0 real, 0 generated")
    metric.update(images(2), real=True)
    metric.update(images(1, seed=9), real=False)
    with pytest.raises(PirenderError) as exc:
        metric.compute()
    assert_one_line(exc, "2 real, 1 generated")
    with pytest.raises(ImageError) as exc:
        metric.update(images(2) * 255, real=False)
    assert_one_line(exc, "expected [-1, 1]")


def test_fid_files_that_are_missing_or_of_another_format_are_one_line(
    fid_file: Path, weights_dir: Path, tmp_path: Path
) -> None:
    expected = "FID Inception-v3 state dict (pytorch-fid's pt_inception-2015-12-05-6726825d.pth"
    with pytest.raises(CheckpointError) as exc:
        FidMetric.from_file(tmp_path / "pt_inception.pth")
    assert_one_line(exc, "pt_inception.pth", "no such file", expected)
    with pytest.raises(CheckpointError) as exc:
        FidMetric.from_file(weights_dir / "notes.txt")
    assert_one_line(exc, "notes.txt", expected)
    with pytest.raises(CheckpointError) as exc:
        FidMetric.from_file(weights_dir / "alexnet.pth")
    assert_one_line(exc, "alexnet.pth", "lacks Conv2d_1a_3x3.conv.weight", expected)
    state = torch.load(fid_file, weights_only=True)
    # torchvision's ImageNet Inception-v3: the same block names, an auxiliary head, 1000 classes
    imagenet = {**state, "AuxLogits.fc.weight": torch.zeros(1000, 768), "fc.weight": torch.zeros(1000, 2048)}
    torch.save(imagenet, tmp_path / "inception_v3_google.pth")
    with pytest.raises(CheckpointError) as exc:
        FidMetric.from_file(tmp_path / "inception_v3_google.pth")
    assert_one_line(exc, "ImageNet inception_v3", expected)
    state["Mixed_5b.branch1x1.conv.weight"] = torch.zeros(64, 192, 3, 3)
    torch.save(state, tmp_path / "misshapen.pth")
    with pytest.raises(CheckpointError) as exc:
        FidMetric.from_file(tmp_path / "misshapen.pth")
    assert_one_line(exc, "misshapen.pth", "Mixed_5b.branch1x1.conv.weight has shape [64, 192, 3, 3]")
    # without the unused classifier and the batch norms' counters it still loads
    lean = {k: v for k, v in state.items() if not (k.startswith("fc.") or k.endswith("num_batches_tracked"))}
    lean["Mixed_5b.branch1x1.conv.weight"] = torch.zeros(64, 192, 1, 1)
    torch.save(lean, tmp_path / "lean.pth")
    assert FidMetric.from_file(tmp_path / "lean.pth").weights_file.name == "lean.pth"
