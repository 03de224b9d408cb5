"""Writes tests/data/face_reference.npz: what MediaPipe 0.10.14 itself (``mediapipe.solutions``) gives
on real footage, for tests/test_face_models.py to hold the project's own runner of MediaPipe's face
models to. Run once with mediapipe 0.10.14 installed (it was, when this file was made):

    .venv/bin/python tests/data/make_face_reference.py

Footage (../shared/data): the first 12 frames of two talking clips (video mode, max 3 faces: the
tracker's setting) and two portraits (static mode); BlazeFace short- and full-range detections of the
portraits and of a 640x480 picture with a small face.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import av
import numpy as np
from PIL import Image

warnings.simplefilter("ignore")
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CLIPS = ("talking/DPE__d.mp4", "talking/LipNet__bbaf2n.mpg")
PORTRAITS = (
    "vox_demo/id10010_Fi21gDronE4_001686_002204_00079.jpg",
    "vox_demo/id10068_vqs1ZvoJ4XY_010464_010913_00138.jpg",
)
FRAMES = 12


def small_face_picture() -> np.ndarray:
    portrait = Image.open(DATA / PORTRAITS[0]).convert("RGB").resize((140, 140))
    canvas = Image.new("RGB", (640, 480), (120, 130, 140))
    canvas.paste(portrait, (400, 60))
    return np.asarray(canvas)


def main() -> None:
    from mediapipe.python import solutions

    out: dict[str, np.ndarray] = {}
    for k, clip in enumerate(CLIPS):
        with av.open(str(DATA / clip)) as container:
            frames = [
                f.to_ndarray(format="rgb24")
                for _, f in zip(range(FRAMES), container.decode(video=0), strict=False)
            ]
        with solutions.face_mesh.FaceMesh(max_num_faces=3, refine_landmarks=True) as mesh:
            for i, rgb in enumerate(frames):
                result = mesh.process(rgb)
                height, width = rgb.shape[:2]
                face = result.multi_face_landmarks[0].landmark
                out[f"clip{k}_frame{i}"] = np.array(
                    [(p.x * width, p.y * height, p.z * width) for p in face], np.float32
                )
    pictures = [np.asarray(Image.open(DATA / p).convert("RGB")) for p in PORTRAITS] + [small_face_picture()]
    for k, rgb in enumerate(pictures[:2]):
        with solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=3, refine_landmarks=True
        ) as mesh:
            face = mesh.process(rgb).multi_face_landmarks[0].landmark
        height, width = rgb.shape[:2]
        out[f"portrait{k}"] = np.array([(p.x * width, p.y * height, p.z * width) for p in face], np.float32)
    for model in (0, 1):
        with solutions.face_detection.FaceDetection(
            model_selection=model, min_detection_confidence=0.1
        ) as detector:
            for k, rgb in enumerate(pictures):
                height, width = rgb.shape[:2]
                rows = []
                for d in detector.process(rgb).detections or ():
                    box = d.location_data.relative_bounding_box
                    points = [(p.x * width, p.y * height) for p in d.location_data.relative_keypoints]
                    x0, y0 = box.xmin * width, box.ymin * height
                    x1, y1 = x0 + box.width * width, y0 + box.height * height
                    rows.append([d.score[0], x0, y0, x1, y1, *np.ravel(points)])
                out[f"detect{model}_picture{k}"] = np.array(rows, np.float32).reshape(-1, 17)
    path = Path(__file__).with_name("face_reference.npz")
    np.savez_compressed(path, **out)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB, {len(out)} arrays)")


if __name__ == "__main__":
    main()
