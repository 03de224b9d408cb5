"""Moving one person's motion onto another portrait (motion imitation).

Open space: :func:`retarget_open` (pose relative to each one's neutral).

Authors' space:
The authors' rule for cross-identity reenactment (``pirender-spec.md`` section 5.3): find the driving
frame ``m`` closest to the source portrait's own coefficients (0.3 * mean |expression difference| +
0.7 * mean |angle difference|), then multiply the crop scale ``s`` of every driving frame by
``s(source) / s(driving frame m)``. Crop translations t0, t1 are left unchanged.
"""

from __future__ import annotations

import numpy as np

from .space import AUTHORS_SPACE, OPEN_SPACE, MotionFrame, MotionSequence

_EXPRESSION = AUTHORS_SPACE.group("expression")
_ANGLES = AUTHORS_SPACE.group("angles")
_CROP_SCALE = AUTHORS_SPACE.index("crop_s")
_EXPRESSION_WEIGHT = 0.3
_ANGLE_WEIGHT = 0.7


def closest_driving_frame(driving: MotionSequence, source: MotionFrame) -> int:
    """Index of the driving frame most like the source (the authors' weighted L1 distance)."""
    AUTHORS_SPACE.check_compatible(driving.space)
    AUTHORS_SPACE.check_compatible(source.space)
    values = driving.values
    expression_gap = np.abs(values[:, _EXPRESSION] - source.values[_EXPRESSION]).mean(axis=1)
    angle_gap = np.abs(values[:, _ANGLES] - source.values[_ANGLES]).mean(axis=1)
    return int(np.argmin(_EXPRESSION_WEIGHT * expression_gap + _ANGLE_WEIGHT * angle_gap))


def cross_identity_scale(driving: MotionSequence, source: MotionFrame) -> MotionSequence:
    """The driving motion with its crop scale matched to the source portrait's face size."""
    matched = closest_driving_frame(driving, source)
    ratio = source.values[_CROP_SCALE] / driving.values[matched, _CROP_SCALE]
    values = driving.values.copy()
    values[:, _CROP_SCALE] *= ratio
    meta = {**driving.meta, "cross_identity_scale": float(ratio), "matched_frame": matched}
    return MotionSequence(driving.space, values, fps=driving.fps, meta=meta)


def frontal_rest_row() -> np.ndarray:
    """Open-space rest of a frontal neutral: no rotation, no move, scale 1, no expression."""
    row = np.zeros(OPEN_SPACE.width, dtype=np.float32)
    row[OPEN_SPACE.index("scale")] = 1.0
    return row


class OpenRetargeter:
    """Moves open-space rows of a driver onto a source, relative to each one's neutral.

    The driver's head rotation relative to its neutral rest pose is applied on top of the source's
    rest pose; position, scale and expression controls are already relative to the driver's neutral
    and carry over unchanged.
    """

    def __init__(self, driver_rest: np.ndarray, source_rest: np.ndarray) -> None:
        from ..track.geometry import rotation_from_euler

        self._to_driver_rest = rotation_from_euler(*np.asarray(driver_rest[:3], dtype=np.float64)).T
        self._source_rotation = rotation_from_euler(*np.asarray(source_rest[:3], dtype=np.float64))

    def __call__(self, row: np.ndarray) -> np.ndarray:
        from ..track.geometry import euler_from_rotation, rotation_from_euler

        moved = np.array(row, dtype=np.float32, copy=True)
        relative = rotation_from_euler(*np.asarray(row[:3], dtype=np.float64)) @ self._to_driver_rest
        moved[:3] = euler_from_rotation(relative @ self._source_rotation)
        return moved


class FollowingRetargeter:
    """Live tracker rows onto a source while the driver's neutral may change (a shot change or a
    new person gives the tracker a new neutral, and with it a new rest pose).

    ``retarget(row, driver_rest)``: the row moved onto the source, relative to ``driver_rest`` (the
    tracker's current neutral rest row, or None while it has none); rows held while the tracker
    recalibrates keep the previous retargeting. None until there is a row and a rest.
    """

    def __init__(self, source_rest: np.ndarray) -> None:
        self._source_rest = np.asarray(source_rest, dtype=np.float32).copy()
        self._driver_rest: np.ndarray | None = None
        self._retarget: OpenRetargeter | None = None

    def __call__(self, row: np.ndarray | None, driver_rest: np.ndarray | None) -> np.ndarray | None:
        if driver_rest is not None and (
            self._driver_rest is None or not np.array_equal(driver_rest[:3], self._driver_rest[:3])
        ):
            self._driver_rest = np.array(driver_rest, dtype=np.float32)
            self._retarget = OpenRetargeter(self._driver_rest, self._source_rest)
        if row is None or self._retarget is None:
            return None
        return self._retarget(row)


def retarget_open(driving: MotionSequence, source_rest: np.ndarray) -> MotionSequence:
    """A whole open-space sequence moved onto a source (see :class:`OpenRetargeter`); the driver's
    neutral is ``driving.meta["neutral_rest"]``, a frontal neutral when absent."""
    OPEN_SPACE.check_compatible(driving.space)
    driver_rest = np.asarray(driving.meta.get("neutral_rest", frontal_rest_row()), dtype=np.float64)
    retarget = OpenRetargeter(driver_rest, source_rest)
    values = np.stack([retarget(row) for row in driving.values])
    meta = {**driving.meta, "neutral_rest": [float(v) for v in source_rest]}
    return MotionSequence(driving.space, values, fps=driving.fps, meta=meta)
