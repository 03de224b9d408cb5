"""How every cell of the mesh renderer's flow grid moves, and the inversion of that motion.

The forward map of a source cell ``c`` (image pixels) for one motion row is a composition: first the
expression, in the source's own picture, then the head's motion of where that put the cell,

    q = c + e(c),    F(c) = q + follow(q) * rigid(q, depth(q))

- ``e`` (the expression): the landmarks' moves by the expression rig in the source's picture,
  barycentric on the landmark triangulation inside the face and, outside it, the move of the nearest
  point of the face's convex outline fading smoothly with the distance (continuous everywhere: the
  nearest-point map onto a convex set is continuous), so the chin of an open jaw pulls the neck along
  instead of tearing from it.
- ``rigid`` (:class:`RigidMotion`): the head's rigid motion relative to the source (rotation about
  the head centre, scale, shift) of the 3D point ``(q, depth(q))``; the landmarks move the same way.
- ``depth`` (:func:`limited_depth`): the landmarks' depth, interpolated over the face and rising away
  from it beyond the face outline (ears, hair, the far side of the head), then limited to a slope of
  :data:`DEPTH_SLOPE` everywhere; below the chin it stays the chin's (the neck). A surface whose
  slope is at most ``k`` faces the camera within ``atan(k)``, so a rotation that turns the view axis
  by less than ``90 deg - atan(k)`` cannot turn any of it away from the camera: the far side of the
  head is compressed (the 2D picture of occlusion), never folded over, and it moves continuously with
  the face outline. Interpolated on the grid's triangles the slope can reach ``sqrt(2) k``
  (40 deg for ``k = 0.6``); :func:`ease_tilt` keeps the turn relative to the source below
  :data:`TILT_MAX_DEG` (it eases beyond :data:`TILT_KNEE_DEG`).
- ``follow``: 1 on the head (an ellipse around the head centre that holds the whole face: hair,
  ears, upper neck), falling smoothly with the distance from it, so the neck bends and the shoulders
  and background stay. The turn about the view axis (roll) is not faded but swirled: a part of its
  angle that falls with the distance from the head centre only (:meth:`RigidMotion.partial`), which
  no roll can fold.

Every term is continuous, so the map has no seams. It does not fold: the expression alone does not
(``rig``), the head's motion alone does not, and a composition of maps that do not fold does not.
Where the head's motion fades out (``follow``), a smoothstep fall of width ``L`` compresses by at
most ``1.5 * |move| / L``: each frame the falls widen to ``max(base width, ADAPT * move)`` (the
largest move of the head ellipse's rim plus that of the face outline)
(:data:`ADAPT` = 2.5: at most 60 % compression), so big moves take more of the background along
instead of tearing it. :meth:`HeadField.hold_borders` keeps content from leaving an image border
inward (nothing is known beyond it), and :func:`invert_displacement` turns the forward map into the
backward map (which source pixel each output cell shows), exactly.

Measured over the documented ranges (``tests/test_mesh_renderer.py``, the tear metric
:func:`triangle_areas`, on a VoxCeleb crop, a face-cropped photograph (s12) and the demo portrait): no
grid triangle folds for any pose in the hard ranges (all 64 corners of pitch, yaw, roll, tx, ty and
scale at their bounds at once included), for any expression control at its bounds at the portrait's
own pose, for a broad talking face at the corners of the pose's identity ranges, or for ``jaw_open``
up to 1.2 (the top of its identity range) with all six pose slots anywhere in their identity ranges.

Where it still folds (a few triangles at the far mouth corner, on the VoxCeleb crop and s12; never on
the demo portrait): when ``jaw_open`` is beyond its identity range *and* pitch and yaw are both near
their bounds. Measured at the 64 corners of the pose: at the identity-range corners the jaw at 1.3
folds one triangle of s12 (16 corners: pitch and yaw at one pair of signs, smallest area ratio
-0.04); at the hard-bound corners the jaw folds from 1.0 on s12 and from 1.2 on the VoxCeleb crop
(16-32 corners each, smallest ratio -1.0 at 1.3); up to 0.8 nothing folds. The cause: the jaw
stretches a grid triangle at the mouth corner several times over (the lower lip moves far from the
upper), and the rigid motion of the depth proxy at that turn is strongly non-linear across the
stretched triangle (it foreshortens the far side to under a tenth), so the triangle's corners land
out of order; narrowing the tilt (:data:`TILT_MAX_DEG` 46 -> 38) does not remove it on s12.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.ndimage import map_coordinates
from scipy.spatial import ConvexHull, Delaunay

from ...track import landmarks as lm
from ...track.geometry import Similarity

#: the depth proxy's largest slope (see the module docstring)
DEPTH_SLOPE = 0.6
#: the relative rotation's tilt (how far it turns the view axis) passes unchanged up to the knee and
#: eases toward the maximum beyond it (the proxy faces the camera within 40 deg: 40 + 46 < 90)
TILT_KNEE_DEG = 40.0
TILT_MAX_DEG = 46.0
#: head region that follows the rigid motion fully: an ellipse around the head centre (the stable
#: landmarks' centroid), at least these radii (half-width, up, down) in IOD, widened to hold the face
HEAD_RADII_IOD = (1.45, 1.9, 1.45)
#: narrowest smooth fall of the follow weight from 1 (head) to 0 (still background, shoulders), IOD
FOLLOW_FALLOFF_IOD = 1.3
#: narrowest fade of the expression motion beyond the face outline, IOD
EXPRESSION_FALLOFF_IOD = 1.1
#: the falls widen to this many times the frame's largest move of the head's rim (module docstring)
ADAPT = 2.5
#: the image borders hold on to content within this distance that would move away from them
BORDER_IOD = 0.5
#: the depth proxy is computed on a grid of this many cells per side (any image size)
_DEPTH_GRID = 64
_ELLIPSE_POINTS = 72


@dataclass(frozen=True)
class RigidMotion:
    """``p -> relative @ (p - center) + center + shift`` for 3D points in image pixels (depth in the
    landmarks' units): the head's rigid motion relative to the source portrait. ``relative`` =
    ``swing @ Rz(twist)``: a turn about the view axis through the centre first (``twist``, rad), then
    the rest (``swing``: the tilt, times the scale)."""

    swing: np.ndarray
    twist: float
    center: np.ndarray
    shift: np.ndarray

    @classmethod
    def of(cls, relative: np.ndarray, scale: float, center: np.ndarray, shift: np.ndarray) -> RigidMotion:
        """From a rotation (3, 3) and a scale: splits off the rotation's twist about the view axis."""
        view = relative[:, 2]
        tilt = float(np.arccos(np.clip(view[2], -1.0, 1.0)))
        across = np.hypot(view[0], view[1])
        axis = np.array([-view[1], view[0], 0.0]) / max(across, 1e-12)
        swing = np.eye(3) if across < 1e-12 else _axis_rotation(axis, tilt)
        twist = swing.T @ relative  # about z
        return cls(scale * swing, float(np.arctan2(twist[1, 0], twist[0, 0])), center, shift)

    @property
    def relative(self) -> np.ndarray:
        """(3, 3) the whole linear part: ``swing @ Rz(twist)`` (a rotation times the scale)."""
        return self.swing @ _z_rotation(self.twist)

    def displacement(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) points -> (N, 3) displacements."""
        # np.einsum without optimize runs its own loops, not numpy's BLAS: BLAS worker threads left
        # spinning next to torch's OpenMP threads made a 512 px frame 8x slower on 2 cores
        centred = points - self.center
        return np.einsum("nj,ij->ni", centred, self.relative) + self.center + self.shift - points

    def partial(self, points: np.ndarray, turn: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """(N, 3) points -> (N, 3) displacements of a part of the motion: the twist by ``turn`` (N,)
        of its angle (a swirl: with ``turn`` a function of the distance from the centre it cannot
        fold, however far the turn), then ``weight`` (N,) of the rest's displacement. Both 1 give
        :meth:`displacement`."""
        angle = turn * self.twist
        cos, sin = np.cos(angle), np.sin(angle)
        centred = points - self.center
        x, y = centred[:, 0], centred[:, 1]
        turned = np.column_stack([cos * x - sin * y, sin * x + cos * y, centred[:, 2]])
        rest = np.einsum("nj,ij->ni", turned, self.swing) + self.shift - turned
        return turned + weight[:, None] * rest - centred

    def rest_displacement(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) displacements of everything but the twist, after the full twist."""
        turned = np.einsum("nj,ij->ni", points - self.center, _z_rotation(self.twist))
        return np.einsum("nj,ij->ni", turned, self.swing) + self.shift - turned


def _z_rotation(angle: float) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    return np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])


def ease_tilt(rotation: np.ndarray) -> np.ndarray:
    """``rotation`` (3, 3) with its tilt (the angle by which it turns the view axis z) unchanged up to
    :data:`TILT_KNEE_DEG` and eased smoothly (C1, monotonic) toward :data:`TILT_MAX_DEG` beyond; the
    turn about the view axis (roll) is kept."""
    view = rotation[:, 2]
    tilt = float(np.arccos(np.clip(view[2], -1.0, 1.0)))
    knee, most = np.radians(TILT_KNEE_DEG), np.radians(TILT_MAX_DEG)
    if tilt <= knee:
        return rotation
    axis = np.array([-view[1], view[0], 0.0]) / np.hypot(view[0], view[1])
    swing = _axis_rotation(axis, tilt)
    twist = swing.T @ rotation  # about z
    eased = knee + (most - knee) * np.tanh((tilt - knee) / (most - knee))
    return _axis_rotation(axis, eased) @ twist


def _axis_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: rotation by ``angle`` about the unit ``axis``."""
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


@dataclass(frozen=True)
class HeadField:
    """The source-only part of the dense motion (``cells``: G flow-grid cell centres, image px).

    Attributes:
        iod_px: the portrait's inter-ocular distance (px), the unit of the widths.
        image_px: the portrait's size (px).
        cells: (G, 2) the flow-grid cell centres.
        depth_grid: the depth proxy (:func:`limited_depth`).
        head_distance: (n, n) distance (IOD) of each cell from the head ellipse (0 inside).
        rim: (K, 3) points on the head ellipse (with their depth): where the head's fall begins.
        center: (2,) the head centre (px); ``reach`` the head ellipse's largest radius (IOD).
        face_weights: sparse (G, landmarks) barycentric weights of the cells inside the face.
        outside: (M,) cells outside the face; ``outside_ends`` (M, 2) the two hull landmarks and
            ``outside_t`` (M,) where between them lies each one's nearest outline point;
            ``outside_distance`` (M,) the distance (IOD) to it.
        hull: (H,) landmarks of the face's convex outline.
        border_hold: (G, 4) factors for a displacement away from the left, top, right, bottom image
            border (0 on the border, 1 from :data:`BORDER_IOD` inside): see :meth:`hold_borders`.
    """

    iod_px: float
    image_px: int
    cells: np.ndarray
    depth_grid: np.ndarray
    head_distance: np.ndarray
    rim: np.ndarray
    center: np.ndarray
    reach: float
    face_weights: sparse.csr_matrix
    outside: np.ndarray
    outside_ends: np.ndarray
    outside_t: np.ndarray
    outside_distance: np.ndarray
    hull: np.ndarray
    border_hold: np.ndarray

    def on_surface(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) image points -> (N, 3) with the depth proxy's depth there."""
        return np.column_stack([points, sample_depth(self.depth_grid, points, self.image_px)])

    def displacement(self, motion: RigidMotion, expression: np.ndarray) -> np.ndarray:
        """Forward displacement (G, 2) of every cell (px): the expression first, in the source's
        picture (``expression``: the landmarks' moves (landmarks, 2) px, spread over the cells), then
        the rigid motion of where that put each cell, lifted onto the depth proxy. A composition of
        two fold-free maps (the expression at rest, the rigid motion of the proxy surface) folds
        nowhere the head follows fully."""
        rim = motion.rest_displacement(self.rim)[:, :2]  # the twist swirls: it needs no room
        rigid_px = float(np.sqrt((rim * rim).sum(axis=1).max()))
        reach_px = float(np.sqrt((expression[self.hull] ** 2).sum(axis=1).max()))
        adapt = ADAPT * (rigid_px + reach_px) / self.iod_px
        moves = self.face_weights @ expression  # sparse, no BLAS
        fade = smoothstep_fall(self.outside_distance, max(EXPRESSION_FALLOFF_IOD, adapt))
        first, second = expression[self.outside_ends[:, 0]], expression[self.outside_ends[:, 1]]
        t = self.outside_t[:, None]
        moves[self.outside] = fade[:, None] * (first + t * (second - first))
        moved = self.cells + moves
        # the head's motion of the picture after the expression: the follow weight where a cell went
        distance = sample_depth(self.head_distance, moved, self.image_px)
        width = max(FOLLOW_FALLOFF_IOD, adapt)
        follow = smoothstep_fall(distance, width)
        # the twist (roll) swirls round the centre: it fades with the distance from the centre only
        radius = np.sqrt(((moved - self.center) ** 2).sum(axis=1)) / self.iod_px
        turn = smoothstep_fall(np.maximum(radius - self.reach, 0.0), width)
        displacement = moves + motion.partial(self.on_surface(moved), turn, follow)[:, :2]
        self.hold_borders(displacement)
        return displacement

    def hold_borders(self, displacement: np.ndarray) -> None:
        """Scale (in place) each cell's displacement away from a near image border by the border's
        factor: what lies beyond the border is unknown, so instead of reading it (the clamped warp
        would smear the edge pixels into streaks) the content near the border is stretched. Moves
        toward a border (content leaving the picture) are kept. Keeps the map fold-free: it scales
        one row of the Jacobian's displacement part by a factor in [0, 1] and adds a stretch."""
        flat = displacement.reshape(-1, 2)
        flat[:, 0] *= np.where(flat[:, 0] > 0, self.border_hold[:, 0], self.border_hold[:, 2])
        flat[:, 1] *= np.where(flat[:, 1] > 0, self.border_hold[:, 1], self.border_hold[:, 3])


def border_hold(cells: np.ndarray, image_px: int, iod_px: float) -> np.ndarray:
    """(G, 4) factors rising smoothly from 0 at the left, top, right, bottom image edge to 1 at
    :data:`BORDER_IOD` inside."""
    edge = np.concatenate([cells + 0.5, image_px - 0.5 - cells], axis=1)  # distances to the 4 edges
    return 1.0 - smoothstep_fall(edge / iod_px, BORDER_IOD)


def smoothstep_fall(distance: np.ndarray, width: float) -> np.ndarray:
    """1 at distance 0, 0 from ``width`` on, C1 in between (max slope 1.5 / width)."""
    t = np.clip(1.0 - distance / width, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _segment_projection(points: np.ndarray, polygon: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest point of a closed polygon's edges for each point: (edge index, t in [0, 1], distance)."""
    start = polygon
    edge = np.roll(polygon, -1, axis=0) - polygon  # (E, 2)
    relative = points[:, None, :] - start[None, :, :]  # (N, E, 2)
    t = np.clip((relative * edge).sum(axis=2) / np.maximum((edge * edge).sum(axis=1), 1e-12), 0.0, 1.0)
    gap = relative - t[:, :, None] * edge
    distance = np.sqrt((gap * gap).sum(axis=2))
    nearest = distance.argmin(axis=1)
    rows = np.arange(len(points))
    return nearest, t[rows, nearest], distance[rows, nearest]


def _convex_polygon(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ordered vertices (V, 2), their indices into ``points``, and the hull's half-plane equations."""
    hull = ConvexHull(points)
    return points[hull.vertices], hull.vertices, hull.equations


def _inside(points: np.ndarray, equations: np.ndarray) -> np.ndarray:
    return (points @ equations[:, :2].T + equations[:, 2]).max(axis=1) <= 0


def barycentric(triangulation: Delaunay, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points (N, 2) inside a triangulation: their row indices, triangle vertices (n, 3), weights (n, 3)."""
    simplex = triangulation.find_simplex(points)
    rows = np.nonzero(simplex >= 0)[0]
    transform = triangulation.transform[simplex[rows]]  # (n, 3, 2)
    partial = np.einsum("nij,nj->ni", transform[:, :2], points[rows] - transform[:, 2])
    weights = np.concatenate([partial, 1 - partial.sum(axis=1, keepdims=True)], axis=1)
    return rows, triangulation.simplices[simplex[rows]], weights


def limited_depth(
    triangulation: Delaunay,
    depth: np.ndarray,
    image_px: int,
    neck: tuple[np.ndarray, np.ndarray],
    slope: float = DEPTH_SLOPE,
) -> np.ndarray:
    """The depth proxy on a (_DEPTH_GRID, _DEPTH_GRID) grid over the image (cell centres), px.

    Inside the face (``triangulation`` of the landmarks, whose ``depth`` is given): the landmarks'
    depth, interpolated. Everywhere: the largest function below that whose slope is at most ``slope``
    (``min_q depth(q) + slope * |c - q|``), capped at the face's deepest point, so beyond the outline
    the depth keeps rising as a head's does (ears, hair, skull), then levels off. ``neck`` = (chin
    point (3,) px, the head's downward direction (2,)): below the chin the depth stays the chin's
    (the neck bends with the chin rather than swinging like the back of the head), rising above it
    with the same slope limit.
    """
    cell_px = image_px / _DEPTH_GRID
    centres = ((np.arange(_DEPTH_GRID) + 0.5) * cell_px - 0.5).astype(np.float32)
    xs, ys = np.meshgrid(centres, centres)
    cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
    rows, vertices, weights = barycentric(triangulation, cells)
    face_depth = (weights * depth[vertices]).sum(axis=1).astype(np.float32)
    face = cells[rows]
    limited = np.empty(len(cells), dtype=np.float32)
    for start in range(0, len(cells), 1024):  # (1024, face cells) distances at a time
        block = cells[start : start + 1024]
        gap = (block[:, None, 0] - face[None, :, 0]) ** 2 + (block[:, None, 1] - face[None, :, 1]) ** 2
        np.sqrt(gap, out=gap)
        gap *= slope
        gap += face_depth[None, :]
        limited[start : start + 1024] = gap.min(axis=1)
    np.minimum(limited, face_depth.max(), out=limited)
    chin, down = neck
    above_chin = np.maximum((chin[:2] - cells) @ down, 0.0)
    np.minimum(limited, chin[2] + slope * above_chin, out=limited)
    return limited.astype(np.float64).reshape(_DEPTH_GRID, _DEPTH_GRID)


def sample_depth(depth_grid: np.ndarray, points_px: np.ndarray, image_px: int) -> np.ndarray:
    """Bilinear samples (N,) at (N, 2) image positions of a grid over the image (cell centres; e.g. a
    :func:`limited_depth` grid), the nearest edge value beyond it."""
    cell_px = image_px / depth_grid.shape[0]
    coords = (points_px[:, ::-1].T + 0.5) / cell_px - 0.5  # (row, col)
    return map_coordinates(depth_grid, coords, order=1, mode="nearest")


def _head_ellipse(landmarks: np.ndarray, head: Similarity) -> np.ndarray:
    """(K, 2) points of the head ellipse (image px): centred on the head centre, along the head's
    in-picture axes, at least :data:`HEAD_RADII_IOD` and holding every landmark."""
    across = head.rotation[:2, 0] / np.linalg.norm(head.rotation[:2, 0])
    down = np.array([-across[1], across[0]])  # image y is down: the in-picture head axes
    local = (landmarks[:, :2] - head.translation[:2]) @ np.stack([across, down], axis=1) / head.scale
    half_width = max(HEAD_RADII_IOD[0], 1.05 * float(np.abs(local[:, 0]).max()))
    inner = np.sqrt(np.clip(1.0 - (local[:, 0] / half_width) ** 2, 1e-6, None))
    up = max(HEAD_RADII_IOD[1], 1.05 * float((-local[:, 1] / inner).max()))
    below = max(HEAD_RADII_IOD[2], 1.05 * float((local[:, 1] / inner).max()))
    angle = np.linspace(0, 2 * np.pi, _ELLIPSE_POINTS, endpoint=False)
    radius_y = np.where(np.sin(angle) < 0, up, below)
    local_points = np.stack([half_width * np.cos(angle), radius_y * np.sin(angle)], axis=1)
    return head.translation[:2] + head.scale * local_points @ np.stack([across, down])


def build_head_field(cells: np.ndarray, landmarks: np.ndarray, head: Similarity, image_px: int) -> HeadField:
    """The source-only part of the dense motion for (478, 3) pixel ``landmarks`` of one portrait whose
    head frame (canonical IOD units, centred on the stable points -> pixels) is ``head``."""
    iod_px = head.scale
    down = head.rotation[:2, 1] / max(float(np.linalg.norm(head.rotation[:2, 1])), 1e-6)
    triangulation = Delaunay(landmarks[:, :2])
    depth_grid = limited_depth(triangulation, landmarks[:, 2], image_px, (landmarks[lm.CHIN], down))
    # the head ellipse: distance of every cell from it
    rim = _head_ellipse(landmarks, head)
    _, _, equations = _convex_polygon(rim)
    head_distance = np.zeros(len(cells))
    beyond = ~_inside(cells, equations)
    head_distance[beyond] = _segment_projection(cells[beyond], rim)[2] / iod_px
    # the face: barycentric inside, the nearest outline point outside
    rows, vertices, weights = barycentric(triangulation, cells)
    face_weights = sparse.csr_matrix(
        (weights.ravel(), (np.repeat(rows, 3), vertices.ravel())), shape=(len(cells), len(landmarks))
    )
    outside = np.ones(len(cells), dtype=bool)
    outside[rows] = False
    outside_rows = np.nonzero(outside)[0]
    polygon, hull, _ = _convex_polygon(landmarks[:, :2])
    edge, t, distance = _segment_projection(cells[outside_rows], polygon)
    return HeadField(
        iod_px=iod_px,
        image_px=image_px,
        cells=cells,
        depth_grid=depth_grid,
        head_distance=head_distance.reshape(round(len(cells) ** 0.5), -1),
        rim=np.column_stack([rim, sample_depth(depth_grid, rim, image_px)]),
        center=head.translation[:2].copy(),
        reach=float(np.sqrt(((rim - head.translation[:2]) ** 2).sum(axis=1)).max() / iod_px),
        face_weights=face_weights,
        outside=outside_rows,
        outside_ends=np.stack([hull[edge], hull[(edge + 1) % len(hull)]], axis=1),
        outside_t=t,
        outside_distance=distance / iod_px,
        hull=hull,
        border_hold=border_hold(cells, image_px, iod_px),
    )


def grid_triangles(n: int) -> np.ndarray:
    """(2 (n-1)^2, 3) flat indices of an n x n grid's triangles (each square split along its diagonal),
    listed with a positive signed area (x right, y down) when the grid is undisturbed."""
    index = np.arange(n * n).reshape(n, n)
    top_left, top_right = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    bottom_left, bottom_right = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    return np.concatenate(
        [np.stack([top_left, top_right, bottom_right], 1), np.stack([top_left, bottom_right, bottom_left], 1)]
    )


def triangle_areas(displacement: np.ndarray, cell_px: float) -> np.ndarray:
    """Signed area of every grid triangle after a forward displacement (n, n, 2), relative to its area
    before: 1 unchanged, > 1 stretched, < 1 compressed, <= 0 folded over (the tear metric)."""
    n = displacement.shape[0]
    centres = (np.arange(n) + 0.5) * cell_px - 0.5
    xs, ys = np.meshgrid(centres, centres)
    landed = (np.stack([xs, ys], axis=-1) + displacement).reshape(-1, 2)[grid_triangles(n)]
    edge_1, edge_2 = landed[:, 1] - landed[:, 0], landed[:, 2] - landed[:, 0]
    return (edge_1[:, 0] * edge_2[:, 1] - edge_1[:, 1] * edge_2[:, 0]) / (cell_px * cell_px)


def invert_displacement(displacement: np.ndarray, cells: np.ndarray, cell_px: int) -> np.ndarray:
    """Backward map of a forward displacement: for each cell centre q, the source point p (image px)
    with ``p + D(p) = q``.

    ``displacement`` is (n, n, 2) on the grid whose (n*n, 2) centres are ``cells`` (``cell_px`` apart);
    between them the forward map is linear on the grid's triangles (:func:`grid_triangles`), so the
    inverse is exact: every moved triangle is rasterised onto the grid and each cell it covers takes
    the source point of the same barycentric weights. A cell no triangle covers (beyond what the moved
    grid reaches) keeps ``q - D(q)``.
    """
    n = displacement.shape[0]
    flat = displacement.reshape(-1, 2)
    triangles = grid_triangles(n)
    moved = ((cells + flat + 0.5) / cell_px - 0.5)[triangles]  # (T, 3, 2) in grid units
    low = np.maximum(np.ceil(moved.min(axis=1) - 1e-9), 0).astype(np.int64)
    high = np.minimum(np.floor(moved.max(axis=1) + 1e-9), n - 1).astype(np.int64)
    span = np.maximum(high - low + 1, 0)  # (T, 2) covered columns, rows
    count = span[:, 0] * span[:, 1]
    owner = np.repeat(np.arange(len(triangles)), count)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
    col = low[owner, 0] + offset % span[owner, 0]
    row = low[owner, 1] + offset // span[owner, 0]
    a, b, c = moved[owner, 0], moved[owner, 1], moved[owner, 2]
    px, py = col - a[:, 0], row - a[:, 1]
    e1x, e1y, e2x, e2y = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1], c[:, 0] - a[:, 0], c[:, 1] - a[:, 1]
    det = e1x * e2y - e1y * e2x
    regular = np.abs(det) > 1e-12
    safe = np.where(regular, det, 1.0)
    w1 = (px * e2y - py * e2x) / safe
    w2 = (e1x * py - e1y * px) / safe
    w0 = 1.0 - w1 - w2
    hit = regular & (w0 >= -1e-7) & (w1 >= -1e-7) & (w2 >= -1e-7)
    corners = cells[triangles[owner[hit]]]  # (hits, 3, 2) source positions
    source = w0[hit, None] * corners[:, 0] + w1[hit, None] * corners[:, 1] + w2[hit, None] * corners[:, 2]
    backward = cells - flat
    backward[row[hit] * n + col[hit]] = source
    return backward
