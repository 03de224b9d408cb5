"""The warp against the spec's closed form (section 4.3): zero flow is not the identity."""

import pytest
import torch

from pirender.engine.errors import PirenderError
from pirender.engine.renderer.warp import base_grid, get_warp, torch_warp, zero_flow_source_position

IMAGE_PX, FLOW_PX = 256, 64


def _column_ramp(batch: int = 1) -> torch.Tensor:
    """An image whose value is its column index (pixel k centred at k): bilinear sampling returns x."""
    cols = torch.arange(IMAGE_PX, dtype=torch.float32)
    return cols.view(1, 1, 1, IMAGE_PX).expand(batch, 1, IMAGE_PX, IMAGE_PX).contiguous()


def test_base_grid_is_corner_aligned() -> None:
    grid = base_grid(4, 5)
    assert grid.shape == (4, 5, 2)
    torch.testing.assert_close(grid[0, :, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    torch.testing.assert_close(grid[:, 0, 1], torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]))


def test_zero_flow_matches_closed_form_in_the_interior() -> None:
    warped = torch_warp(_column_ramp(), torch.zeros(1, 2, FLOW_PX, FLOW_PX))
    j = torch.arange(2, IMAGE_PX - 2)
    expected = zero_flow_source_position(j, IMAGE_PX, FLOW_PX).float()
    torch.testing.assert_close(warped[0, 0, 128, 2:-2], expected, atol=2e-4, rtol=0)
    # the spec's worked examples: j = 64 -> 62.99, 128 -> 128.01, 200 -> 201.15
    for col, x in ((64, 62.99), (128, 128.01), (200, 201.15)):
        assert abs(float(warped[0, 0, 100, col]) - x) < 0.01
    # so zero flow is not the identity
    assert (warped[0, 0, 128, 2:-2] - j.float()).abs().max() > 1.0


def test_zero_flow_edges_mix_with_zero_padding() -> None:
    constant = torch.full((1, 3, IMAGE_PX, IMAGE_PX), 0.8)
    warped = torch_warp(constant, torch.zeros(1, 2, FLOW_PX, FLOW_PX))
    inner = warped[0, :, 2:-2, 2:-2]
    torch.testing.assert_close(inner, torch.full_like(inner, 0.8))
    for edge in (warped[0, :, 0, 2:-2], warped[0, :, -1, 2:-2], warped[0, :, 2:-2, 0], warped[0, :, 2:-2, 1]):
        torch.testing.assert_close(edge, torch.full_like(edge, 0.4))
    corner = warped[0, :, :2, :2]
    torch.testing.assert_close(corner, torch.full_like(corner, 0.2))


def test_constant_flow_moves_samples_by_image_over_flow_minus_one() -> None:
    flow = torch.zeros(2, 2, FLOW_PX, FLOW_PX)
    flow[0, 0] = 1.0  # +1 flow-grid pixel in x
    flow[1, 0] = -2.5
    warped = torch_warp(_column_ramp(2), flow)
    j = torch.arange(20, 230)
    base = zero_flow_source_position(j, IMAGE_PX, FLOW_PX).float()
    shift_px = IMAGE_PX / (FLOW_PX - 1)
    torch.testing.assert_close(warped[0, 0, 50, 20:230], base + shift_px, atol=2e-4, rtol=0)
    torch.testing.assert_close(warped[1, 0, 50, 20:230], base - 2.5 * shift_px, atol=2e-4, rtol=0)
    # a vertical flow leaves a column ramp unchanged in the interior
    flow_y = torch.zeros(1, 2, FLOW_PX, FLOW_PX)
    flow_y[0, 1] = 3.0
    moved = torch_warp(_column_ramp(), flow_y)
    torch.testing.assert_close(
        moved[0, 0, 40, 2:-2],
        warped.new_tensor(0)
        + torch_warp(_column_ramp(), torch.zeros(1, 2, FLOW_PX, FLOW_PX))[0, 0, 40, 2:-2],
    )


def test_warp_is_computed_in_float32_for_low_precision_images() -> None:
    image = torch.rand(1, 3, 64, 64)
    flow = torch.randn(1, 2, 16, 16)
    low = torch_warp(image.bfloat16(), flow.bfloat16())
    assert low.dtype == torch.bfloat16
    reference = torch_warp(image.bfloat16().float(), flow.bfloat16().float())
    assert (low.float() - reference).abs().max() <= 1 / 128


def test_warp_selected_by_name_and_shape_errors() -> None:
    assert get_warp("torch") is torch_warp
    with pytest.raises(PirenderError, match="unknown warp 'nope'"):
        get_warp("nope")
    with pytest.raises(PirenderError, match="does not fit"):
        torch_warp(torch.zeros(2, 3, 8, 8), torch.zeros(1, 2, 4, 4))


def test_positive_y_flow_samples_further_down() -> None:
    rows = (
        torch.arange(IMAGE_PX, dtype=torch.float32).view(1, 1, IMAGE_PX, 1).expand(1, 1, IMAGE_PX, IMAGE_PX)
    )
    flow = torch.zeros(1, 2, FLOW_PX, FLOW_PX)
    flow[0, 1] = 2.0  # +2 flow-grid pixels in y: each output pixel reads the source further down
    warped = torch_warp(rows.contiguous(), flow)
    j = torch.arange(20, 200)
    expected = zero_flow_source_position(j, IMAGE_PX, FLOW_PX).float() + 2 * IMAGE_PX / (FLOW_PX - 1)
    torch.testing.assert_close(warped[0, 0, 20:200, 128], expected, atol=2e-4, rtol=0)


def test_every_edge_pixel_of_zero_flow() -> None:
    warped = torch_warp(torch.full((1, 1, IMAGE_PX, IMAGE_PX), 0.8), torch.zeros(1, 2, FLOW_PX, FLOW_PX))[
        0, 0
    ]
    expected = torch.full((IMAGE_PX, IMAGE_PX), 0.8)
    expected[:2, :] *= 0.5
    expected[-2:, :] *= 0.5
    expected[:, :2] *= 0.5
    expected[:, -2:] *= 0.5  # corners: both halvings, c / 4
    torch.testing.assert_close(warped, expected)
