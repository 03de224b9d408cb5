"""Motion spaces and motion sequences: the one place that says what a row of motion numbers means.

A *motion space* names the numbers a renderer is driven by (one row per video frame). The authors'
PIRenderer space is 73 wide: 64 expression coefficients, 3 Euler angles (radians), 3 translations and
3 alignment ("crop") numbers, raw values with no normalisation (``pirender-spec.md`` section 5).

Feeding motion of one space into a renderer of another is always a clear error
(:func:`MotionSpace.check_compatible`), never a silently wrong picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import MotionError


@dataclass(frozen=True)
class MotionSpace:
    """A named, explicitly laid-out motion space.

    Attributes:
        name: identifier stored in motion files and checkpoints (e.g. ``"pirender-3dmm-73"``).
        slot_names: one name per column, in column order.
        groups: named column ranges ``{group: (start, stop)}`` for readable access (e.g. ``"angles"``).
    """

    name: str
    slot_names: tuple[str, ...]
    groups: tuple[tuple[str, int, int], ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise MotionError("a motion space needs a name")
        if len(set(self.slot_names)) != len(self.slot_names):
            raise MotionError(f"motion space {self.name!r} has duplicate slot names")
        for group, start, stop in self.groups:
            if not 0 <= start < stop <= self.width:
                raise MotionError(f"group {group!r} [{start}, {stop}) lies outside the {self.width} slots")

    @property
    def width(self) -> int:
        """Numbers per frame."""
        return len(self.slot_names)

    def group(self, name: str) -> slice:
        """Column slice of a named group, e.g. ``space.group("angles")``."""
        for group, start, stop in self.groups:
            if group == name:
                return slice(start, stop)
        known = ", ".join(g for g, _, _ in self.groups) or "none"
        raise MotionError(f"motion space {self.name!r} has no group {name!r} (groups: {known})")

    def index(self, slot: str) -> int:
        """Column of a named slot."""
        try:
            return self.slot_names.index(slot)
        except ValueError:
            raise MotionError(f"motion space {self.name!r} has no slot {slot!r}") from None

    def check_compatible(self, other: MotionSpace) -> None:
        """Raise a :class:`MotionError` unless ``other`` is this very space (name and layout)."""
        if other.name != self.name or other.slot_names != self.slot_names:
            raise MotionError(
                f"motion of space {other.name!r} ({other.width} wide) cannot drive a renderer of space "
                f"{self.name!r} ({self.width} wide)"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data description, stored in motion files and checkpoints."""
        return {
            "name": self.name,
            "slot_names": list(self.slot_names),
            "groups": [[g, s, e] for g, s, e in self.groups],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MotionSpace:
        try:
            return cls(
                name=str(data["name"]),
                slot_names=tuple(str(s) for s in data["slot_names"]),
                groups=tuple((str(g), int(s), int(e)) for g, s, e in data.get("groups", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MotionError(f"malformed motion space description: {exc}") from None


def _authors_space() -> MotionSpace:
    slots = (
        *(f"exp{i:02d}" for i in range(64)),
        *("angle_x", "angle_y", "angle_z"),
        *("trans_x", "trans_y", "trans_z"),
        *("crop_s", "crop_t0", "crop_t1"),
    )
    return MotionSpace(
        name="pirender-3dmm-73",
        slot_names=slots,
        groups=(("expression", 0, 64), ("angles", 64, 67), ("translation", 67, 70), ("crop", 70, 73)),
    )


#: The authors' 73-wide space: expression 64, angles 3 (radians: x=pitch, y=yaw, z=roll),
#: translation 3, crop (s, t0, t1) 3. Raw Deep3DFaceRecon values, no normalisation.
AUTHORS_SPACE: MotionSpace = _authors_space()

#: The open space of the face tracker and the weight-free renderer: absolute head rotation (radians),
#: position and scale relative to a neutral, and named expression controls (units documented in
#: ``pirender.engine.track.open_space``). Needs no licensed face model.
OPEN_SPACE = MotionSpace(
    name="pirender-open-v1",
    slot_names=(
        *("pitch", "yaw", "roll", "tx", "ty", "scale"),
        *("jaw_open", "smile_right", "smile_left", "lip_pucker", "blink_right", "blink_left"),
        *("brow_raise_right", "brow_raise_left", "brow_frown", "gaze_x", "gaze_y"),
    ),
    groups=(("pose", 0, 3), ("position", 3, 6), ("expression", 6, 17)),
)

_KNOWN_SPACES: dict[str, MotionSpace] = {space.name: space for space in (AUTHORS_SPACE, OPEN_SPACE)}


def known_space(name: str) -> MotionSpace:
    """A built-in motion space by name."""
    try:
        return _KNOWN_SPACES[name]
    except KeyError:
        raise MotionError(f"unknown motion space {name!r} (known: {', '.join(_KNOWN_SPACES)})") from None


def check_values(values: np.ndarray, space: MotionSpace, *, what: str = "motion") -> np.ndarray:
    """Validate a (frames, width) array for ``space`` and return it as contiguous float32."""
    array = np.asarray(values)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise MotionError(f"{what}: expected a (frames, {space.width}) array, got shape {array.shape}")
    if array.shape[0] == 0:
        raise MotionError(f"{what}: the sequence is empty (0 frames)")
    if array.shape[1] != space.width:
        raise MotionError(
            f"{what}: {array.shape[1]} numbers per frame, but space {space.name!r} has {space.width}"
        )
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise MotionError(f"{what}: values must be real numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    bad = ~np.isfinite(array)
    if bad.any():
        frame, col = np.argwhere(bad)[0]
        raise MotionError(
            f"{what}: non-finite value {array[frame, col]} at frame {frame}, slot "
            f"{space.slot_names[col]!r} ({int(bad.sum())} such values)"
        )
    return array


@dataclass
class MotionFrame:
    """One frame's motion in one space: ``values`` is (space.width,) float32."""

    space: MotionSpace
    values: np.ndarray

    def __post_init__(self) -> None:
        array = np.asarray(self.values)
        if array.ndim != 1:
            raise MotionError(
                f"a motion frame is one row of {self.space.width} numbers, got shape {array.shape}"
            )
        self.values = check_values(array, self.space, what="motion frame")[0]


@dataclass
class MotionSequence:
    """Motion of consecutive frames in one space: ``values`` is (frames, space.width) float32."""

    space: MotionSpace
    values: np.ndarray
    fps: float = 25.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = check_values(self.values, self.space)
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise MotionError(f"frame rate must be positive, got {self.fps}")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def frame(self, index: int) -> MotionFrame:
        """One frame's motion."""
        return MotionFrame(self.space, self.values[index])
