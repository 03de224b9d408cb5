"""Closed-loop motion accuracy, the way the paper measures it (APD/AED): render a portrait at known
target motions, track the rendered pictures, and compare what the tracker reads with the targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..image import tensor_to_images
from ..motion.space import OPEN_SPACE
from ..renderer.base import PreparedSource
from ..renderer.mesh.renderer import MeshRenderer
from .landmarks import FaceMesh
from .open_space import NeutralFace

POSE_SLOTS = ("pitch", "yaw", "roll")
CONTROLS = OPEN_SPACE.slot_names[OPEN_SPACE.group("expression")]
#: the range each control is exercised over in the standard closed-loop set
CONTROL_RANGES = {
    "jaw_open": (0.0, 0.8),
    "smile_right": (0.0, 1.0),
    "smile_left": (0.0, 1.0),
    "lip_pucker": (0.0, 1.0),
    "blink_right": (0.0, 0.8),
    "blink_left": (0.0, 0.8),
    "brow_raise_right": (0.0, 1.0),
    "brow_raise_left": (0.0, 1.0),
    "brow_frown": (0.0, 1.0),
    "gaze_x": (-0.15, 0.15),
    "gaze_y": (-0.1, 0.1),
}


@dataclass
class ClosedLoopResult:
    """Targets and measurements (N, 17) in the open space, and which rendered frames had a face."""

    targets: np.ndarray
    measured: np.ndarray
    found: np.ndarray

    def pose_error_deg(self) -> dict[str, float]:
        """Mean absolute pose error per axis (degrees) over the frames with a face."""
        diff = np.degrees(np.abs(self.measured[self.found, :3] - self.targets[self.found, :3]))
        return {name: float(diff[:, i].mean()) for i, name in enumerate(POSE_SLOTS)}

    def control_error(self, rows: np.ndarray | None = None) -> dict[str, float]:
        """Mean absolute error of each expression control (its own units) over the given rows."""
        chosen = self.found if rows is None else rows & self.found
        start = OPEN_SPACE.group("expression").start
        diff = np.abs(self.measured[chosen, start:] - self.targets[chosen, start:])
        return {name: float(diff[:, i].mean()) for i, name in enumerate(CONTROLS)}


def standard_targets(
    rest: np.ndarray, *, pose_steps: int = 5, control_steps: int = 4
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rows (N, 17): yaw, pitch and roll each within +-20 degrees of the rest pose, then every control
    over its range. Also returns, per control, the mask of the rows that exercise it."""
    rows, spans = [], {}
    for axis in range(3):
        for angle in np.linspace(-20.0, 20.0, pose_steps):
            row = rest.copy()
            row[axis] += np.radians(angle)
            rows.append(row)
    for name in CONTROLS:
        start = len(rows)
        for value in np.linspace(*CONTROL_RANGES[name], control_steps):
            row = rest.copy()
            row[OPEN_SPACE.index(name)] = value
            rows.append(row)
        spans[name] = (start, len(rows))
    masks = {name: np.isin(np.arange(len(rows)), np.arange(*span)) for name, span in spans.items()}
    return np.stack(rows).astype(np.float32), masks


def closed_loop(renderer: MeshRenderer, source: PreparedSource, targets: np.ndarray) -> ClosedLoopResult:
    """Render every target row, track each picture on its own, measure against the source's neutral."""
    with FaceMesh(static_images=True) as mesh:
        faces = mesh.detect(source.image.rgb)
        neutral = NeutralFace.from_landmarks([max(faces, key=lambda f: np.ptp(f[:, 0]))])
        measured = np.zeros_like(targets)
        found = np.zeros(len(targets), dtype=bool)
        for index, row in enumerate(targets):
            image = tensor_to_images(renderer.render(row[:, None], source=source).frame)[0]
            detected = mesh.detect(image)
            if detected:
                measured[index] = neutral.motion(max(detected, key=lambda f: np.ptp(f[:, 0]))).values
                found[index] = True
    return ClosedLoopResult(targets=targets, measured=measured, found=found)
