"""The audio-to-motion flow: exact inverses, exact log-determinants, streaming, learning, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from pirender.engine.audioflow import (
    ActNorm,
    AffineCoupling,
    AudioMotionFlow,
    ConditionalFlow,
    FlowConfig,
    FlowError,
    FlowStep,
    InvertibleLinear,
    audio_windows,
    build_conditions,
    load_flow,
    read_flow_checkpoint,
    save_flow_checkpoint,
)
from pirender.engine.errors import CheckpointError
from pirender.engine.motion import AUTHORS_SPACE, OPEN_SPACE

SMALL = FlowConfig(
    motion_width=5,
    audio_feature_width=3,
    history_frames=2,
    audio_lookahead_frames=1,
    steps=3,
    lstm_hidden=8,
    lstm_layers=2,
)
#: plain-data feature settings as a caller would store them (``asdict(FeatureConfig)`` plus the video rate)
FEATURES = {"sample_rate_hz": 16000, "window_samples": 400, "hop_samples": 160, "n_mels": 40, "fps": 25}
RECONSTRUCTION_TOLERANCE = 1e-5  # fp32


@torch.no_grad()
def randomise(module: nn.Module, *, seed: int, amount: float = 0.3) -> nn.Module:
    """Move every parameter away from its identity-like initialisation; mark ActNorms initialised.

    The mixings' off-diagonal LU factors move less, so that each stays about as well conditioned as a
    trained one (a fresh mixing is already a random rotation).
    """
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in module.named_parameters():
        scale = amount / 4 if name.endswith(("lower", "upper")) else amount
        parameter.add_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    for child in module.modules():
        if isinstance(child, ActNorm):
            child.initialized.fill_(True)
    return module


def random_states(flow: ConditionalFlow, batch: int, *, seed: int) -> tuple[tuple[torch.Tensor, ...], ...]:
    generator = torch.Generator().manual_seed(seed)
    states = []
    for step in flow.steps:
        lstm = step.coupling.lstm
        shape = (lstm.num_layers, batch, lstm.hidden_size)
        states.append(
            (0.5 * torch.randn(shape, generator=generator), 0.5 * torch.randn(shape, generator=generator))
        )
    return tuple(states)


def random_model(config: FlowConfig = SMALL, *, seed: int = 0) -> AudioMotionFlow:
    torch.manual_seed(seed)
    model = randomise(AudioMotionFlow(config=config), seed=seed + 1).eval()
    generator = torch.Generator().manual_seed(seed + 2)
    width = config.motion_width
    model.set_normalisation(
        mean=torch.randn(width, generator=generator),
        std=torch.rand(width, generator=generator) + 0.5,
    )
    return model


def max_state_error(a: tuple, b: tuple) -> float:
    return max(
        float((x - y).abs().max())
        for pair_a, pair_b in zip(a, b, strict=True)
        for x, y in zip(pair_a, pair_b, strict=True)
    )


# ----------------------------------------------------------------------------------------------------
# Invertibility


@torch.no_grad()
def test_every_step_inverts_exactly() -> None:
    torch.manual_seed(0)
    width, cond_width, batch, frames = 5, 7, 3, 11
    x = torch.randn(batch, frames, width)
    cond = torch.randn(batch, frames, cond_width)

    actnorm = randomise(ActNorm(width=width), seed=1)
    y, _ = actnorm(x)
    assert float((actnorm.inverse(y) - x).abs().max()) <= RECONSTRUCTION_TOLERANCE

    mixing = randomise(InvertibleLinear(width=width), seed=2)
    y, _ = mixing(x)
    assert float((mixing.inverse(y) - x).abs().max()) <= RECONSTRUCTION_TOLERANCE
    assert torch.allclose(y, x @ mixing.weight().T)

    for module in (
        AffineCoupling(width=width, condition_width=cond_width, hidden=8, layers=2),
        FlowStep(width=width, condition_width=cond_width, lstm_hidden=8, lstm_layers=2),
    ):
        randomise(module, seed=3)
        state = (torch.randn(2, batch, 8), torch.randn(2, batch, 8))
        y, _, forward_state = module(x, cond, state)
        back, inverse_state = module.inverse(y, cond, state)
        assert not torch.allclose(y, x, atol=1e-2)  # not the identity
        assert float((back - x).abs().max()) <= RECONSTRUCTION_TOLERANCE
        assert max_state_error(forward_state, inverse_state) <= RECONSTRUCTION_TOLERANCE


@torch.no_grad()
def test_whole_flow_inverts_exactly_with_conditions_and_states() -> None:
    torch.manual_seed(0)
    flow = randomise(
        ConditionalFlow(width=5, condition_width=6, steps=4, lstm_hidden=8, lstm_layers=2), seed=1
    )
    x = torch.randn(2, 13, 5)
    cond = torch.randn(2, 13, 6)
    states = random_states(flow, 2, seed=2)
    z, logdet, forward_states = flow(x, cond, states)
    back, inverse_states = flow.inverse(z, cond, states)
    assert logdet.shape == (2, 13)
    assert float((back - x).abs().max()) <= RECONSTRUCTION_TOLERANCE
    assert max_state_error(forward_states, inverse_states) <= RECONSTRUCTION_TOLERANCE


def test_a_fresh_flow_has_identity_couplings() -> None:
    step = FlowStep(width=4, condition_width=3, lstm_hidden=8, lstm_layers=1).eval()
    x, cond = torch.randn(1, 5, 4), torch.randn(1, 5, 3)
    y, _, _ = step.coupling(x, cond)
    expected_scale = torch.sigmoid(torch.tensor(2.0)) + 1e-6
    assert torch.allclose(y[..., :2], x[..., :2]) and torch.allclose(y[..., 2:], x[..., 2:] * expected_scale)


def test_one_frame_lstm_path_equals_the_fused_lstm() -> None:
    torch.manual_seed(0)
    coupling = AffineCoupling(width=4, condition_width=3, hidden=8, layers=2)
    inputs = torch.randn(3, 1, 2 + 3)
    state = (torch.randn(2, 3, 8), torch.randn(2, 3, 8))
    for initial in (None, state):
        expected, (h, c) = coupling.lstm(inputs, initial)
        got, (h1, c1) = coupling._lstm_one_frame(inputs, initial)
        assert torch.allclose(got, expected, atol=1e-6)
        assert torch.allclose(h1, h, atol=1e-6) and torch.allclose(c1, c, atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# Log-determinants against autograd


def _jacobian_logdet(function, x: torch.Tensor) -> float:
    jacobian = torch.autograd.functional.jacobian(function, x)
    return float(torch.linalg.slogdet(jacobian.reshape(x.numel(), x.numel())).logabsdet)


@pytest.mark.parametrize("kind", ["actnorm", "mixing", "coupling", "step"])
def test_step_logdet_equals_autograd_jacobian(kind: str) -> None:
    torch.manual_seed(0)
    width, cond_width = 4, 3
    module: nn.Module = {
        "actnorm": lambda: ActNorm(width=width),
        "mixing": lambda: InvertibleLinear(width=width),
        "coupling": lambda: AffineCoupling(width=width, condition_width=cond_width, hidden=6, layers=2),
        "step": lambda: FlowStep(width=width, condition_width=cond_width, lstm_hidden=6, lstm_layers=2),
    }[kind]()
    randomise(module, seed=1, amount=0.5).double()
    x = torch.randn(1, 1, width, dtype=torch.float64)
    cond = torch.randn(1, 1, cond_width, dtype=torch.float64)
    state = (torch.randn(2, 1, 6, dtype=torch.float64), torch.randn(2, 1, 6, dtype=torch.float64))

    def run(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if kind in ("actnorm", "mixing"):
            return module(v)
        y, logdet, _ = module(v, cond, state)
        return y, logdet

    _, logdet = run(x)
    expected = _jacobian_logdet(lambda v: run(v)[0], x)
    assert abs(expected) > 1e-3  # a volume change worth checking
    assert float(logdet.detach().sum()) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("frames", [1, 3])
def test_flow_logdet_equals_autograd_jacobian(frames: int) -> None:
    """One frame; and a sequence, whose Jacobian is block lower-triangular (causal LSTMs)."""
    torch.manual_seed(0)
    flow = randomise(
        ConditionalFlow(width=4, condition_width=3, steps=3, lstm_hidden=6, lstm_layers=1), seed=1, amount=0.5
    ).double()
    x = torch.randn(1, frames, 4, dtype=torch.float64)
    cond = torch.randn(1, frames, 3, dtype=torch.float64)
    states = tuple((h.double(), c.double()) for h, c in random_states(flow, 1, seed=2))
    _, logdet, _ = flow(x, cond, states)
    expected = _jacobian_logdet(lambda v: flow(v, cond, states)[0], x)
    assert float(logdet.detach().sum()) == pytest.approx(expected, abs=1e-9)


# ----------------------------------------------------------------------------------------------------
# Streaming


@torch.no_grad()
def test_streaming_forward_and_inverse_equal_the_whole_sequence() -> None:
    torch.manual_seed(0)
    flow = randomise(
        ConditionalFlow(width=5, condition_width=6, steps=3, lstm_hidden=8, lstm_layers=2), seed=1
    ).eval()
    x, cond = torch.randn(2, 9, 5), torch.randn(2, 9, 6)
    z, logdet, final = flow(x, cond)
    whole_x, _ = flow.inverse(z, cond)

    states = None
    inverse_states = None
    for t in range(9):
        z_t, logdet_t, states = flow(x[:, t : t + 1], cond[:, t : t + 1], states)
        x_t, inverse_states = flow.inverse(z[:, t : t + 1], cond[:, t : t + 1], inverse_states)
        assert torch.allclose(z_t, z[:, t : t + 1], atol=1e-5)
        assert torch.allclose(logdet_t, logdet[:, t : t + 1], atol=1e-5)
        assert torch.allclose(x_t, whole_x[:, t : t + 1], atol=1e-5)
    assert max_state_error(states, final) <= 1e-5
    assert max_state_error(inverse_states, final) <= 1e-5


def test_streamed_generation_equals_sample_sequence_exactly() -> None:
    model = random_model()
    cfg = model.config
    audio = torch.randn(2, 10, cfg.audio_feature_width)
    latents = torch.randn(2, 10, cfg.motion_width)
    rest = torch.randn(cfg.motion_width)
    offline = model.sample_sequence(audio, temperature=0.7, latents=latents, rest_row=rest)
    assert offline.shape == (2, 10, cfg.motion_width)

    windows = audio_windows(audio, history_frames=2, lookahead_frames=1)
    assert windows.shape == (2, 10, cfg.audio_context_frames, cfg.audio_feature_width)
    state = model.reset(batch_size=2, rest_row=rest)
    for t in range(10):
        row, state = model.step(windows[:, t], state, temperature=0.7, latent=latents[:, t])
        assert torch.equal(row, offline[:, t])
    assert state.frames == 10

    # the same with latents drawn from a seeded generator, and one unbatched stream
    drawn = model.sample_sequence(audio[:1], generator=torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    single = None
    for t in range(10):
        row, single = model.step(windows[0, t], single, generator=generator)
        assert row.shape == (cfg.motion_width,)
        assert torch.equal(row, drawn[0, t])


def test_generated_motion_encodes_back_to_its_latents() -> None:
    """Generation (frame by frame) and the likelihood pass (whole sequence) see the same conditions."""
    model = random_model()
    cfg = model.config
    audio = torch.randn(2, 12, cfg.audio_feature_width)
    latents = torch.randn(2, 12, cfg.motion_width)
    rest = torch.randn(cfg.motion_width)
    motion = model.sample_sequence(audio, temperature=0.8, latents=latents, rest_row=rest)
    with torch.no_grad():
        z, _ = model.encode(motion, audio, rest_row=rest)
    assert torch.allclose(z, 0.8 * latents, atol=1e-4)


def test_temperature_zero_is_the_deterministic_mean_path() -> None:
    model = random_model()
    audio = torch.randn(1, 8, model.config.audio_feature_width)
    first = model.sample_sequence(audio, temperature=0.0, generator=torch.Generator().manual_seed(1))
    second = model.sample_sequence(audio, temperature=0.0, generator=torch.Generator().manual_seed(2))
    mean_path = model.sample_sequence(audio, latents=torch.zeros(1, 8, model.config.motion_width))
    assert torch.equal(first, second) and torch.equal(first, mean_path)
    varied = model.sample_sequence(audio, temperature=1.0, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(varied, first)


# ----------------------------------------------------------------------------------------------------
# Conditions


def test_conditions_hold_history_then_audio_window_with_padding() -> None:
    motion = torch.arange(4.0)[None, :, None].expand(1, 4, 2).clone()  # frame i = (i, i)
    audio = 10 + torch.arange(4.0)[None, :, None]  # (1, 4, 1): frame i = 10 + i
    rest = torch.tensor([-1.0, -1.0])
    cond = build_conditions(motion, audio, history_frames=2, lookahead_frames=1, rest_row=rest)
    assert cond.shape == (1, 4, 2 * 2 + 4 * 1)
    assert cond[0, 0].tolist() == [-1, -1, -1, -1, 10, 10, 10, 11]
    assert cond[0, 1].tolist() == [-1, -1, 0, 0, 10, 10, 11, 12]
    assert cond[0, 3].tolist() == [1, 1, 2, 2, 11, 12, 13, 13]
    default = build_conditions(motion, audio, history_frames=2, lookahead_frames=1)
    assert default[0, 0, :4].tolist() == [0, 0, 0, 0]  # first frame repeated

    ones = torch.ones(2, 50, 2)
    dropped = build_conditions(
        ones,
        ones[..., :1],
        history_frames=2,
        lookahead_frames=1,
        history_dropout=0.4,
        generator=torch.Generator().manual_seed(0),
    )
    history = dropped[..., :4].reshape(2, 50, 2, 2)
    assert torch.equal(history[..., 0], history[..., 1])  # whole frames are dropped
    assert 0.2 < float((history[..., 0] == 0).float().mean()) < 0.6
    assert torch.equal(dropped[..., 4:], torch.ones(2, 50, 4))  # audio is never dropped


def test_config_checks_and_round_trip() -> None:
    config = FlowConfig.for_space(OPEN_SPACE, audio_feature_width=160)
    assert config.motion_width == 17 and config.audio_context_frames == 8
    assert config.condition_width == 5 * 17 + 8 * 160
    assert FlowConfig.from_dict(config.to_dict()) == config
    config.check_space(OPEN_SPACE)
    with pytest.raises(FlowError, match="17"):
        config.check_space(AUTHORS_SPACE)
    with pytest.raises(FlowError, match="steps"):
        FlowConfig(motion_width=4, audio_feature_width=3, steps=0)
    with pytest.raises(FlowError, match="history_dropout"):
        FlowConfig(motion_width=4, audio_feature_width=3, history_dropout=1.0)
    with pytest.raises(FlowError, match="slot names"):
        FlowConfig(motion_width=4, audio_feature_width=3, slot_names=("a", "b"))
    with pytest.raises(FlowError, match="unknown fields"):
        FlowConfig.from_dict({**config.to_dict(), "colour": 1})
    with pytest.raises(TypeError):
        FlowConfig(4, 3)  # type: ignore[misc]  # keyword-only
    model = random_model()
    with pytest.raises(FlowError, match="audio window"):
        model.step(torch.zeros(1, 3, 3))
    with pytest.raises(FlowError, match="motion"):
        model.nll(torch.zeros(1, 4, 6), torch.zeros(1, 4, 3))


# ----------------------------------------------------------------------------------------------------
# Learning


def _synthetic(batch: int, frames: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth audio features and motion = f(audio now and one frame ahead) + small noise."""
    generator = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, frames + 1, 3, generator=generator).cumsum(dim=1) * 0.3
    audio = audio - audio.mean(dim=1, keepdim=True)
    mixing = torch.tensor([[1.0, -0.5, 0.2, 0.0], [0.3, 1.0, -0.4, 0.5], [-0.6, 0.2, 1.0, -0.3]])
    motion = torch.tanh(audio[:, :-1] @ mixing) + 0.5 * audio[:, 1:] @ mixing.flip(0)
    motion = motion * torch.tensor([1.0, 2.0, 0.5, 0.1]) + torch.tensor([0.0, 1.0, -2.0, 5.0])
    motion = motion + 0.05 * torch.randn(motion.shape, generator=generator)
    return motion, audio[:, :-1]


def test_training_lowers_the_nll_clearly_and_uses_the_audio() -> None:
    torch.manual_seed(0)
    config = FlowConfig(
        motion_width=4,
        audio_feature_width=3,
        history_frames=2,
        audio_lookahead_frames=1,
        steps=4,
        lstm_hidden=32,
    )
    model = AudioMotionFlow(config=config)
    motion, audio = _synthetic(48, 24, seed=0)
    test_motion, test_audio = _synthetic(16, 24, seed=1)
    model.fit_normalisation(motion)
    model.train()
    with torch.no_grad():
        model.nll(motion, audio)  # data-dependent ActNorm initialisation
    with torch.no_grad():
        before = float(model.eval().nll(test_motion, test_audio))

    optimiser = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(60):
        optimiser.zero_grad()
        loss = model.nll(motion, audio)
        loss.backward()
        optimiser.step()

    model.eval()
    with torch.no_grad():
        after = float(model.nll(test_motion, test_audio))
        shuffled = float(model.nll(test_motion, test_audio.roll(1, dims=0)))
    assert after < before - 0.8, (before, after)
    assert shuffled > after + 0.3, (after, shuffled)


# ----------------------------------------------------------------------------------------------------
# Checkpoints


def _open_space_model() -> AudioMotionFlow:
    config = FlowConfig.for_space(OPEN_SPACE, audio_feature_width=6, steps=2, lstm_hidden=8)
    return random_model(config, seed=3)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _open_space_model()
    path = save_flow_checkpoint(
        tmp_path / "flow.pt", model, space=OPEN_SPACE, features=FEATURES, training={"steps": 60, "nll": -0.5}
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow.pt"]  # no temporary file left
    loaded, info = load_flow(
        path,
        space=OPEN_SPACE,
        motion_width=17,
        audio_feature_width=6,
        sample_rate_hz=16000,
        features=FEATURES,
    )
    assert info.config == model.config and info.space == OPEN_SPACE
    assert info.features == FEATURES and info.training == {"steps": 60, "nll": -0.5}
    assert info.sample_rate_hz == 16000
    assert torch.equal(info.motion_mean, model.motion_mean) and torch.equal(info.motion_std, model.motion_std)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    audio = torch.randn(6, 6)
    latents = torch.randn(6, 17)
    assert torch.equal(
        loaded.sample_sequence(audio, latents=latents), model.sample_sequence(audio, latents=latents)
    )


@pytest.mark.parametrize(
    ("expected", "message"),
    [
        ({"space": AUTHORS_SPACE}, "motion space is 'pirender-open-v1'"),
        ({"motion_width": 73}, "motion width is 17, expected 73"),
        ({"audio_feature_width": 160}, "audio feature width is 6, expected 160"),
        ({"sample_rate_hz": 24000}, "sample rate is 16000 Hz, expected 24000 Hz"),
        ({"features": {"n_mels": 80}}, "feature 'n_mels' is 40, expected 80"),
        ({"features": {"frames_per_video_frame": 4}}, "no 'frames_per_video_frame'"),
    ],
)
def test_checkpoint_mismatch_errors(tmp_path: Path, expected: dict, message: str) -> None:
    path = save_flow_checkpoint(
        tmp_path / "flow.pt", _open_space_model(), space=OPEN_SPACE, features=FEATURES
    )
    with pytest.raises(CheckpointError, match=message):
        load_flow(path, **expected)


def test_checkpoint_write_and_read_errors(tmp_path: Path) -> None:
    model = _open_space_model()
    with pytest.raises(CheckpointError, match="17"):
        save_flow_checkpoint(tmp_path / "a.pt", model, space=AUTHORS_SPACE, features=FEATURES)
    with pytest.raises(CheckpointError, match="sample_rate_hz"):
        save_flow_checkpoint(tmp_path / "a.pt", model, space=OPEN_SPACE, features={"n_mels": 40})
    with pytest.raises(CheckpointError, match="not plain data"):
        save_flow_checkpoint(
            tmp_path / "a.pt", model, space=OPEN_SPACE, features={**FEATURES, "window": torch.zeros(2)}
        )
    with pytest.raises(CheckpointError, match="cannot write"):
        save_flow_checkpoint(tmp_path / "missing" / "a.pt", model, space=OPEN_SPACE, features=FEATURES)
    assert not list(tmp_path.iterdir())

    with pytest.raises(CheckpointError, match="no such file"):
        read_flow_checkpoint(tmp_path / "none.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_flow_checkpoint(tmp_path / "text.pt")
    torch.save({"net_G_ema": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an audio-flow checkpoint"):
        read_flow_checkpoint(tmp_path / "other.pt")
    torch.save({"format": "pirender-live-audioflow", "model": nn.Linear(2, 2)}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match="weights-only"):
        read_flow_checkpoint(tmp_path / "code.pt")

    path = save_flow_checkpoint(tmp_path / "flow.pt", model, space=OPEN_SPACE, features=FEATURES)
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        read_flow_checkpoint(tmp_path / "future.pt")
    weights = dict(payload["weights"])
    weights.pop("motion_std")
    torch.save({**payload, "weights": weights}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match=r"missing key.*motion_std"):
        load_flow(tmp_path / "partial.pt")
