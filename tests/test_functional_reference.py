"""Our FaceGenerator against a spec-only functional reference of the authors' generator.

The functions below re-derive the authors' forward pass as plain ``torch.nn.functional`` calls over a
state dict, written from the fact sheet ``design/pirender-spec.md`` alone (§2 building blocks and
tree, §3 key names, §4 forward steps and warp convention). They were written without reading or
importing our implementation (``engine/renderer/pirender/`` and ``engine/renderer/warp.py``): no
module classes, no shared helpers, only the key names of the spec's Appendix A. A wrong reading of the
spec would therefore have to be made twice, independently, to go unnoticed.

The test builds a random checkpoint in the authors' exact layout (``conftest.authors_state_dict``),
loads it strictly into our model, runs both on the same white-noise image and random motion window and
compares flow_field, warp_image and fake_image within the spec's CPU tolerance of 1e-4 (§4.3). The
flow head is scaled up so that flows of several 64-grid pixels occur and the warp is really exercised.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from pirender.engine.renderer.pirender.generator import FaceGenerator, set_reference_ops

from conftest import authors_state_dict

State = dict[str, torch.Tensor]

TOLERANCE = 1e-4  # spec §4.3: CPU runs are not bit-reproducible; allow about 1e-4
FLOW_HEAD_KEY = "warpping_net.flow_out.2.weight"
FLOW_SCALE = 3.0
SLOPE = 0.1  # LReLU slope everywhere in the generator (spec vocabulary)


# ---------------------------------------------------------------------------------------------------
# Reference building blocks (spec §2.1)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, SLOPE)


def conv2d(sd: State, prefix: str, x: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    return F.conv2d(x, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], stride=stride, padding=padding)


def conv_transpose_up(sd: State, prefix: str, x: torch.Tensor) -> torch.Tensor:
    """ConvTranspose2d k3, stride 2, padding 1, output_padding 1 (doubles H and W)."""
    return F.conv_transpose2d(
        x, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], stride=2, padding=1, output_padding=1
    )


def ln2d(sd: State, prefix: str, x: torch.Tensor) -> torch.Tensor:
    """Per-sample layer norm over (C, H, W); the (C, 1, 1) affine expanded and handed to layer_norm."""
    c, h, w = x.shape[1:]
    weight = sd[f"{prefix}.weight"].expand(c, h, w)
    bias = sd[f"{prefix}.bias"].expand(c, h, w)
    return F.layer_norm(x, (c, h, w), weight, bias, eps=1e-5)


def adain(sd: State, prefix: str, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Instance norm (no affine) scaled by (1 + gamma) plus beta; gamma, beta from the layer's own MLP."""
    normalised = F.instance_norm(x, eps=1e-5)
    hidden = F.relu(
        F.linear(z.flatten(1), sd[f"{prefix}.mlp_shared.0.weight"], sd[f"{prefix}.mlp_shared.0.bias"])
    )
    gamma = F.linear(hidden, sd[f"{prefix}.mlp_gamma.weight"], sd[f"{prefix}.mlp_gamma.bias"])
    beta = F.linear(hidden, sd[f"{prefix}.mlp_beta.weight"], sd[f"{prefix}.mlp_beta.bias"])
    return normalised * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


# ---------------------------------------------------------------------------------------------------
# Mapping net (spec §2.2)


def mapping_net(sd: State, window: torch.Tensor) -> torch.Tensor:
    x = F.conv1d(window, sd["mapping_net.first.0.weight"], sd["mapping_net.first.0.bias"])  # 27 -> 21
    for k in range(3):
        branch = F.conv1d(
            lrelu(x), sd[f"mapping_net.encoder{k}.1.weight"], sd[f"mapping_net.encoder{k}.1.bias"], dilation=3
        )
        x = branch + x[:, :, 3:-3]  # the stage's own input, centre-cropped by 3 at each end
    return F.adaptive_avg_pool1d(x, 1)  # z: (B, 256, 1)


# ---------------------------------------------------------------------------------------------------
# Warping net (spec §2.2, §4.2 steps 2-7)


def hourglass(sd: State, image: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    enc = "warpping_net.hourglass.encoder"
    x = conv2d(sd, f"{enc}.input_layer", image, padding=3)
    features = [x]
    for i in range(5):  # pre-activation encoder blocks, no residual
        p = f"{enc}.encoder{i}"
        x = conv2d(sd, f"{p}.conv_0", lrelu(adain(sd, f"{p}.norm_0", x, z)), stride=2, padding=1)
        x = conv2d(sd, f"{p}.conv_1", lrelu(adain(sd, f"{p}.norm_1", x, z)), padding=1)
        features.append(x)

    dec = "warpping_net.hourglass.decoder"
    out = features.pop()  # deepest feature, (256, 8, 8)
    for i in (4, 3, 2):
        p = f"{dec}.decoder{i}"
        hidden = conv2d(sd, f"{p}.conv_0", lrelu(adain(sd, f"{p}.norm_0", out, z)), padding=1)
        main = conv_transpose_up(sd, f"{p}.conv_1", lrelu(adain(sd, f"{p}.norm_1", hidden, z)))
        shortcut = conv_transpose_up(sd, f"{p}.conv_s", lrelu(adain(sd, f"{p}.norm_s", out, z)))
        out = torch.cat([shortcut + main, features.pop()], dim=1)  # [new, skip]
    return out  # (B, 256, 64, 64)


def flow_head(sd: State, features: torch.Tensor) -> torch.Tensor:
    x = lrelu(ln2d(sd, "warpping_net.flow_out.0", features))
    return conv2d(sd, "warpping_net.flow_out.2", x, padding=3)  # no final activation


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """§4.2 steps 5-7: pixel flow -> absolute corner-aligned grid -> bilinear resize -> grid_sample."""
    h, w = flow.shape[2:]
    cols = torch.arange(w, dtype=torch.float32)
    rows = torch.arange(h, dtype=torch.float32)
    base_x = (2 * cols / (w - 1) - 1).view(1, w).expand(h, w)
    base_y = (2 * rows / (h - 1) - 1).view(h, 1).expand(h, w)
    base = torch.stack([base_x, base_y], dim=-1)  # (h, w, 2), index 0 = x, 1 = y
    flow_norm = torch.stack([2 * flow[:, 0] / (w - 1), 2 * flow[:, 1] / (h - 1)], dim=-1)  # (B, h, w, 2)
    deformation = base.unsqueeze(0) + flow_norm
    if deformation.shape[1:3] != image.shape[2:]:
        deformation = deformation.permute(0, 3, 1, 2)
        deformation = F.interpolate(deformation, size=image.shape[2:], mode="bilinear", align_corners=False)
        deformation = deformation.permute(0, 2, 3, 1)
    return F.grid_sample(image, deformation, mode="bilinear", padding_mode="zeros", align_corners=False)


# ---------------------------------------------------------------------------------------------------
# Editing net (spec §2.2, §4.2 step 8)


def post_act(sd: State, prefix: str, x: torch.Tensor, padding: int) -> torch.Tensor:
    """conv -> LN2d -> LReLU, keys `prefix.model.0` (conv) and `prefix.model.1` (LN2d)."""
    return lrelu(ln2d(sd, f"{prefix}.model.1", conv2d(sd, f"{prefix}.model.0", x, padding=padding)))


def editing_net(sd: State, image: torch.Tensor, warped: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    enc = "editing_net.encoder"
    x = post_act(sd, f"{enc}.first", torch.cat([image, warped], dim=1), padding=3)
    features = [x]
    for j in range(3):  # conv at input resolution, LN2d, LReLU, then 2x2 average pool
        x = F.avg_pool2d(post_act(sd, f"{enc}.down{j}", x, padding=1), kernel_size=2, stride=2)
        features.append(x)

    dec = "editing_net.decoder"
    out = features[-1]
    for i in (2, 1, 0):
        for r in range(2):  # live path only: x + AdaIN_norm2(conv2(x)); conv1/norm1 are dead weights
            p = f"{dec}.res{i}.res{r}"
            out = out + adain(sd, f"{p}.norm2", conv2d(sd, f"{p}.conv2", out, padding=1), z)
        out = post_act(sd, f"{dec}.up{i}", F.interpolate(out, scale_factor=2, mode="nearest"), padding=1)
        out = post_act(sd, f"{dec}.jump{i}", features[i], padding=1) + out
    return torch.tanh(conv2d(sd, f"{dec}.final.model.0", out, padding=3))


# ---------------------------------------------------------------------------------------------------
# Whole generator (spec §4.2)


def reference_generator(
    sd: State, source: torch.Tensor, window: torch.Tensor, stage: str | None = None
) -> dict[str, torch.Tensor]:
    z = mapping_net(sd, window)
    flow = flow_head(sd, hourglass(sd, source, z))
    warped = warp(source, flow)
    result = {"flow_field": flow, "warp_image": warped}
    if stage != "warp":
        result["fake_image"] = editing_net(sd, source, warped, z)
    return result


# ---------------------------------------------------------------------------------------------------
# Tests


def _state() -> State:
    sd = authors_state_dict(seed=0)
    sd[FLOW_HEAD_KEY] = sd[FLOW_HEAD_KEY] * FLOW_SCALE  # flows of several 64-grid pixels
    return sd


def _inputs(batch: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    source = torch.rand(batch, 3, 256, 256, generator=gen) * 2 - 1  # white noise in [-1, 1]
    window = torch.randn(batch, 73, 27, generator=gen)
    return source, window


def _our_model(sd: State) -> FaceGenerator:
    model = FaceGenerator()
    model.load_state_dict(sd, strict=True)
    return model.eval()


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def state() -> State:
    return _state()


@pytest.fixture(scope="module")
def model(state: State) -> FaceGenerator:
    return _our_model(state)


@pytest.mark.slow
@pytest.mark.parametrize("ops", ["authors", "fast"])
@pytest.mark.parametrize("batch", [1, 2])
def test_generator_matches_spec_only_reference(
    model: FaceGenerator, state: State, batch: int, ops: str
) -> None:
    """The authors' operations (bit-exact in practice) and our faster equivalents (sub-pixel up
    convolutions, separate norm affine: float rounding only) both match the reference."""
    source, window = _inputs(batch)
    set_reference_ops(model, ops == "authors")
    with torch.no_grad():
        ours = model(source, window)
        ours_warp = model(source, window, "warp")
        ref = reference_generator(state, source, window)
        ref_warp = reference_generator(state, source, window, "warp")

    assert set(ours) == {"flow_field", "warp_image", "fake_image"}
    assert ours["flow_field"].shape == (batch, 2, 64, 64)
    assert ours["warp_image"].shape == ours["fake_image"].shape == (batch, 3, 256, 256)
    assert ref["flow_field"].abs().max().item() > 2.0, "flow too small to exercise the warp"

    diffs = {key: _max_diff(ours[key], ref[key]) for key in ref}
    set_reference_ops(model, False)
    print(f"batch {batch}, {ops} ops: max |ours - reference| = {diffs}")
    assert all(d <= TOLERANCE for d in diffs.values()), diffs

    assert set(ours_warp) == {"flow_field", "warp_image"}
    warp_diffs = {key: _max_diff(ours_warp[key], ref_warp[key]) for key in ref_warp}
    print(f"batch {batch}, stage warp: max |ours - reference| = {warp_diffs}")
    assert all(d <= TOLERANCE for d in warp_diffs.values()), warp_diffs


@pytest.mark.slow
def test_comparison_detects_a_live_change_and_ignores_the_dead_branch(
    model: FaceGenerator, state: State
) -> None:
    source, window = _inputs(1)
    with torch.no_grad():
        ours = model(source, window)["fake_image"]

        # a live AdaIN parameter, changed in the reference's copy only: the comparison must fail
        live = copy.copy(state)
        live_key = "editing_net.decoder.res2.res0.norm2.mlp_beta.bias"
        live[live_key] = live[live_key] + 1e-2
        assert _max_diff(ours, reference_generator(live, source, window)["fake_image"]) > 1e-3

        # a dead-branch parameter: no effect on the reference (by construction) nor on our model
        dead = copy.copy(state)
        dead_key = "editing_net.decoder.res2.res0.conv1.weight"
        dead[dead_key] = dead[dead_key] + torch.randn_like(dead[dead_key])
        ref_dead = reference_generator(dead, source, window)["fake_image"]
        ours_dead = _our_model(dead)(source, window)["fake_image"]
    assert _max_diff(ours, ref_dead) <= TOLERANCE
    assert _max_diff(ours, ours_dead) <= TOLERANCE
