"""Rigid geometry of the face: similarity fits, the head's own frame, Euler angles.

Camera coordinates: x right, y down, z away from the camera (pixels). Head rotation
``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` maps head coordinates to camera coordinates (the same order as
Deep3DFaceRecon). With these axes: + pitch = looking down, + yaw = turning toward the image's left
(the subject's right), + roll = tilting clockwise on screen. A mirrored picture negates yaw and roll.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PirenderError
from .landmarks import CHIN, FOREHEAD, SYMMETRIC_PAIRS


@dataclass(frozen=True)
class Similarity:
    """``dst = scale * rotation @ src + translation`` (rotation (3, 3), translation (3,))."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) -> (N, 3)."""
        return self.scale * points @ self.rotation.T + self.translation

    def invert(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) camera points -> (N, 3) in the source frame of this transform."""
        return (points - self.translation) @ self.rotation / self.scale


def fit_similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> Similarity:
    """Weighted least-squares similarity (Umeyama 1991) taking ``src`` (N, 3) onto ``dst`` (N, 3)."""
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    src_mean = w @ src
    dst_mean = w @ dst
    src_c = src - src_mean
    dst_c = dst - dst_mean
    covariance = (dst_c * w[:, None]).T @ src_c  # (3, 3)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2] = -1.0  # no reflections
    rotation = (u * sign) @ vt
    src_var = float(w @ (src_c**2).sum(axis=1))
    if src_var <= 0:
        raise PirenderError("cannot fit a similarity to coincident points")
    scale = float((singular * sign).sum() / src_var)
    return Similarity(scale, rotation, dst_mean - scale * rotation @ src_mean)


def head_rotation(landmarks: np.ndarray) -> np.ndarray:
    """The head's absolute orientation (3, 3) from its own symmetry: x from the subject's right to
    left features, y from forehead to chin (made orthogonal), z = x cross y."""
    right = landmarks[[r for r, _ in SYMMETRIC_PAIRS]]
    left = landmarks[[left for _, left in SYMMETRIC_PAIRS]]
    x_axis = (left - right).mean(axis=0)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = landmarks[CHIN] - landmarks[FOREHEAD]
    y_axis = y_axis - (y_axis @ x_axis) * x_axis
    y_axis /= np.linalg.norm(y_axis)
    return np.stack([x_axis, y_axis, np.cross(x_axis, y_axis)], axis=1)


def rotation_from_euler(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """R = Rz(roll) @ Ry(yaw) @ Rx(pitch), angles in radians."""
    ca, sa = np.cos(pitch), np.sin(pitch)
    cb, sb = np.cos(yaw), np.sin(yaw)
    cg, sg = np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cg, -sg, 0], [sg, cg, 0], [0, 0, 1]])
    return rz @ ry @ rx


def euler_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(pitch, yaw, roll) in radians of R = Rz(roll) @ Ry(yaw) @ Rx(pitch)."""
    pitch = float(np.arctan2(rotation[2, 1], rotation[2, 2]))
    yaw = float(np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0)))
    roll = float(np.arctan2(rotation[1, 0], rotation[0, 0]))
    return pitch, yaw, roll


def relative_euler(rows: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N, 3) (pitch, yaw, roll) in radians of each row's head rotation relative to the reference's:
    ``euler(R(row) @ R(reference).T)``; ``rows`` (N, 3+) and ``reference`` (3+,) start with the angles."""
    to_reference = rotation_from_euler(*np.asarray(reference[:3], dtype=np.float64)).T
    out = np.empty((len(rows), 3))
    for i, row in enumerate(rows):
        out[i] = euler_from_rotation(
            rotation_from_euler(*np.asarray(row[:3], dtype=np.float64)) @ to_reference
        )
    return out
