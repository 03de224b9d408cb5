"""Face landmarks from MediaPipe's face mesh (478 points with irises, 3D), the named index sets and the
measures every module takes from them (eye centres, the landmarks' box); the one place the face mesh
and the BlazeFace detectors (of ``face_check`` and ``crop``) are started.

Coordinates are pixels of the analysed image: x right, y down, z depth in the same pixel scale
(smaller z = closer to the camera), as MediaPipe scales z like x. "Left"/"right" are the *subject's*
(MediaPipe's ``LEFT_*`` sets lie on the image's right side for an unmirrored picture).

MediaPipe's models (Apache 2.0, ``engine/track/models``) are run by ``face_models`` without MediaPipe
(``pip install 'pirender-live[track]'``: the TFLite reader, ONNX Runtime, OpenCV).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .face_models import FaceDetector, FaceLandmarker

LANDMARK_COUNT = 478

# Named landmarks (MediaPipe face-mesh indices).
FOREHEAD = 10
CHIN = 152
NOSE_TIP = 1
RIGHT_EYE_OUTER, RIGHT_EYE_INNER, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER = 33, 133, 159, 145
LEFT_EYE_OUTER, LEFT_EYE_INNER, LEFT_EYE_UPPER, LEFT_EYE_LOWER = 263, 362, 386, 374
RIGHT_IRIS_CENTER, LEFT_IRIS_CENTER = 468, 473
MOUTH_RIGHT, MOUTH_LEFT = 61, 291  # corners: the subject's right is on the image's left
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
UPPER_LIP_OUTER, LOWER_LIP_OUTER = 0, 17
RIGHT_BROW = (70, 63, 105, 66, 107, 46, 53, 52, 65, 55)
LEFT_BROW = (300, 293, 334, 296, 336, 276, 283, 282, 295, 285)
RIGHT_BROW_INNER, LEFT_BROW_INNER = 107, 336
RIGHT_BROW_MID, LEFT_BROW_MID = 105, 334

#: Eyelids (upper and lower rims, without the corners), for blinking.
RIGHT_UPPER_LID = (246, 161, 160, 159, 158, 157, 173)
RIGHT_LOWER_LID = (7, 163, 144, 145, 153, 154, 155)
LEFT_UPPER_LID = (466, 388, 387, 386, 385, 384, 398)
LEFT_LOWER_LID = (249, 390, 373, 374, 380, 381, 382)
RIGHT_IRIS = (468, 469, 470, 471, 472)
LEFT_IRIS = (473, 474, 475, 476, 477)

#: Inner lip contour, upper then lower (corner to corner), for the mouth opening.
UPPER_LIP_INNER_RING = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_LIP_INNER_RING = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
UPPER_LIP_OUTER_RING = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_LIP_OUTER_RING = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)

#: Points that move little with expression: pose is fitted on them.
STABLE = (
    *(10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1),  # midline: forehead, nose bridge, nose tip
    *(109, 67, 103, 338, 297, 332),  # upper forehead
    *(33, 133, 263, 362),  # eye corners
    *(234, 93, 127, 454, 323, 356),  # temples and cheek sides
    *(116, 123, 345, 352),  # cheekbones
)

#: The face outline, clockwise from the forehead.
FACE_OVAL = (
    *(10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152),
    *(148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109),
)

#: Mirror pairs (subject's right, subject's left) used to find the face's left-right axis.
SYMMETRIC_PAIRS = (
    (33, 263), (133, 362), (234, 454), (93, 323), (127, 356), (116, 345), (123, 352),
    (67, 297), (109, 338), (103, 332), (61, 291), (58, 288), (172, 397), (136, 365),
)  # fmt: skip


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centres of the subject's right eye (image left) and left eye (image right): the middle of
    each eye's two corners, of (478, D) landmarks, as (D,) arrays in the landmarks' units (3D pixels:
    their distance, the inter-ocular distance, does not shrink when the head turns)."""
    right = (points[RIGHT_EYE_OUTER] + points[RIGHT_EYE_INNER]) / 2
    left = (points[LEFT_EYE_OUTER] + points[LEFT_EYE_INNER]) / 2
    return right, left


def landmark_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of (N, 2+) landmarks' x and y, in their units (pixels)."""
    low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    return float(low[0]), float(low[1]), float(high[0]), float(high[1])


def box_area(box: tuple[float, ...]) -> float:
    """Area of a (left, top, right, bottom) box (square pixels; 0 for an empty box)."""
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """The five alignment points of Deep3DFaceRecon (5, 2), image order: eye centres (image left
    first), nose tip, mouth corners (image left first)."""
    image_left_eye, image_right_eye = eye_centres(landmarks[:, :2])
    return np.stack(
        [
            image_left_eye,
            image_right_eye,
            landmarks[NOSE_TIP, :2],
            landmarks[MOUTH_RIGHT, :2],
            landmarks[MOUTH_LEFT, :2],
        ]
    ).astype(np.float64)


def face_detector(model_selection: int, min_detection_confidence: float) -> FaceDetector:
    """MediaPipe's BlazeFace face detector (``model_selection`` 0: short range, faces filling the
    picture; 1: full range, smaller faces), run by ``face_models.FaceDetector``. ``detect(rgb)``
    gives its faces, best first; ``close`` is a no-op (kept for the callers' context managers)."""
    return FaceDetector("full" if model_selection else "short", min_score=min_detection_confidence)


@dataclass(frozen=True)
class FaceMeshConfig:
    max_faces: int = 3  # several are detected so the tracker can follow one of them consistently
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5


class FaceMesh:
    """MediaPipe's face mesh with refined landmarks (``face_models.FaceLandmarker``: MediaPipe's
    models and graph, run without MediaPipe) in video mode: detection runs only while fewer than
    ``max_faces`` faces are followed. ``static_images=True`` treats every call as a new picture.

    Raises:
        PirenderError: the face models (``engine/track/models``) are missing.
    """

    def __init__(self, config: FaceMeshConfig | None = None, *, static_images: bool = False) -> None:
        self.config = config or FaceMeshConfig()
        self._landmarker = FaceLandmarker(
            max_faces=self.config.max_faces,
            min_detection=self.config.min_detection_confidence,
            min_presence=self.config.min_tracking_confidence,
            static_images=static_images,
        )

    def detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        """All faces of an (H, W, 3) uint8 RGB frame: a list of (478, 3) float64 pixel landmarks
        (PirenderError for any other array: ``FaceLandmarker.detect`` checks it)."""
        return self._landmarker.detect(np.ascontiguousarray(rgb))

    def reset(self) -> None:
        """Start a new video: forget the faces followed so far (the next frame is detected afresh)."""
        self._landmarker.reset()

    def close(self) -> None:
        """Nothing to release (kept so callers can use the mesh as a context manager)."""

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
