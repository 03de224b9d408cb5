"""The expression rig of the weight-free renderer: one displacement field per open-space control.

Each control's field moves the 478 canonical landmarks (frontal, IOD units, y down) so that the
tracker's measure of that control (``track.open_space``) changes by exactly the control's value:
the renderer and the tracker speak the same units by construction.

- jaw_open: lower lip, chin and lower jaw down by 0.5 IOD per unit, fading toward the ears; the mouth
  corners down by ``JAW_CORNER_DROP`` of that (where the tracker measures the smiles from);
- smile_right / smile_left: the mouth corner out and up by 0.075 IOD each per unit, its neighbours
  with a Gaussian falloff (sigma 0.18 IOD);
- lip_pucker: the lips squeezed toward the mouth's centre line, the corners by 0.1 IOD each per unit;
- blink_right / blink_left: the upper lid (and the iris under it) down onto the lower lid (1 = closed);
- brow_raise_right / brow_raise_left: the brow up by 0.1 IOD per unit, the forehead above and the skin
  down to the upper lid following;
- brow_frown: the inner brow ends together by 0.05 IOD per unit (and slightly down);
- gaze_x / gaze_y: both irises by one eye width per unit.
"""

from __future__ import annotations

import numpy as np

from ...motion.limits import OPEN_LIMITS
from ...motion.space import OPEN_SPACE
from ...track import landmarks as lm
from ...track.open_space import BROW_UNIT, FROWN_UNIT, JAW_CORNER_DROP, JAW_UNIT, PUCKER_UNIT, SMILE_UNIT

#: Order of the rig's fields: the open space's expression group.
CONTROLS = OPEN_SPACE.slot_names[OPEN_SPACE.group("expression")]
_MOUTH = sorted(
    {*lm.UPPER_LIP_INNER_RING, *lm.LOWER_LIP_INNER_RING, *lm.UPPER_LIP_OUTER_RING, *lm.LOWER_LIP_OUTER_RING}
)
_SMILE_SIGMA = 0.18
_FROWN_DROP = 0.03
_LID_SKIN = 0.12  # IOD of skin above the upper lid that follows it


def _gaussian(points: np.ndarray, center: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-((points[:, :2] - center[:2]) ** 2).sum(axis=1) / (2 * sigma**2))


def _line(n: np.ndarray, points: tuple[int, ...], axis: int = 1) -> np.ndarray:
    """The y (or z: ``axis=2``) of a landmark polyline (sorted by x, ends held) at every point's x."""
    order = np.argsort(n[list(points), 0])
    return np.interp(n[:, 0], n[list(points), 0][order], n[list(points), axis][order])


def _jaw(n: np.ndarray) -> np.ndarray:
    field = np.zeros_like(n)
    seam_y = (n[lm.UPPER_LIP_INNER, 1] + n[lm.LOWER_LIP_INNER, 1]) / 2  # where the lips meet
    mid_x = (n[lm.MOUTH_RIGHT, 0] + n[lm.MOUTH_LEFT, 0]) / 2
    half_width = (n[lm.MOUTH_LEFT, 0] - n[lm.MOUTH_RIGHT, 0]) / 2
    # everything from the lower lip's bottom edge down (chin, jaw) moves fully, fading toward the ears;
    # between the seam and that edge the move grows with the height
    lip_bottom = max(float(n[list(lm.LOWER_LIP_OUTER_RING), 1].max() - seam_y), 0.05)
    vertical = np.clip((n[:, 1] - seam_y) / lip_bottom, 0.0, 1.0)
    horizontal = np.clip(1.0 - np.maximum(np.abs(n[:, 0] - mid_x) - 0.45, 0.0) / 0.5, 0.0, 1.0)
    # the lower lip (every point on or below its inner edge) swings as an arc: fully across its middle
    # 40 %, the corners stay. The weight never falls going down, so no point overtakes the one below.
    across = np.clip((1.0 - np.abs(n[:, 0] - mid_x) / half_width) / 0.6, 0.0, 1.0)
    arc = across * across * (3.0 - 2.0 * across)  # smooth (bounded slope) toward the corners
    on_lower_lip = n[:, 1] >= _line(n, lm.LOWER_LIP_INNER_RING) - 1e-9
    # closed lips often put the upper lip's inner edge a hair below the lower one's: it stays upper
    on_lower_lip[list({*lm.UPPER_LIP_INNER_RING, *lm.UPPER_LIP_OUTER_RING})] = False
    weight = horizontal * np.maximum(vertical, np.where(on_lower_lip, arc, 0.0))
    field[:, 1] = JAW_UNIT * weight
    # the mouth corners drop by JAW_CORNER_DROP of the lips' extra opening (the tracker measures the
    # smiles from there): everything below a corner's level near it at least as much, the upper lip
    # next to it a little (fading over 0.1 IOD)
    drop = JAW_CORNER_DROP * JAW_UNIT
    for outer, inner in ((lm.MOUTH_RIGHT, 78), (lm.MOUTH_LEFT, 308)):
        level = min(n[outer, 1], n[inner, 1])
        beside = np.exp(-((n[:, 0] - n[outer, 0]) ** 2) / (2 * _SMILE_SIGMA**2))
        above = np.exp(-((n[:, :2] - n[outer, :2]) ** 2).sum(axis=1) / (2 * 0.1**2))
        near = np.where(n[:, 1] >= level, beside, np.minimum(beside, above))
        field[:, 1] = np.maximum(field[:, 1], drop * near)
        field[[outer, inner], 1] = np.maximum(field[[outer, inner], 1], drop)
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
    n: np.ndarray,
    upper: tuple[int, ...],
    lower: tuple[int, ...],
    iris: tuple[int, ...],
    corners: tuple[int, int],
) -> np.ndarray:
    """The upper lid down onto the lower lid's line (1 = closed; in 3D, so the closed lid lies on the
    lower lid's line in the picture whatever the head's pose). Iris points in the opening slide down
    onto that line with the lid; the skin above the lid margin (and iris points hidden under it)
    follows the lid, fading over 0.12 IOD above it and beyond the eye's corners; iris points below the
    lower lid stay. No point crosses another, opening (blink < 0) or closing."""
    field = np.zeros_like(n)
    ends = (corners[0], *lower, corners[1])
    lower_y, lower_z = _line(n, ends), _line(n, ends, axis=2)
    upper_y = _line(n, (corners[0], *upper, corners[1]))
    lid_move = np.maximum(lower_y - upper_y, 0.0)
    x0, x1 = sorted((n[corners[0], 0], n[corners[1], 0]))
    outside = np.maximum(x0 - n[:, 0], n[:, 0] - x1).clip(min=0.0)
    above_lid = upper_y - n[:, 1]
    skin = (above_lid > 0) & (above_lid < _LID_SKIN) & (outside < _LID_SKIN)
    fade = (1.0 - above_lid / _LID_SKIN) * (1.0 - outside / _LID_SKIN)
    field[skin, 1] = (lid_move * fade)[skin]
    for point in upper:
        field[point, 1:] = (lower_y[point] - n[point, 1], lower_z[point] - n[point, 2])
    for point in iris:
        if above_lid[point] <= 0 and n[point, 1] < lower_y[point]:  # in the opening
            field[point, 1:] = (lower_y[point] - n[point, 1], lower_z[point] - n[point, 2])
    return field


def _brow(n: np.ndarray, upper: tuple[int, ...], lower: tuple[int, ...], lid: tuple[int, ...]) -> np.ndarray:
    """The brow (``upper`` and ``lower`` edge points) up by one unit; above it the forehead follows,
    fading over 0.5 IOD; below it the skin down to the upper ``lid`` follows proportionally; beside it
    everything fades over 0.25 IOD. Every point moves at most as much as any point above it, so none
    overtakes another."""
    field = np.zeros_like(n)
    brow = [*upper, *lower]
    x0, x1 = n[brow, 0].min(), n[brow, 0].max()

    top, bottom, eye = _line(n, upper), _line(n, lower), _line(n, lid)
    y = n[:, 1]
    above = np.clip(1.0 - (top - y) / 0.5, 0.0, 1.0)
    below = np.clip((eye - y) / np.maximum(eye - bottom, 1e-6), 0.0, 1.0)
    vertical = np.where(y <= top, above, np.where(y <= bottom, 1.0, below))
    beside = np.maximum(x0 - n[:, 0], n[:, 0] - x1).clip(min=0.0)
    t = np.clip(1.0 - beside / 0.25, 0.0, 1.0)
    field[:, 1] = -BROW_UNIT * vertical * t * t * (3 - 2 * t)
    field[brow, 1] = -BROW_UNIT
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
    """Both irises by one eye width per unit; iris points hidden under a lid (beyond its line) move
    less the further they lie beyond it (none from 0.03 IOD on), so none slides over a lid."""
    field = np.zeros_like(n)
    for iris, upper, lower, corners in (
        (lm.RIGHT_IRIS, lm.RIGHT_UPPER_LID, lm.RIGHT_LOWER_LID, (lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER)),
        (lm.LEFT_IRIS, lm.LEFT_UPPER_LID, lm.LEFT_LOWER_LID, (lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER)),
    ):
        top = _line(n, (corners[0], *upper, corners[1]))[list(iris)]
        bottom = _line(n, (corners[0], *lower, corners[1]))[list(iris)]
        y = n[list(iris), 1]
        beyond = np.maximum(top - y, 0.0) + np.maximum(y - bottom, 0.0)
        width = np.linalg.norm(n[corners[0], :2] - n[corners[1], :2])
        field[list(iris), axis] = width * np.clip(1.0 - beyond / 0.03, 0.0, 1.0)
    return field


_GAZE = (CONTROLS.index("gaze_x"), CONTROLS.index("gaze_y"))
_GAZE_REACH = (OPEN_LIMITS.range_of("gaze_x").high, OPEN_LIMITS.range_of("gaze_y").high)
_EYES = (
    (CONTROLS.index("blink_right"), list(lm.RIGHT_IRIS)),
    (CONTROLS.index("blink_left"), list(lm.LEFT_IRIS)),
)


def apply_rig(canonical: np.ndarray, rig: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """The (478, 3) canonical landmarks moved by the rig (:func:`build_rig`) for one expression vector
    (controls,): the sum of every control's field times its value, except for the gaze: (gaze_x, gaze_y)
    reaches no further than the diamond of their hard ranges (``motion.limits``: |x| / 0.15 + |y| / 0.13
    <= 1; further, a diagonal gaze would slide the iris over the lids), and an eye's gaze fades as the
    eye closes (times ``1 - blink`` for a blink in [0, 1]: a closed eye shows no gaze, and its iris
    stays on the closed lid)."""
    reach = abs(expression[_GAZE[0]] / _GAZE_REACH[0]) + abs(expression[_GAZE[1]] / _GAZE_REACH[1])
    if reach > 1.0:  # a diagonal gaze reaches no further than the hard ranges' diamond
        expression = expression.copy()
        expression[list(_GAZE)] /= reach
    moved = canonical + np.tensordot(expression, rig, axes=1)
    gaze = expression[_GAZE[0]] * rig[_GAZE[0]] + expression[_GAZE[1]] * rig[_GAZE[1]]
    for blink, iris in _EYES:
        closed = min(max(float(expression[blink]), 0.0), 1.0)
        moved[iris] -= closed * gaze[iris]
    return moved


def build_rig(canonical: np.ndarray) -> np.ndarray:
    """Displacement fields (controls, 478, 3) in canonical units for one face's neutral landmarks."""
    n = canonical
    fields = {
        "jaw_open": _jaw(n),
        "smile_right": _smile(n, lm.MOUTH_RIGHT, -1.0),
        "smile_left": _smile(n, lm.MOUTH_LEFT, 1.0),
        "lip_pucker": _pucker(n),
        "blink_right": _blink(
            n, lm.RIGHT_UPPER_LID, lm.RIGHT_LOWER_LID, lm.RIGHT_IRIS, (lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER)
        ),
        "blink_left": _blink(
            n, lm.LEFT_UPPER_LID, lm.LEFT_LOWER_LID, lm.LEFT_IRIS, (lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER)
        ),
        "brow_raise_right": _brow(n, lm.RIGHT_BROW[:5], lm.RIGHT_BROW[5:], lm.RIGHT_UPPER_LID),
        "brow_raise_left": _brow(n, lm.LEFT_BROW[:5], lm.LEFT_BROW[5:], lm.LEFT_UPPER_LID),
        "brow_frown": _frown(n),
        "gaze_x": _gaze(n, 0),
        "gaze_y": _gaze(n, 1),
    }
    return np.stack([fields[name] for name in CONTROLS])
