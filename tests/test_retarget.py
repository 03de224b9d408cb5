"""The authors' cross-identity scale rule (spec section 5.3)."""

import numpy as np
import pytest

from pirender.engine.errors import MotionError
from pirender.engine.motion import AUTHORS_SPACE, MotionFrame, MotionSequence, MotionSpace
from pirender.engine.motion.retarget import closest_driving_frame, cross_identity_scale


def _driving() -> MotionSequence:
    rows = np.zeros((4, 73), dtype=np.float32)
    rows[:, 64:67] = [[0.0, 0.0, 0.0], [0.3, 0.2, 0.1], [0.05, 0.0, 0.0], [0.3, 0.3, 0.3]]
    rows[:, 0:64] = [[0.0], [1.0], [0.5], [2.0]]
    rows[:, 70:73] = [[1.2, 128, 120], [1.1, 130, 121], [1.25, 127, 119], [1.0, 131, 122]]
    return MotionSequence(AUTHORS_SPACE, rows)


def test_the_closest_frame_weighs_angles_more_than_expression() -> None:
    source = np.zeros(73, dtype=np.float32)
    source[0:64] = 0.55
    source[64:67] = [0.04, 0.0, 0.0]
    source[70] = 0.9
    # frame 2: |exp| gap 0.05, |angle| gap 0.0033 -> 0.3*0.05 + 0.7*0.0033 is the smallest
    assert closest_driving_frame(_driving(), MotionFrame(AUTHORS_SPACE, source)) == 2
    scaled = cross_identity_scale(_driving(), MotionFrame(AUTHORS_SPACE, source))
    ratio = 0.9 / 1.25
    np.testing.assert_allclose(scaled.values[:, 70], _driving().values[:, 70] * ratio, rtol=1e-6)
    np.testing.assert_array_equal(scaled.values[:, 71:], _driving().values[:, 71:])  # t0, t1 unchanged
    np.testing.assert_array_equal(scaled.values[:, :70], _driving().values[:, :70])
    assert scaled.meta["matched_frame"] == 2


def test_other_spaces_are_refused() -> None:
    other = MotionSpace("open", tuple(f"c{i}" for i in range(73)))
    with pytest.raises(MotionError, match="cannot drive"):
        cross_identity_scale(_driving(), MotionFrame(other, np.zeros(73)))
