"""MediaPipe's face models run by the project (engine/track/tflite_graph.py, face_models.py), held to
what MediaPipe 0.10.14 itself gave on real footage (tests/data/face_reference.npz, written by
tests/data/make_face_reference.py)."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from pirender.engine.errors import PirenderError
from pirender.engine.track import tflite_graph
from pirender.engine.track.face_models import MESH_MODEL, FaceDetector, FaceLandmarker

from conftest import shared_data

REFERENCE = np.load(Path(__file__).resolve().parent / "data" / "face_reference.npz")
CLIPS = ("DPE__d.mp4", "LipNet__bbaf2n.mpg")
PORTRAITS = ("id10010_Fi21gDronE4_001686_002204_00079.jpg", "id10068_vqs1ZvoJ4XY_010464_010913_00138.jpg")


def _frames(name: str, count: int) -> list[np.ndarray]:
    with av.open(str(shared_data("talking", name))) as container:
        return [
            f.to_ndarray(format="rgb24")
            for _, f in zip(range(count), container.decode(video=0), strict=False)
        ]


def _eye_distance(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[33, :2] - points[263, :2]))


@pytest.mark.parametrize("clip", range(len(CLIPS)))
def test_the_face_mesh_follows_a_video_as_mediapipe_does(clip: int) -> None:
    """Video mode, up to 3 faces (the tracker's setting): the 478 landmarks of every frame within a
    fraction of a pixel of MediaPipe's own."""
    landmarker = FaceLandmarker(max_faces=3)
    errors = []
    for index, rgb in enumerate(_frames(CLIPS[clip], 12)):
        faces = landmarker.detect(rgb)
        expected = REFERENCE[f"clip{clip}_frame{index}"]
        assert len(faces) == 1 and faces[0].shape == (478, 3)
        errors.append(np.abs(faces[0] - expected))
    error = np.stack(errors)
    scale = _eye_distance(REFERENCE[f"clip{clip}_frame0"])
    assert error[..., :2].mean() < 0.002 * scale and error[..., :2].max() < 0.01 * scale, error.max()
    assert error[..., 2].mean() < 0.002 * scale


@pytest.mark.parametrize("portrait", range(len(PORTRAITS)))
def test_still_portraits_get_mediapipes_landmarks(portrait: int) -> None:
    rgb = np.asarray(Image.open(shared_data("vox_demo", PORTRAITS[portrait])).convert("RGB"))
    faces = FaceLandmarker(max_faces=3, static_images=True).detect(rgb)
    expected = REFERENCE[f"portrait{portrait}"]
    assert len(faces) == 1
    assert np.abs(faces[0] - expected)[:, :2].max() < 0.01 * _eye_distance(expected)


def _small_face_picture() -> np.ndarray:
    portrait = Image.open(shared_data("vox_demo", PORTRAITS[0])).convert("RGB").resize((140, 140))
    canvas = Image.new("RGB", (640, 480), (120, 130, 140))
    canvas.paste(portrait, (400, 60))
    return np.asarray(canvas)


@pytest.mark.parametrize("reach", ["short", "full"])
def test_blazeface_finds_the_faces_mediapipe_finds(reach: str) -> None:
    """Every face MediaPipe's detector reports is found with its score (within 0.01), box and
    keypoints (within 2 % of the face's size). At this low threshold (0.1) the runner may also
    report weak candidates MediaPipe does not (below 0.35 here; the project's callers take the best)."""
    pictures = [np.asarray(Image.open(shared_data("vox_demo", p)).convert("RGB")) for p in PORTRAITS]
    pictures.append(_small_face_picture())
    detector = FaceDetector(reach, min_score=0.1)  # type: ignore[arg-type]
    for index, rgb in enumerate(pictures):
        expected = REFERENCE[f"detect{0 if reach == 'short' else 1}_picture{index}"]
        found = detector.detect(rgb)
        for row in expected:
            side = row[3] - row[1]
            face = min(found, key=lambda f: float(np.abs(np.array(f.box) - row[1:5]).max()))
            assert face.score == pytest.approx(row[0], abs=0.01)
            assert np.abs(np.array(face.box) - row[1:5]).max() < 0.02 * side
            assert np.abs(face.keypoints.ravel() - row[5:]).max() < 0.02 * side
        assert found[0].score == pytest.approx(expected[0][0], abs=0.01)  # the best is MediaPipe's best
        assert all(f.score < 0.35 for f in found[len(expected) :])


def test_no_face_no_landmarks_and_bad_pictures_are_refused() -> None:
    landmarker = FaceLandmarker()
    assert landmarker.detect(np.full((240, 320, 3), 90, np.uint8)) == []
    with pytest.raises(PirenderError, match="uint8 RGB"):
        landmarker.detect(np.zeros((10, 10), np.uint8))


def test_the_graph_runner_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(PirenderError, match="not found"):
        tflite_graph.TFLiteGraph.load(tmp_path / "missing.tflite")
    (tmp_path / "junk.tflite").write_bytes(b"\x00" * 64)
    with pytest.raises(PirenderError):
        tflite_graph.TFLiteGraph.load(tmp_path / "junk.tflite")
    graph = tflite_graph.TFLiteGraph.load(MESH_MODEL)
    with pytest.raises(PirenderError, match="must be"):
        graph(np.zeros((1, 64, 64, 3), np.float32))


def test_the_attention_ops_map_a_patch_onto_its_region_and_back() -> None:
    """Landmarks2TransformMatrix -> TransformTensorBilinear -> TransformLandmarks on a known region:
    a square of landmarks turned by 30 degrees; the patch's corners land on the region's corners."""
    angle = math.radians(30)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    square = np.array([[-8, -8], [8, -8], [8, 8], [-8, 8]], dtype=np.float64) @ rotation.T + [24, 20]
    landmarks = torch.zeros(1, 4, 3)
    landmarks[0, :, :2] = torch.from_numpy(square)
    options = {
        "left_rotation_idx": 0, "right_rotation_idx": 1, "subset_idxs": [0, 1, 2, 3], "output_width": 16,
        "output_height": 16, "scale_x": 1.0, "scale_y": 1.0, "target_rotation_radians": 0.0,
    }  # fmt: skip
    op = tflite_graph._Op("CUSTOM:Landmarks2TransformMatrix", [], [], options)
    (matrix,) = tflite_graph._landmarks_to_transform_matrix(op, [landmarks])
    corners = torch.tensor([[[0.0, 0.0], [16.0, 0.0], [16.0, 16.0], [0.0, 16.0]]])
    back = tflite_graph._transform_landmarks(
        tflite_graph._Op("CUSTOM:TransformLandmarks", [], []), [corners, matrix]
    )
    assert np.allclose(back[0][0].numpy(), square, atol=1e-4)  # the patch spans the region, turned
    features = torch.arange(48 * 48, dtype=torch.float32).reshape(1, 48, 48, 1)  # value = 48 y + x
    sample = tflite_graph._Op(
        "CUSTOM:TransformTensorBilinear", [], [], {"output_width": 16, "output_height": 16}
    )
    (patch,) = tflite_graph._transform_tensor_bilinear(sample, [features, matrix])
    centre = square.mean(axis=0)  # the patch's middle reads the region's middle
    expected = 48 * (centre[1] - 0.5) + (centre[0] - 0.5)
    assert float(patch[0, 7:9, 7:9, 0].mean()) == pytest.approx(expected, abs=1.0)


def test_onnx_runtime_and_the_torch_runner_compute_the_same_mesh() -> None:
    from pirender.engine.track.tflite_graph import fast_runner

    crop = np.asarray(Image.open(shared_data("vox_demo", PORTRAITS[0])).convert("RGB").resize((192, 192)))
    x = (crop.astype(np.float32) / 255.0)[None]
    torch_out = tflite_graph.TFLiteGraph.load(MESH_MODEL)(x)
    fast_out = fast_runner(MESH_MODEL)(x)
    assert set(torch_out) == set(fast_out)
    for name, value in torch_out.items():
        assert np.abs(fast_out[name] - value).max() < 1e-3 * max(1.0, float(np.abs(value).max()))
