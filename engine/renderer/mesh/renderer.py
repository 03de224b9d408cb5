"""The ``mesh`` renderer backend: weight-free, realtime on a CPU, driven by the open motion space.

``prepare`` finds the source portrait's 478 landmarks once and precomputes the source-only part of
the dense motion on the flow grid (1/4 of the image size, the neural warping net's format; see
``field``): a slope-limited depth proxy for the head, the head region that follows its rigid motion
(falling smoothly to the still shoulders and background), and how the face's expression moves spread
over the grid.

``render`` then moves the landmarks (the expression rig in the source's picture, then the head's
rigid motion), builds the dense forward displacement of the grid from them, inverts it exactly into a
backward flow, and samples the source with the one warp function. A dark mouth cavity with a hint of
teeth fills what the warp cannot create when the mouth opens beyond the source's. Motion arrives
within the documented ranges (``motion.limits``, applied by ``Renderer.render``), over which the map
does not fold, except with the jaw beyond its identity range and pitch and yaw both near their
bounds (a few triangles at the far mouth corner; measured in the ``field`` module docstring).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...errors import PirenderError
from ...image import SourceImage, image_to_tensor
from ...motion.space import OPEN_SPACE
from ...track import landmarks as lm
from ...track.crop import FaceFinder
from ...track.geometry import Similarity, rotation_from_euler
from ...track.open_space import NeutralFace
from ..base import PreparedSource, Renderer, RenderMode, RenderOutput
from ..warp import base_grid, get_warp
from .field import HeadField, RigidMotion, build_head_field, ease_tilt, invert_displacement
from .rig import apply_rig, build_rig

#: flow grid = image / 4, like the neural warping net
FLOW_DOWNSAMPLE = 4
_CAVITY_RGB = np.array([52, 22, 24], dtype=np.float32)
_TEETH_RGB = np.array([214, 200, 178], dtype=np.float32)
_MIN_OPENING = 0.05  # lips this much (x 0.08 IOD) more apart than in the source before painting
_MOUTH_RING = (*lm.UPPER_LIP_INNER_RING, *lm.LOWER_LIP_INNER_RING[::-1][1:-1])


@dataclass
class MeshSource(PreparedSource):
    """A portrait prepared for the mesh warp: ``source32`` (1, 3, H, W) float32 in [-1, 1]; its face's
    ``points`` (478, 3) px on the depth proxy (``field.HeadField.on_surface``); its ``neutral``
    (``track.open_space.NeutralFace``: the rest pose and the expression reference); ``warp_frame``
    (the head frame the warp turns about, its centre on the proxy); the expression ``rig``; the
    ``head`` depth field; ``mouth_gap_px`` (its lips' gap, px: what the mouth cavity opens from)."""

    source32: torch.Tensor
    points: np.ndarray
    neutral: NeutralFace
    warp_frame: Similarity
    rig: np.ndarray
    head: HeadField
    mouth_gap_px: float


class MeshRenderer(Renderer):
    """Weight-free renderer: source portrait + open-space motion -> frame."""

    name = "mesh"

    def __init__(
        self, *, image_size_px: int = 256, mode: RenderMode | str = RenderMode.FULL, warp: str = "torch"
    ) -> None:
        super().__init__()
        if image_size_px % FLOW_DOWNSAMPLE or image_size_px < 64:
            raise PirenderError(f"mesh renderer size must be a multiple of 4 and >= 64, got {image_size_px}")
        self.space = OPEN_SPACE
        self.image_size_px = image_size_px
        self.mode = RenderMode(mode)
        self.min_window_frames = 1
        self.warp = get_warp(warp)
        self.flow_px = image_size_px // FLOW_DOWNSAMPLE
        self._flow_grid = base_grid(self.flow_px, self.flow_px)
        # image-pixel coordinates of the flow-grid cell centres, (G, 2) with G = flow_px**2
        cells = (np.arange(self.flow_px) + 0.5) * FLOW_DOWNSAMPLE - 0.5
        xs, ys = np.meshgrid(cells, cells)
        self._cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        self._faces: FaceFinder | None = None

    def close(self) -> None:
        """Release the face search (MediaPipe's detectors and face mesh) that :meth:`prepare` started;
        a later ``prepare`` starts a new one. Safe to call more than once."""
        if self._faces is not None:
            self._faces.close()
            self._faces = None

    # ------------------------------------------------------------------------------------------
    def _prepare(self, image: SourceImage) -> PreparedSource:
        if self._faces is None:
            self._faces = FaceFinder()
        faces = self._faces.find(image.rgb)  # human faces (the one rule, track.face_check), largest first
        if not faces:
            raise PirenderError(
                f"no human face found in the source portrait {image.path or ''}".rstrip()
                + " (the mesh renderer moves a face it can see; animals and some drawings have none)"
            )
        return self._build_source(image, faces[0].landmarks)

    def _build_source(self, image: SourceImage, points: np.ndarray) -> MeshSource:
        neutral = NeutralFace.from_landmarks([points])
        stable = list(lm.STABLE)
        head = build_head_field(self._cells, points, neutral.frame, self.image_size_px)
        # the landmarks on the depth proxy (field.py): what the warp rotates; the rest pose and the
        # expression rig stay those of the real landmarks
        limited = head.on_surface(points[:, :2])
        frame = Similarity(
            neutral.frame.scale,
            neutral.frame.rotation,
            np.array([*neutral.frame.translation[:2], limited[stable, 2].mean()]),
        )
        mouth_gap_px = float(np.mean(points[[14, 87, 317], 1] - points[[13, 82, 312], 1]))
        return MeshSource(
            image=image,
            source32=image_to_tensor(image.rgb),
            points=limited,
            neutral=neutral,
            warp_frame=frame,
            rig=build_rig(neutral.canonical),
            head=head,
            mouth_gap_px=mouth_gap_px,
        )

    # ------------------------------------------------------------------------------------------
    def _motion(self, row: np.ndarray, source: MeshSource) -> RigidMotion:
        """The head's rigid motion from the source to one open-space row (its turn away from the
        source's own pose eased beyond ``field.TILT_KNEE_DEG``)."""
        frame = source.warp_frame
        rotation = rotation_from_euler(*row[:3].astype(np.float64))
        relative = ease_tilt(rotation @ frame.rotation.T)
        return RigidMotion.of(
            relative,
            float(row[OPEN_SPACE.index("scale")]),
            center=frame.translation,
            shift=np.array([row[3], row[4], 0.0]) * frame.scale,
        )

    def target_landmarks(self, row: np.ndarray, source: MeshSource) -> np.ndarray:
        """(478, 3) pixel landmarks of the source moved to one open-space row (depth: the warp's
        slope-limited depth proxy, ``field.limited_depth``)."""
        return self._target(self._motion(row, source), self._expression_px(row, source), source)

    def _expression_px(self, row: np.ndarray, source: MeshSource) -> np.ndarray:
        """(478, 2) the landmarks' expression moves in the source's picture (px), before the head moves."""
        frame, rig = source.warp_frame, source.rig
        expression = row[OPEN_SPACE.group("expression")].astype(np.float64)
        canonical = apply_rig(np.zeros_like(rig[0]), rig, expression)
        return frame.scale * canonical @ frame.rotation[:2].T

    def _target(self, motion: RigidMotion, expression_px: np.ndarray, source: MeshSource) -> np.ndarray:
        # the expression in the source's picture, lifted onto the depth proxy, then the head's motion
        moved = source.head.on_surface(source.points[:, :2] + expression_px)
        return moved + motion.displacement(moved)

    def forward_displacement(self, row: np.ndarray, source: MeshSource) -> tuple[np.ndarray, np.ndarray]:
        """Forward displacement (flow_px, flow_px, 2) of every flow-grid cell (image px, x then y) for
        one open-space row (``field`` module docstring), and the target landmarks."""
        motion, expression_px = self._motion(row, source), self._expression_px(row, source)
        displacement = source.head.displacement(motion, expression_px).reshape(self.flow_px, self.flow_px, 2)
        return displacement, self._target(motion, expression_px, source)

    def _backward_map(self, row: np.ndarray, source: MeshSource) -> tuple[np.ndarray, np.ndarray]:
        """Source pixel position (G, 2) read by each flow-grid cell, and the target landmarks."""
        displacement, target = self.forward_displacement(row, source)
        return invert_displacement(displacement, self._cells, FLOW_DOWNSAMPLE), target

    def _flow(self, source_px: np.ndarray) -> torch.Tensor:
        """Backward map (G, 2) in image pixels -> flow (1, 2, h, w) in the warp's convention."""
        # reading outside the portrait would bring in the warp's zero padding (grey): clamp to it
        inside = np.clip(source_px, 0.0, self.image_size_px - 1.0)
        normalized = (2 * inside + 1) / self.image_size_px - 1  # grid_sample, align_corners=False
        deformation = torch.from_numpy(normalized.reshape(self.flow_px, self.flow_px, 2)).float()
        flow = (deformation - self._flow_grid) * (self.flow_px - 1) / 2
        return flow.permute(2, 0, 1)[None]

    def _mouth(self, frame: torch.Tensor, target: np.ndarray, source: MeshSource) -> None:
        """Paint the mouth cavity (and a teeth hint) where the lips opened beyond the source's.

        Works on the mouth's bounding box only; ``frame`` (3, H, W) is changed in place.
        """
        import cv2  # the track extra's OpenCV

        gap_px = float(np.mean(target[[14, 87, 317], 1] - target[[13, 82, 312], 1]))
        neutral = source.neutral
        opened = (gap_px - source.mouth_gap_px) / (0.08 * neutral.frame.scale)
        if opened <= _MIN_OPENING:
            return
        ring_xy = target[list(_MOUTH_RING), :2]
        margin_px = 4
        x0, y0 = np.maximum(np.floor(ring_xy.min(axis=0)).astype(int) - margin_px, 0)
        x1, y1 = np.minimum(np.ceil(ring_xy.max(axis=0)).astype(int) + margin_px, self.image_size_px)
        if x1 <= x0 or y1 <= y0:
            return
        shift = 4  # sub-pixel polygon precision for cv2
        origin = np.array([x0, y0])

        def polygon(points: np.ndarray) -> list[np.ndarray]:
            return [np.round((points - origin) * (1 << shift)).astype(np.int32)]

        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        cv2.fillPoly(mask, polygon(ring_xy), 255, cv2.LINE_AA, shift)
        upper = target[list(lm.UPPER_LIP_INNER_RING), :2]
        teeth_px = min(0.11 * neutral.frame.scale, 0.35 * gap_px)
        band = np.concatenate([upper, upper[::-1] + np.array([0.0, teeth_px])])  # down to the teeth's edge
        teeth = np.zeros_like(mask)
        cv2.fillPoly(teeth, polygon(band), 255, cv2.LINE_AA, shift)
        feather = max(1, round(self.image_size_px / 256)) * 2 + 1  # soft lip edges
        mask = cv2.GaussianBlur(mask, (feather, feather), 0)
        teeth = cv2.GaussianBlur(np.minimum(mask, teeth), (feather, feather), 0)
        alpha = torch.from_numpy(mask).float().mul_(min(1.0, opened) / 255)  # (h, w)
        # teeth show across the middle of the mouth and recede into the shadow toward the corners
        corners_x = target[[lm.MOUTH_RIGHT, lm.MOUTH_LEFT], 0]
        half_width = max(float(abs(corners_x[1] - corners_x[0])) / 2, 1.0)
        across = np.abs(np.arange(x0, x1) - float(corners_x.mean())) / half_width
        recede = torch.from_numpy(np.clip((0.9 - across) / 0.6, 0.0, 1.0)).float().view(1, -1)
        teeth_alpha = torch.from_numpy(teeth).float().mul_(0.8 / 255) * recede * recede
        # the cavity darkens toward its depth (bottom); the teeth are lit from above
        depth = torch.linspace(1.0, 0.55, y1 - y0).view(-1, 1)
        cavity = (torch.from_numpy(_CAVITY_RGB).view(3, 1, 1) * depth) / 127.5 - 1
        light = (0.75 + 0.25 * recede).view(1, 1, -1)  # (1, 1, w): dimmer toward the corners
        tooth = torch.from_numpy(_TEETH_RGB).view(3, 1, 1) * light / 127.5 - 1
        fill = cavity + teeth_alpha * (tooth - cavity)  # (3, h, w)
        region = frame[:, y0:y1, x0:x1]
        region.mul_(1 - alpha).add_(alpha * fill)

    def _render(
        self, windows: np.ndarray | torch.Tensor, source: PreparedSource, mode: RenderMode, extras: bool
    ) -> RenderOutput:
        rows = np.asarray(windows, dtype=np.float32)[:, :, windows.shape[2] // 2]  # centre slots (B, 17)
        return self.render_rows(rows, source, mode, extras)[0]

    def render_rows(
        self, rows: np.ndarray, source: PreparedSource, mode: RenderMode, extras: bool
    ) -> tuple[RenderOutput, list[np.ndarray]]:
        """Rows (B, 17) already within their limits -> the output and each frame's (478, 3) target
        landmarks (pixels; what the ``neural`` renderer's editing network works around)."""
        prepared = self.prepared_as(source, MeshSource)
        flows, targets = [], []
        for row in rows:
            backward, target = self._backward_map(row, prepared)
            flows.append(self._flow(backward))
            targets.append(target)
        flow = torch.cat(flows)
        frame = self.warp(prepared.source32.expand(len(rows), -1, -1, -1), flow, grid=self._flow_grid)
        warped = frame.clone() if extras else None
        if mode is RenderMode.FULL:
            for index, target in enumerate(targets):
                self._mouth(frame[index], target, prepared)
        return RenderOutput(frame=frame, warped=warped, flow=flow if extras else None), targets

    def rest_row(self, source: PreparedSource) -> np.ndarray:
        """The row that reproduces the source as it is (its own pose, no expression)."""
        return self.prepared_as(source, MeshSource).neutral.rest_row()
