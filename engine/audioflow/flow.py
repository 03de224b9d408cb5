"""Audio-to-motion conditional normalizing flow (PIRenderer §3.3, built like MoGlow).

The flow maps a standard-Gaussian latent ``n_i`` to the motion ``p_i`` of video frame ``i`` given a
condition ``c_i``: ``p_i = f(n_i, c_i)``; training maximises the exact likelihood through
``n_i = f^-1(p_i, c_i)`` and the log-determinant of its Jacobian (``shared/design/audio-flow.md``).

Direction names: *forward* = motion -> latent (used for the likelihood), *inverse* = latent -> motion
(used for generation). Every tensor is a sequence ``(B, T, ...)``; a stream is the same computation
one frame at a time.

Decisions (ours where the paper is silent):

- **Steps.** ``FlowStep`` = :class:`ActNorm` -> :class:`InvertibleLinear` -> :class:`AffineCoupling`,
  ``K = FlowConfig.steps`` of them (default 8; MoGlow uses 16). The latent has the motion's width.
- **ActNorm** ``y = (x + bias) * exp(log_scale)``, per channel; data-dependent initialisation (bias =
  -mean, scale = 1 / std over batch and time) on the first *forward* call in *training* mode only, so
  a single streamed frame in eval mode never initialises it from one sample. The ``initialized``
  buffer travels in the state dict. Per-frame log-determinant ``sum(log_scale)``.
- **InvertibleLinear**: the 1x1 "convolution" over the motion channels, LU-parameterised
  ``W = P L (U + diag(sign * exp(log_s)))`` with ``P`` and ``sign`` fixed buffers, initialised from a
  random orthogonal matrix (torch's global generator, like every ``nn`` initialiser). Inverse by two
  triangular solves (no explicit matrix inverse). Log-determinant ``sum(log_s)``.
- **AffineCoupling**: the first ``D // 2`` channels pass unchanged (the *passive* half); an ``nn.LSTM``
  over time reads ``[passive half, condition]`` and a zero-initialised ``nn.Linear`` gives
  ``(shift, raw)`` for the other half: ``y_b = (x_b + shift) * scale`` with
  ``scale = sigmoid(raw + 2) + 1e-6`` (each step starts near the identity; scale is always positive).
  Log-determinant ``sum(log scale)``. The LSTM is causal, so the Jacobian of a whole sequence is block
  lower-triangular and its log|det| is the sum of the per-frame values returned.
- **State.** Nothing is kept inside the modules between calls: every LSTM's ``(h, c)`` goes in and
  comes out explicitly (:data:`FlowStates`, one entry per step), so a stream carries them frame to
  frame and ``None`` starts from zeros (MoGlow's reset). The forward and inverse of a frame give the
  LSTMs the same inputs, so their states are interchangeable.
- **Condition** of frame ``i`` (width ``k * D + (k + 1 + tau) * A``): the ``k`` previous *normalised*
  motions ``p_{i-k..i-1}`` flattened oldest first, then the audio features ``a_{i-k..i+tau}``
  flattened oldest first. ``A`` is the flat audio feature width of one video frame (e.g. 40 log-mels x
  4 audio frames per video frame = 160). Whole sequences (:func:`build_conditions`) pad the motion
  history before the first frame with a rest row (normalised; default: the first frame repeated) and
  the audio with its first / last frame repeated (:func:`audio_windows`); a stream receives the audio
  window of each frame ready made.
- **Autoregressive dropout** (MoGlow: keeps the model from ignoring the audio): in training mode each
  history *frame* of a condition is zeroed (= the mean motion after normalisation, no rescaling) with
  probability ``FlowConfig.history_dropout`` (default 0.4).
- **Normalisation.** Motion is normalised per dimension with ``motion_mean`` / ``motion_std`` buffers
  (stored in checkpoints) before the flow and de-normalised after. :meth:`AudioMotionFlow.nll` is the
  negative log-likelihood of the *normalised* motion, in nats per dimension and frame, under the prior
  ``N(0, I)`` (add ``mean(log motion_std)`` for raw units). Dimensions that never vary (e.g. the crop of
  a fixed source in the authors' space) make this likelihood unbounded; leave them out of training
  data or add small noise to them.
- **Generation** (:meth:`AudioMotionFlow.step`) draws ``z = temperature * n`` with ``n ~ N(0, I)`` from
  the caller's ``torch.Generator`` (or an injected ``latent``), inverts the flow for one frame and
  appends the result to the history. :meth:`AudioMotionFlow.sample_sequence` is exactly a loop of
  :meth:`~AudioMotionFlow.step`, so a stream and an offline pass with the same latents agree exactly.
  Temperature 0 gives the deterministic "mean path" (``z = 0`` every frame). Generation starts from
  ``rest_row`` (default: the mean motion) as history.
- Defaults: ``k = 5``, ``tau = 2`` (2 frames of audio latency at the video rate), ``K = 8``, one LSTM
  layer of 128. One streamed frame (:meth:`AudioMotionFlow.step`) of the open space (D = 17) with
  A = 160 took about 2.6 ms on one CPU core of the development machine (6.2 M parameters, mostly the
  LSTMs' input weights over the 1,365-wide condition); A = 40 and 64 hidden took about 1 ms. One-frame
  calls skip the fused LSTM kernel, whose fixed cost per call dominated small models.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from ..audio.features import FeatureNorm
from ..errors import PirenderError
from ..motion.space import MotionSpace
from .readout import MouthReadout

#: One LSTM's ``(h, c)``, each ``(lstm_layers, B, lstm_hidden)``.
LSTMState = tuple[Tensor, Tensor]
#: One LSTM state per flow step, in step order.
FlowStates = tuple[LSTMState, ...]

_SCALE_OFFSET = 2.0  # scale = sigmoid(raw + 2) + eps: starts near sigmoid(2) ~ 0.88
_SCALE_EPS = 1e-6
_ACTNORM_MIN_STD = 1e-3  # floor of the data-dependent ActNorm init (normalised units)
_LOG_2PI = math.log(2.0 * math.pi)


class FlowError(PirenderError, ValueError):
    """A flow configuration or an input of the wrong shape."""


@dataclass(frozen=True, kw_only=True)
class FlowConfig:
    """Sizes of the audio-to-motion flow.

    Attributes:
        motion_width: D, numbers per motion frame (the motion space's width).
        audio_feature_width: A, flat audio features per *video* frame (e.g. 40 mels x 4 audio frames).
        history_frames: k, previous motions in each condition (>= 0).
        audio_lookahead_frames: tau, future video frames of audio in each condition (latency, >= 0).
        steps: K, flow steps.
        lstm_hidden: hidden width of each coupling LSTM.
        lstm_layers: stacked LSTM layers per coupling.
        history_dropout: probability of zeroing one history frame of a condition in training.
        space_name: motion space the flow was built for ("" = none named).
        slot_names: that space's slot names (empty = none named; else ``motion_width`` of them).
    """

    motion_width: int
    audio_feature_width: int
    history_frames: int = 5
    audio_lookahead_frames: int = 2
    steps: int = 8
    lstm_hidden: int = 128
    lstm_layers: int = 1
    history_dropout: float = 0.4
    space_name: str = ""
    slot_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive = ("motion_width", "audio_feature_width", "steps", "lstm_hidden", "lstm_layers")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise FlowError(f"flow config: {name} must be a positive integer, got {value!r}")
        for name in ("history_frames", "audio_lookahead_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise FlowError(f"flow config: {name} must be an integer >= 0, got {value!r}")
        if not 0.0 <= self.history_dropout < 1.0:
            raise FlowError(f"flow config: history_dropout must be in [0, 1), got {self.history_dropout}")
        object.__setattr__(self, "slot_names", tuple(self.slot_names))
        if self.slot_names and len(self.slot_names) != self.motion_width:
            raise FlowError(
                f"flow config: {len(self.slot_names)} slot names for a motion width of {self.motion_width}"
            )

    @classmethod
    def for_space(cls, space: MotionSpace, *, audio_feature_width: int, **sizes: Any) -> FlowConfig:
        """A config whose motion width, space name and slots come from ``space``."""
        return cls(
            motion_width=space.width,
            audio_feature_width=audio_feature_width,
            space_name=space.name,
            slot_names=space.slot_names,
            **sizes,
        )

    @property
    def audio_context_frames(self) -> int:
        """Video frames of audio in one condition: k + 1 + tau."""
        return self.history_frames + 1 + self.audio_lookahead_frames

    @property
    def condition_width(self) -> int:
        """C = k * D + (k + 1 + tau) * A."""
        return self.history_frames * self.motion_width + self.audio_context_frames * self.audio_feature_width

    def check_space(self, space: MotionSpace) -> None:
        """Raise a :class:`FlowError` unless ``space`` fits this config (width, and name/slots if named)."""
        if space.width != self.motion_width:
            raise FlowError(
                f"motion space {space.name!r} has {space.width} slots, the flow models {self.motion_width}"
            )
        if self.space_name and space.name != self.space_name:
            raise FlowError(f"the flow was built for motion space {self.space_name!r}, not {space.name!r}")
        if self.slot_names and space.slot_names != self.slot_names:
            raise FlowError(f"motion space {space.name!r} lays out its slots differently from the flow's")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["slot_names"] = list(self.slot_names)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlowConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FlowError(f"flow config has unknown fields: {', '.join(unknown)}")
        values = dict(data)
        if "slot_names" in values:
            values["slot_names"] = tuple(str(s) for s in values["slot_names"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise FlowError(f"flow config: {exc}") from None


# ----------------------------------------------------------------------------------------------------
# Flow steps. Shapes: x, y (B, T, D); cond (B, T, C); logdet (B, T) per frame.


class ActNorm(nn.Module):
    """Per-channel affine ``y = (x + bias) * exp(log_scale)`` with data-dependent initialisation."""

    def __init__(self, *, width: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(width))
        self.log_scale = nn.Parameter(torch.zeros(width))
        self.initialized: Tensor
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set bias = -mean and scale = 1 / std of ``x`` (..., D) over every leading dimension."""
        flat = x.detach().reshape(-1, x.shape[-1])
        mean = flat.mean(dim=0)
        std = flat.std(dim=0, unbiased=False) if flat.shape[0] > 1 else torch.ones_like(mean)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std.clamp_min(_ACTNORM_MIN_STD)))
        self.initialized.fill_(True)

    def _logdet(self, x: Tensor) -> Tensor:
        return self.log_scale.sum().expand(x.shape[:-1])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, D) -> y (B, T, D), logdet (B, T). Initialises from ``x`` first when training."""
        if self.training and not bool(self.initialized):
            self.initialize(x)
        return (x + self.bias) * torch.exp(self.log_scale), self._logdet(x)

    def inverse(self, y: Tensor) -> Tensor:
        """y (B, T, D) -> x (B, T, D)."""
        return y * torch.exp(-self.log_scale) - self.bias


class InvertibleLinear(nn.Module):
    """Invertible channel mixing ``y = W x``, ``W = P L (U + diag(sign * exp(log_s)))`` (LU form)."""

    permutation: Tensor
    sign: Tensor
    lower_mask: Tensor
    identity: Tensor

    def __init__(self, *, width: int) -> None:
        super().__init__()
        rotation, _ = torch.linalg.qr(torch.randn(width, width, dtype=torch.float64))
        permutation, lower, upper = torch.linalg.lu(rotation)
        diagonal = torch.diagonal(upper)
        self.register_buffer("permutation", permutation.float())
        self.register_buffer("sign", torch.sign(diagonal).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(width, width), diagonal=-1))
        self.register_buffer("identity", torch.eye(width), persistent=False)
        self.lower = nn.Parameter(torch.tril(lower, diagonal=-1).float())
        self.upper = nn.Parameter(torch.triu(upper, diagonal=1).float())
        self.log_s = nn.Parameter(torch.log(diagonal.abs()).float())

    def factors(self) -> tuple[Tensor, Tensor]:
        """(L unit lower-triangular, U upper-triangular), each (D, D)."""
        lower = self.lower * self.lower_mask + self.identity
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * torch.exp(self.log_s))
        return lower, upper

    def weight(self) -> Tensor:
        """W (D, D)."""
        lower, upper = self.factors()
        return self.permutation @ lower @ upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, D) -> y = x W^T (B, T, D), logdet (B, T).

        Applied factor by factor (U, then L, then P), the mirror of :meth:`inverse`, so that rounding
        does not differ between the two directions.
        """
        lower, upper = self.factors()
        y = x @ upper.T @ lower.T @ self.permutation.T
        return y, self.log_s.sum().expand(x.shape[:-1])

    def inverse(self, y: Tensor) -> Tensor:
        """y (B, T, D) -> x (B, T, D) by solving P L U x = y."""
        lower, upper = self.factors()
        columns = self.permutation.T @ y.reshape(-1, y.shape[-1]).T  # (D, B*T)
        columns = torch.linalg.solve_triangular(lower, columns, upper=False, unitriangular=True)
        columns = torch.linalg.solve_triangular(upper, columns, upper=True)
        return columns.T.reshape(y.shape)


class AffineCoupling(nn.Module):
    """Affine coupling whose scale and shift come from an LSTM over ``[passive half, condition]``."""

    def __init__(self, *, width: int, condition_width: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.passive = width // 2
        self.active = width - self.passive
        self.lstm = nn.LSTM(self.passive + condition_width, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, 2 * self.active)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _lstm_one_frame(self, inputs: Tensor, state: LSTMState | None) -> tuple[Tensor, LSTMState]:
        """``self.lstm`` on one frame (B, 1, I) -> (B, 1, H), state; the same gate equations spelled out,
        because the fused kernel costs tens of microseconds per call even for tiny sizes (streaming)."""
        lstm = self.lstm
        batch = inputs.shape[0]
        if state is None:
            zeros = inputs.new_zeros(lstm.num_layers, batch, lstm.hidden_size)
            state = (zeros, zeros)
        layer_input = inputs[:, 0]
        hs, cs = [], []
        for layer in range(lstm.num_layers):
            weight_ih, weight_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
            bias = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
            gates = torch.addmm(bias, layer_input, weight_ih.T) + state[0][layer] @ weight_hh.T
            in_gate, forget_gate, cell_gate, out_gate = gates.sigmoid().chunk(4, dim=-1)
            cell_gate = gates.chunk(4, dim=-1)[2].tanh()
            cell = forget_gate * state[1][layer] + in_gate * cell_gate
            layer_input = out_gate * cell.tanh()
            hs.append(layer_input)
            cs.append(cell)
        return layer_input[:, None], (torch.stack(hs), torch.stack(cs))

    def _shift_scale(
        self, passive: Tensor, cond: Tensor, state: LSTMState | None
    ) -> tuple[Tensor, Tensor, LSTMState]:
        inputs = torch.cat([passive, cond], dim=-1)
        if inputs.shape[1] == 1:
            hidden, new_state = self._lstm_one_frame(inputs, state)
        else:
            hidden, new_state = self.lstm(inputs, state)
        shift, raw = self.out(hidden).chunk(2, dim=-1)
        return shift, torch.sigmoid(raw + _SCALE_OFFSET) + _SCALE_EPS, new_state

    def forward(
        self, x: Tensor, cond: Tensor, state: LSTMState | None = None
    ) -> tuple[Tensor, Tensor, LSTMState]:
        """x (B, T, D), cond (B, T, C) -> y (B, T, D), logdet (B, T), LSTM state after frame T-1."""
        passive, active = x[..., : self.passive], x[..., self.passive :]
        shift, scale, new_state = self._shift_scale(passive, cond, state)
        y = torch.cat([passive, (active + shift) * scale], dim=-1)
        return y, torch.log(scale).sum(dim=-1), new_state

    def inverse(self, y: Tensor, cond: Tensor, state: LSTMState | None = None) -> tuple[Tensor, LSTMState]:
        """y (B, T, D), cond (B, T, C) -> x (B, T, D), LSTM state (the same as the forward's)."""
        passive, active = y[..., : self.passive], y[..., self.passive :]
        shift, scale, new_state = self._shift_scale(passive, cond, state)
        return torch.cat([passive, active / scale - shift], dim=-1), new_state


class FlowStep(nn.Module):
    """ActNorm -> InvertibleLinear -> AffineCoupling."""

    def __init__(self, *, width: int, condition_width: int, lstm_hidden: int, lstm_layers: int) -> None:
        super().__init__()
        self.actnorm = ActNorm(width=width)
        self.mixing = InvertibleLinear(width=width)
        self.coupling = AffineCoupling(
            width=width, condition_width=condition_width, hidden=lstm_hidden, layers=lstm_layers
        )

    def forward(
        self, x: Tensor, cond: Tensor, state: LSTMState | None = None
    ) -> tuple[Tensor, Tensor, LSTMState]:
        """x (B, T, D), cond (B, T, C) -> y (B, T, D), logdet (B, T), LSTM state."""
        x, logdet_norm = self.actnorm(x)
        x, logdet_mix = self.mixing(x)
        y, logdet_coupling, new_state = self.coupling(x, cond, state)
        return y, logdet_norm + logdet_mix + logdet_coupling, new_state

    def inverse(self, y: Tensor, cond: Tensor, state: LSTMState | None = None) -> tuple[Tensor, LSTMState]:
        """y (B, T, D), cond (B, T, C) -> x (B, T, D), LSTM state."""
        x, new_state = self.coupling.inverse(y, cond, state)
        return self.actnorm.inverse(self.mixing.inverse(x)), new_state


class ConditionalFlow(nn.Module):
    """K flow steps; forward = motion -> latent, inverse = latent -> motion, with explicit LSTM states."""

    def __init__(
        self, *, width: int, condition_width: int, steps: int, lstm_hidden: int, lstm_layers: int
    ) -> None:
        super().__init__()
        self.width = width
        self.condition_width = condition_width
        self.steps = nn.ModuleList(
            FlowStep(
                width=width, condition_width=condition_width, lstm_hidden=lstm_hidden, lstm_layers=lstm_layers
            )
            for _ in range(steps)
        )

    def _states(self, states: FlowStates | None) -> tuple[LSTMState | None, ...]:
        if states is None:
            return (None,) * len(self.steps)
        if len(states) != len(self.steps):
            raise FlowError(f"{len(states)} LSTM states for a flow of {len(self.steps)} steps")
        return tuple(states)

    def _check(self, x: Tensor, cond: Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.width:
            raise FlowError(f"expected a (B, T, {self.width}) sequence, got shape {tuple(x.shape)}")
        if cond.shape != (*x.shape[:2], self.condition_width):
            raise FlowError(
                f"expected conditions of shape {(*x.shape[:2], self.condition_width)}, "
                f"got {tuple(cond.shape)}"
            )

    def forward(
        self, x: Tensor, cond: Tensor, states: FlowStates | None = None
    ) -> tuple[Tensor, Tensor, FlowStates]:
        """x (B, T, D), cond (B, T, C) -> z (B, T, D), logdet (B, T), states after the last frame."""
        self._check(x, cond)
        logdet = x.new_zeros(x.shape[:2])
        new_states = []
        for step, state in zip(self.steps, self._states(states), strict=True):
            x, step_logdet, new_state = step(x, cond, state)
            logdet = logdet + step_logdet
            new_states.append(new_state)
        return x, logdet, tuple(new_states)

    def inverse(self, z: Tensor, cond: Tensor, states: FlowStates | None = None) -> tuple[Tensor, FlowStates]:
        """z (B, T, D), cond (B, T, C) -> x (B, T, D), states after the last frame."""
        self._check(z, cond)
        reversed_states = []
        for step, state in zip(reversed(self.steps), reversed(self._states(states)), strict=True):
            if not isinstance(step, FlowStep):  # an nn.ModuleList yields plain Modules
                raise TypeError(f"flow steps must be FlowStep modules, got {type(step).__name__}")
            z, new_state = step.inverse(z, cond, state)
            reversed_states.append(new_state)
        return z, tuple(reversed(reversed_states))


# ----------------------------------------------------------------------------------------------------
# Conditions for whole sequences (teacher forcing).


def audio_windows(audio: Tensor, *, history_frames: int, lookahead_frames: int) -> Tensor:
    """Audio window of every frame: audio (B, T, A) -> (B, T, k + 1 + tau, A).

    Window ``i`` holds frames ``i - k .. i + tau``; frames before the first / after the last repeat it.
    """
    if audio.ndim != 3 or audio.shape[1] == 0:
        raise FlowError(f"expected audio features of shape (B, T>0, A), got {tuple(audio.shape)}")
    padded = torch.cat(
        [
            audio[:, :1].expand(-1, history_frames, -1),
            audio,
            audio[:, -1:].expand(-1, lookahead_frames, -1),
        ],
        dim=1,
    )
    size = history_frames + 1 + lookahead_frames
    return padded.unfold(1, size, 1).permute(0, 1, 3, 2)  # (B, T, A, W) -> (B, T, W, A)


def motion_history(motion: Tensor, *, history_frames: int, rest_row: Tensor | None = None) -> Tensor:
    """Previous motions of every frame: motion (B, T, D) -> (B, T, k, D), oldest first.

    Frames before the start are ``rest_row`` ((D,) or (B, D)), by default the first frame repeated.
    """
    batch, frames, width = motion.shape
    if history_frames == 0:
        return motion.new_zeros(batch, frames, 0, width)
    rest = motion[:, 0] if rest_row is None else rest_row.to(motion).expand(batch, width)
    padded = torch.cat([rest[:, None].expand(-1, history_frames, -1), motion[:, :-1]], dim=1)
    return padded.unfold(1, history_frames, 1).permute(0, 1, 3, 2)  # (B, T, k, D)


def build_conditions(
    motion: Tensor,
    audio: Tensor,
    *,
    history_frames: int,
    lookahead_frames: int,
    rest_row: Tensor | None = None,
    history_dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Teacher-forced conditions: normalised motion (B, T, D), audio (B, T, A) -> (B, T, C).

    ``C = k * D + (k + 1 + tau) * A``; see :func:`motion_history` and :func:`audio_windows`.
    ``history_dropout`` > 0 zeroes each history frame with that probability (training only).
    """
    if motion.shape[:2] != audio.shape[:2]:
        raise FlowError(
            f"motion {tuple(motion.shape)} and audio {tuple(audio.shape)} differ in batch or frame count"
        )
    history = motion_history(motion, history_frames=history_frames, rest_row=rest_row)
    if history_dropout > 0.0 and history_frames > 0:
        keep = torch.rand(history.shape[:3], generator=generator, device=history.device) >= history_dropout
        history = history * keep[..., None].to(history.dtype)
    windows = audio_windows(audio, history_frames=history_frames, lookahead_frames=lookahead_frames)
    return torch.cat([history.flatten(2), windows.flatten(2)], dim=-1)


# ----------------------------------------------------------------------------------------------------
# The whole model.


@dataclass(frozen=True)
class StreamState:
    """Where a generated stream stands (never mutated: :meth:`AudioMotionFlow.step` returns a new one).

    Attributes:
        history: (B, k, D) the last k generated motions, normalised, oldest first.
        lstm_states: per-step LSTM states, None before the first frame (zeros).
        frames: motions generated so far.
    """

    history: Tensor
    lstm_states: FlowStates | None = None
    frames: int = 0


def _batched(value: Tensor, width: int, what: str) -> tuple[Tensor, bool]:
    """(T, W) or (B, T, W) -> (B, T, W), and whether a batch axis was added."""
    if not isinstance(value, Tensor):
        raise FlowError(f"{what}: expected a tensor, got {type(value).__name__}")
    if value.ndim == 2:
        value = value[None]
        added = True
    else:
        added = False
    if value.ndim != 3 or value.shape[-1] != width or value.shape[1] == 0:
        raise FlowError(
            f"{what}: expected shape (B, T>0, {width}) or (T>0, {width}), got {tuple(value.shape)}"
        )
    return value, added


class AudioMotionFlow(nn.Module):
    """Audio-conditioned motion flow with motion normalisation, likelihood, sampling and streaming."""

    motion_mean: Tensor
    motion_std: Tensor

    def __init__(self, *, config: FlowConfig) -> None:
        super().__init__()
        self.config = config
        #: per-utterance feature normalisation the model was trained with (set by its loader), or None
        self.feature_norm: FeatureNorm | None = None
        #: the linear map that makes the mouth controls instead of the flow (set by its loader), or None
        self.mouth_readout: MouthReadout | None = None
        self.register_buffer("motion_mean", torch.zeros(config.motion_width))
        self.register_buffer("motion_std", torch.ones(config.motion_width))
        self.flow = ConditionalFlow(
            width=config.motion_width,
            condition_width=config.condition_width,
            steps=config.steps,
            lstm_hidden=config.lstm_hidden,
            lstm_layers=config.lstm_layers,
        )

    # -- normalisation --------------------------------------------------------------------------------

    @torch.no_grad()
    def set_normalisation(self, *, mean: Tensor, std: Tensor) -> None:
        """Per-dimension motion statistics, each (D,) in the motion's units; std must be > 0."""
        width = self.config.motion_width
        if mean.shape != (width,) or std.shape != (width,):
            raise FlowError(
                f"normalisation stats must be ({width},), got {tuple(mean.shape)} and {tuple(std.shape)}"
            )
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise FlowError("normalisation stats must be finite with a positive std")
        self.motion_mean.copy_(mean)
        self.motion_std.copy_(std)

    def fit_normalisation(self, motion: Tensor, *, min_std: float = 1e-6) -> None:
        """Set mean/std from training motion (..., D); std is floored at ``min_std`` (motion units)."""
        flat = motion.detach().reshape(-1, self.config.motion_width).to(self.motion_mean)
        self.set_normalisation(mean=flat.mean(dim=0), std=flat.std(dim=0, unbiased=False).clamp_min(min_std))

    def normalise(self, motion: Tensor) -> Tensor:
        """Motion (..., D) in its units -> normalised (..., D)."""
        return (motion - self.motion_mean) / self.motion_std

    def denormalise(self, normalised: Tensor) -> Tensor:
        """Normalised (..., D) -> motion (..., D) in its units."""
        return normalised * self.motion_std + self.motion_mean

    # -- likelihood -----------------------------------------------------------------------------------

    def conditions(
        self,
        motion: Tensor,
        audio: Tensor,
        *,
        rest_row: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Teacher-forced conditions (B, T, C) from motion (B, T, D) in its units and audio (B, T, A).

        History dropout applies in training mode only.
        """
        cfg = self.config
        return build_conditions(
            self.normalise(motion),
            audio,
            history_frames=cfg.history_frames,
            lookahead_frames=cfg.audio_lookahead_frames,
            rest_row=None if rest_row is None else self.normalise(rest_row),
            history_dropout=cfg.history_dropout if self.training else 0.0,
            generator=generator,
        )

    def encode(
        self,
        motion: Tensor,
        audio: Tensor,
        *,
        rest_row: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Motion (B, T, D) in its units, audio (B, T, A) -> latent z (B, T, D), logdet (B, T)."""
        motion, _ = _batched(motion, self.config.motion_width, "motion")
        audio, _ = _batched(audio, self.config.audio_feature_width, "audio features")
        cond = self.conditions(motion, audio, rest_row=rest_row, generator=generator)
        z, logdet, _ = self.flow(self.normalise(motion), cond)
        return z, logdet

    def nll(
        self,
        motion: Tensor,
        audio: Tensor,
        *,
        rest_row: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Negative log-likelihood of normalised motion in nats per dimension and frame (scalar).

        motion (B, T, D) in its units, audio (B, T, A); prior N(0, I); every sequence starts with
        zero LSTM states.
        """
        z, logdet = self.encode(motion, audio, rest_row=rest_row, generator=generator)
        log_prior = -0.5 * (z.pow(2) + _LOG_2PI).sum(dim=-1)  # (B, T)
        return -(log_prior + logdet).mean() / self.config.motion_width

    # -- generation -----------------------------------------------------------------------------------

    def reset(self, *, batch_size: int = 1, rest_row: Tensor | None = None) -> StreamState:
        """A fresh stream: history = ``rest_row`` ((D,) or (B, D), motion units; default the mean motion)
        repeated k times, LSTM states zero."""
        cfg = self.config
        like = self.motion_mean
        if rest_row is None:
            rest = like.new_zeros(batch_size, cfg.motion_width)
        else:
            rest = self.normalise(rest_row.to(like)).expand(batch_size, cfg.motion_width)
        return StreamState(history=rest[:, None].expand(-1, cfg.history_frames, -1).clone())

    @torch.no_grad()
    def step(
        self,
        audio_window: Tensor,
        state: StreamState | None = None,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        latent: Tensor | None = None,
    ) -> tuple[Tensor, StreamState]:
        """Generate the next motion frame.

        Args:
            audio_window: (B, k + 1 + tau, A) or (k + 1 + tau, A) audio features of frames
                i - k .. i + tau (see :func:`audio_windows`).
            state: from :meth:`reset` or the previous call; None = ``reset(batch_size=B)``.
            temperature: latent scale (0 = deterministic mean path).
            generator: source of the latent draw when ``latent`` is None.
            latent: (B, D) or (D,) standard-normal latent to use instead of a draw (scaled by
                ``temperature``).

        Returns:
            motion row (B, D) (or (D,) for an unbatched window) in the motion's units, the new state.
        """
        cfg = self.config
        unbatched = audio_window.ndim == 2
        window = audio_window[None] if unbatched else audio_window
        expected = (cfg.audio_context_frames, cfg.audio_feature_width)
        if window.ndim != 3 or tuple(window.shape[1:]) != expected:
            raise FlowError(
                f"expected an audio window of shape (B, {expected[0]}, {expected[1]}), "
                f"got {tuple(audio_window.shape)}"
            )
        batch = window.shape[0]
        if state is None:
            state = self.reset(batch_size=batch)
        if state.history.shape[0] != batch:
            raise FlowError(f"stream state of batch {state.history.shape[0]} given a window of batch {batch}")
        like = self.motion_mean
        if latent is None:
            latent = torch.randn(
                (batch, cfg.motion_width), generator=generator, dtype=like.dtype, device=like.device
            )
        latent = latent.to(like).reshape(batch, cfg.motion_width)
        cond = torch.cat([state.history.flatten(1), window.to(like).flatten(1)], dim=-1)[:, None]
        normalised, lstm_states = self.flow.inverse((latent * temperature)[:, None], cond, state.lstm_states)
        row = normalised[:, 0]
        history = state.history
        if cfg.history_frames:
            history = torch.cat([history[:, 1:], row[:, None]], dim=1)
        motion = self.denormalise(row)
        new_state = StreamState(history=history, lstm_states=lstm_states, frames=state.frames + 1)
        return (motion[0] if unbatched else motion), new_state

    @torch.no_grad()
    def sample_sequence(
        self,
        audio: Tensor,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        rest_row: Tensor | None = None,
        latents: Tensor | None = None,
    ) -> Tensor:
        """Generate motion for audio features (B, T, A) or (T, A): returns (B, T, D) or (T, D).

        Frame by frame through :meth:`step` (so a stream fed the same windows and latents agrees
        exactly); ``latents`` (B, T, D) or (T, D) replace the draws from ``generator``.
        """
        cfg = self.config
        batched, unbatched = _batched(audio, cfg.audio_feature_width, "audio features")
        batch, frames = batched.shape[:2]
        if latents is not None:
            latents, _ = _batched(latents, cfg.motion_width, "latents")
            if latents.shape[:2] != (batch, frames):
                raise FlowError(f"latents {tuple(latents.shape)} do not match audio {tuple(batched.shape)}")
        windows = audio_windows(
            batched, history_frames=cfg.history_frames, lookahead_frames=cfg.audio_lookahead_frames
        )
        state = self.reset(batch_size=batch, rest_row=rest_row)
        rows = []
        for index in range(frames):
            row, state = self.step(
                windows[:, index],
                state,
                temperature=temperature,
                generator=generator,
                latent=None if latents is None else latents[:, index],
            )
            rows.append(row)
        motion = torch.stack(rows, dim=1)
        return motion[0] if unbatched else motion
