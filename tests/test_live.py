"""engine/live.py keeps the input's real time: `live --out` and `webcam --preview` record at the input's
rate and duration (case 1_live_fps: a 30 frames/s clip stays 30/1, not 25), a variable-rate browser
recording keeps its duration, and a file into a virtual camera is paced at its frames' times."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pirender.engine.image import load_source_image
from pirender.engine.live import RealTimePacer, run_live_loop, run_webcam
from pirender.engine.renderer.mesh.renderer import MeshRenderer
from pirender.engine.sinks.video_file import read_video_info
from pirender.engine.sources.frames import Frame, FrameSource, VideoFileFrames
from pirender.training.cli import main

from conftest import shared_data

PORTRAIT = ("vox_demo", "id10010_Fi21gDronE4_001686_002204_00079.jpg")


def _d18_pictures(count: int, step: int = 1) -> list[np.ndarray]:
    """``count`` frames of the shared clip d18 (30 frames/s), every ``step``-th, scaled to 240x240."""
    pictures = []
    with VideoFileFrames(shared_data("driving", "d18.mp4"), max_frames=count * step) as source:
        for frame in source:
            if frame.index % step == 0:
                pictures.append(frame.rgb[::2, ::2].copy())
    return pictures


def _write(
    path: Path, pictures: list[np.ndarray], times_s: list[float], *, codec: str, tick: Fraction
) -> Path:
    """A video of ``pictures`` shown at ``times_s`` on a clock of ``tick`` seconds."""
    height_px, width_px = pictures[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=round(1 / tick) if tick >= Fraction(1, 60) else None)
        stream.width, stream.height, stream.pix_fmt = width_px, height_px, "yuv420p"
        stream.codec_context.time_base = tick
        if codec.startswith("libvpx"):  # a browser recording: a 1 ms clock and no declared rate
            stream.time_base = tick
            stream.codec_context.framerate = Fraction(0, 1)
        for picture, time_s in zip(pictures, times_s, strict=True):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = round(time_s / tick), tick
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _probe(path: Path) -> tuple[Fraction, int, float]:
    """(r_frame_rate, frames, duration in seconds) of a video's first stream, as ffprobe reports them."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert stream.duration is not None
        return stream.base_rate, frames, float(stream.duration * stream.time_base)


def _record(command: str, clip: Path, out: Path) -> None:
    portrait = str(shared_data(*PORTRAIT))
    if command == "live":
        assert main(["live", "--source", portrait, "--input", str(clip), "--out", str(out)]) == 0
    else:
        stats = run_webcam(portrait, camera=str(clip), preview=out, virtual=False)
        assert stats.frames > 0


class _FakeCamera(FrameSource):
    """A camera that announces 30 frames/s but delivers 15 (a dim room), with a few ms of jitter."""

    fps = 30.0
    variable_rate = True
    size_px = (64, 48)
    label = "camera 9"

    def __init__(self, times_s: list[float]) -> None:
        self.times_s = times_s
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

    def _frames(self) -> Iterator[Frame]:
        for index, time_s in enumerate(self.times_s):
            yield Frame(rgb=np.full((48, 64, 3), 40 + 10 * index, np.uint8), time_s=time_s, index=index)


# --------------------------------------------------------------------------------------------------


def test_pacer_holds_frames_until_their_time() -> None:
    now = [10.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = RealTimePacer(clock=lambda: now[0], sleep=sleep)
    assert pacer.wait(0.2) == 0.0  # the first frame (at 0.2 s) goes at once: frame t is due at 9.8 + t
    now[0] += 0.01  # 10 ms of work per frame
    assert pacer.wait(0.2 + 1 / 15) == pytest.approx(1 / 15 - 0.01)
    assert now[0] == pytest.approx(10.0 + 1 / 15)
    now[0] += 0.2  # a slow frame: the next one is already late and goes at once
    assert pacer.wait(0.2 + 2 / 15) == 0.0
    pacer.wait(0.2 + 5 / 15)  # back on time: waits until it is due
    assert now[0] == pytest.approx(10.0 + 5 / 15)
    assert len(slept) == 2


@pytest.mark.parametrize("command", ["live", "webcam"])
@pytest.mark.parametrize("fps", [30, 15])
def test_recording_keeps_the_input_rate(tmp_path: Path, command: str, fps: int) -> None:
    """Case 1_live_fps: live.mp4 / prev.mp4 of a 30 (15) frames/s clip are 30/1 (15/1) with the
    input's frame count and duration (were 25/1: 20 % slow at 30, 40 % fast at 15)."""
    pytest.importorskip("tflite")
    count = 18
    pictures = _d18_pictures(count, step=30 // fps)
    clip = _write(tmp_path / "clip.mp4", pictures, [i / fps for i in range(count)], codec="libx264",
                  tick=Fraction(1, fps))  # fmt: skip
    assert _probe(clip) == (Fraction(fps), count, pytest.approx(count / fps))
    out = tmp_path / "out.mp4"
    _record(command, clip, out)
    assert _probe(out) == (Fraction(fps), count, pytest.approx(count / fps, abs=1e-3))


def test_browser_recording_keeps_its_duration(tmp_path: Path) -> None:
    """A WebM with a 1 ms clock, irregular frame durations and no declared rate: the recording lasts
    as long as the input (within one frame) and shows each frame at its time."""
    pytest.importorskip("tflite")
    intervals_ms = [33, 34, 50, 67, 20, 33, 41, 34, 100, 33, 17, 50, 33, 34, 66, 33, 34]
    times_s = [float(t) for t in np.cumsum([0, *intervals_ms]) / 1000]
    pictures = _d18_pictures(len(times_s))
    clip = _write(tmp_path / "browser.webm", pictures, times_s, codec="libvpx", tick=Fraction(1, 1000))
    with VideoFileFrames(clip) as source:
        assert source.variable_rate
        input_fps = source.fps
        assert input_fps is not None
        np.testing.assert_allclose([f.time_s for f in source], times_s, atol=1e-9)
    with av.open(str(clip)) as container:
        assert container.duration is not None
        input_s = container.duration / av.time_base
    out = tmp_path / "live.mp4"
    _record("live", clip, out)
    _, frames, output_s = _probe(out)
    assert frames == len(times_s)
    # the WebM's duration ends where its last frame starts; the recording gives that frame one period
    assert abs(output_s - input_s) <= 1 / input_fps + 1e-6
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        out_pts = np.array([frame.pts for frame in container.decode(stream)], dtype=np.float64)
        np.testing.assert_allclose(out_pts * float(stream.time_base), times_s, atol=1e-4)


def test_camera_recording_has_the_measured_rate(tmp_path: Path) -> None:
    """A camera's frames are recorded at their capture times: its real (measured) rate, not the one it
    announces, and not a fixed 25."""
    pytest.importorskip("tflite")
    jitter_s = np.random.default_rng(0).uniform(-0.003, 0.003, 12)
    times_s = [float(t) for t in 0.4 + np.arange(12) / 15 + jitter_s]  # opened 0.4 s before the first
    renderer = MeshRenderer(image_size_px=256)
    prepared = renderer.prepare(load_source_image(shared_data(*PORTRAIT), size_px=256))
    out = tmp_path / "camera.mp4"
    with _FakeCamera(times_s) as camera:
        stats = run_live_loop(renderer, prepared, camera, out=out)
    assert stats.frames == 12
    info = read_video_info(out)
    assert info.frames == 12 and info.fps == pytest.approx(15.0, rel=0.02)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        out_s = np.array([frame.pts for frame in container.decode(stream)], dtype=np.float64)
        np.testing.assert_allclose(out_s * float(stream.time_base), np.array(times_s) - times_s[0], atol=1e-4)
