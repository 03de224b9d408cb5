"""Finding the face anywhere in a picture and framing the whole head (track/crop.py).

The expected values of the cases ``5_offcentre_face_crop`` and ``12_very_large_photos`` (their inputs
are rebuilt here the way their recipes build them), and the same kinds of faults on matplotlib's
Grace Hopper, which needs no shared data.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_data

pytest.importorskip("tflite")

from pirender.engine.errors import ImageError
from pirender.engine.track import landmarks as lm
from pirender.engine.track.crop import (
    CROP_SIDE_IOD,
    EYES_FROM_TOP,
    MAX_SHIFT,
    FaceFinder,
    crop_to_face,
    portrait_square,
)


def _grace() -> Image.Image:
    from matplotlib import cbook

    return Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")


@pytest.fixture(scope="module")
def finder() -> FaceFinder:
    with FaceFinder() as found:
        yield found


def _centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _inside(point: tuple[float, float], area: tuple[int, int, int, int]) -> bool:
    return area[0] <= point[0] <= area[2] and area[1] <= point[1] <= area[3]


def _eyes_in_crop(finder: FaceFinder, rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """Eyes' midpoint (x, y) of the largest face as fractions of the picture's side, and its
    eye distance in sides."""
    points = finder.find(rgb)[0].landmarks
    right = points[[lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER]].mean(axis=0)
    left = points[[lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER]].mean(axis=0)
    return (right[:2] + left[:2]) / 2 / rgb.shape[1], float(np.linalg.norm(left - right)) / rgb.shape[1]


# -------------------------------------------------------------------------------------------------
# case 5_offcentre_face_crop (s5 and s12 of the shared portraits)


def _case5_pictures(folder: Path) -> tuple[Path, Path, Path]:
    s5 = Image.open(shared_data("portraits", "s5.jpg")).convert("RGB")
    s12 = Image.open(shared_data("portraits", "s12.jpg")).convert("RGB")
    wide = Image.new("RGB", (1920, 1080), (200, 200, 200))
    wide.paste(s5.resize((500, 500)), (0, 290))
    two = Image.new("RGB", (1920, 1080), (200, 200, 200))
    two.paste(s5.resize((900, 900)), (0, 90))
    two.paste(s12.resize((300, 400)), (810, 340))
    alone = Image.new("RGB", (1920, 1080), (200, 200, 200))
    alone.paste(s5.resize((900, 900)), (0, 90))
    paths = folder / "wide.jpg", folder / "two.jpg", folder / "alone.jpg"
    for picture, path in zip((wide, two, alone), paths, strict=True):
        picture.save(path, quality=92)
    return paths


def test_case5_a_face_at_the_side_of_a_wide_photo_is_found(tmp_path: Path, finder: FaceFinder) -> None:
    wide, _, alone = _case5_pictures(tmp_path)
    faces = finder.find(np.asarray(Image.open(wide)))
    assert len(faces) == 1 and _inside(_centre(faces[0].box), (0, 290, 500, 790))
    with warnings.catch_warnings(record=True):  # the 500 px face gives a small crop: a blur warning
        warnings.simplefilter("always")
        source = crop_to_face(wide, finder=finder)
    assert source.rgb.shape == (256, 256, 3) and source.original_size_px == (1920, 1080)
    eyes, iod = _eyes_in_crop(finder, source.rgb)  # the s5 girl, framed: eyes where the framing puts them
    assert abs(eyes[0] - 0.5) < 0.1 and abs(eyes[1] - EYES_FROM_TOP) < 0.05
    assert abs(iod - 1 / CROP_SIDE_IOD) < 0.04
    # the 900 px face alone at x 0-900 (was "no face found")
    faces = finder.find(np.asarray(Image.open(alone)))
    assert len(faces) == 1 and _inside(_centre(faces[0].box), (0, 90, 900, 990))


def test_case5_the_largest_of_two_faces_is_framed_and_named(tmp_path: Path, finder: FaceFinder) -> None:
    _, two, _ = _case5_pictures(tmp_path)
    faces = finder.find(np.asarray(Image.open(two)))
    assert len(faces) == 2
    assert _inside(_centre(faces[0].box), (0, 90, 900, 990))  # the large s5 girl first
    assert _inside(_centre(faces[1].box), (810, 340, 1110, 740))  # then the small s12 man
    with pytest.warns(UserWarning, match=r"two\.jpg: 2 faces found; framing the largest .* centred at x \d+"):
        source = crop_to_face(two, finder=finder)
    s5_alone = crop_to_face(shared_data("portraits", "s5.jpg"), finder=finder).rgb.astype(np.float64)
    s12_alone = crop_to_face(shared_data("portraits", "s12.jpg"), finder=finder).rgb.astype(np.float64)
    crop = source.rgb.astype(np.float64)
    assert np.abs(crop - s5_alone).mean() < 0.5 * np.abs(crop - s12_alone).mean()


# -------------------------------------------------------------------------------------------------
# case 12_very_large_photos (Grace Hopper centred at half the height of a grey 4:3 canvas)


def _layout(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """make_inputs.py's layout: the portrait at half the picture's height, centred on mid grey."""
    face_h = height // 2
    face_w = round(face_h * 512 / 600)
    picture = Image.new("RGB", (width, height), (128, 128, 128))
    face = _grace().resize((face_w, face_h), Image.Resampling.BICUBIC)
    picture.paste(face, ((width - face_w) // 2, (height - face_h) // 2))
    return picture.convert(mode)


@pytest.mark.parametrize("width", [800, 1200, 1600, 2400, 4000])
def test_case12_a_grey_photo_is_found_at_every_size(tmp_path: Path, width: int, finder: FaceFinder) -> None:
    path = tmp_path / f"grey_{width}.jpg"
    _layout(width, width * 3 // 4, "L").save(path, quality=92)
    source = crop_to_face(path, finder=finder)  # was "no face found" from 1600 px up
    eyes, _ = _eyes_in_crop(finder, source.rgb)
    assert abs(eyes[0] - 0.5) < 0.1 and abs(eyes[1] - EYES_FROM_TOP) < 0.05


def test_case12_a_201_megapixel_photo_is_cropped_with_bounded_memory(tmp_path: Path) -> None:
    """16384 x 12288 (the phone photo's size; above Pillow's 179 MP refusal): decoded at 1/4 scale.
    A full decode would need 0.2 GB (grey) and 0.8 GB as RGB; Pillow would refuse it anyway."""
    big = tmp_path / "big201.jpg"
    _layout(16384, 12288, "L").save(big, quality=60)  # mostly flat: 3 MB, a second to write
    small = tmp_path / "small.jpg"
    _layout(1600, 1200, "L").save(small, quality=92)
    script = textwrap.dedent(
        f"""
        import json, resource, warnings
        import numpy as np
        from pirender.engine.image import read_image
        from pirender.engine.track.crop import FaceFinder, crop_to_face, portrait_square
        warnings.simplefilter("error")  # no decompression-bomb (or any other) warning
        finder = FaceFinder()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        source = crop_to_face({str(big)!r}, finder=finder)
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        squares = []  # the portrait square as fractions of the picture, from the big and the small copy
        for path in ({str(big)!r}, {str(small)!r}):
            rgb = read_image(path).rgb
            left, top, side = portrait_square(finder.find(rgb)[0].landmarks, rgb.shape[1], rgb.shape[0])
            squares.append([left / rgb.shape[1], top / rgb.shape[0], side / rgb.shape[1]])
        print(json.dumps([grown_mb, source.original_size_px, squares]))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    grown_mb, size, (from_big, from_small) = json.loads(result.stdout.strip().splitlines()[-1])
    assert tuple(size) == (16384, 12288)
    assert grown_mb < 300, f"peak memory grew by {grown_mb:.0f} MB"
    np.testing.assert_allclose(from_big, from_small, atol=0.01)  # the same framing of the same face


# -------------------------------------------------------------------------------------------------
# the same kinds on Grace Hopper (no shared data needed)


def test_a_face_at_the_edge_of_a_wide_photo_is_found_and_padded(tmp_path: Path, finder: FaceFinder) -> None:
    canvas = Image.new("RGB", (1920, 1080), (90, 110, 140))
    canvas.paste(_grace().resize((600, 703)), (1920 - 500, -150))  # cut by the right and top edges
    path = tmp_path / "edge.png"
    canvas.save(path)
    source = crop_to_face(path, finder=finder)
    eyes, _ = _eyes_in_crop(finder, source.rgb)
    # moved inwards by at most MAX_SHIFT (the eyes' midpoint lies off the head's centre by a few pixels)
    assert abs(eyes[0] - 0.5) < MAX_SHIFT + 0.05 and abs(eyes[1] - EYES_FROM_TOP) < MAX_SHIFT + 0.03
    faces = finder.find(np.asarray(canvas))
    _, top, side = portrait_square(faces[0].landmarks, 1920, 1080)
    assert top < 0  # the square reaches above the picture: padded there (measured: 82 of 447 px)
    # the padding is smooth (blurred), not streaks of edge pixels: compare the padded top rows' detail
    top_rows = source.rgb[: round(-top * 256 / side) - 1].astype(np.float64)
    assert top_rows.shape[0] > 4
    assert np.abs(np.diff(top_rows, axis=1)).mean() < 3.0


def test_two_faces_frame_the_largest_and_say_so(tmp_path: Path, finder: FaceFinder) -> None:
    canvas = Image.new("RGB", (1600, 900), (200, 200, 200))
    canvas.paste(_grace().resize((512, 600)), (20, 150))  # large, at the left
    canvas.paste(_grace().resize((200, 234)), (760, 330))  # small, in the centre
    path = tmp_path / "two.jpg"
    canvas.save(path, quality=92)
    with pytest.warns(UserWarning, match=r"2 faces found; framing the largest \(\d+ x \d+ px, centred at x"):
        crop_to_face(path, finder=finder)
    faces = finder.find(np.asarray(canvas))
    assert _centre(faces[0].box)[0] < 532 and _centre(faces[1].box)[0] > 760


def test_the_whole_head_is_kept(finder: FaceFinder) -> None:
    """The crop reaches well above the eyes (the cap and hair of the demo portrait) and below the chin."""
    grace = np.asarray(_grace())
    points = finder.find(grace)[0].landmarks
    _, top, side = portrait_square(points, grace.shape[1], grace.shape[0])
    right_eye = points[[lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER]].mean(axis=0)
    left_eye = points[[lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER]].mean(axis=0)
    iod = float(np.linalg.norm(left_eye - right_eye))
    eyes_y = (right_eye[1] + left_eye[1]) / 2
    assert eyes_y - top > 2.0 * iod  # the crown lies 1.7-2.0 eye distances above the eyes
    assert top + side - points[lm.CHIN, 1] > 0.4 * iod  # the chin with some neck


def test_a_picture_already_framed_is_kept_as_it_is(finder: FaceFinder) -> None:
    vox = np.asarray(Image.open(shared_data("vox_demo", "id10010_Fi21gDronE4_001686_002204_00079.jpg")))
    np.testing.assert_array_equal(crop_to_face(vox, finder=finder).rgb, vox)


def test_no_face_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "flat.png"
    Image.new("RGB", (640, 480), (120, 130, 140)).save(path)
    with pytest.raises(ImageError, match=r"flat\.png: no human face found to crop around \(searched"):
        crop_to_face(path)
    with pytest.raises(ImageError, match="file not found"):  # the loader's errors, unchanged
        crop_to_face(tmp_path / "missing.jpg")


def test_a_small_face_is_found_by_the_tiles(finder: FaceFinder) -> None:
    """A face too small for the whole-picture pass (about 4 % of a 1920 px width) is found by the tiles."""
    canvas = Image.new("RGB", (1920, 1080), (170, 160, 150))
    canvas.paste(_grace().resize((150, 176)), (1500, 700))
    faces = finder.find(np.asarray(canvas))
    assert len(faces) == 1 and _inside(_centre(faces[0].box), (1500, 700, 1650, 876))
