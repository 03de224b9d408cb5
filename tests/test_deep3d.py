"""Deep3DFaceRecon in our code: torchvision key layout, strict checkpoint loading, the 257 layout,
the five-point alignment (deep3d-facts.md sections 1-3) and the 73 numbers PIRenderer reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pirender.engine.errors import CheckpointError, ImageError, LandmarkError, PirenderError
from pirender.engine.motion import AUTHORS_SPACE
from pirender.engine.track.deep3d import (
    CROP_SIZE_PX,
    REFERENCE_POINTS_3D,
    Deep3DReconNet,
    Deep3DRegressor,
    align_face,
    fit_pos,
    five_points_from_68,
    load_deep3d_checkpoint,
)

#: Output channels of the seven head layers: id, exp, tex, angle, gamma, (tx, ty), tz.
HEAD_SIZES = (80, 64, 80, 3, 27, 2, 1)
FRAME_PX = 256


# ---------------------------------------------------------------------------------------------------
# Helpers


def expected_key_shapes() -> dict[str, tuple[int, ...]]:
    """The released ``net_recon`` layout, enumerated here from torchvision's ResNet-50 rules (not from
    our model): conv1/bn1, layer1..4 of [3, 4, 6, 3] bottlenecks (expansion 4) with downsample.0/1 on
    each first block, no fc, then final_layers.0..6."""
    shapes: dict[str, tuple[int, ...]] = {}

    def batch_norm(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["backbone.conv1.weight"] = (64, 3, 7, 7)
    batch_norm("backbone.bn1", 64)
    inplanes = 64
    for layer, (blocks, planes) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)], start=1):
        for block in range(blocks):
            prefix = f"backbone.layer{layer}.{block}"
            shapes[f"{prefix}.conv1.weight"] = (planes, inplanes, 1, 1)
            batch_norm(f"{prefix}.bn1", planes)
            shapes[f"{prefix}.conv2.weight"] = (planes, planes, 3, 3)
            batch_norm(f"{prefix}.bn2", planes)
            shapes[f"{prefix}.conv3.weight"] = (planes * 4, planes, 1, 1)
            batch_norm(f"{prefix}.bn3", planes * 4)
            if block == 0:
                shapes[f"{prefix}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                batch_norm(f"{prefix}.downsample.1", planes * 4)
            inplanes = planes * 4
    for index, size in enumerate(HEAD_SIZES):
        shapes[f"final_layers.{index}.weight"] = (size, 2048, 1, 1)
        shapes[f"final_layers.{index}.bias"] = (size,)
    return shapes


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the released layout (every entry random, running_var positive)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in expected_key_shapes().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.randint(1, 10_000, shape, generator=gen, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.02
    return state


def head_biases() -> list[torch.Tensor]:
    """Distinct, exactly representable biases per head layer: layer i holds 1000 * (i + 1) + 0, 1, ..."""
    return [
        1000.0 * (index + 1) + torch.arange(size, dtype=torch.float32)
        for index, size in enumerate(HEAD_SIZES)
    ]


def bias_net() -> Deep3DReconNet:
    """Random backbone, zero head weights, :func:`head_biases` as head biases: the output is the biases."""
    torch.manual_seed(0)
    net = Deep3DReconNet()
    with torch.no_grad():
        for layer, bias in zip(net.final_layers, head_biases(), strict=True):
            layer.weight.zero_()
            layer.bias.copy_(bias)
    return net.eval()


def rotation(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """R = Rz(roll) Ry(yaw) Rx(pitch), column vectors."""
    cx, sx, cy, sy, cz, sz = (
        np.cos(pitch),
        np.sin(pitch),
        np.cos(yaw),
        np.sin(yaw),
        np.cos(roll),
        np.sin(roll),
    )
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def project_up(scale_pos: float, t0: float, t1: float, rot: np.ndarray | None = None) -> np.ndarray:
    """The reference points through a scaled orthographic camera: (5, 2) pixels, y up."""
    turned = REFERENCE_POINTS_3D @ (np.eye(3) if rot is None else rot).T
    return scale_pos * turned[:, :2] + np.array([t0, t1])


def to_image(points_up: np.ndarray, height_px: int) -> np.ndarray:
    """y-up points -> image pixel coordinates (y down): row = H0 - 1 - y_up."""
    image = points_up.copy()
    image[:, 1] = height_px - 1 - image[:, 1]
    return image


def smooth_frame(size_px: int) -> np.ndarray:
    """A smooth RGB pattern defined on [0, 1]^2, so that frames of any size show the same picture."""
    axis = (np.arange(size_px) + 0.5) / size_px
    y, x = np.meshgrid(axis, axis, indexing="ij")
    red = 0.5 + 0.4 * np.sin(2 * np.pi * x)
    green = 0.5 + 0.4 * np.cos(2 * np.pi * y)
    blue = 0.5 + 0.4 * np.sin(2 * np.pi * (x + y))
    return np.round(np.stack([red, green, blue], axis=-1) * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# Network layout and checkpoint


@pytest.fixture(scope="module")
def released_state() -> dict[str, torch.Tensor]:
    return random_state_dict()


@pytest.fixture(scope="module")
def released_checkpoint(tmp_path_factory: pytest.TempPathFactory, released_state) -> Path:
    """A file in the Deep3DFaceRecon training layout: net_recon + optimizer/scheduler entries."""
    path = tmp_path_factory.mktemp("deep3d") / "epoch_20.pth"
    optimizer = {
        "state": {},
        "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "params": [0]}],
    }
    torch.save({"net_recon": released_state, "opt_00": optimizer, "sched_00": {"last_epoch": 20}}, path)
    return path


def test_network_has_torchvision_keys_shapes_and_parameter_count() -> None:
    net = Deep3DReconNet()
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert ours == expected_key_shapes()
    assert len(ours) == 332
    assert sum(k.startswith("backbone.") for k in ours) == 318
    assert ours["backbone.conv1.weight"] == (64, 3, 7, 7)
    assert ours["backbone.layer4.2.bn3.running_mean"] == (2048,)
    assert ours["backbone.layer2.0.downsample.0.weight"] == (512, 256, 1, 1)
    assert ours["backbone.layer3.5.bn2.running_var"] == (256,)
    assert ours["backbone.layer1.0.downsample.1.num_batches_tracked"] == ()
    assert ours["backbone.layer3.0.conv2.weight"] == (256, 256, 3, 3)
    assert ours["final_layers.0.weight"] == (80, 2048, 1, 1)
    assert ours["final_layers.6.weight"] == (1, 2048, 1, 1)
    assert ours["final_layers.4.bias"] == (27,)
    assert not any(".fc." in k or k.startswith("backbone.fc") for k in ours)
    assert sum(p.numel() for p in net.parameters()) == 24_034_625
    assert sum(p.numel() for p in net.backbone.parameters()) == 23_508_032
    # the stride sits on the 3x3 conv, as in torchvision (and not on conv1 of the block)
    assert net.backbone.layer2[0].conv2.stride == (2, 2) and net.backbone.layer2[0].conv1.stride == (1, 1)
    bn = net.backbone.layer3[5].bn2
    assert (bn.eps, bn.momentum) == (1e-5, 0.1)


def test_backbone_pools_to_2048_and_the_net_outputs_257() -> None:
    net = Deep3DReconNet().eval()
    with torch.inference_mode():
        images = torch.rand(2, 3, CROP_SIZE_PX, CROP_SIZE_PX)
        assert net.backbone(images).shape == (2, 2048, 1, 1)
        assert net(images).shape == (2, 257)


def test_released_checkpoint_loads_strictly(released_checkpoint: Path, released_state) -> None:
    net = load_deep3d_checkpoint(released_checkpoint)
    assert not net.training
    assert not any(p.requires_grad for p in net.parameters())
    loaded = net.state_dict()
    assert len(loaded) == 332
    for key, value in released_state.items():
        assert torch.equal(loaded[key], value), key


def test_module_prefix_and_bare_state_dict_load(tmp_path: Path, released_state) -> None:
    prefixed = tmp_path / "prefixed.pth"
    torch.save({"net_recon": {f"module.{k}": v for k, v in released_state.items()}}, prefixed)
    bare = tmp_path / "bare.pth"
    torch.save(released_state, bare)
    for path in (prefixed, bare):
        net = load_deep3d_checkpoint(path)
        assert torch.equal(net.state_dict()["final_layers.6.weight"], released_state["final_layers.6.weight"])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("shape", "final_layers.3.weight is [4, 2048, 1, 1] in the file but [3, 2048, 1, 1] in the model"),
        ("missing", "1 missing key(s): backbone.layer3.5.bn2.running_var"),
        ("unexpected", "1 unexpected key(s): backbone.fc.weight"),
    ],
)
def test_mismatching_checkpoint_names_the_key(
    tmp_path: Path, released_state, change: str, expected: str
) -> None:
    state = dict(released_state)
    if change == "shape":
        state["final_layers.3.weight"] = torch.zeros(4, 2048, 1, 1)
    elif change == "missing":
        del state["backbone.layer3.5.bn2.running_var"]
    else:
        state["backbone.fc.weight"] = torch.zeros(1000, 2048)
    path = tmp_path / "bad.pth"
    torch.save({"net_recon": state}, path)
    with pytest.raises(CheckpointError) as caught:
        load_deep3d_checkpoint(path)
    message = str(caught.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_files_that_are_not_deep3d_checkpoints_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_deep3d_checkpoint(text)
    with pytest.raises(CheckpointError, match="no such file"):
        load_deep3d_checkpoint(tmp_path / "epoch_20.pth")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_deep3d_checkpoint(tmp_path)
    other = tmp_path / "other.pth"
    torch.save({"net_G_ema": {"w": torch.zeros(1)}, "current_epoch": 3}, other)
    with pytest.raises(CheckpointError, match=r"no 'net_recon' entry .*keys: current_epoch, net_G_ema"):
        load_deep3d_checkpoint(other)
    not_tensors = tmp_path / "not_tensors.pth"
    torch.save({"net_recon": {"backbone.conv1.weight": 1.0}}, not_tensors)
    with pytest.raises(CheckpointError, match="non-tensor"):
        load_deep3d_checkpoint(not_tensors)


# ---------------------------------------------------------------------------------------------------
# The 257 layout and the 73 numbers


def test_outputs_follow_the_257_layout() -> None:
    net = bias_net()
    with torch.inference_mode():
        out = net(torch.rand(2, 3, CROP_SIZE_PX, CROP_SIZE_PX))
    expected = torch.cat(head_biases())
    assert out.shape == (2, 257)
    assert torch.equal(out[0], expected) and torch.equal(out[1], expected)
    # id 0..79, exp 80..143, tex 144..223, angle 224..226, gamma 227..253, trans 254..256
    assert out[0, 0] == 1000 and out[0, 79] == 1079
    assert out[0, 80] == 2000 and out[0, 143] == 2063
    assert out[0, 144] == 3000 and out[0, 223] == 3079
    assert out[0, 224:227].tolist() == [4000, 4001, 4002]
    assert out[0, 227] == 5000 and out[0, 253] == 5026
    assert out[0, 254:257].tolist() == [6000, 6001, 7000]


def test_predict_lands_exp_angles_trans_and_crop_in_the_authors_slots() -> None:
    regressor = Deep3DRegressor(bias_net(), "cpu")
    frame = smooth_frame(FRAME_PX)
    points = to_image(project_up(90.0, 131.0, 118.0), FRAME_PX)

    coeffs, trans_params = regressor.predict_coefficients(frame, points)
    assert coeffs.shape == (257,) and coeffs.dtype == np.float32
    np.testing.assert_array_equal(coeffs, torch.cat(head_biases()).numpy())
    assert trans_params.shape == (5,) and trans_params.dtype == np.float32

    motion = regressor.predict(frame, points)
    assert motion.space == AUTHORS_SPACE and motion.values.shape == (73,)
    values = motion.values
    np.testing.assert_array_equal(values[0:64], 2000 + np.arange(64))
    np.testing.assert_array_equal(values[64:67], [4000, 4001, 4002])
    np.testing.assert_array_equal(values[67:70], [6000, 6001, 7000])
    np.testing.assert_array_equal(values[70:73], trans_params[2:5])
    np.testing.assert_allclose(values[70:73], [102 / 90, 131.0, 118.0], rtol=1e-5)

    batch = regressor.predict_batch([frame, frame], np.stack([points, points]))
    assert batch.shape == (2, 73)
    np.testing.assert_array_equal(batch[1], values)


def test_regressor_refuses_unknown_devices_and_bad_crops() -> None:
    with pytest.raises(PirenderError, match="cannot use device"):
        Deep3DRegressor(Deep3DReconNet(), "no-such-device")
    regressor = Deep3DRegressor(Deep3DReconNet())
    with pytest.raises(ImageError, match=r"crops must be \(N, 224, 224, 3\) uint8"):
        regressor.coefficients_of_crops(np.zeros((2, 100, 100, 3), np.uint8))


# ---------------------------------------------------------------------------------------------------
# Alignment


@pytest.mark.parametrize("rot", [np.eye(3), rotation(0.15, 0.35, -0.2)])
def test_fit_pos_recovers_scale_and_translation(rot: np.ndarray) -> None:
    scale_pos, t0, t1 = 90.0, 131.3, 118.7
    fit = fit_pos(project_up(scale_pos, t0, t1, rot))
    np.testing.assert_allclose([fit.scale_pos, fit.t0, fit.t1], [scale_pos, t0, t1], rtol=1e-4)


def test_align_face_puts_the_points_on_the_template() -> None:
    scale_pos, t0, t1 = 90.0, 131.3, 118.7
    points = to_image(project_up(scale_pos, t0, t1), FRAME_PX)
    aligned = align_face(smooth_frame(FRAME_PX), points)

    assert aligned.crop_rgb.shape == (224, 224, 3) and aligned.crop_rgb.dtype == np.uint8
    assert aligned.trans_params.dtype == np.float32
    w0, h0, s, fit_t0, fit_t1 = aligned.trans_params.tolist()
    assert (w0, h0) == (FRAME_PX, FRAME_PX)
    np.testing.assert_allclose([s, fit_t0, fit_t1], [102 / scale_pos, t0, t1], rtol=1e-5)
    np.testing.assert_array_equal(aligned.crop_params, aligned.trans_params[2:5])

    # 1 model unit = 102 crop pixels around the principal point (112, 112) y-up, i.e. row 223 - y_up
    template_x = 112 + 102 * REFERENCE_POINTS_3D[:, 0]
    template_row = 223 - (112 + 102 * REFERENCE_POINTS_3D[:, 1])
    assert aligned.points_crop.shape == (5, 2)
    np.testing.assert_allclose(aligned.points_crop[:, 0], template_x, atol=1.0)
    np.testing.assert_allclose(aligned.points_crop[:, 1], template_row, atol=1.0)


def test_crop_content_follows_the_moved_points() -> None:
    """A bright blob on the nose point of the frame shows up at the moved nose point of the crop."""
    scale_pos, t0, t1 = 70.0, 120.0, 140.0
    points = to_image(project_up(scale_pos, t0, t1), FRAME_PX)
    rows, cols = np.mgrid[0:FRAME_PX, 0:FRAME_PX]
    nose_x, nose_y = points[2]
    blob = np.exp(-((cols - nose_x) ** 2 + (rows - nose_y) ** 2) / (2 * 3.0**2))
    frame = np.repeat(np.round(blob * 255).astype(np.uint8)[..., None], 3, axis=2)

    aligned = align_face(frame, points)
    brightness = aligned.crop_rgb[..., 0].astype(np.float64)
    peak_row, peak_col = np.unravel_index(np.argmax(brightness), brightness.shape)
    assert abs(peak_col - aligned.points_crop[2, 0]) <= 2.0
    assert abs(peak_row - aligned.points_crop[2, 1]) <= 2.0


def test_crop_outside_the_frame_is_black() -> None:
    frame = np.full((FRAME_PX, FRAME_PX, 3), 255, np.uint8)
    points = to_image(project_up(90.0, 10.0, FRAME_PX - 10.0), FRAME_PX)  # face at the top-left corner
    crop = align_face(frame, points).crop_rgb
    assert (crop[:40, :40] == 0).all()  # above and left of the frame
    assert (crop[150:, 150:] == 255).all()  # inside the frame


def test_a_frame_twice_as_large_halves_s_and_doubles_t() -> None:
    scale_pos, t0, t1 = 90.0, 131.3, 118.7
    points = to_image(project_up(scale_pos, t0, t1), FRAME_PX)
    small = align_face(smooth_frame(FRAME_PX), points)
    large = align_face(smooth_frame(2 * FRAME_PX), points * 2)
    _, _, s, t0_small, t1_small = small.trans_params.astype(np.float64)
    w0, h0, s_large, t0_large, t1_large = large.trans_params.astype(np.float64)
    assert (w0, h0) == (2 * FRAME_PX, 2 * FRAME_PX)
    np.testing.assert_allclose(s_large, s / 2, rtol=1e-5)
    np.testing.assert_allclose(t0_large, 2 * t0_small, rtol=1e-5)
    # t1 moves by a further (f - 1) = 1 px through the H0 - 1 flip (deep3d-facts.md section 3)
    np.testing.assert_allclose(t1_large, 2 * t1_small + 1, rtol=1e-5)
    np.testing.assert_allclose(large.points_crop, small.points_crop, atol=1.0)
    difference = np.abs(large.crop_rgb.astype(np.int16) - small.crop_rgb.astype(np.int16))
    assert difference.mean() < 2.0


def test_five_points_from_68_landmarks() -> None:
    landmarks = np.arange(136, dtype=np.float64).reshape(68, 2)
    five = five_points_from_68(landmarks)
    np.testing.assert_array_equal(five[0], (landmarks[36] + landmarks[39]) / 2)
    np.testing.assert_array_equal(five[1], (landmarks[42] + landmarks[45]) / 2)
    np.testing.assert_array_equal(five[2:], landmarks[[30, 48, 54]])


# ---------------------------------------------------------------------------------------------------
# Bad inputs


def _good_points() -> np.ndarray:
    return to_image(project_up(90.0, 128.0, 128.0), FRAME_PX)


@pytest.mark.parametrize(
    ("points", "match"),
    [
        (np.zeros((4, 2)), r"must be a \(5, 2\) array"),
        (np.zeros((5, 3)), r"must be a \(5, 2\) array"),
        (np.zeros(10), r"must be a \(5, 2\) array"),
        ("eyes", r"must be a \(5, 2\) array"),
        (np.where(np.arange(10).reshape(5, 2) == 5, np.nan, 100.0), "point 2 is not finite"),
        (np.full((5, 2), np.inf), "point 0 is not finite"),
        (np.full((5, 2), 120.0), "degenerate face points"),
        (np.array([[128.0, 128.0]] * 4 + [[128.4, 128.2]]), "degenerate face points"),
    ],
)
def test_bad_points_are_refused(points: object, match: str) -> None:
    with pytest.raises(LandmarkError, match=match) as caught:
        align_face(smooth_frame(FRAME_PX), points)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, PirenderError)


def test_bad_frames_and_impossible_scales_are_refused() -> None:
    for frame in (
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 3), np.float32),
        np.zeros((0, 5, 3), np.uint8),
    ):
        with pytest.raises(ImageError, match=r"frame must be an \(H, W, 3\) uint8 RGB array"):
            align_face(frame, _good_points())
    tiny_face = 1000 + 2 * REFERENCE_POINTS_3D[:, :2]  # 2 px per model unit in a 2000 px frame
    with pytest.raises(LandmarkError, match="too small or too large"):
        align_face(np.zeros((2000, 2000, 3), np.uint8), tiny_face)
    with pytest.raises(LandmarkError, match=r"\(N >= 4, 3\) array"):
        fit_pos(np.zeros((5, 2)), np.zeros((5, 2)))
    with pytest.raises(LandmarkError, match=r"points_xy_up must be a \(5, 2\) array"):
        fit_pos(np.zeros((4, 2)))
