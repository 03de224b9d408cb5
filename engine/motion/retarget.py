"""Moving one person's motion onto another portrait (motion imitation), in the authors' space.

The authors' rule for cross-identity reenactment (``pirender-spec.md`` section 5.3): find the driving
frame ``m`` closest to the source portrait's own coefficients (0.3 * mean |expression difference| +
0.7 * mean |angle difference|), then multiply the crop scale ``s`` of every driving frame by
``s(source) / s(driving frame m)``. Crop translations t0, t1 are left unchanged.
"""

from __future__ import annotations

import numpy as np

from .space import AUTHORS_SPACE, MotionFrame, MotionSequence

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
