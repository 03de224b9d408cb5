"""The weight-free mesh renderer: identity, flow format, no tearing over the documented motion ranges,
closed loop."""

import itertools
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from conftest import shared_data

pytest.importorskip("tflite")

from pirender.engine.api import load_renderer
from pirender.engine.errors import PirenderError
from pirender.engine.image import load_source_image, tensor_to_images
from pirender.engine.motion.limits import OPEN_LIMITS
from pirender.engine.motion.space import OPEN_SPACE
from pirender.engine.renderer.base import PreparedSource
from pirender.engine.renderer.mesh import field
from pirender.engine.renderer.mesh.renderer import FLOW_DOWNSAMPLE, MeshRenderer, MeshSource
from pirender.engine.track.crop import crop_to_face
from pirender.engine.track.evaluate import closed_loop, standard_targets

VOX = ("vox_demo", "id10010_Fi21gDronE4_001686_002204_00079.jpg")

#: Documented closed-loop accuracy on a VoxCeleb portrait (measured: pose 0.2-0.7 deg; jaw 0.05,
#: smile 0.10-0.15, pucker 0.18; the eyes, brows and gaze read back weaker, see RESULTS.md).
MAX_POSE_ERROR_DEG = 2.0
MAX_CONTROL_ERROR = {"jaw_open": 0.15, "smile_right": 0.25, "smile_left": 0.25, "lip_pucker": 0.3}


@pytest.fixture(scope="module")
def renderer_and_source() -> Iterator[tuple[MeshRenderer, MeshSource]]:
    with MeshRenderer(image_size_px=256) as renderer:
        yield renderer, renderer.prepare(load_source_image(shared_data(*VOX)))


def _row(renderer: MeshRenderer, source: PreparedSource, **changes: float) -> np.ndarray:
    row = renderer.rest_row(source).copy()
    for name, value in changes.items():
        row[OPEN_SPACE.index(name)] += value
    return row


def test_the_rest_row_reproduces_the_source(renderer_and_source) -> None:
    renderer, source = renderer_and_source
    frame = tensor_to_images(renderer.render(_row(renderer, source)[:, None], source=source).frame)[0]
    diff = np.abs(frame.astype(int) - source.image.rgb.astype(int))
    # a true identity (unlike the neural warp's zero flow), up to rounding; the outermost pixels
    # repeat their neighbours (the flow grid's cell centres sit 1.5 px inside the image)
    assert diff[4:-4, 4:-4].max() <= 1


def test_flow_is_in_the_neural_format_and_the_head_turns(renderer_and_source) -> None:
    renderer, source = renderer_and_source
    windows = np.stack([_row(renderer, source, yaw=np.radians(20))[:, None]] * 2)
    out = renderer.render(windows, source=source, extras=True)
    assert out.flow.shape == (2, 2, 64, 64) and out.frame.shape == (2, 3, 256, 256)
    assert out.frame.dtype == torch.float32 and out.frame.abs().max() <= 1.0
    # + yaw turns toward the image's left: the face content moves left, so cells read further right
    center_flow_x = out.flow[0, 0, 24:40, 24:40].mean()
    assert center_flow_x > 0.5
    rest = renderer.render(_row(renderer, source)[:, None], source=source, extras=True).flow
    moved = (out.flow[0] - rest[0]).abs()
    # the shoulders (bottom corners) stay; the neck between them bends
    assert moved[:, -4:, :6].max() < 0.05 and moved[:, -4:, -6:].max() < 0.05


def test_mouth_opening_paints_a_cavity_only_in_full_mode(renderer_and_source) -> None:
    renderer, source = renderer_and_source
    window = _row(renderer, source, jaw_open=0.8)[:, None]
    full = tensor_to_images(renderer.render(window, source=source).frame)[0].astype(int)
    warp_only = tensor_to_images(renderer.render(window, source=source, mode="warp").frame)[0].astype(int)
    changed = np.abs(full - warp_only).sum(axis=2) > 30
    assert changed.sum() > 100  # the mouth interior is painted
    rows, cols = np.nonzero(changed)
    assert 140 < rows.mean() < 210 and 100 < cols.mean() < 160  # where the mouth is


def test_512_output(renderer_and_source) -> None:
    with MeshRenderer(image_size_px=512) as renderer:
        source = renderer.prepare(load_source_image(shared_data(*VOX), size_px=512))
        window = _row(renderer, source, jaw_open=0.5, pitch=0.1)[:, None]
        out = renderer.render(window, source=source, extras=True)
    assert out.frame.shape == (1, 3, 512, 512) and out.flow.shape == (1, 2, 128, 128)


def test_no_face_is_a_clear_error() -> None:
    with MeshRenderer() as renderer:
        with pytest.raises(PirenderError, match="no human face found"):
            renderer.prepare(load_source_image(shared_data("portraits", "s33.jpg")))  # a dog
        flat = np.full((256, 256, 3), 128, dtype=np.uint8)
        with pytest.raises(PirenderError, match="no human face found"):
            renderer.prepare(load_source_image(flat))


def test_close_releases_the_face_search_and_prepare_starts_it_again() -> None:
    """The face search (MediaPipe's face models) that prepare starts is released by close (or leaving
    a ``with`` block); closing twice is harmless, and a later prepare starts a new search."""
    image = _demo_portrait()
    with MeshRenderer() as renderer:
        renderer.prepare(image)
        finder = renderer._faces
        assert finder is not None
    assert renderer._faces is None
    with pytest.raises(ValueError):  # a closed search refuses, as a closed file does
        finder.find(image.rgb)
    renderer.close()
    renderer.prepare(image)
    assert renderer._faces is not None and renderer._faces is not finder
    renderer.close()


def test_mesh_is_the_default_backend_and_refuses_checkpoints(tmp_path) -> None:
    assert isinstance(load_renderer(), MeshRenderer)
    with pytest.raises(PirenderError, match="takes no checkpoint"):
        load_renderer(tmp_path / "x.pt", backend="mesh")
    with pytest.raises(PirenderError, match="multiple of 4"):
        MeshRenderer(image_size_px=250)


@pytest.mark.slow
def test_closed_loop_accuracy(renderer_and_source) -> None:
    renderer, source = renderer_and_source
    targets, masks = standard_targets(renderer.rest_row(source), pose_steps=5, control_steps=3)
    result = closed_loop(renderer, source, targets)
    assert result.found.all()
    for axis, error_deg in result.pose_error_deg().items():
        assert error_deg < MAX_POSE_ERROR_DEG, axis
    for name, bound in MAX_CONTROL_ERROR.items():
        assert result.control_error(masks[name])[name] < bound, name
    # every control at least moves the tracker's reading the right way
    for name, mask in masks.items():
        column = OPEN_SPACE.index(name)
        low, high = result.measured[mask][[0, -1], column]
        assert high > low, name


# --- tearing: the forward map over the documented ranges ---------------------------------------------

POSE = ("pitch", "yaw", "roll", "tx", "ty", "scale")
#: the largest stretch (area ratio of a grid triangle; 64 = 8 x 8) anywhere in the documented ranges: what
#: the head uncovers (measured: 19 with single slots and the talking face, 47 with all six pose slots
#: at their bounds at once; the smallest area ratio 0.026, a blink at its bound)
MAX_STRETCH = 64.0


def _demo_portrait() -> object:
    cbook = pytest.importorskip("matplotlib.cbook")
    return load_source_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


#: The portraits of the tear tests: the demo portrait (white collar, wide framing), a VoxCeleb crop
#: and a face-cropped photograph (the last two from the shared test media: where they are absent,
#: those portraits' tests are reported as skipped, not silently dropped).
PORTRAITS = {
    "demo": _demo_portrait,
    "vox": lambda: load_source_image(shared_data(*VOX)),
    "s12": lambda: crop_to_face(shared_data("portraits", "s12.jpg")),
}


@pytest.fixture(scope="module")
def prepared_portraits() -> Iterator[dict[str, tuple[MeshRenderer, object]]]:
    """Each portrait prepared once per module (filled by :func:`portrait`), closed at the end."""
    prepared: dict[str, tuple[MeshRenderer, object]] = {}
    yield prepared
    for renderer, _ in prepared.values():
        renderer.close()


def _prepared(prepared: dict[str, tuple[MeshRenderer, object]], name: str) -> tuple[MeshRenderer, object]:
    if name not in prepared:
        image = PORTRAITS[name]()  # skips this portrait's test (reported) where the media are absent
        renderer = MeshRenderer(image_size_px=256)
        prepared[name] = (renderer, renderer.prepare(image))
    return prepared[name]


@pytest.fixture(params=list(PORTRAITS))
def portrait(request, prepared_portraits) -> tuple[str, MeshRenderer, object]:
    """(name, renderer, prepared source) of each portrait of :data:`PORTRAITS` in turn."""
    return (request.param, *_prepared(prepared_portraits, request.param))


def _bound(name: str, side: int, *, hard: bool = True) -> float:
    slot = OPEN_LIMITS.range_of(name)
    if hard:
        return slot.high if side > 0 else slot.low
    return slot.knee_high if side > 0 else slot.knee_low


def _documented_rows(rest: np.ndarray) -> dict[str, np.ndarray]:
    """Rows across the documented ranges: every pose slot at its knees and bounds, all 64 corners of
    the six pose slots at their hard bounds at once, every expression control at its hard bounds, and
    a broad talking face at the corners of the pose's identity ranges."""
    rows = {}

    def row(**values: float) -> np.ndarray:
        out = rest.copy()
        for name, value in values.items():
            out[OPEN_SPACE.index(name)] = value
        return out

    for name in POSE:
        for side in (-1, 1):
            rows[f"{name} knee {side:+d}"] = row(**{name: _bound(name, side, hard=False)})
            rows[f"{name} bound {side:+d}"] = row(**{name: _bound(name, side)})
    for signs in itertools.product((-1, 1), repeat=len(POSE)):
        rows[f"pose corner {signs}"] = row(**{n: _bound(n, s) for n, s in zip(POSE, signs, strict=True)})
    for name in OPEN_SPACE.slot_names[OPEN_SPACE.group("expression")]:
        for side in (-1, 1):
            rows[f"{name} bound {side:+d}"] = row(**{name: _bound(name, side)})
    talking = dict(jaw_open=1.2, smile_right=1.5, smile_left=1.5, brow_raise_left=1.5, blink_left=0.85)
    for signs in itertools.product((-1, 1), repeat=3):
        pose = {n: _bound(n, s, hard=False) for n, s in zip(("pitch", "yaw", "ty"), signs, strict=True)}
        rows[f"talking at {signs}"] = row(**talking, **pose)
    return rows


def test_no_motion_in_the_documented_ranges_tears_a_portrait(portrait) -> None:
    """The tear metric: no triangle of the flow grid folds over (negative area after the forward
    displacement) and none stretches beyond MAX_STRETCH, over the documented ranges on real portraits.
    (Before: at yaw 25 deg 1.3-1.6 % of the triangles folded (the far ear detached), at tx 0.8 6 %.)"""
    name, renderer, source = portrait
    for label, row in _documented_rows(renderer.rest_row(source)).items():
        displacement, _ = renderer.forward_displacement(row, source)
        areas = field.triangle_areas(displacement, FLOW_DOWNSAMPLE)
        assert areas.min() > 0, (name, label, float(areas.min()))
        assert areas.max() < MAX_STRETCH, (name, label, float(areas.max()))


def _jaw_at_pose_corners(rest: np.ndarray, jaw_open: float, *, hard: bool) -> dict[str, np.ndarray]:
    """``jaw_open`` with all 64 corners of the six pose slots' identity (or hard) ranges."""
    rows = {}
    for signs in itertools.product((-1, 1), repeat=len(POSE)):
        row = rest.copy()
        for name, side in zip(POSE, signs, strict=True):
            row[OPEN_SPACE.index(name)] = _bound(name, side, hard=hard)
        row[OPEN_SPACE.index("jaw_open")] = jaw_open
        rows[f"jaw {jaw_open} at pose corner {signs}"] = row
    return rows


def _smallest_area(renderer: MeshRenderer, source, rows: dict[str, np.ndarray]) -> tuple[float, str]:
    return min(
        (
            float(field.triangle_areas(renderer.forward_displacement(row, source)[0], FLOW_DOWNSAMPLE).min()),
            label,
        )
        for label, row in rows.items()
    )


def test_the_jaw_at_its_identity_bound_does_not_tear_at_any_pose_identity_corner(portrait) -> None:
    """jaw_open 1.2 (the top of its identity range) with all six pose slots at the corners of their
    identity ranges at once: no fold (measured smallest area ratio: 0.12 demo, 0.095 vox, 0.094 s12)."""
    name, renderer, source = portrait
    smallest, label = _smallest_area(
        renderer, source, _jaw_at_pose_corners(renderer.rest_row(source), 1.2, hard=False)
    )
    assert smallest > 0, (name, label, smallest)


@pytest.mark.xfail(
    strict=True, reason="known fold (field.py docstring): the jaw beyond 1.0 with pitch and yaw at bounds"
)
def test_known_fold_the_jaw_open_wide_with_the_pose_at_its_hard_bounds(prepared_portraits) -> None:
    """Where the map still folds (documented in ``field`` and the README): jaw_open 1.3 (its hard
    bound) with the pose slots at their hard bounds folds a few triangles at the far mouth corner
    of the VoxCeleb crop and of s12 whenever pitch and yaw are both at a bound (16 or 32 of the 64
    corners; measured smallest area ratio -0.39 vox, -1.0 s12). Strict: fixing it fails this test,
    so the docs get updated."""
    for name in ("vox", "s12"):
        renderer, source = _prepared(prepared_portraits, name)
        smallest, label = _smallest_area(
            renderer, source, _jaw_at_pose_corners(renderer.rest_row(source), 1.3, hard=True)
        )
        assert smallest > 0, (name, label, smallest)


def test_the_backward_map_inverts_the_forward_map_exactly(prepared_portraits) -> None:
    renderer, source = _prepared(prepared_portraits, "demo")
    row = renderer.rest_row(source).copy()
    row[OPEN_SPACE.index("yaw")] = np.radians(30)
    row[OPEN_SPACE.index("tx")] = 0.4
    row[OPEN_SPACE.index("jaw_open")] = 1.0
    displacement, _ = renderer.forward_displacement(row, source)
    backward, _ = renderer._backward_map(row, source)
    n = renderer.flow_px
    # the forward map is linear on the grid's triangles: locate each backward point's triangle
    grid = (backward + 0.5) / FLOW_DOWNSAMPLE - 0.5
    base = np.clip(np.floor(grid).astype(int), 0, n - 2)
    fx, fy = (grid - base).T
    d = displacement
    tl, tr = d[base[:, 1], base[:, 0]], d[base[:, 1], base[:, 0] + 1]
    bl, br = d[base[:, 1] + 1, base[:, 0]], d[base[:, 1] + 1, base[:, 0] + 1]
    upper = (1 - fx)[:, None] * tl + (fx - fy)[:, None] * tr + fy[:, None] * br
    lower = (1 - fy)[:, None] * tl + fx[:, None] * br + (fy - fx)[:, None] * bl
    landed = backward + np.where((fx >= fy)[:, None], upper, lower)
    error = np.linalg.norm(landed - renderer._cells, axis=1).reshape(n, n)
    assert error[1:-1, 1:-1].max() < 1e-6  # the outermost ring may lie beyond the moved grid


def test_head_moves_bend_the_neck_and_keep_the_shoulders(portrait) -> None:
    """A head move bends the neck without crushing it (before: the collar was dragged into the neck,
    to 17 % of its area for ty 0.5 on the demo portrait) and, where the picture shows them, keeps
    the shoulders still."""
    name, renderer, source = portrait
    rest = renderer.rest_row(source)
    chin_row = int(source.points[152, 1] / FLOW_DOWNSAMPLE)
    moves = (("tx", 0.6), ("tx", -0.6), ("ty", 0.5), ("ty", -0.5), ("roll", 0.45), ("yaw", 0.5))
    for slot, value in moves:
        row = rest.copy()
        row[OPEN_SPACE.index(slot)] += value
        displacement, _ = renderer.forward_displacement(row, source)
        areas = field.triangle_areas(displacement, FLOW_DOWNSAMPLE).reshape(2, -1).min(axis=0)
        below_chin = areas.reshape(renderer.flow_px - 1, -1)[chin_row:]
        assert below_chin.min() > 0.35, (name, slot, value, float(below_chin.min()))
        if name == "demo":  # a bust: the shoulders are in the picture's bottom corners
            corners = np.abs(displacement[-8:, np.r_[:8, -8:0]])
            assert corners.max() < 0.5, (slot, value, float(corners.max()))


def test_turns_beyond_what_the_depth_supports_ease() -> None:
    """The relative rotation's tilt passes up to the knee and never exceeds the maximum; roll stays."""
    from pirender.engine.track.geometry import rotation_from_euler

    small = rotation_from_euler(0.1, np.radians(30), 0.2)
    np.testing.assert_array_equal(field.ease_tilt(small), small)
    for yaw in (45, 60, 90, 150):
        eased = field.ease_tilt(rotation_from_euler(0.0, np.radians(yaw), 0.3))
        tilt = np.degrees(np.arccos(eased[2, 2]))
        assert field.TILT_KNEE_DEG < tilt <= field.TILT_MAX_DEG + 1e-9
        np.testing.assert_allclose(eased @ eased.T, np.eye(3), atol=1e-12)


def test_the_jaw_opens_closed_lips_on_every_portrait(portrait) -> None:
    """Closed lips often put the upper lip's inner edge a hair below the lower one's (Grace Hopper:
    -0.1 px); the jaw must still open them: the lips part by 0.5 IOD per unit of jaw_open and the
    cavity is painted (before the fix the upper lip moved down with the lower one: no opening)."""
    name, renderer, source = portrait
    rest = renderer.rest_row(source)
    row = rest.copy()
    row[OPEN_SPACE.index("jaw_open")] = 0.8
    target = renderer.target_landmarks(row, source)
    iod_px = source.neutral.frame.scale
    gap_iod = float(np.mean(target[[14, 87, 317], 1] - target[[13, 82, 312], 1])) / iod_px
    rest_gap_iod = float(source.mouth_gap_px) / iod_px
    assert gap_iod - rest_gap_iod == pytest.approx(0.4, abs=0.05), name
    full = tensor_to_images(renderer.render(row[:, None], source=source).frame)[0].astype(int)
    warp = tensor_to_images(renderer.render(row[:, None], source=source, mode="warp").frame)[0]
    assert (np.abs(full - warp.astype(int)).sum(axis=2) > 30).sum() > 100, name
