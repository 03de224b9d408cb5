"""The one rule for "is this a human face" (track/face_check.py), on real faces and real non-faces."""

from __future__ import annotations

import glob

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import SHARED_DATA, shared_data

pytest.importorskip("tflite")

from pirender.engine.errors import PirenderError
from pirender.engine.track import landmarks as lm
from pirender.engine.track.crop import FaceFinder
from pirender.engine.track.face_check import HUMAN_FACE_MIN_SCORE, HumanFaceCheck
from pirender.engine.track.landmarks import FaceMesh


@pytest.fixture(scope="module")
def finder() -> FaceFinder:
    with FaceFinder() as found:
        yield found


@pytest.fixture(scope="module")
def check() -> HumanFaceCheck:
    with HumanFaceCheck() as rule:
        yield rule


def _grace() -> np.ndarray:
    from matplotlib import cbook

    return np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))


def _rgb(*parts: str) -> np.ndarray:
    return np.asarray(Image.open(shared_data(*parts)).convert("RGB"))


def _first_frame(path: str) -> np.ndarray:
    import av

    with av.open(path) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index == 10:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"{path} is shorter than 11 frames")


def _human_pictures() -> list[tuple[str, np.ndarray]]:
    """Photos (VoxCeleb crops), paintings (s0, s3, s5), a cartoon (s7), an old black-and-white photo
    (s12) and video frames of the driving and talking clips (every 10th clip)."""
    pictures = [(path.rsplit("/", 1)[-1], _rgb("vox_demo", path.rsplit("/", 1)[-1]))
                for path in sorted(glob.glob(str(SHARED_DATA / "vox_demo" / "*.jpg")))]  # fmt: skip
    pictures += [(f"s{n}", _rgb("portraits", f"s{n}.jpg")) for n in (0, 3, 5, 7, 12)]
    clips = sorted(glob.glob(str(SHARED_DATA / "driving" / "*.mp4")))
    clips += sorted(glob.glob(str(SHARED_DATA / "talking" / "*.mp4")))[::10]
    pictures += [(clip.rsplit("/", 1)[-1], _first_frame(clip)) for clip in clips]
    return pictures


def test_human_faces_of_every_kind_are_accepted(finder: FaceFinder, check: HumanFaceCheck) -> None:
    shared_data("vox_demo")
    pictures = _human_pictures()
    assert len(pictures) >= 11 + 5 + 6
    for name, rgb in pictures:
        faces = finder.find(rgb)
        assert len(faces) == 1, name
        verdict = check.check(rgb, faces[0].landmarks)
        assert verdict.human and verdict.score >= HUMAN_FACE_MIN_SCORE and verdict.reason == "", name


def test_the_tracker_s_landmarks_work_too(check: HumanFaceCheck) -> None:
    """The rule takes the face mesh's own landmarks (what the tracker has), in the frame's pixels."""
    grace = _grace()
    with FaceMesh() as mesh:
        points = mesh.detect(grace)[0]
    verdict = check.check(grace, points)
    assert verdict.human, verdict.reason
    turned = np.asarray(Image.fromarray(grace).rotate(25, expand=True, fillcolor=(128, 128, 128)))
    with FaceMesh(static_images=True) as mesh:
        points = mesh.detect(turned)[0]
    assert check.check(turned, points).human  # a tilted head: the check looks at it upright


def _placed(reference: np.ndarray, centre: tuple[float, float], width_px: float) -> np.ndarray:
    """A face's landmarks moved and scaled so that they span ``width_px`` around ``centre``."""
    scale = width_px / np.ptp(reference[:, 0])
    middle = np.array([*reference[:, :2].mean(axis=0), 0.0])
    return (reference - middle) * scale + np.array([centre[0], centre[1], 0.0])


def test_a_dog_is_refused_even_where_a_mesh_is_put_on_it(finder: FaceFinder, check: HumanFaceCheck) -> None:
    """The dog (portraits/s33) has no human face; a face mesh that lands on it anyway (as MediaPipe's
    did on an alpaca's muzzle in ``track``) is refused wherever it lies."""
    dog = _rgb("portraits", "s33.jpg")
    assert finder.find(dog) == []
    reference = finder.find(_grace())[0].landmarks
    height, width = dog.shape[:2]
    for size in (0.25, 0.45):
        for cx in np.linspace(0.3, 0.7, 3):
            for cy in np.linspace(0.3, 0.7, 3):
                verdict = check.check(dog, _placed(reference, (cx * width, cy * height), size * width))
                assert not verdict.human and verdict.score < HUMAN_FACE_MIN_SCORE
                assert verdict.reason.startswith("no human face seen there")


def test_pictures_without_a_face_give_none(finder: FaceFinder, check: HumanFaceCheck) -> None:
    smiley = Image.new("RGB", (512, 512), (230, 200, 60))
    draw = ImageDraw.Draw(smiley)
    draw.ellipse((150, 150, 210, 230), fill=(0, 0, 0))
    draw.ellipse((300, 150, 360, 230), fill=(0, 0, 0))
    draw.arc((140, 220, 370, 400), 20, 160, fill=(0, 0, 0), width=14)
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    flat = np.full((480, 640, 3), 128, dtype=np.uint8)
    for picture in (np.asarray(smiley), noise, flat):
        assert finder.find(picture) == []
    reference = finder.find(_grace())[0].landmarks
    verdict = check.check(noise, _placed(reference, (320, 240), 200))
    assert not verdict.human


def test_shapes_no_human_face_has_are_refused(finder: FaceFinder, check: HumanFaceCheck) -> None:
    grace = _grace()
    points = finder.find(grace)[0].landmarks
    long_chin = points.copy()
    long_chin[lm.CHIN, 1] += 3 * np.ptp(points[:, 0])
    verdict = check.check(grace, long_chin)
    assert not verdict.human and verdict.reason.startswith("not human proportions (eyes to chin")
    coincident = points.copy()
    coincident[[lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER]] = coincident[[lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER]]
    assert "the eyes coincide" in check.check(grace, coincident).reason
    broken = points.copy()
    broken[5, 0] = np.nan
    assert check.check(grace, broken).reason == "landmarks are not finite"


def test_bad_arguments(check: HumanFaceCheck) -> None:
    with pytest.raises(PirenderError, match="uint8 RGB"):
        check.check(np.zeros((64, 64), np.uint8), np.zeros((478, 3)))
    with pytest.raises(PirenderError, match=r"\(478, 3\) landmarks"):
        check.check(np.zeros((64, 64, 3), np.uint8), np.zeros((5, 2)))
