"""Finding the faces of a whole picture, and framing a portrait around the largest one.

Face search (:class:`FaceFinder`), the same for every picture whatever its size or colour:

1. The picture (already bounded by the loader's one size rule, ``image.MAX_DECODE_SIDE_PX``) is
   scaled, antialiased, so that its longer side is at most :data:`DETECT_SIDE_PX`.
2. MediaPipe's two BlazeFace detectors look at the whole of it: the full-range model (faces down to
   about 6 % of the picture's longer side) and the short-range one (faces that fill the picture).
   Then overlapping square tiles are searched with the full-range model: squares of the shorter
   side along the longer one (wide and tall pictures), and squares of half the shorter side, which
   finds faces down to about 3 % of the shorter side. A box half inside a larger one is a part of
   that face and dropped.
3. Around each found face (the largest :data:`MAX_FACES`), a square :data:`MESH_CROP_SIDE` times the
   detector's box is cut from the picture at :data:`MESH_INPUT_PX` pixels and MediaPipe's face mesh
   gives its 478 landmarks there (the mesh's own detector is made for faces that fill a good part
   of its input, which is why it misses small or off-centre faces of a whole picture).
4. Each face must pass the one human-face rule (:mod:`.face_check`); faces are returned largest
   first (area of the landmarks' box).

Framing (:func:`crop_to_face`): a square of :data:`CROP_SIDE_IOD` inter-ocular distances with the eyes
:data:`EYES_FROM_TOP` of the side below its top edge, horizontally centred on the head. That keeps
the whole head (the crown lies about 1.7-2.0 eye distances above the eyes, hair adds more) and the
chin with some neck, while the face stays centred and large like the VoxCeleb crops the model was
trained on (those are tighter, 2.8-4.5 eye distances, and often cut the hair). The square is never
larger than the picture's shorter side: a picture already framed tighter (a VoxCeleb crop) is kept
as it is. Where the square reaches past the picture's edge it is first moved inwards (by at most
:data:`MAX_SHIFT` of its side: VoxCeleb crops have the eyes 0.38-0.59 of the width from the left and
0.36-0.45 from the top), then the rest is padded with the edge pixels, blurred more and more with the
distance from the picture (edge pixels alone draw streaks, a mirror would repeat the face, a flat
colour would draw a seam).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from ..errors import ImageError, PirenderError, describe_value
from ..image import BLURRY_UPSCALE, MIN_SOURCE_SIDE_PX, DecodedImage, SourceImage, read_image
from . import landmarks as lm
from .face_check import FACE_SIDES, HumanFaceCheck, square_patch
from .face_models import FaceDetector
from .landmarks import FaceMesh, FaceMeshConfig

#: the picture the detectors search: its longer side is scaled down to at most this many pixels
DETECT_SIDE_PX = 1280
#: at most this many faces (the largest the detectors found) are given landmarks and checked
MAX_FACES = 8
#: the face mesh's input around one detected face: this many detector-box sides ...
MESH_CROP_SIDE = 2.2
#: ... at this many pixels square
MESH_INPUT_PX = 384
#: lowest detector score kept as a candidate (the human-face rule decides afterwards)
_MIN_DETECTION_SCORE = 0.5

#: side of the square portrait crop in inter-ocular distances (3D eye centres)
CROP_SIDE_IOD = 4.6
#: the eyes' height in the crop, as a fraction of its side from the top
EYES_FROM_TOP = 0.47
#: how far the crop may move off the face's centre to stay inside the picture (fraction of its side)
MAX_SHIFT = 0.12
#: the padding's blur, growing with the distance from the picture's edge: (Gaussian radius, (from,
#: to) the distance over which that blur fades in), all as fractions of the output side
_PAD_BLURS = ((0.015, (0.0, 0.03)), (0.05, (0.03, 0.1)), (0.12, (0.1, 0.25)))


@dataclass(frozen=True)
class FoundFace:
    """One human face of a picture.

    Attributes:
        landmarks: (478, 3) float64 face-mesh points in pixels of the searched picture (x right,
            y down, z in x's scale).
        score: the human-face rule's detector score (0..1).
    """

    landmarks: np.ndarray
    score: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the landmarks, in pixels."""
        return lm.landmark_box(self.landmarks)

    @property
    def area_px(self) -> float:
        """Area of the landmarks' box (:attr:`box`), in square pixels: the face's size."""
        return lm.box_area(self.box)


class FaceFinder:
    """All human faces of a picture, largest first (module docstring). Reuse for many pictures;
    ``close`` it or use it as a context manager. Not thread-safe: one object per thread."""

    def __init__(self) -> None:
        """Start MediaPipe's two face detectors, its face mesh and the human-face check.

        Raises:
            PirenderError: the face models cannot run (the ``track`` extra is not installed).
        """
        self._full_range = lm.face_detector(1, _MIN_DETECTION_SCORE)
        self._short_range = lm.face_detector(0, _MIN_DETECTION_SCORE)
        self._mesh = FaceMesh(FaceMeshConfig(max_faces=2, min_detection_confidence=0.3), static_images=True)
        self._check = HumanFaceCheck()
        self._closed = False

    def find(self, rgb: np.ndarray) -> list[FoundFace]:
        """The human faces of an (H, W, 3) uint8 RGB picture, largest first (empty when none).

        Cost on a CPU: about 0.1-0.2 s for a photo (the whole-picture pass, the tiles, about 40 ms
        per face found); measured on 375 video frames of 224-1920 px: median 0.13 s, at most 0.6 s.
        """
        if self._closed:
            raise ValueError("this face search is closed")
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise PirenderError(f"face search needs an (H, W, 3) uint8 RGB array, not {describe_value(rgb)}")
        height, width = rgb.shape[:2]
        scale = min(1.0, DETECT_SIDE_PX / max(height, width))
        small = rgb
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0))
        boxes = self._detect(self._full_range, small, (0, 0)) + self._detect(self._short_range, small, (0, 0))
        for tile_left, tile_top, side in _tiles(small.shape[1], small.shape[0]):
            tile = np.ascontiguousarray(small[tile_top : tile_top + side, tile_left : tile_left + side])
            boxes += self._detect(self._full_range, tile, (tile_left, tile_top))
        candidates = _distinct(sorted(boxes, key=lambda b: -(b[3] - b[1]) * (b[4] - b[2])))[:MAX_FACES]
        faces: list[FoundFace] = []
        for _, left, top, right, bottom in candidates:
            box = np.array([left, top, right, bottom]) / scale  # pixels of rgb
            points = self._landmarks(rgb, box)
            if points is None:
                continue
            verdict = self._check.check(rgb, points)
            if not verdict.human:
                continue
            face = FoundFace(points, verdict.score)
            if all(_intersection(face.box, other.box) < 0.5 * face.area_px for other in faces):
                faces.append(face)
        return sorted(faces, key=lambda f: -f.area_px)

    def _detect(
        self, detector: FaceDetector, rgb: np.ndarray, offset: tuple[int, int]
    ) -> list[tuple[float, ...]]:
        """(score, left, top, right, bottom) boxes in pixels of the picture ``rgb`` was cut from."""
        boxes: list[tuple[float, ...]] = []
        for face in detector.detect(rgb):
            left, top, right, bottom = face.box
            dx, dy = offset
            boxes.append((face.score, left + dx, top + dy, right + dx, bottom + dy))
        return boxes

    def _landmarks(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """(478, 3) landmarks (pixels of rgb) of the face in ``box``, from the mesh on a square around it."""
        centre = (box[:2] + box[2:]) / 2
        side = MESH_CROP_SIDE * float((box[2:] - box[:2]).max())
        patch = square_patch(rgb, centre, side, MESH_INPUT_PX)
        faces = self._mesh.detect(patch)
        if not faces:
            return None
        half = MESH_INPUT_PX / 2
        nearest = min(faces, key=lambda f: float(np.linalg.norm(f[:, :2].mean(axis=0) - half)))
        scale = side / MESH_INPUT_PX
        points = nearest * scale
        points[:, 0] += centre[0] - half * scale
        points[:, 1] += centre[1] - half * scale
        return points

    def close(self) -> None:
        """Release the face models (the two detectors, the mesh, the human-face check's detectors);
        a closed finder refuses to ``find`` (ValueError, as a closed file does). Closing twice is fine."""
        self._closed = True
        self._full_range.close()
        self._short_range.close()
        self._mesh.close()
        self._check.close()

    def __enter__(self) -> FaceFinder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def crop_to_face(
    source: str | os.PathLike[str] | bytes | Image.Image | np.ndarray | DecodedImage,
    *,
    size_px: int = 256,
    finder: FaceFinder | None = None,
) -> SourceImage:
    """A portrait framed around its largest human face, at the model's size.

    Args:
        source: anything :func:`~pirender.engine.image.read_image` reads (file path, encoded bytes,
            PIL image, uint8 array), or a picture it already decoded.
        size_px: side of the square result in pixels.
        finder: a :class:`FaceFinder` to reuse (one is made and closed otherwise).

    Returns:
        A :class:`SourceImage` of (size_px, size_px, 3) uint8 framed as the module docstring says;
        ``path`` and ``original_size_px`` are the picture's.

    Warns:
        UserWarning: several faces were found (names the one framed: its size and position in the
            picture's pixels, and how many others were left out); the face is so small that the
            crop is upscaled (blurry).

    Raises:
        ImageError: no human face in the picture (and every loader error).
    """
    picture = read_image(source)
    if finder is None:
        with FaceFinder() as own:
            faces = own.find(picture.rgb)
    else:
        faces = finder.find(picture.rgb)
    width_px, height_px = picture.original_size_px
    if not faces:
        raise ImageError(
            f"{picture.label}: no human face found to crop around (searched the whole "
            f"{width_px}x{height_px} picture; drop --face-crop to use it as it is)"
        )
    to_original = width_px / picture.rgb.shape[1]
    face = faces[0]
    if len(faces) > 1:
        left, top, right, bottom = (v * to_original for v in face.box)
        warnings.warn(
            f"{picture.label}: {len(faces)} faces found; framing the largest ({right - left:.0f} x "
            f"{bottom - top:.0f} px, centred at x {(left + right) / 2:.0f}, y {(top + bottom) / 2:.0f} of "
            f"the {width_px}x{height_px} picture), {len(faces) - 1} smaller one(s) left out",
            UserWarning,
            stacklevel=2,
        )
    left, top, side = portrait_square(face.landmarks, picture.rgb.shape[1], picture.rgb.shape[0])
    if side < MIN_SOURCE_SIDE_PX:
        raise ImageError(
            f"{picture.label}: the largest face is too small to use ({side} px for the whole portrait "
            f"crop; at least {MIN_SOURCE_SIDE_PX} px)"
        )
    if side * BLURRY_UPSCALE < size_px:
        warnings.warn(
            f"{picture.label}: the face is small ({side} px for the whole portrait crop); "
            f"it is upscaled to {size_px} px and will look blurry",
            UserWarning,
            stacklevel=2,
        )
    framed = _padded_square(picture.rgb, left, top, side, size_px)
    return SourceImage(rgb=framed, path=picture.path, original_size_px=picture.original_size_px)


def portrait_square(landmarks: np.ndarray, width_px: int, height_px: int) -> tuple[int, int, int]:
    """(left, top, side) in pixels of the portrait square around a face (module docstring); it may
    reach past the picture (0..width_px, 0..height_px), where :func:`crop_to_face` pads."""
    right_eye, left_eye = lm.eye_centres(landmarks)
    iod_px = float(np.linalg.norm(left_eye - right_eye))  # 3D: does not shrink when the head turns
    side = min(CROP_SIDE_IOD * iod_px, float(min(width_px, height_px)))  # never past a large face's picture
    side_px = max(1, round(side))
    centre_x = float(landmarks[list(FACE_SIDES), 0].mean())  # the head's middle
    top = float((right_eye[1] + left_eye[1]) / 2) - EYES_FROM_TOP * side_px
    left = centre_x - side_px / 2
    left = _shift_inside(left, side_px, width_px)
    top = _shift_inside(top, side_px, height_px)
    return round(left), round(top), side_px


def _shift_inside(start: float, side: float, limit: int) -> float:
    """Move [start, start + side) towards [0, limit) by at most MAX_SHIFT * side (any distance when
    the square spans the whole of [0, limit): the picture is already framed tighter along it)."""
    reach = float("inf") if side >= limit else MAX_SHIFT * side
    if start < 0:
        return start + min(-start, reach)
    overshoot = start + side - limit
    if overshoot > 0:
        return start - min(overshoot, reach)
    return start


def _padded_square(rgb: np.ndarray, left: int, top: int, side: int, size_px: int) -> np.ndarray:
    """(size_px, size_px, 3) uint8: rgb[top:top+side, left:left+side] resized, padded where it
    reaches past the picture (edge pixels, blurred more with the distance from the picture)."""
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + side, width), min(top + side, height)
    if x1 <= x0 or y1 <= y0:
        raise PirenderError("the portrait square lies outside the picture")  # impossible for a found face
    pads = ((y0 - top, top + side - y1), (x0 - left, left + side - x1))
    square = rgb[y0:y1, x0:x1]
    padded = any(p for pair in pads for p in pair)
    if padded:
        square = np.pad(square, (*pads, (0, 0)), mode="edge")
    picture = Image.fromarray(np.ascontiguousarray(square))
    resized = np.asarray(picture.resize((size_px, size_px), Image.Resampling.BICUBIC))
    if not padded:
        return resized
    # distance (output pixels) of every output pixel from the part that shows the picture
    scale = size_px / side
    inner = np.array([pads[1][0], pads[0][0], side - pads[1][1], side - pads[0][1]], dtype=np.float64) * scale
    centres = np.arange(size_px) + 0.5
    dx = np.maximum(np.maximum(inner[0] - centres, centres - inner[2]), 0.0)
    dy = np.maximum(np.maximum(inner[1] - centres, centres - inner[3]), 0.0)
    distance = np.hypot(dx[None, :], dy[:, None])
    mixed = resized.astype(np.float32)
    picture = Image.fromarray(resized)
    for radius, (start, end) in _PAD_BLURS:  # stronger blur further out: no streaks, no seam
        blurred = np.asarray(picture.filter(ImageFilter.GaussianBlur(radius * size_px)), dtype=np.float32)
        weight = np.clip((distance / size_px - start) / (end - start), 0.0, 1.0)[:, :, None]
        mixed = mixed * (1.0 - weight) + blurred * weight
    return np.ascontiguousarray(np.clip(np.rint(mixed), 0, 255).astype(np.uint8))


def _tiles(width: int, height: int) -> list[tuple[int, int, int]]:
    """Square tiles (left, top, side) of the tile search, overlapping by half a tile: squares of the
    shorter side (only when the picture is not square), then squares of half the shorter side."""
    tiles = []
    shorter = min(width, height)
    for side in (shorter, shorter // 2):
        if side < 32 or (side == shorter and width == height):
            continue
        step = max(1, side // 2)
        xs = sorted({*range(0, width - side + 1, step), width - side})
        ys = sorted({*range(0, height - side + 1, step), height - side})
        tiles += [(x, y, side) for y in ys for x in xs]
    return tiles


def _intersection(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Area common to two (left, top, right, bottom) boxes."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _distinct(boxes: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    """Boxes (score, left, top, right, bottom), largest first, without repeats or parts of a face
    kept before them (half of the box or more inside a kept one)."""
    kept: list[tuple[float, ...]] = []
    for box in boxes:
        area = (box[3] - box[1]) * (box[4] - box[2])
        if all(_intersection(box[1:], other[1:]) < 0.5 * area for other in kept):
            kept.append(box)
    return kept
