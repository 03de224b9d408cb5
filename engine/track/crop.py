"""Framing a portrait like the model's home domain: the face centred and filling most of the frame."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ..errors import PirenderError
from ..image import SourceImage, load_source_image
from . import landmarks as lm
from .landmarks import FaceMesh

#: side of the square crop in inter-ocular distances (VoxCeleb-style head-and-shoulders framing)
CROP_SIDE_IOD = 4.4
#: the crop centre sits this many IOD below the eyes' midpoint (around the nose)
CENTER_BELOW_EYES_IOD = 0.55


def crop_to_face(
    path_or_image: str | os.PathLike[str] | Image.Image | np.ndarray, *, size_px: int = 256
) -> SourceImage:
    """A square crop around the largest face, resized to ``size_px``; the whole (centre-cropped)
    picture when the face is already large. Raises PirenderError when no face is found."""
    square = load_source_image(path_or_image, size_px=_shorter_side(path_or_image))
    side_px = square.rgb.shape[0]
    with FaceMesh(static_images=True) as mesh:
        faces = mesh.detect(square.rgb)
    if not faces:
        raise PirenderError(f"no face found in {square.path or 'the image'} to crop around")
    points = max(faces, key=lambda f: np.ptp(f[:, 0]) * np.ptp(f[:, 1]))
    eyes = (points[[lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER, lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER], :2]).mean(
        0
    )
    iod_px = float(
        np.linalg.norm(
            points[[lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER], :2].mean(0)
            - points[[lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER], :2].mean(0)
        )
    )
    crop_px = min(side_px, round(CROP_SIDE_IOD * iod_px))
    center = eyes + np.array([0.0, CENTER_BELOW_EYES_IOD * iod_px])
    left = int(np.clip(round(center[0] - crop_px / 2), 0, side_px - crop_px))
    top = int(np.clip(round(center[1] - crop_px / 2), 0, side_px - crop_px))
    cropped = square.rgb[top : top + crop_px, left : left + crop_px]
    result = load_source_image(cropped, size_px=size_px)
    return SourceImage(rgb=result.rgb, path=square.path, original_size_px=square.original_size_px)


def _shorter_side(path_or_image: str | os.PathLike[str] | Image.Image | np.ndarray) -> int:
    if isinstance(path_or_image, np.ndarray):
        return int(min(path_or_image.shape[:2]))
    if isinstance(path_or_image, Image.Image):
        return int(min(path_or_image.size))
    try:
        with Image.open(path_or_image) as image:
            return int(min(image.size))
    except (OSError, ValueError):
        return 256  # load_source_image reports what is wrong with the file
