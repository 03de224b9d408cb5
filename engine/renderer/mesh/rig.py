"""The expression rig of the weight-free renderer: one displacement field per open-space control.

Each control's field moves the 478 canonical landmarks (frontal, IOD units, y down) so that the
tracker's measure of that control (``track.open_space``) changes by exactly the control's value:
the renderer and the tracker speak the same units by construction.

- jaw_open: lower lip, chin and lower jaw down by 0.5 IOD per unit, fading toward the ears;
- smile_right / smile_left: the mouth corner out and up by 0.075 IOD each per unit, its neighbours
  with a Gaussian falloff (sigma 0.18 IOD);
- lip_pucker: the lips squeezed toward the mouth's centre line, the corners by 0.1 IOD each per unit;
- blink_right / blink_left: the upper lid (and the iris under it) down onto the lower lid (1 = closed);
- brow_raise_right / brow_raise_left: the brow up by 0.1 IOD per unit, the forehead above following;
- brow_frown: the inner brow ends together by 0.05 IOD per unit (and slightly down);
- gaze_x / gaze_y: both irises by one eye width per unit.
"""

from __future__ import annotations

import numpy as np

from ...motion.space import OPEN_SPACE
from ...track import landmarks as lm
from ...track.open_space import BROW_UNIT, FROWN_UNIT, JAW_UNIT, PUCKER_UNIT, SMILE_UNIT

#: Order of the rig's fields: the open space's expression group.
CONTROLS = OPEN_SPACE.slot_names[OPEN_SPACE.group("expression")]
_MOUTH = sorted(
    {*lm.UPPER_LIP_INNER_RING, *lm.LOWER_LIP_INNER_RING, *lm.UPPER_LIP_OUTER_RING, *lm.LOWER_LIP_OUTER_RING}
)
_SMILE_SIGMA = 0.18
_FROWN_DROP = 0.03


def _gaussian(points: np.ndarray, center: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-((points[:, :2] - center[:2]) ** 2).sum(axis=1) / (2 * sigma**2))


def _jaw(n: np.ndarray) -> np.ndarray:
    field = np.zeros_like(n)
    seam_y = (n[lm.UPPER_LIP_INNER, 1] + n[lm.LOWER_LIP_INNER, 1]) / 2  # where the lips meet
    mid_x = (n[lm.MOUTH_RIGHT, 0] + n[lm.MOUTH_LEFT, 0]) / 2
    half_width = (n[lm.MOUTH_LEFT, 0] - n[lm.MOUTH_RIGHT, 0]) / 2
    # the chin and jaw below the lips move fully 0.25 IOD below the seam, fading toward the ears
    vertical = np.clip((n[:, 1] - seam_y) / 0.25, 0.0, 1.0)
    horizontal = np.clip(1.0 - np.maximum(np.abs(n[:, 0] - mid_x) - 0.45, 0.0) / 0.5, 0.0, 1.0)
    weight = vertical * horizontal
    # the lower lip swings as an arc: full in the middle, the corners stay
    lower_lip = [
        i for i in {*lm.LOWER_LIP_INNER_RING, *lm.LOWER_LIP_OUTER_RING} if i not in (61, 291, 78, 308)
    ]
    arc = np.sqrt(np.clip(1.0 - np.abs(n[lower_lip, 0] - mid_x) / half_width, 0.0, 1.0))
    weight[lower_lip] = np.maximum(weight[lower_lip], arc)
    field[:, 1] = JAW_UNIT * weight
    # the measured gap uses the lower inner lip's middle points: they move the full unit
    field[[14, 87, 317], 1] = JAW_UNIT
    return field


def _smile(n: np.ndarray, corner: int, outward_x: float) -> np.ndarray:
    move = np.array([outward_x, -1.0, 0.0]) * SMILE_UNIT / 2
    return _gaussian(n, n[corner], _SMILE_SIGMA)[:, None] * move


def _pucker(n: np.ndarray) -> np.ndarray:
    field = np.zeros_like(n)
    mid_x = (n[lm.MOUTH_RIGHT, 0] + n[lm.MOUTH_LEFT, 0]) / 2
    half_width = (n[lm.MOUTH_LEFT, 0] - n[lm.MOUTH_RIGHT, 0]) / 2
    mouth_center = n[_MOUTH].mean(axis=0)
    weight = np.maximum(_gaussian(n, mouth_center, 1.2 * half_width), 0.0)
    weight[_MOUTH] = 1.0
    field[:, 0] = -(PUCKER_UNIT / 2) * (n[:, 0] - mid_x) / half_width * weight
    return field


def _blink(
    n: np.ndarray, upper: tuple[int, ...], lower: tuple[int, ...], iris: tuple[int, ...]
) -> np.ndarray:
    field = np.zeros_like(n)
    for top, bottom in zip(upper, lower, strict=True):
        field[top, 1] = n[bottom, 1] - n[top, 1]
    lower_mid = n[lower[len(lower) // 2], 1]
    for point in iris:  # the iris slides down with the lid so the mesh never folds
        field[point, 1] = lower_mid - n[point, 1]
    return field


def _brow(n: np.ndarray, brow: tuple[int, ...]) -> np.ndarray:
    field = np.zeros_like(n)
    brow_points = n[list(brow)]
    x0, x1 = brow_points[:, 0].min() - 0.1, brow_points[:, 0].max() + 0.1
    brow_y = brow_points[:, 1].mean()
    above = np.clip(1.0 - (brow_y - n[:, 1]) / 0.5, 0.0, 1.0) * (n[:, 1] < brow_y)
    inside = (n[:, 0] > x0) & (n[:, 0] < x1)
    field[:, 1] = -BROW_UNIT * above * inside
    field[list(brow), 1] = -BROW_UNIT
    return field


def _frown(n: np.ndarray) -> np.ndarray:
    field = np.zeros_like(n)
    for brow, inner, toward in (
        (lm.RIGHT_BROW, lm.RIGHT_BROW_INNER, 1.0),
        (lm.LEFT_BROW, lm.LEFT_BROW_INNER, -1.0),
    ):
        idx = list(brow)
        weight = np.clip(1.0 - np.abs(n[idx, 0] - n[inner, 0]) / 0.35, 0.0, 1.0)
        field[idx, 0] = toward * FROWN_UNIT / 2 * weight
        field[idx, 1] = _FROWN_DROP * weight
    return field


def _gaze(n: np.ndarray, axis: int) -> np.ndarray:
    field = np.zeros_like(n)
    for iris, outer, inner in ((lm.RIGHT_IRIS, lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER),
                               (lm.LEFT_IRIS, lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER)):  # fmt: skip
        field[list(iris), axis] = np.linalg.norm(n[outer, :2] - n[inner, :2])
    return field


def build_rig(canonical: np.ndarray) -> np.ndarray:
    """Displacement fields (controls, 478, 3) in canonical units for one face's neutral landmarks."""
    n = canonical
    fields = {
        "jaw_open": _jaw(n),
        "smile_right": _smile(n, lm.MOUTH_RIGHT, -1.0),
        "smile_left": _smile(n, lm.MOUTH_LEFT, 1.0),
        "lip_pucker": _pucker(n),
        "blink_right": _blink(n, lm.RIGHT_UPPER_LID, lm.RIGHT_LOWER_LID, lm.RIGHT_IRIS),
        "blink_left": _blink(n, lm.LEFT_UPPER_LID, lm.LEFT_LOWER_LID, lm.LEFT_IRIS),
        "brow_raise_right": _brow(n, lm.RIGHT_BROW),
        "brow_raise_left": _brow(n, lm.LEFT_BROW),
        "brow_frown": _frown(n),
        "gaze_x": _gaze(n, 0),
        "gaze_y": _gaze(n, 1),
    }
    return np.stack([fields[name] for name in CONTROLS])
