"""AdaIN, the layer norm and the mapping net against their written formulas."""

import pytest
import torch
import torch.nn.functional as F

from pirender.engine.errors import MotionError
from pirender.engine.renderer.pirender.layers import AdaIN, LayerNorm2d
from pirender.engine.renderer.pirender.mapping import MappingNet


def test_layer_norm_normalises_each_sample_over_c_h_w() -> None:
    torch.manual_seed(0)
    norm = LayerNorm2d(5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(5, 1, 1))
        norm.bias.copy_(torch.randn(5, 1, 1))
    x = torch.randn(3, 5, 7, 6) * 3 + 2
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    var = x.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-5) * norm.weight + norm.bias
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=1e-5)
    # it is not an instance norm: per-channel statistics are left alone
    assert not torch.allclose(norm(x).mean(dim=(2, 3)), norm.bias.view(1, 5), atol=1e-3)


def test_adain_is_instance_norm_scaled_by_one_plus_gamma() -> None:
    torch.manual_seed(0)
    adain = AdaIN(6, descriptor_nc=16)
    x = torch.randn(2, 6, 8, 8) * 4 - 1
    z = torch.randn(2, 16, 1)
    hidden = torch.relu(z.view(2, 16) @ adain.mlp_shared[0].weight.T + adain.mlp_shared[0].bias)
    gamma = (hidden @ adain.mlp_gamma.weight.T + adain.mlp_gamma.bias).view(2, 6, 1, 1)
    beta = (hidden @ adain.mlp_beta.weight.T + adain.mlp_beta.bias).view(2, 6, 1, 1)
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-5) * (1 + gamma) + beta
    torch.testing.assert_close(adain(x, z), expected, atol=1e-5, rtol=1e-5)


def test_adain_keeps_fp32_statistics_in_bf16() -> None:
    torch.manual_seed(0)
    adain = AdaIN(4, descriptor_nc=8)
    x = torch.randn(1, 4, 16, 16) * 50 + 300  # large offset: bf16 statistics would lose it
    z = torch.randn(1, 8, 1)
    low = adain.to(torch.bfloat16)(x.bfloat16(), z.bfloat16())
    assert low.dtype == torch.bfloat16
    reference = adain.float()(x.bfloat16().float(), z.bfloat16().float())
    assert (low.float() - reference).abs().max() < 0.1


def test_mapping_net_lengths_and_minimum_window() -> None:
    net = MappingNet(coeff_nc=73, descriptor_nc=32, layers=3)
    assert net.min_frames == 25
    assert net(torch.randn(2, 73, 27)).shape == (2, 32, 1)
    assert net(torch.randn(1, 73, 25)).shape == (1, 32, 1)
    with pytest.raises(MotionError, match="needs >= 25"):
        net(torch.randn(1, 73, 24))


def test_mapping_net_sees_every_slot_of_a_27_frame_window() -> None:
    torch.manual_seed(0)
    net = MappingNet(coeff_nc=73, descriptor_nc=32, layers=3)
    window = torch.randn(1, 73, 27)
    base = net(window)
    for slot in (0, 13, 26):
        moved = window.clone()
        moved[0, :, slot] += 1.0
        assert not torch.allclose(net(moved), base)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_layer_norm_cuda_path_matches_cpu() -> None:
    torch.manual_seed(0)
    norm = LayerNorm2d(64)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(64, 1, 1))
        norm.bias.copy_(torch.randn(64, 1, 1))
    x = torch.randn(2, 64, 128, 128) * 3 + 1
    torch.testing.assert_close(norm.cuda()(x.cuda()).cpu(), norm.cpu()(x), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(1, 5, 7, 9), (3, 16, 8, 8), (2, 4, 1, 6)])
def test_every_up_convolution_form_equals_upsample_then_conv(shape: tuple[int, int, int, int]) -> None:
    """The up blocks' fast forms: four 2x2 phase convolutions, or one stride-2 transposed convolution."""
    from pirender.engine.renderer.pirender.editing import (
        UpBlock2d,
        subpixel_weights,
        transposed_weights,
        upsample_conv,
    )

    generator = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(*shape, generator=generator)
    weight = torch.randn(6, shape[1], 3, 3, generator=generator)
    bias = torch.randn(6, generator=generator)
    direct = F.conv2d(F.interpolate(x, scale_factor=2), weight, bias, padding=1)
    close = {"atol": 1e-5, "rtol": 1e-5}
    torch.testing.assert_close(upsample_conv(x, subpixel_weights(weight), bias), direct, **close)
    transposed = F.conv_transpose2d(x, transposed_weights(weight), bias, stride=2, padding=1)
    torch.testing.assert_close(transposed, direct, **close)
    block = UpBlock2d(shape[1], 6)
    with torch.no_grad():
        fast = block(x)
        block.model[0].weight.add_(1.0)  # new weights: the cached derived weights must follow
        outputs = {}
        for form in ("phases", "transposed", "direct"):
            block.form = form
            outputs[form] = block(x)
    torch.testing.assert_close(outputs["phases"], outputs["direct"], **close)
    torch.testing.assert_close(outputs["transposed"], outputs["direct"], **close)
    assert not torch.allclose(fast, outputs["phases"])
