"""Soft limits: identity inside each slot's identity range, smooth saturation to the hard bounds, and
every renderer backend receiving limited motion whatever the source."""

import tracemalloc

import numpy as np
import pytest
import torch

from pirender.engine.errors import MotionError
from pirender.engine.motion.limits import AUTHORS_LIMITS, OPEN_LIMITS, limits_for, soft_limit
from pirender.engine.motion.space import AUTHORS_SPACE, OPEN_SPACE, MotionSpace
from pirender.engine.renderer.pirender.generator import FaceGenerator
from pirender.engine.renderer.torch_backend import TorchRenderer

from conftest import random_source

LIMITS = [OPEN_LIMITS, AUTHORS_LIMITS]


def _inside(limits, rows: int, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """Random rows within every slot's identity range (knees included)."""
    _, knee_low, knee_high, _ = limits.table
    values = np.random.default_rng(seed).uniform(knee_low, knee_high, size=(rows, limits.space.width))
    values[0], values[1] = knee_low, knee_high
    return values.astype(dtype)


@pytest.mark.parametrize("limits", LIMITS, ids=lambda limits: limits.space.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_in_the_identity_range_pass_bit_exact(limits, dtype) -> None:
    values = _inside(limits, 500, dtype=dtype)
    limited = soft_limit(values, limits.space)
    assert limited.dtype == dtype and np.array_equal(limited, values)
    assert torch.equal(soft_limit(torch.from_numpy(values), limits.space), torch.from_numpy(values))
    # windows (B, width, T): the slot axis in the middle
    windows = values[:54].reshape(2, 27, -1).transpose(0, 2, 1).copy()
    assert np.array_equal(soft_limit(windows, limits.space, axis=1), windows)


@pytest.mark.parametrize("limits", LIMITS, ids=lambda limits: limits.space.name)
def test_beyond_the_knees_values_saturate_smoothly_and_never_leave_the_hard_range(limits) -> None:
    low, knee_low, knee_high, high = limits.table
    span = high - low
    # every slot swept from far below to far above its range, finely around its knees (float64)
    coarse = np.linspace(low - 20 * span, high + 20 * span, 4001)
    fine = [np.linspace(knee - 0.2 * span, knee + 0.2 * span, 2001) for knee in (knee_low, knee_high)]
    values = np.sort(np.concatenate([coarse, *fine]), axis=0)  # (N, width)
    limited = soft_limit(values, limits.space)
    assert (limited >= low).all() and (limited <= high).all()
    assert (np.diff(limited, axis=0) >= 0).all()  # monotonic
    inside = (values >= knee_low) & (values <= knee_high)
    assert np.array_equal(limited[inside], values[inside])
    # strictly within the hard range wherever a float64 tanh still resolves the distance (15 soft widths)
    near = (values > knee_low - 15 * (knee_low - low)) & (values < knee_high + 15 * (high - knee_high))
    assert ((limited > low) | ~near).all() and ((limited < high) | ~near).all()
    # C1 at the knees: continuous, and the slope just beyond each knee is ~1
    step = 1e-6 * span
    for knee, sign in ((knee_high, 1.0), (knee_low, -1.0)):
        at, beyond = soft_limit(np.stack([knee, knee + sign * step]), limits.space)
        np.testing.assert_allclose((beyond - at) / (sign * step), 1.0, atol=1e-4)
    # an extreme input lands on the bound of its side, in float32 too
    extreme = np.full((2, limits.space.width), 1e9, np.float32) * np.array([[1], [-1]], np.float32)
    np.testing.assert_allclose(soft_limit(extreme, limits.space), np.stack([high, low]), rtol=1e-6)


def test_the_issues_values_come_back_within_the_documented_ranges() -> None:
    """The tracker once gave blink 18, jaw_open -1.5, smiles -2.8, scale 0.3, yaw -57 degrees."""
    row = np.zeros(OPEN_SPACE.width, np.float32)
    wild = {"blink_left": 18.0, "jaw_open": -1.5, "smile_right": -2.8, "smile_left": -2.8, "scale": 0.3}
    for name, value in wild.items():
        row[OPEN_SPACE.index(name)] = value
    row[OPEN_SPACE.index("yaw")] = np.radians(-57)
    limited = soft_limit(row, OPEN_SPACE)
    for name in (*wild, "yaw"):
        slot = OPEN_LIMITS.range_of(name)
        assert slot.low <= limited[OPEN_SPACE.index(name)] <= slot.high, name
    assert limited[OPEN_SPACE.index("blink_left")] <= 0.95
    assert limited[OPEN_SPACE.index("jaw_open")] >= -0.1


def test_out_and_scratch_keep_the_hot_path_free_of_allocations() -> None:
    windows = np.random.default_rng(1).normal(scale=3, size=(512, OPEN_SPACE.width, 27)).astype(np.float32)
    expected = soft_limit(windows, OPEN_SPACE, axis=1)
    out, scratch = np.empty_like(windows), np.empty_like(windows)
    soft_limit(windows, OPEN_SPACE, axis=1, out=out, scratch=scratch)  # warm-up
    tracemalloc.start()
    try:
        soft_limit(windows, OPEN_SPACE, axis=1, out=out, scratch=scratch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # no array is allocated: what remains is numpy's own iteration buffer for the broadcast
    # constants (at most 8192 elements) and small Python objects
    assert peak < 40_000 < windows.nbytes / 20, peak
    assert np.array_equal(out, expected)
    in_place = windows.copy()
    assert soft_limit(in_place, OPEN_SPACE, axis=1, out=in_place) is in_place
    assert np.array_equal(in_place, expected)


def test_bad_calls_are_clear_errors() -> None:
    with pytest.raises(MotionError, match="17"):
        soft_limit(np.zeros((2, 16), np.float32), OPEN_SPACE)
    with pytest.raises(MotionError, match="floating point"):
        soft_limit(np.zeros((2, 17), np.int32), OPEN_SPACE)
    custom = MotionSpace("custom", ("a", "b"))
    assert limits_for(custom) is None
    with pytest.raises(MotionError, match="no documented ranges"):
        soft_limit(np.zeros((1, 2), np.float32), custom)


def test_every_renderer_receives_limited_motion(tiny_generator: FaceGenerator) -> None:
    """The base class limits in ``render``: a window beyond the ranges renders exactly as its limited
    copy does without limits (the same model under a space of its own), and the caller's array is
    not changed."""
    renderer = TorchRenderer(tiny_generator, space=AUTHORS_SPACE, image_size_px=64)
    unlimited = TorchRenderer(
        tiny_generator, space=MotionSpace("custom-73", AUTHORS_SPACE.slot_names), image_size_px=64
    )
    image = random_source(64)
    prepared, unlimited_source = renderer.prepare(image), unlimited.prepare(image)
    windows = np.random.default_rng(2).normal(size=(2, 73, 27)).astype(np.float32)
    windows[:, 64:67] *= 5  # head angles of several radians
    windows[0, 3] = 40.0  # an expression coefficient far beyond any real one
    original = windows.copy()
    limited = soft_limit(windows, AUTHORS_SPACE, axis=1)
    assert not np.array_equal(limited, windows)
    expected = unlimited.render(limited, source=unlimited_source).frame
    torch.testing.assert_close(renderer.render(windows, source=prepared).frame, expected, atol=0, rtol=0)
    assert np.array_equal(windows, original)
    # tensors take the same path on their device (tanh may differ in the last bit)
    from_tensor = renderer.render(torch.from_numpy(windows), source=prepared).frame
    torch.testing.assert_close(from_tensor, expected, atol=1e-4, rtol=0)
    assert not torch.equal(
        unlimited.render(windows, source=unlimited_source).frame, expected
    )  # the limits did change it


def _range(text: str) -> tuple[float, float]:
    """'+-0.45', '0.8..1.2' or '-0.45..0.45 (26 deg)' -> (low, high)."""
    text = text.split("(")[0].strip()
    if text.startswith("+-"):
        return -float(text[2:]), float(text[2:])
    low, high = text.split("..")
    return float(low), float(high)


def _documented_open_ranges(doc: str, column) -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
    """{slot: (identity range, hard range)} from a markdown table of a module docstring; ``column``
    takes a row's cells to its (identity, hard) texts."""
    ranges = {}
    for line in doc.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if (
            not line.startswith("|")
            or not cells[0]
            or cells[0] in ("slot", "slots")
            or set(cells[0]) <= {"-"}
        ):
            continue
        identity, hard = column(cells)
        for name in cells[0].split(", "):
            ranges[name] = (_range(identity), _range(hard))
    return ranges


def test_the_open_limits_and_the_sliders_are_the_documented_ranges() -> None:
    """Against the ranges as the docs write them (text, not the numbers the code builds from): the
    open space's table (``track.open_space``, "identity / hard") and the limits table
    (``motion.limits``). OPEN_LIMITS holds them, and the sliders (the server's hello, the web page)
    span each slot's identity range, at its rest (0, or 1 for scale)."""
    import pirender.engine.motion.limits as limits_module
    import pirender.engine.track.open_space as open_space_module
    from pirender.engine.stream.sources import SLIDER_RANGES

    open_doc = _documented_open_ranges(open_space_module.__doc__, lambda cells: cells[-1].split(" / "))
    limits_doc = _documented_open_ranges(
        limits_module.__doc__.split("Authors' space")[0], lambda cells: (cells[2], cells[3])
    )
    assert set(open_doc) == set(limits_doc) == set(OPEN_SPACE.slot_names) == set(SLIDER_RANGES)
    for name in OPEN_SPACE.slot_names:
        (knee_low, knee_high), (low, high) = open_doc[name]
        assert limits_doc[name] == open_doc[name], name
        slot = OPEN_LIMITS.range_of(name)
        assert (slot.low, slot.knee_low, slot.knee_high, slot.high) == (low, knee_low, knee_high, high), name
        slider_low, slider_high, default, unit = SLIDER_RANGES[name]
        assert (slider_low, slider_high) == (knee_low, knee_high), name
        assert default == (1.0 if name == "scale" else 0.0) and unit == slot.unit, name


def test_the_documented_tables_are_the_numbers_in_use() -> None:
    """The tables in ``motion.limits`` and ``track.open_space`` state OPEN_LIMITS (no drift)."""
    from pirender.engine.motion import limits
    from pirender.engine.track import open_space

    def rows(doc: str) -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
        found = {}
        for line in doc.splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if len(cells) < 3 or not any(name in OPEN_SPACE.slot_names for name in cells[0].split(", ")):
                continue
            identity, hard = cells[2:4] if len(cells) == 4 else cells[2].split(" / ")
            for name in cells[0].split(", "):
                found[name] = (_range(identity), _range(hard))
        return found

    for doc in (limits.__doc__, open_space.__doc__):
        table = rows(doc)
        assert set(table) == set(OPEN_SPACE.slot_names)
        for name, (identity, hard) in table.items():
            slot = OPEN_LIMITS.range_of(name)
            assert identity == (slot.knee_low, slot.knee_high) and hard == (slot.low, slot.high), name
