"""The virtual webcam: clear errors without pyvirtualcam or a loopback device, and the live loop
feeding a (fake) pyvirtualcam camera and a preview file at the input's rate."""

from __future__ import annotations

import itertools
import platform
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import av
import numpy as np
import pytest

from pirender.engine import live
from pirender.engine.errors import PirenderError
from pirender.engine.live import RealTimePacer, run_webcam
from pirender.engine.sinks.video_file import read_video_info
from pirender.engine.sinks.virtual_cam import VirtualCamera, setup_hint

from conftest import shared_data

PORTRAIT = ("vox_demo", "id10010_Fi21gDronE4_001686_002204_00079.jpg")
DRIVING = ("driving", "d20.mp4")


class _FakeCamera:
    """Stands in for ``pyvirtualcam.Camera``: records what it is given."""

    opened: ClassVar[list[_FakeCamera]] = []

    def __init__(self, width: int, height: int, fps: float, **options: Any) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.options = options
        self.frames: list[np.ndarray] = []
        self.closed = False
        self.backend = "fake"
        self.device = "/dev/video-fake"
        _FakeCamera.opened.append(self)

    def send(self, frame: np.ndarray) -> None:
        self.frames.append(frame.copy())

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_pyvirtualcam(monkeypatch: pytest.MonkeyPatch) -> type[_FakeCamera]:
    module = types.ModuleType("pyvirtualcam")
    module.Camera = _FakeCamera  # type: ignore[attr-defined]
    module.PixelFormat = types.SimpleNamespace(RGB="RGB")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyvirtualcam", module)
    monkeypatch.setattr(_FakeCamera, "opened", [])
    return _FakeCamera


def test_no_loopback_device_says_what_to_install() -> None:
    pytest.importorskip("pyvirtualcam")
    try:
        camera = VirtualCamera(size_px=(256, 256), fps=25.0)
    except PirenderError as exc:
        message = str(exc)
    else:
        camera.close()
        pytest.skip(f"this machine has a working virtual camera ({camera.describe()})")
    assert "\n" not in message
    assert message.startswith("virtual camera: no virtual camera device")
    if platform.system() == "Linux":
        assert "v4l2loopback" in message and "sudo modprobe v4l2loopback" in message
        assert "apt install v4l2loopback-dkms" in message
    else:
        assert "OBS Studio" in message


def test_setup_hint_per_system() -> None:
    assert "modprobe v4l2loopback devices=1 exclusive_caps=1" in setup_hint("Linux")
    assert "OBS Studio" in setup_hint("Windows") and "OBS Studio" in setup_hint("Darwin")


def test_missing_pyvirtualcam_says_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)
    with pytest.raises(PirenderError, match="pip install pyvirtualcam"):
        VirtualCamera(size_px=(256, 256), fps=25.0)


def test_bad_arguments_and_frames(fake_pyvirtualcam: type[_FakeCamera]) -> None:
    with pytest.raises(PirenderError, match="size_px"):
        VirtualCamera(size_px=(0, 256), fps=25.0)
    with pytest.raises(PirenderError, match="fps"):
        VirtualCamera(size_px=(256, 256), fps=0.0)
    with VirtualCamera(size_px=(64, 32), fps=30.0) as camera:
        with pytest.raises(PirenderError, match=r"\(32, 64, 3\)"):
            camera.send(np.zeros((64, 32, 3), np.uint8))
        camera.send(np.zeros((32, 64, 3), np.uint8))
        assert camera.describe() == "virtual camera /dev/video-fake (fake), 64x32 at 30 frames/s"
    (fake,) = fake_pyvirtualcam.opened
    assert (fake.width, fake.height, fake.fps, fake.options["fmt"]) == (64, 32, 30.0, "RGB")
    assert len(fake.frames) == 1 and fake.closed
    with pytest.raises(PirenderError, match="after close"):
        camera.send(np.zeros((32, 64, 3), np.uint8))


class _RecordingPacer(RealTimePacer):
    """A pacer on a clock that never moves: records the frame times it is asked to wait for."""

    made: ClassVar[list[_RecordingPacer]] = []

    def __init__(self) -> None:
        self.slept_s: list[float] = []
        super().__init__(clock=lambda: 100.0, sleep=self.slept_s.append)
        self.times_s: list[float] = []
        _RecordingPacer.made.append(self)

    def wait(self, time_s: float) -> float:
        self.times_s.append(time_s)
        return super().wait(time_s)


def test_webcam_feeds_the_virtual_camera_and_the_preview(
    tmp_path: Path, fake_pyvirtualcam: type[_FakeCamera], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tflite")
    monkeypatch.setattr(live, "RealTimePacer", _RecordingPacer)
    monkeypatch.setattr(_RecordingPacer, "made", [])
    preview = tmp_path / "preview.mp4"
    lines: list[str] = []
    stats = run_webcam(
        str(shared_data(*PORTRAIT)),
        camera=str(shared_data(*DRIVING)),
        max_frames=12,
        preview=preview,
        announce=lines.append,
    )
    (fake,) = fake_pyvirtualcam.opened
    assert len(fake.frames) == 12 and fake.closed
    assert all(f.shape == (256, 256, 3) and f.dtype == np.uint8 for f in fake.frames)
    motion = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in itertools.pairwise(fake.frames)]
    assert np.mean(motion) > 0.1  # the avatar follows the driving face
    # announced and paced at the input's rate (d20: 25 frames/s): each frame waits for its own time
    assert fake.fps == 25.0
    assert lines == ["sending to virtual camera /dev/video-fake (fake), 256x256 at 25 frames/s"]
    (pacer,) = _RecordingPacer.made
    np.testing.assert_allclose(pacer.times_s, np.arange(12) / 25, atol=1e-6)
    np.testing.assert_allclose(pacer.slept_s, np.arange(1, 12) / 25, atol=1e-6)  # the clock stood still
    assert stats.frames == 12 and len(stats.stage_ms["sink"]) == 12
    info = read_video_info(preview)
    assert (info.frames, info.width, info.height) == (12, 256, 256)
    assert info.fps == 25.0 and info.duration_s == pytest.approx(12 / 25, abs=1e-3)


def test_webcam_without_a_virtual_camera(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tflite")
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)  # never imported on this path
    preview = tmp_path / "preview.mp4"
    stats = run_webcam(
        str(shared_data(*PORTRAIT)),
        camera=str(shared_data(*DRIVING)),
        max_frames=6,
        preview=preview,
        virtual=False,
        face_crop=True,
    )
    assert stats.frames == 6 and stats.frames_with_face == 6
    assert read_video_info(preview).frames == 6
    with pytest.raises(PirenderError, match="nowhere to send"):
        run_webcam(str(shared_data(*PORTRAIT)), virtual=False)


def test_webcam_fails_fast_before_the_portrait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)
    # the input is opened first (its rate is the virtual camera's), then the virtual camera: both are
    # reported before the portrait is loaded
    with pytest.raises(PirenderError, match=r"'no-such-clip\.mp4': no such file"):
        run_webcam("no-such-portrait.jpg", camera="no-such-clip.mp4")
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("mpeg4", rate=15)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), "rgb24")))
        container.mux(stream.encode(None))
    with pytest.raises(PirenderError, match="pip install pyvirtualcam"):
        run_webcam("no-such-portrait.jpg", camera=str(clip))
