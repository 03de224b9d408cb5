"""One typed config for PIRenderer training: model size, resolution, window, batch, schedule, losses.

Presets (``--config paper`` / ``--config small``) or a JSON / TOML file of the same fields
(:func:`load_config`; :meth:`RendererTrainConfig.save` writes either). Unknown fields are refused by
name so that a typo never silently falls back to a default.

Facts from ``pirender-spec.md`` §1.2: Adam lr 1e-4, betas (0.5, 0.999); StepLR 300,000 / 0.2 stepped
every iteration; 200,000 warp-stage iterations then end to end with a fresh Adam; EMA decay
0.5^(32/10000); loss weights 2.5 (warp) and 4 (final) with style × 250; batch 5 pairs per GPU.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pirender.engine.errors import PirenderError
from pirender.engine.fileio import write_atomically
from pirender.engine.motion.space import AUTHORS_SPACE
from pirender.engine.renderer.pirender.config import TINY_CONFIG, GeneratorConfig

#: the authors' EMA decay per optimiser step (half-life ~312 steps)
PAPER_EMA_DECAY = 0.5 ** (32 / 10000)


class ConfigError(PirenderError, ValueError):
    """A training config that cannot be used (one line naming the field)."""


@dataclass(frozen=True)
class Schedule:
    """Iterations are optimiser steps (one batch on every rank)."""

    warp_steps: int = 200_000  # stage "warp" (mapping + warping nets) for steps < warp_steps
    total_steps: int = 400_000
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lr_step: int = 300_000  # StepLR step_size (iterations)
    lr_gamma: float = 0.2
    checkpoint_every: int = 40_000  # also written at the end of a run
    log_every: int = 100


@dataclass(frozen=True)
class LossWeights:
    """Stage warp: warp × P(warp_image, gt);
    stage gen: final × (P + style × S)(fake, gt) + warp × P(warp, gt)."""

    warp: float = 2.5
    final: float = 4.0
    style: float = 250.0
    scales: int = 4  # image pyramid levels of the perceptual term


@dataclass(frozen=True)
class RendererTrainConfig:
    """Everything a training run needs besides data and output paths.

    ``generator.coeff_nc`` is replaced by the dataset's motion width when the trainer is given a
    motion space. The window is ``radius_past + 1 + radius_future`` frames (>= the generator's
    ``min_window_frames``, 25 for the authors' mapping net); ``radius_future = 0`` is causal.
    ``batch_pairs`` is per rank; each pair is used in both directions (2 × batch_pairs images).
    """

    name: str = "custom"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    motion_space: str = AUTHORS_SPACE.name
    image_size_px: int = 256
    radius_past: int = 13
    radius_future: int = 13
    batch_pairs: int = 5
    schedule: Schedule = field(default_factory=Schedule)
    losses: LossWeights = field(default_factory=LossWeights)
    ema_decay: float = PAPER_EMA_DECAY
    seed: int = 0
    bf16: bool = False  # bf16 autocast for the forward passes (generator and VGG)
    num_workers: int = 0  # data-loader worker processes per rank
    init_std: float = 0.02  # weights ~ N(0, init_std), biases 0

    def __post_init__(self) -> None:
        if self.window_frames < self.generator.min_window_frames:
            raise ConfigError(
                f"training config: window of {self.window_frames} frames (radius_past {self.radius_past} + 1 "
                f"+ radius_future {self.radius_future}) is shorter than the generator's "
                f"{self.generator.min_window_frames}"
            )
        if min(self.radius_past, self.radius_future) < 0:
            raise ConfigError("training config: window radii must be >= 0")
        multiple = self.generator.size_multiple_px
        if self.image_size_px <= 0 or self.image_size_px % multiple:
            raise ConfigError(
                f"training config: image_size_px {self.image_size_px} is not a positive multiple of "
                f"{multiple}"
            )
        s = self.schedule
        if not 0 <= s.warp_steps <= s.total_steps or s.total_steps <= 0:
            raise ConfigError("training config: need 0 <= warp_steps <= total_steps and total_steps > 0")
        if self.batch_pairs <= 0 or s.checkpoint_every <= 0 or s.log_every <= 0 or s.lr_step <= 0:
            raise ConfigError("training config: batch_pairs, checkpoint_every, log_every, lr_step: > 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError("training config: ema_decay must be in [0, 1)")
        if self.losses.scales < 1 or self.image_size_px >> (self.losses.scales - 1) < 16:
            raise ConfigError(
                f"training config: losses.scales {self.losses.scales} at {self.image_size_px} px: need >= 1 "
                f"and a smallest pyramid level of >= 16 px (VGG-19's relu_5_1 is 1/16 of its input)"
            )

    @property
    def window_frames(self) -> int:
        return self.radius_past + 1 + self.radius_future

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schedule"]["betas"] = list(self.schedule.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RendererTrainConfig:
        """The inverse of :meth:`to_dict`; missing fields take the defaults, unknown ones are refused."""
        data = dict(data)
        _refuse_unknown(cls, data, "")
        try:
            if "generator" in data:
                data["generator"] = GeneratorConfig.from_dict(dict(data["generator"]))
            if "schedule" in data:
                sched = dict(data["schedule"])
                _refuse_unknown(Schedule, sched, "schedule.")
                if "betas" in sched:
                    sched["betas"] = tuple(float(b) for b in sched["betas"])
                data["schedule"] = Schedule(**sched)
            if "losses" in data:
                losses = dict(data["losses"])
                _refuse_unknown(LossWeights, losses, "losses.")
                data["losses"] = LossWeights(**losses)
            return cls(**data)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"training config: {exc}") from None

    def save(self, path: str | Path) -> Path:
        """Write as JSON (``.json``) or TOML (any other suffix), atomically."""
        target = Path(path)
        text = (
            json.dumps(self.to_dict(), indent=2) + "\n"
            if target.suffix == ".json"
            else _to_toml(self.to_dict())
        )
        return write_atomically(target, lambda h: h.write(text.encode()), error=ConfigError)

    def with_steps(self, total_steps: int | None, *, warp_steps: int | None = None) -> RendererTrainConfig:
        """The same config with another total and/or warp stage (None: as configured); the warp
        stage is cut to fit a shorter total.

        Raises:
            ConfigError: a total below 1 or a negative warp stage.
        """
        s = self.schedule
        total = s.total_steps if total_steps is None else total_steps
        warp = s.warp_steps if warp_steps is None else warp_steps
        if total < 1 or warp < 0:
            raise ConfigError(f"steps must be >= 1 and warp steps >= 0 (got {total}, {warp})")
        return replace(self, schedule=replace(s, total_steps=total, warp_steps=min(warp, total)))


def _refuse_unknown(cls: type, data: dict[str, Any], prefix: str) -> None:
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"training config has unknown field(s): {', '.join(prefix + u for u in unknown)}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {type(value).__name__} to TOML")


def _to_toml(data: dict[str, Any]) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{key}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


#: The authors' sizes and schedule (§1.1, §1.2): 22.5 M parameters, 256 px, centred 27-frame window,
#: 5 pairs per GPU (README: 4 GPUs), 200k warp + 200k end-to-end iterations.
PAPER = RendererTrainConfig(name="paper")

#: A model and schedule that trains on a 2-core CPU in about an hour: a narrow generator (z 64,
#: widths 16/16, cap 64; 2.24 M parameters) at 64 px, 2 pairs per step, a 3-level pyramid,
#: 1,000 warp + 800 end-to-end steps. Measured on this 2-core CPU (torch 2.13, 2 threads, VGG-19
#: losses): 1.6 s per warp-stage step, 2.6 s per end-to-end step, i.e. ~1,600 s + ~2,100 s ≈ 62 min.
SMALL = RendererTrainConfig(
    name="small",
    generator=replace(TINY_CONFIG, descriptor_nc=64, warp_base_nc=16, edit_base_nc=16, max_nc=64),
    image_size_px=64,
    batch_pairs=2,
    losses=LossWeights(scales=3),  # 64, 32, 16 px (the paper's 4 levels end at 32 px of 256)
    schedule=Schedule(warp_steps=1_000, total_steps=1_800, lr_step=1_350, checkpoint_every=200, log_every=10),
)

PRESETS: dict[str, RendererTrainConfig] = {"paper": PAPER, "small": SMALL}


def load_config(name_or_path: str | Path) -> RendererTrainConfig:
    """A preset by name (``paper``, ``small``) or a ``.json`` / ``.toml`` file of the same fields."""
    if str(name_or_path) in PRESETS:
        return PRESETS[str(name_or_path)]
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file (presets: {', '.join(PRESETS)})")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a table/object of fields")
    return RendererTrainConfig.from_dict(data)
