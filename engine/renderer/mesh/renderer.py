"""The ``mesh`` renderer backend: weight-free, realtime on a CPU, driven by the open motion space.

``prepare`` finds the source portrait's 478 landmarks once and precomputes, for every cell of the
flow grid (1/4 of the image size, the neural warping net's format):

- inside the face: barycentric weights on a triangulation of the source landmarks (the face follows
  the mesh exactly);
- outside: how much the cell follows the head's rigid motion (1 on hair, ears and the upper neck,
  falling smoothly to 0 in the background) plus the non-rigid motion of the nearest face-outline
  landmarks (so the jaw line and the neck stay continuous).

``render`` then moves the landmarks (rigid pose about the head + the expression rig), turns their
displacements into a dense forward displacement of the grid, inverts it into a backward flow by a few
fixed-point steps, and samples the source with the one warp function. A dark mouth cavity with a
hint of teeth fills what the warp cannot create when the mouth opens beyond the source's.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse
from scipy.spatial import Delaunay

from ...errors import PirenderError
from ...image import SourceImage, image_to_tensor
from ...motion.space import OPEN_SPACE
from ...track import landmarks as lm
from ...track.geometry import rotation_from_euler
from ...track.landmarks import FaceMesh
from ...track.open_space import NeutralFace
from ..base import PreparedSource, Renderer, RenderMode, RenderOutput
from ..warp import base_grid, get_warp
from .rig import build_rig

#: flow grid = image / 4, like the neural warping net
FLOW_DOWNSAMPLE = 4
#: backward-map refinement steps
INVERSION_STEPS = 4
#: rigid-follow region: head ellipse radii in IOD (half-width, up, down) and falloff width
_HEAD_RADII_IOD = (1.45, 1.9, 1.45)
_FALLOFF_IOD = 0.9
#: outline residuals fade over this distance (IOD)
_RESIDUAL_SIGMA_IOD = 0.35
_CAVITY_RGB = np.array([52, 22, 24], dtype=np.float32)
_TEETH_RGB = np.array([196, 186, 172], dtype=np.float32)
_MIN_OPENING = 0.05  # lips this much (x 0.08 IOD) more apart than in the source before painting
_MOUTH_RING = (*lm.UPPER_LIP_INNER_RING, *lm.LOWER_LIP_INNER_RING[::-1][1:-1])


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
        self._mesh: FaceMesh | None = None

    # ------------------------------------------------------------------------------------------
    def _prepare(self, image: SourceImage) -> PreparedSource:
        if self._mesh is None:
            self._mesh = FaceMesh(static_images=True)
        faces = self._mesh.detect(image.rgb)
        if not faces:
            raise PirenderError(
                f"no human face found in the source portrait {image.path or ''}".rstrip()
                + " (the mesh renderer moves a face it can see; animals and some drawings have none)"
            )
        points = max(faces, key=lambda f: np.ptp(f[:, 0]) * np.ptp(f[:, 1]))  # the largest face
        return PreparedSource(image=image, cache=self._build_cache(image, points))

    def _build_cache(self, image: SourceImage, points: np.ndarray) -> dict[str, object]:
        neutral = NeutralFace.from_landmarks([points])
        iod_px = neutral.frame.scale
        cells = self._cells
        # inside the face: barycentric weights of the cell in the source triangulation
        triangulation = Delaunay(points[:, :2])
        simplex = triangulation.find_simplex(cells)
        inside = simplex >= 0
        rows = np.nonzero(inside)[0]
        transform = triangulation.transform[simplex[inside]]  # (n, 3, 2)
        partial = np.einsum("nij,nj->ni", transform[:, :2], cells[inside] - transform[:, 2])
        bary = np.concatenate([partial, 1 - partial.sum(axis=1, keepdims=True)], axis=1)
        vertices = triangulation.simplices[simplex[inside]]
        face_weights = sparse.csr_matrix(
            (bary.ravel(), (np.repeat(rows, 3), vertices.ravel())), shape=(len(cells), len(points))
        )
        # outside: rigid follow (head ellipse) and outline residuals, both fading out
        center = points[list(lm.STABLE), :2].mean(axis=0)
        offset = (cells - center) / iod_px
        down = offset[:, 1] > 0
        radius_y = np.where(down, _HEAD_RADII_IOD[2], _HEAD_RADII_IOD[1])
        ellipse = np.sqrt((offset[:, 0] / _HEAD_RADII_IOD[0]) ** 2 + (offset[:, 1] / radius_y) ** 2)
        beyond_iod = np.maximum(ellipse - 1.0, 0.0) * np.minimum(_HEAD_RADII_IOD[0], radius_y)
        rigid_follow = np.clip(1.0 - beyond_iod / _FALLOFF_IOD, 0.0, 1.0)
        rigid_follow = rigid_follow * rigid_follow * (3 - 2 * rigid_follow)  # smoothstep
        rigid_follow[inside] = 0.0
        outline = np.array(lm.FACE_OVAL)
        gap_iod = (
            np.linalg.norm(cells[:, None, :] - points[outline, None, :2].transpose(1, 0, 2), axis=2) / iod_px
        )
        nearest = np.exp(-((gap_iod - gap_iod.min(axis=1, keepdims=True)) ** 2) / (2 * 0.15**2))
        nearest /= nearest.sum(axis=1, keepdims=True)
        fade = np.exp(-(gap_iod.min(axis=1) ** 2) / (2 * _RESIDUAL_SIGMA_IOD**2))
        residual_weights = (nearest * (fade * ~inside)[:, None]).astype(np.float64)  # (G, outline)
        # depth of each cell for the rigid motion: interpolated inside, the outline's depth outside
        depth = np.where(inside, face_weights @ points[:, 2], nearest @ points[outline, 2])
        cell_points = np.column_stack([cells, depth])
        mouth_gap_px = float(np.mean(points[[14, 87, 317], 1] - points[[13, 82, 312], 1]))
        return {
            "source32": image_to_tensor(image.rgb),
            "points": points,
            "neutral": neutral,
            "rig": build_rig(neutral.canonical),
            "face_weights": face_weights,
            "rigid_follow": rigid_follow,
            "outline": outline,
            "residual_weights": residual_weights,
            "cell_points": cell_points,
            "mouth_gap_px": mouth_gap_px,
        }

    # ------------------------------------------------------------------------------------------
    def target_landmarks(self, row: np.ndarray, cache: dict[str, object]) -> np.ndarray:
        """(478, 3) pixel landmarks of the source moved to one open-space row."""
        neutral: NeutralFace = cache["neutral"]  # type: ignore[assignment]
        rig: np.ndarray = cache["rig"]  # type: ignore[assignment]
        expression = row[OPEN_SPACE.group("expression")].astype(np.float64)
        canonical = neutral.canonical + np.tensordot(expression, rig, axes=1)
        rotation = rotation_from_euler(*row[:3].astype(np.float64))
        scale = neutral.frame.scale * float(row[OPEN_SPACE.index("scale")])
        shift = np.array([row[3], row[4], 0.0]) * neutral.frame.scale
        return scale * canonical @ rotation.T + neutral.frame.translation + shift

    def _backward_map(self, row: np.ndarray, cache: dict[str, object]) -> tuple[np.ndarray, np.ndarray]:
        """Source pixel position (G, 2) read by each flow-grid cell, and the target landmarks."""
        neutral: NeutralFace = cache["neutral"]  # type: ignore[assignment]
        points: np.ndarray = cache["points"]  # type: ignore[assignment]
        target = self.target_landmarks(row, cache)
        moved = target - points  # (478, 3)
        # rigid motion of any source point: P -> M (P - t_s) + t_t
        rotation = rotation_from_euler(*row[:3].astype(np.float64))
        relative = float(row[OPEN_SPACE.index("scale")]) * rotation @ neutral.frame.rotation.T
        shift = np.array([row[3], row[4], 0.0]) * neutral.frame.scale

        # Products here avoid numpy's BLAS (np.einsum without optimize runs its own loops): BLAS
        # worker threads left spinning next to torch's OpenMP threads made a 512 px frame 8x slower
        # on 2 cores (measured: 55 ms instead of 6 ms).
        def rigid(p: np.ndarray) -> np.ndarray:
            centred = p - neutral.frame.translation
            return np.einsum("nj,ij->ni", centred, relative) + neutral.frame.translation + shift - p

        outline: np.ndarray = cache["outline"]  # type: ignore[assignment]
        residual = (moved[outline] - rigid(points[outline]))[:, :2]
        cell_points: np.ndarray = cache["cell_points"]  # type: ignore[assignment]
        field = cache["face_weights"] @ moved[:, :2]  # type: ignore[operator]  # sparse, no BLAS
        field += cache["rigid_follow"][:, None] * rigid(cell_points)[:, :2]  # type: ignore[index]
        field += np.einsum("gn,nc->gc", cache["residual_weights"], residual)  # type: ignore[arg-type]
        # invert the forward displacement: p = q - D(p), by fixed-point steps on the grid
        grid_field = torch.from_numpy(field.reshape(1, self.flow_px, self.flow_px, 2).transpose(0, 3, 1, 2))
        source = self._cells.copy()
        for _ in range(INVERSION_STEPS):
            sample = torch.from_numpy(
                ((source + 0.5) / FLOW_DOWNSAMPLE * 2 / self.flow_px - 1).reshape(
                    1, self.flow_px, self.flow_px, 2
                )
            )
            displacement = torch.nn.functional.grid_sample(
                grid_field, sample, mode="bilinear", padding_mode="border", align_corners=False
            )
            source = self._cells - displacement[0].numpy().reshape(2, -1).T
        return source, target

    def _flow(self, source_px: np.ndarray) -> torch.Tensor:
        """Backward map (G, 2) in image pixels -> flow (1, 2, h, w) in the warp's convention."""
        # reading outside the portrait would bring in the warp's zero padding (grey): clamp to it
        inside = np.clip(source_px, 0.0, self.image_size_px - 1.0)
        normalized = (2 * inside + 1) / self.image_size_px - 1  # grid_sample, align_corners=False
        deformation = torch.from_numpy(normalized.reshape(self.flow_px, self.flow_px, 2)).float()
        flow = (deformation - self._flow_grid) * (self.flow_px - 1) / 2
        return flow.permute(2, 0, 1)[None]

    def _mouth(self, frame: torch.Tensor, target: np.ndarray, cache: dict[str, object]) -> None:
        """Paint the mouth cavity (and a teeth hint) where the lips opened beyond the source's.

        Works on the mouth's bounding box only; ``frame`` (3, H, W) is changed in place.
        """
        import cv2  # ships with mediapipe

        gap_px = float(np.mean(target[[14, 87, 317], 1] - target[[13, 82, 312], 1]))
        neutral: NeutralFace = cache["neutral"]  # type: ignore[assignment]
        opened = (gap_px - cache["mouth_gap_px"]) / (0.08 * neutral.frame.scale)  # type: ignore[operator]
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
        teeth_alpha = torch.from_numpy(teeth).float().mul_(0.85 / 255)
        # the cavity darkens toward its depth (bottom), the teeth catch a little light
        depth = torch.linspace(1.0, 0.55, y1 - y0).view(-1, 1)
        cavity = (torch.from_numpy(_CAVITY_RGB).view(3, 1, 1) * depth) / 127.5 - 1
        tooth = torch.from_numpy(_TEETH_RGB).view(3, 1, 1) / 127.5 - 1
        fill = cavity + teeth_alpha * (tooth - cavity)  # (3, h, w)
        region = frame[:, y0:y1, x0:x1]
        region.mul_(1 - alpha).add_(alpha * fill)

    def _render(
        self, windows: np.ndarray | torch.Tensor, source: PreparedSource, mode: RenderMode, extras: bool
    ) -> RenderOutput:
        rows = np.asarray(windows, dtype=np.float32)[:, :, windows.shape[2] // 2]  # centre slots (B, 17)
        cache = source.cache
        flows, targets = [], []
        for row in rows:
            backward, target = self._backward_map(row, cache)
            flows.append(self._flow(backward))
            targets.append(target)
        flow = torch.cat(flows)
        source32: torch.Tensor = cache["source32"]  # type: ignore[assignment]
        frame = self.warp(source32.expand(len(rows), -1, -1, -1), flow, grid=self._flow_grid)
        warped = frame.clone() if extras else None
        if mode is RenderMode.FULL:
            for index, target in enumerate(targets):
                self._mouth(frame[index], target, cache)
        return RenderOutput(frame=frame, warped=warped, flow=flow if extras else None)

    def rest_row(self, source: PreparedSource | None = None) -> np.ndarray:
        """The row that reproduces the source as it is (its own pose, no expression)."""
        chosen = source or self._default_source
        if chosen is None:
            raise PirenderError("rest_row() before prepare()")
        neutral: NeutralFace = chosen.cache["neutral"]  # type: ignore[assignment]
        return neutral.rest_row()
