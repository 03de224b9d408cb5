"""MediaPipe's face detector and face mesh without MediaPipe: its models (``engine/track/models``,
Apache 2.0, from the ``mediapipe==0.10.14`` wheel) run by :class:`~.tflite_graph.TFLiteGraph`, and its
graphs' pre- and post-processing written here from their documented configuration.

* :class:`FaceDetector` is BlazeFace (the ``FaceDetectionShortRange`` / ``FullRange`` graphs): the
  picture letterboxed into the model's square (128 or 192 px, values -1..1), SSD anchors, sigmoid
  scores over ``min_score``, weighted non-maximum suppression (IoU 0.3), boxes and six keypoints
  back in pixels.
* :class:`FaceLandmarker` is the face mesh with attention (``FaceLandmarkFrontCpu`` with refined
  landmarks, as ``mediapipe.solutions.face_mesh.FaceMesh(refine_landmarks=True)``): faces found by
  the short-range detector, each one's region of interest (rotated by the eyes, 1.5x, square)
  warped to 192 px (values 0..1, border replicated), the mesh's 468 points refined by its lips,
  eyes and irises heads (478 points), a face-presence score, and in video mode the next region from
  this frame's landmarks; detection runs again while fewer than ``max_faces`` are followed, and the
  regions from detection and from landmarks are merged (IoU > 0.5: the landmarks' wins).

Coordinates are pixels of the analysed picture: x right, y down, z in x's scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import PirenderError
from .tflite_graph import fast_runner

MODELS = Path(__file__).resolve().parent / "models"
SHORT_RANGE_MODEL = MODELS / "face_detection_short_range.tflite"
FULL_RANGE_MODEL = MODELS / "face_detection_full_range_sparse.tflite"
MESH_MODEL = MODELS / "face_landmark_with_attention.tflite"

_MESH_PX = 192


@dataclass(frozen=True)
class FaceDetection:
    """One face: ``score`` 0..1, ``box`` (x0, y0, x1, y1) and ``keypoints`` (6, 2) in pixels (the
    subject's right eye, left eye, nose tip, mouth centre, right and left ear tragion)."""

    score: float
    box: tuple[float, float, float, float]
    keypoints: np.ndarray


@dataclass(frozen=True)
class _Anchors:
    centers: np.ndarray  # (N, 2) normalized x, y (fixed size anchors: width = height = 1)


def _ssd_anchors(input_px: int, strides: tuple[int, ...], per_layer: int) -> _Anchors:
    """SSD anchor centres (``SsdAnchorsCalculator`` with fixed anchor size): layers of equal stride
    share one grid, ``per_layer`` anchors each per cell, row by row."""
    centers: list[tuple[float, float]] = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        repeats = 0
        while layer < len(strides) and strides[layer] == stride:
            repeats += per_layer
            layer += 1
        cells = math.ceil(input_px / stride)
        for y in range(cells):
            for x in range(cells):
                centers += [((x + 0.5) / cells, (y + 0.5) / cells)] * repeats
    return _Anchors(np.array(centers, dtype=np.float64))


_DETECTORS = {
    # model, input px, anchor strides, anchors per cell and layer
    "short": (SHORT_RANGE_MODEL, 128, (8, 16, 16, 16), 2),
    "full": (FULL_RANGE_MODEL, 192, (4,), 1),
}


def _letterbox(rgb: np.ndarray, size_px: int) -> tuple[np.ndarray, float, float, float]:
    """The picture scaled into a ``size_px`` square keeping its aspect (zero borders, centred), as
    -1..1 float32 NHWC; and (side, pad_x, pad_y): the square's side in picture pixels and the
    picture's offset in it."""
    import cv2

    height, width = rgb.shape[:2]
    side = float(max(width, height))
    pad_x, pad_y = (side - width) / 2, (side - height) / 2
    src = np.array([[-pad_x, side - pad_y], [-pad_x, -pad_y], [side - pad_x, -pad_y]], dtype=np.float32)
    dst = np.array([[0, size_px], [0, 0], [size_px, 0]], dtype=np.float32)
    matrix = cv2.getAffineTransform(src, dst)
    square = cv2.warpAffine(
        rgb, matrix, (size_px, size_px), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return (square.astype(np.float32) / 127.5 - 1.0)[None], side, pad_x, pad_y


class FaceDetector:
    """BlazeFace: ``reach`` "short" (faces filling the picture, within ~2 m) or "full" (smaller,
    farther faces); detections scored at least ``min_score`` (0..1).

    Raises:
        PirenderError: the model file is missing.
    """

    def __init__(self, reach: Literal["short", "full"] = "short", *, min_score: float = 0.5) -> None:
        _require_opencv()
        model, self.input_px, strides, per_layer = _DETECTORS[reach]
        self.graph = fast_runner(model)
        self.anchors = _ssd_anchors(self.input_px, strides, per_layer)
        self.min_score = min_score

    def close(self) -> None:
        """Nothing to release (kept for callers that close what they start)."""

    def detect(self, rgb: np.ndarray, *, max_faces: int | None = None) -> list[FaceDetection]:
        """The faces of an (H, W, 3) uint8 RGB picture, best first (at most ``max_faces``)."""
        _check_rgb(rgb)
        tensor, side, pad_x, pad_y = _letterbox(rgb, self.input_px)
        outputs = list(self.graph(tensor).values())
        raw = next(o for o in outputs if o.shape[-1] == 16)[0].astype(np.float64)
        logits = next(o for o in outputs if o.shape[-1] == 1)[0, :, 0].astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100.0, 100.0)))
        keep = np.flatnonzero(scores >= self.min_score)
        if not len(keep):
            return []
        anchors = self.anchors.centers[keep]
        values = raw[keep] / self.input_px
        centers = values[:, 0:2] + anchors
        half = values[:, 2:4] / 2
        boxes = np.concatenate([centers - half, centers + half], axis=1)  # normalized in the square
        keypoints = values[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        faces = _weighted_nms(scores[keep], boxes, keypoints, iou_threshold=0.3)
        if max_faces is not None:
            faces = faces[:max_faces]
        out = []
        for score, box, points in faces:  # back to picture pixels
            x0, y0, x1, y1 = (float(v) for v in box * side - np.array([pad_x, pad_y, pad_x, pad_y]))
            pixel_points = points * side - np.array([pad_x, pad_y])
            out.append(FaceDetection(float(score), (x0, y0, x1, y1), pixel_points))
        return out


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _weighted_nms(
    scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray, *, iou_threshold: float
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """MediaPipe's weighted non-maximum suppression: the best remaining detection and every one
    overlapping it by more than ``iou_threshold`` become one, boxes and keypoints averaged by score
    (the best one's score kept)."""
    order = list(np.argsort(-scores, kind="stable"))
    out = []
    while order:
        best = order[0]
        overlaps = _iou(boxes[best], boxes[order]) > iou_threshold
        members = [order[i] for i in np.flatnonzero(overlaps)]
        weights = scores[members][:, None]
        box = (boxes[members] * weights).sum(axis=0) / weights.sum()
        points = (keypoints[members] * weights[:, :, None]).sum(axis=0) / weights.sum()
        out.append((float(scores[best]), box, points))
        order = [order[i] for i in np.flatnonzero(~overlaps)]
    return out


@dataclass(frozen=True)
class Roi:
    """A region of interest: centre and size in pixels, ``rotation`` in radians (clockwise on the
    screen: MediaPipe's ``NormalizedRect.rotation``)."""

    cx: float
    cy: float
    width: float
    height: float
    rotation: float


def _normalize_radians(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def _roi(box: tuple[float, float, float, float], start: np.ndarray, end: np.ndarray) -> Roi:
    """``DetectionsToRects`` (rotation: the start -> end keypoints level) then ``RectTransformation``
    (square on the long side, 1.5x), in pixels."""
    x0, y0, x1, y1 = box
    rotation = _normalize_radians(-math.atan2(-(end[1] - start[1]), end[0] - start[0]))
    side = max(x1 - x0, y1 - y0) * 1.5
    return Roi((x0 + x1) / 2, (y0 + y1) / 2, side, side, rotation)


def _roi_iou(a: Roi, b: Roi) -> float:
    boxes = np.array([[b.cx - b.width / 2, b.cy - b.height / 2, b.cx + b.width / 2, b.cy + b.height / 2]])
    box = np.array([a.cx - a.width / 2, a.cy - a.height / 2, a.cx + a.width / 2, a.cy + a.height / 2])
    return float(_iou(box, boxes)[0])


#: the attention heads' landmarks in the 478-point mesh (``tensors_to_face_landmarks_with_attention``)
LIPS = (
    *(61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409),
    *(78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415),
    *(76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408),
    *(62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407),
)
RIGHT_EYE = (  # the subject's right eye: the picture's left
    *(33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173),
    *(130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190),
    *(226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189),
    *(35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245),
    *(156, 70, 63, 105, 66, 107, 55, 193),
)
LEFT_EYE = (
    *(263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398),
    *(359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414),
    *(446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413),
    *(265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349, 350, 357, 465),
    *(383, 300, 293, 334, 296, 336, 285, 417),
)
RIGHT_IRIS, LEFT_IRIS = tuple(range(468, 473)), tuple(range(473, 478))


def _require_opencv() -> None:
    try:
        import cv2  # noqa: F401  (the crops and warps)
    except ImportError:
        raise PirenderError("face tracking needs OpenCV: pip install 'pirender-live[track]'") from None


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise PirenderError(f"face models need an (H, W, 3) uint8 RGB picture, got {rgb.dtype} {rgb.shape}")


class FaceLandmarker:
    """The face mesh with attention: up to ``max_faces`` faces, each (478, 3) landmarks in pixels.

    ``static_images``: every picture is new (detection every time); otherwise a video: faces are
    followed from the previous frame's landmarks, detection runs while fewer than ``max_faces`` are
    followed. A face needs a detection score of ``min_detection`` and a presence score (the mesh
    model's) of ``min_presence`` (MediaPipe's ``min_detection_confidence`` and
    ``min_tracking_confidence``).

    Raises:
        PirenderError: a model file is missing.
    """

    def __init__(
        self,
        *,
        max_faces: int = 1,
        min_detection: float = 0.5,
        min_presence: float = 0.5,
        static_images: bool = False,
    ) -> None:
        _require_opencv()
        self.detector = FaceDetector("short", min_score=min_detection)
        self.mesh = fast_runner(MESH_MODEL)
        self.max_faces, self.min_presence, self.static_images = max_faces, min_presence, static_images
        self._previous: list[Roi] = []

    def reset(self) -> None:
        """Forget the faces followed (the next picture starts a new video)."""
        self._previous = []

    def detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        """All faces of an (H, W, 3) uint8 RGB frame: a list of (478, 3) float64 pixel landmarks."""
        _check_rgb(rgb)
        previous = [] if self.static_images else self._previous
        from_detections: list[Roi] = []
        if len(previous) < self.max_faces:
            for face in self.detector.detect(rgb, max_faces=self.max_faces):
                from_detections.append(_roi(face.box, face.keypoints[0], face.keypoints[1]))
        rois: list[Roi] = []
        for roi in [*from_detections, *previous]:  # a later region replaces those it overlaps
            rois = [kept for kept in rois if _roi_iou(kept, roi) <= 0.5]
            rois.append(roi)
        faces, followed = [], []
        for roi in rois:
            landmarks = self._landmarks(rgb, roi)
            if landmarks is None:
                continue
            faces.append(landmarks)
            low, high = landmarks[:, :2].min(axis=0), landmarks[:, :2].max(axis=0)
            box = (float(low[0]), float(low[1]), float(high[0]), float(high[1]))
            followed.append(_roi(box, landmarks[33], landmarks[263]))
        self._previous = followed
        return faces

    def _landmarks(self, rgb: np.ndarray, roi: Roi) -> np.ndarray | None:
        """The 478 refined landmarks (pixels) of the face in ``roi``, or None if the mesh model says
        no face is there."""
        import cv2

        rect = ((roi.cx, roi.cy), (roi.width, roi.height), math.degrees(roi.rotation))
        corners = cv2.boxPoints(rect).astype(np.float32)
        target = np.array([[0, _MESH_PX], [0, 0], [_MESH_PX, 0], [_MESH_PX, _MESH_PX]], dtype=np.float32)
        warp = cv2.getPerspectiveTransform(corners, target)
        crop = cv2.warpPerspective(
            rgb, warp, (_MESH_PX, _MESH_PX), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        out = self.mesh((crop.astype(np.float32) / 255.0)[None])
        presence = 1.0 / (1.0 + math.exp(-float(np.clip(out["conv_faceflag"].reshape(-1)[0], -100, 100))))
        if presence < self.min_presence:
            return None
        points = np.zeros((478, 3), dtype=np.float64)
        points[:468] = out["output_mesh_identity"].reshape(468, 3)
        for indices, name in (
            (LIPS, "output_lips"),
            (RIGHT_EYE, "output_left_eye"),
            (LEFT_EYE, "output_right_eye"),
        ):
            points[list(indices), :2] = out[name].reshape(-1, 2)
        for iris, eye, name in (
            (RIGHT_IRIS, RIGHT_EYE, "output_left_iris"),
            (LEFT_IRIS, LEFT_EYE, "output_right_iris"),
        ):
            points[list(iris), :2] = out[name].reshape(-1, 2)
            points[list(iris), 2] = points[list(eye[:16]), 2].mean()
        # crop pixels -> picture pixels: about the ROI's centre, rotated, scaled (z like x)
        centered = points[:, :2] / _MESH_PX - 0.5
        cos, sin = math.cos(roi.rotation), math.sin(roi.rotation)
        x = (cos * centered[:, 0] - sin * centered[:, 1]) * roi.width + roi.cx
        y = (sin * centered[:, 0] + cos * centered[:, 1]) * roi.height + roi.cy
        z = points[:, 2] / _MESH_PX * roi.width
        return np.stack([x, y, z], axis=1)
