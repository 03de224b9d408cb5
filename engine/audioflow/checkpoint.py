"""Saving and loading audio-to-motion flow checkpoints.

A checkpoint is one ``torch.save`` dict (read back with a safe weights-only load):

- ``format`` = ``"pirender-live-audioflow"``, ``version`` = 1;
- ``config``: :meth:`FlowConfig.to_dict`;
- ``motion_space``: :meth:`MotionSpace.to_dict` of the space the motion rows belong to;
- ``features``: the audio front end's settings as plain data, e.g. ``dataclasses.asdict`` of the
  front end's feature config plus the video rate: ``{"sample_rate_hz": 16000, "hop_samples": 160,
  "n_mels": 40, ..., "fps": 25}`` (``sample_rate_hz`` is the one key every checkpoint must have);
- ``training``: free plain-data notes (steps, data set, final NLL...);
- ``weights``: the model's state dict, which holds the normalisation stats ``motion_mean`` and
  ``motion_std`` (motion units) and every ActNorm's ``initialized`` flag.

Loading compares what the caller expects (space, widths, sample rate, feature settings), when given,
with what the file says, and names every difference in one :class:`CheckpointError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, MotionError, exception_text
from ..fileio import write_atomically
from ..motion.space import MotionSpace
from ..renderer.checkpoint import load_strictly, load_weights_file
from .flow import AudioMotionFlow, FlowConfig, FlowError

FORMAT_NAME = "pirender-live-audioflow"
FORMAT_VERSION = 1
SAMPLE_RATE_KEY = "sample_rate_hz"


@dataclass
class FlowCheckpointInfo:
    """What a flow checkpoint holds, before the model is built."""

    path: Path
    config: FlowConfig
    space: MotionSpace
    features: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_rate_hz(self) -> int:
        return int(self.features[SAMPLE_RATE_KEY])

    @property
    def motion_mean(self) -> torch.Tensor:
        """(D,) normalisation mean, motion units."""
        return self.state_dict["motion_mean"]

    @property
    def motion_std(self) -> torch.Tensor:
        """(D,) normalisation std, motion units."""
        return self.state_dict["motion_std"]


def _check_plain(value: Any, where: str) -> None:
    """Only data a weights-only load reads back: str-keyed dicts, lists, str, int, float, bool, None."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CheckpointError(f"{where}: keys must be strings, got {key!r}")
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise CheckpointError(f"{where}: non-finite number {value}")
    elif not (value is None or isinstance(value, str | int | float | bool)):
        raise CheckpointError(f"{where}: {type(value).__name__} is not plain data")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _check_features(features: Mapping[str, Any], where: str) -> None:
    _check_plain(features, f"{where}: feature config")
    rate = features.get(SAMPLE_RATE_KEY)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
        raise CheckpointError(
            f"{where}: the feature config needs a positive {SAMPLE_RATE_KEY!r}, got {rate!r}"
        )


def save_flow_checkpoint(
    path: str | Path,
    model: AudioMotionFlow,
    *,
    space: MotionSpace,
    features: Mapping[str, Any],
    training: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` with its metadata atomically (temporary file, then rename)."""
    target = Path(path).expanduser()
    try:
        model.config.check_space(space)
    except FlowError as exc:
        raise CheckpointError(f"{target}: {exc}") from None
    _check_features(features, str(target))
    _check_plain(training or {}, f"{target}: training info")
    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "motion_space": space.to_dict(),
        "features": _plain(features),
        "training": _plain(training or {}),
        "weights": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    return write_atomically(target, lambda handle: torch.save(payload, handle), error=CheckpointError)


def read_flow_checkpoint(path: str | Path) -> FlowCheckpointInfo:
    """Open a flow checkpoint and check that its metadata hangs together. Nothing is built yet."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise CheckpointError(f"{file}: no such file")
    obj = load_weights_file(file, resave_hint="with save_flow_checkpoint")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{file}: not an audio-flow checkpoint (format {FORMAT_NAME!r} expected)")
    if obj.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{file}: {FORMAT_NAME} version {obj.get('version')!r} is not supported")
    try:
        config = FlowConfig.from_dict(dict(obj["config"]))
        space = MotionSpace.from_dict(dict(obj["motion_space"]))
        features = dict(obj["features"])
        training = dict(obj.get("training") or {})
        weights = obj["weights"]
    except KeyError as exc:
        raise CheckpointError(f"{file}: {FORMAT_NAME} checkpoint lacks {exc}") from None
    except (TypeError, ValueError, FlowError, MotionError) as exc:
        raise CheckpointError(f"{file}: malformed metadata ({exception_text(exc)})") from None
    try:
        config.check_space(space)
    except FlowError as exc:
        raise CheckpointError(f"{file}: inconsistent checkpoint: {exc}") from None
    _check_features(features, str(file))
    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()
    ):
        raise CheckpointError(f"{file}: entry 'weights' is not a state dict")
    return FlowCheckpointInfo(
        path=file, config=config, space=space, features=features, state_dict=weights, training=training
    )


def check_flow_checkpoint(
    info: FlowCheckpointInfo,
    *,
    space: MotionSpace | None = None,
    motion_width: int | None = None,
    audio_feature_width: int | None = None,
    sample_rate_hz: int | None = None,
    features: Mapping[str, Any] | None = None,
) -> None:
    """Raise one :class:`CheckpointError` naming every difference from what the caller expects.

    Only what is passed is checked; ``features`` compares the keys it names.
    """
    cfg = info.config
    problems = []
    if space is not None and space.name != info.space.name:
        problems.append(
            f"motion space is {info.space.name!r} ({info.space.width} wide), expected {space.name!r} "
            f"({space.width} wide)"
        )
    elif space is not None and space.slot_names != info.space.slot_names:
        problems.append(f"motion space {space.name!r} has a different slot layout from the expected one")
    if motion_width is not None and motion_width != cfg.motion_width:
        problems.append(f"motion width is {cfg.motion_width}, expected {motion_width}")
    if audio_feature_width is not None and audio_feature_width != cfg.audio_feature_width:
        problems.append(f"audio feature width is {cfg.audio_feature_width}, expected {audio_feature_width}")
    if sample_rate_hz is not None and sample_rate_hz != info.features[SAMPLE_RATE_KEY]:
        problems.append(f"sample rate is {info.features[SAMPLE_RATE_KEY]} Hz, expected {sample_rate_hz} Hz")
    for key, expected in (features or {}).items():
        if key not in info.features:
            problems.append(f"feature config has no {key!r} (expected {expected!r})")
        elif _plain(info.features[key]) != _plain(expected):
            problems.append(f"feature {key!r} is {info.features[key]!r}, expected {expected!r}")
    if problems:
        raise CheckpointError(f"{info.path}: does not match: " + "; ".join(problems))


def build_flow(info: FlowCheckpointInfo) -> AudioMotionFlow:
    """The model of ``info`` with its weights loaded strictly, in eval mode without gradients."""
    model = AudioMotionFlow(config=info.config)
    return load_strictly(model, info.state_dict, where=info.path, what="the flow of its config")


def load_flow(
    path: str | Path,
    *,
    space: MotionSpace | None = None,
    motion_width: int | None = None,
    audio_feature_width: int | None = None,
    sample_rate_hz: int | None = None,
    features: Mapping[str, Any] | None = None,
) -> tuple[AudioMotionFlow, FlowCheckpointInfo]:
    """Read, check against what is expected (see :func:`check_flow_checkpoint`) and build."""
    info = read_flow_checkpoint(path)
    check_flow_checkpoint(
        info,
        space=space,
        motion_width=motion_width,
        audio_feature_width=audio_feature_width,
        sample_rate_hz=sample_rate_hz,
        features=features,
    )
    return build_flow(info), info
