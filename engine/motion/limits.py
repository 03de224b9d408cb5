"""The documented range of every motion slot, and the soft limit that keeps motion inside it.

Whatever produces motion (the tracker, a motion file, the sliders, the audio flow, a network peer),
every renderer backend receives it through :func:`soft_limit` (``Renderer.render`` applies it), so no
input can push a renderer outside the ranges below and tear the picture.

Each slot has a **hard range** ``[low, high]`` that nothing exceeds and, inside it, an **identity
range** ``[knee_low, knee_high]`` where a value passes unchanged, bit for bit: ordinary motion is never
altered. Beyond a knee the value saturates smoothly toward the hard bound,

    y = knee_high + w * tanh((x - knee_high) / w),   w = high - knee_high   (and mirrored below),

which is continuous with its first derivative at the knee (slope 1 there), strictly increasing, and
never beyond the bound: the motion keeps its shape (a head turn that goes too far slows down and
stops near the bound instead of being cut flat).

Open space (``pirender-open-v1``; units in ``track.open_space``; pose absolute, the rest relative to
the person's neutral):

| slot | unit | identity range | hard range |
|---|---|---|---|
| pitch | rad | -0.45..0.45 (26 deg) | -0.6..0.6 (34 deg) |
| yaw | rad | -0.5..0.5 (29 deg) | -0.65..0.65 (37 deg) |
| roll | rad | -0.45..0.45 (26 deg) | -0.55..0.55 (32 deg) |
| tx | IOD | -0.6..0.6 | -0.8..0.8 |
| ty | IOD | -0.5..0.5 | -0.7..0.7 |
| scale | x | 0.8..1.2 | 0.7..1.35 |
| jaw_open | - | 0..1.2 | -0.1..1.3 |
| smile_right, smile_left | - | -0.4..1.5 | -0.6..1.8 |
| lip_pucker | - | -1..1 | -1.2..1.2 |
| blink_right, blink_left | - | -0.3..0.85 | -0.4..0.95 |
| brow_raise_right, brow_raise_left | - | -0.7..1.5 | -0.9..1.8 |
| brow_frown | - | -1..1.5 | -1.2..1.8 |
| gaze_x | eye widths | -0.12..0.12 | -0.15..0.15 |
| gaze_y | eye widths | -0.1..0.1 | -0.13..0.13 |

Eyes: a blink stops at 0.95 (a closed eye, tracked as 1, renders as 0.94: the lids a hair apart;
closing them onto each other would fold the face mesh), and the iris moves at most 0.15 eye widths
sideways and 0.13 up or down (further, it would slide over the eye corners and lids). ``jaw_open``
below 0 (lips pressed together harder than at the neutral) stops at -0.1. Over these ranges the mesh
renderer's picture does not fold (``renderer.mesh.field``: any pose, all six pose slots at their
bounds at once included; any expression control at its bound at the portrait's pose; a broad
talking face at the corners of the pose's identity ranges), except for a few triangles at the far
mouth corner with ``jaw_open`` beyond 1.2 (1.0 with the pose at its hard bounds) while pitch and yaw
are both near their bounds (measured in ``renderer.mesh.field``).

Authors' space (``pirender-3dmm-73``; raw Deep3DFaceRecon numbers, ``pirender-spec.md`` section 5) —
generous bounds that never change real coefficients (the authors' editing presets stay within 1.8,
fitted expression coefficients within about 4):

| slots | unit | identity range | hard range |
|---|---|---|---|
| exp00..exp63 | PCA std | -5..5 | -8..8 |
| angle_x, angle_y, angle_z | rad | -1.2..1.2 | -1.5..1.5 |
| trans_x, trans_y | face model units | -1..1 | -1.5..1.5 |
| trans_z | face model units | -2.5..2.5 | -3.5..3.5 |
| crop_s | x | 0.05..6 | 0.02..8 |
| crop_t0, crop_t1 | px of the original frame | -2000..6000 | -3000..8000 |

:data:`OPEN_LIMITS` and :data:`AUTHORS_LIMITS` hold these numbers (``limits_for(space)``); the server's
``hello`` message and the web client's sliders use them (``SpaceLimits.to_dict``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from ..errors import MotionError
from .space import AUTHORS_SPACE, OPEN_SPACE, MotionSpace

Values = TypeVar("Values", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class SlotRange:
    """One slot's documented range: ``low <= knee_low <= knee_high <= high`` with ``low < knee_low``
    and ``knee_high < high`` (a soft zone on both sides). ``unit``: what 1 means."""

    low: float
    knee_low: float
    knee_high: float
    high: float
    unit: str = ""

    def __post_init__(self) -> None:
        if not self.low < self.knee_low <= self.knee_high < self.high:
            raise MotionError(
                f"a slot range needs low < knee_low <= knee_high < high, got "
                f"{self.low}, {self.knee_low}, {self.knee_high}, {self.high}"
            )


@dataclass(frozen=True)
class SpaceLimits:
    """The ranges of every slot of one motion space, in the space's column order."""

    space: MotionSpace
    ranges: tuple[SlotRange, ...]
    #: (4, width) float64: low, knee_low, knee_high, high (computed)
    table: np.ndarray = field(init=False, repr=False, compare=False)
    #: per float dtype, (6, width): knee_low, knee_high, width below, width above, low, high (computed)
    _constants: dict[np.dtype, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.ranges) != self.space.width:
            raise MotionError(
                f"limits of {self.space.name!r} give {len(self.ranges)} ranges for {self.space.width} slots"
            )
        table = np.array([[r.low, r.knee_low, r.knee_high, r.high] for r in self.ranges]).T
        low, knee_low, knee_high, high = table
        constants = np.stack([knee_low, knee_high, knee_low - low, high - knee_high, low, high])
        for array in (table, constants):
            array.flags.writeable = False
        object.__setattr__(self, "table", table)
        object.__setattr__(
            self, "_constants", {np.dtype(t): constants.astype(t) for t in (np.float32, np.float64)}
        )

    def constants(self, dtype: np.dtype) -> np.ndarray:
        """(6, width) knee_low, knee_high, soft width below, soft width above, low, high in ``dtype``."""
        found = self._constants.get(np.dtype(dtype))
        return self._constants[np.dtype(np.float64)].astype(dtype) if found is None else found

    def range_of(self, slot: str) -> SlotRange:
        """The range of one named slot."""
        return self.ranges[self.space.index(slot)]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{slot: {"low", "knee_low", "knee_high", "high", "unit"}}`` (plain data, e.g. for JSON)."""
        return {name: asdict(r) for name, r in zip(self.space.slot_names, self.ranges, strict=True)}


def _open_limits() -> SpaceLimits:
    pose = {"pitch": (0.6, 0.45), "yaw": (0.65, 0.5), "roll": (0.55, 0.45)}
    ranges = {name: SlotRange(-hard, -knee, knee, hard, "rad") for name, (hard, knee) in pose.items()}
    ranges |= {
        "tx": SlotRange(-0.8, -0.6, 0.6, 0.8, "IOD"),
        "ty": SlotRange(-0.7, -0.5, 0.5, 0.7, "IOD"),
        "scale": SlotRange(0.7, 0.8, 1.2, 1.35, "x"),
        "jaw_open": SlotRange(-0.1, 0.0, 1.2, 1.3),
        "smile_right": SlotRange(-0.6, -0.4, 1.5, 1.8),
        "smile_left": SlotRange(-0.6, -0.4, 1.5, 1.8),
        "lip_pucker": SlotRange(-1.2, -1.0, 1.0, 1.2),
        "blink_right": SlotRange(-0.4, -0.3, 0.85, 0.95),
        "blink_left": SlotRange(-0.4, -0.3, 0.85, 0.95),
        "brow_raise_right": SlotRange(-0.9, -0.7, 1.5, 1.8),
        "brow_raise_left": SlotRange(-0.9, -0.7, 1.5, 1.8),
        "brow_frown": SlotRange(-1.2, -1.0, 1.5, 1.8),
        "gaze_x": SlotRange(-0.15, -0.12, 0.12, 0.15, "eye widths"),
        "gaze_y": SlotRange(-0.13, -0.1, 0.1, 0.13, "eye widths"),
    }
    return SpaceLimits(OPEN_SPACE, tuple(ranges[name] for name in OPEN_SPACE.slot_names))


def _authors_limits() -> SpaceLimits:
    expression = SlotRange(-8.0, -5.0, 5.0, 8.0, "PCA std")
    angle = SlotRange(-1.5, -1.2, 1.2, 1.5, "rad")
    return SpaceLimits(
        AUTHORS_SPACE,
        (
            *(expression,) * 64,
            *(angle,) * 3,
            SlotRange(-1.5, -1.0, 1.0, 1.5, "face model units"),
            SlotRange(-1.5, -1.0, 1.0, 1.5, "face model units"),
            SlotRange(-3.5, -2.5, 2.5, 3.5, "face model units"),
            SlotRange(0.02, 0.05, 6.0, 8.0, "x"),
            SlotRange(-3000.0, -2000.0, 6000.0, 8000.0, "px"),
            SlotRange(-3000.0, -2000.0, 6000.0, 8000.0, "px"),
        ),
    )


#: Documented ranges of the open space (module docstring).
OPEN_LIMITS: SpaceLimits = _open_limits()
#: Documented ranges of the authors' 73-wide space (module docstring).
AUTHORS_LIMITS: SpaceLimits = _authors_limits()
_BY_NAME = {limits.space.name: limits for limits in (OPEN_LIMITS, AUTHORS_LIMITS)}


def limits_for(space: MotionSpace) -> SpaceLimits | None:
    """The documented ranges of a built-in motion space; None for another space (e.g. the custom
    space of a checkpoint trained here)."""
    limits = _BY_NAME.get(space.name)
    return limits if limits is not None and limits.space.slot_names == space.slot_names else None


def soft_limit(
    values: Values,
    space: MotionSpace,
    *,
    axis: int = -1,
    out: Values | None = None,
    scratch: Values | None = None,
) -> Values:
    """Keep motion within its space's documented ranges (module docstring), smoothly.

    Args:
        values: numbers of ``space`` along ``axis``: rows (..., width) with ``axis=-1``, windows
            (B, width, T) with ``axis=1``; a float numpy array or torch tensor (any device).
        space: the motion space (``OPEN_SPACE`` or ``AUTHORS_SPACE``).
        axis: the axis that holds the slots.
        out: where to write the result (same shape and type; may be ``values`` itself).
        scratch: a work buffer of the same shape and type (not ``values``). With both ``out`` and
            ``scratch`` given the call allocates no array (the hot path keeps them; numpy's own
            iteration buffer for the per-slot constants, at most 8192 elements, aside); otherwise
            what is missing is allocated. (One buffer cannot do: the result needs the input, the
            saturated upper value and the saturated lower value at once.)

    Returns:
        ``out`` (or a new array): ``values`` unchanged within each slot's identity range, saturated
        smoothly toward its hard bounds beyond. Non-finite values are not checked here.

    Raises:
        MotionError: the slot axis does not match the space's width, or the space has no ranges.
    """
    limits = limits_for(space)
    if limits is None:
        raise MotionError(f"motion space {space.name!r} has no documented ranges")
    if values.shape[axis] != space.width:
        raise MotionError(
            f"soft_limit: axis {axis} holds {values.shape[axis]} numbers; space {space.name!r} has "
            f"{space.width}"
        )
    shape = [1] * values.ndim
    shape[axis] = space.width
    if isinstance(values, torch.Tensor):
        return _soft_limit_torch(values, limits.constants(np.dtype(np.float64)), shape, out, scratch)
    if not np.issubdtype(values.dtype, np.floating):
        raise MotionError(f"soft_limit: values must be floating point, got {values.dtype}")
    constants = limits.constants(values.dtype)
    knee_low, knee_high, below, above, low, high = (row.reshape(shape) for row in constants)
    result = np.empty_like(values) if out is None else out
    work = np.empty_like(values) if scratch is None else scratch
    # high side into work: knee_high + above * tanh(max(x - knee_high, 0) / above), then min with x
    np.subtract(values, knee_high, out=work)
    np.maximum(work, 0, out=work)
    np.divide(work, above, out=work)
    np.tanh(work, out=work)
    np.multiply(work, above, out=work)
    np.add(work, knee_high, out=work)
    np.minimum(work, high, out=work)  # never past the bound in this number type's rounding
    np.minimum(values, work, out=work)  # x inside or below, the saturated value above
    # low side into result (reads values first, so result may be values): then max with the high side
    np.subtract(knee_low, values, out=result)
    np.maximum(result, 0, out=result)
    np.divide(result, below, out=result)
    np.tanh(result, out=result)
    np.multiply(result, below, out=result)
    np.subtract(knee_low, result, out=result)
    np.maximum(result, low, out=result)
    np.maximum(work, result, out=result)
    return result


def _soft_limit_torch(
    values: torch.Tensor,
    constants: np.ndarray,
    shape: list[int],
    out: torch.Tensor | None,
    scratch: torch.Tensor | None,
) -> torch.Tensor:
    """:func:`soft_limit` for tensors: the same operations, on the tensor's device and dtype (the
    (6, width) constants are copied to it per call)."""
    if not values.is_floating_point():
        raise MotionError(f"soft_limit: values must be floating point, got {values.dtype}")
    table = torch.as_tensor(constants, dtype=values.dtype, device=values.device)
    knee_low, knee_high, below, above, low, high = (row.view(shape) for row in table)
    result = torch.empty_like(values) if out is None else out
    work = torch.empty_like(values) if scratch is None else scratch
    torch.sub(values, knee_high, out=work)
    work.clamp_(min=0).div_(above).tanh_().mul_(above).add_(knee_high)
    torch.minimum(work, high, out=work)
    torch.minimum(values, work, out=work)
    torch.sub(knee_low, values, out=result)
    result.clamp_(min=0).div_(below).tanh_().mul_(below)
    torch.sub(knee_low, result, out=result)
    torch.maximum(result, low, out=result)
    torch.maximum(work, result, out=result)
    return result
