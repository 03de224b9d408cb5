"""Tests of engine/sinks/video_file.py: writing RGB frames with PyAV and reading the result back."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pirender.engine.errors import PirenderError
from pirender.engine.sinks.video_file import VideoFileWriter, VideoInfo, default_codec, read_video_info

WIDTH_PX, HEIGHT_PX = 64, 48


def _frame(index: int) -> np.ndarray:
    """(48, 64, 3) uint8: grey background with a red bar that moves 4 px right per frame."""
    frame = np.full((HEIGHT_PX, WIDTH_PX, 3), 60, np.uint8)
    left_px = (index * 4) % (WIDTH_PX - 8)
    frame[:, left_px : left_px + 8] = (220, 30, 30)
    return frame


def _decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _expected_codec() -> str:
    return "mpeg4" if default_codec() == "mpeg4" else "h264"


@pytest.mark.parametrize("fps", [25.0, 29.97])
def test_write_and_read_back(tmp_path: Path, fps: float) -> None:
    path = tmp_path / "out.mp4"
    with VideoFileWriter(path, fps=fps, size_px=(WIDTH_PX, HEIGHT_PX)) as writer:
        for index in range(12):
            writer.write(_frame(index))
        assert writer.frames_written == 12
    assert writer.closed

    info = read_video_info(path)
    assert info == VideoInfo(
        frames=12,
        width=WIDTH_PX,
        height=HEIGHT_PX,
        fps=info.fps,
        codec=_expected_codec(),
        duration_s=info.duration_s,
        variable_rate=False,
    )
    assert info.fps == pytest.approx(fps, abs=1e-3)
    assert info.duration_s == pytest.approx(12 / fps, abs=1e-3)
    if fps == 29.97:
        with av.open(str(path)) as container:
            assert container.streams.video[0].average_rate == Fraction(30000, 1001)  # stored exactly

    decoded = _decoded_frames(path)
    for index in (0, 6, 11):  # the moving bar is where it was written, colours close (crf 18)
        error = np.abs(decoded[index].astype(int) - _frame(index).astype(int))
        assert error.mean() < 4, f"frame {index}: mean error {error.mean():.1f}"


def test_mp4_is_faststart(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with VideoFileWriter(path, fps=25, size_px=(WIDTH_PX, HEIGHT_PX)) as writer:
        writer.write(np.stack([_frame(i) for i in range(3)]))  # a batch (B, H, W, 3)
        assert writer.frames_written == 3
    data = path.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")


@pytest.mark.parametrize(("suffix", "codec"), [(".mkv", None), (".mp4", "mpeg4")])
def test_other_container_and_codec(tmp_path: Path, suffix: str, codec: str | None) -> None:
    path = tmp_path / f"out{suffix}"
    with VideoFileWriter(path, fps=12.5, size_px=(WIDTH_PX, HEIGHT_PX), codec=codec) as writer:
        for index in range(4):
            writer.write(_frame(index))
    info = read_video_info(path)
    assert info.frames == 4 and info.fps == pytest.approx(12.5)
    assert info.codec == (codec or _expected_codec())


def test_failure_midway_keeps_the_frames_written(tmp_path: Path) -> None:
    path = tmp_path / "partial.mp4"
    with (
        pytest.raises(RuntimeError, match="renderer exploded"),
        VideoFileWriter(path, fps=25, size_px=(WIDTH_PX, HEIGHT_PX)) as writer,
    ):
        for index in range(5):
            writer.write(_frame(index))
        raise RuntimeError("renderer exploded")
    assert writer.closed
    info = read_video_info(path)
    assert (info.frames, info.width, info.height) == (5, WIDTH_PX, HEIGHT_PX)
    assert len(_decoded_frames(path)) == 5


def test_odd_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PirenderError, match=r"63x48 px is odd.*even") as info:
        VideoFileWriter(tmp_path / "odd.mp4", fps=25, size_px=(63, 48))
    assert "odd.mp4" in str(info.value)


def test_missing_folder_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(PirenderError, match=r"folder .*missing.* does not exist"):
        VideoFileWriter(tmp_path / "missing" / "out.mp4", fps=25, size_px=(64, 48))
    with pytest.raises(PirenderError, match=r"unknown video extension \(\.xyz\)"):
        VideoFileWriter(tmp_path / "out.xyz", fps=25, size_px=(64, 48))
    with pytest.raises(PirenderError, match="no extension"):
        VideoFileWriter(tmp_path / "out", fps=25, size_px=(64, 48))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fps": 0},
        {"fps": float("nan")},
        {"size_px": (64,)},
        {"size_px": (0, 48)},
        {"crf": 52},
        {"codec": "no-such-encoder"},
    ],
    ids=["fps0", "fps-nan", "size-1d", "size0", "crf", "codec"],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"fps": 25, "size_px": (64, 48), **kwargs}
    with pytest.raises(PirenderError) as info:
        VideoFileWriter(tmp_path / "out.mp4", **arguments)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_bad_frames_and_write_after_close(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    writer = VideoFileWriter(path, fps=25, size_px=(WIDTH_PX, HEIGHT_PX))
    with pytest.raises(PirenderError, match=r"frame shape must be \(48, 64, 3\)"):
        writer.write(np.zeros((HEIGHT_PX, WIDTH_PX, 4), np.uint8))
    with pytest.raises(PirenderError, match=r"frame shape"):
        writer.write(np.zeros((WIDTH_PX, HEIGHT_PX, 3), np.uint8))  # transposed
    with pytest.raises(PirenderError, match="uint8"):
        writer.write(np.zeros((HEIGHT_PX, WIDTH_PX, 3), np.float32))
    writer.write(_frame(0))
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(PirenderError, match=r"after close"):
        writer.write(_frame(1))
    assert read_video_info(path).frames == 1


def test_no_frames_leaves_no_file(tmp_path: Path) -> None:
    with VideoFileWriter(tmp_path / "empty.mp4", fps=25, size_px=(WIDTH_PX, HEIGHT_PX)) as writer:
        assert writer.frames_written == 0
    assert not (tmp_path / "empty.mp4").exists()


def test_read_video_info_errors(tmp_path: Path) -> None:
    with pytest.raises(PirenderError, match="file not found"):
        read_video_info(tmp_path / "nope.mp4")
    text_file = tmp_path / "notes.mp4"
    text_file.write_text("not a video\n")
    with pytest.raises(PirenderError, match="cannot read as a video"):
        read_video_info(text_file)


# --------------------------------------------------------------------------------------------------
# timestamped writing: each frame at its own time


def _frame_times(path: Path) -> tuple[np.ndarray, Fraction]:
    """(N,) decoded frames' times in seconds from the first, and the stream's r_frame_rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = np.array([frame.pts for frame in container.decode(stream)], dtype=np.float64)
        return (pts - pts[0]) * float(stream.time_base), stream.base_rate


@pytest.mark.parametrize(
    ("suffix", "codec", "rate"),
    [
        (".mp4", None, Fraction(30)),
        (".mp4", None, Fraction(15)),
        (".mp4", None, Fraction(24000, 1001)),
        (".mov", "mpeg4", Fraction(30000, 1001)),
        (".mp4", "mpeg4", Fraction(25)),
        (".mkv", None, Fraction(30)),
    ],
)
def test_times_on_a_constant_rate_give_that_rate_exactly(
    tmp_path: Path, suffix: str, codec: str | None, rate: Fraction
) -> None:
    path = tmp_path / f"out{suffix}"
    count = 20
    times_s = 0.5 + np.arange(count) / float(rate)  # a camera that started 0.5 s before its first frame
    with VideoFileWriter(
        path, fps=float(rate), size_px=(WIDTH_PX, HEIGHT_PX), codec=codec, timestamps=True
    ) as writer:
        assert writer.timestamps
        for index, time_s in enumerate(times_s):
            writer.write(_frame(index), time_s=time_s)
    info = read_video_info(path)
    assert info.frames == count and not info.variable_rate
    assert info.fps == pytest.approx(float(rate), rel=1e-6)
    assert info.duration_s == pytest.approx(count / float(rate), abs=1e-3)
    times_out, r_frame_rate = _frame_times(path)
    assert r_frame_rate == rate
    clock_s = 1e-3 if suffix == ".mkv" else 1e-6  # Matroska keeps milliseconds
    np.testing.assert_allclose(times_out, times_s - times_s[0], atol=clock_s)
    decoded = _decoded_frames(path)
    assert np.abs(decoded[7].astype(int) - _frame(7).astype(int)).mean() < 4


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_variable_times_are_kept(tmp_path: Path, suffix: str) -> None:
    intervals_ms = [33, 34, 50, 67, 20, 33, 41, 34, 100, 33, 17, 50, 33, 34, 33]
    times_s = np.cumsum([0, *intervals_ms]) / 1000.0
    nominal_fps = (len(times_s) - 1) / times_s[-1]
    path = tmp_path / f"vfr{suffix}"
    with VideoFileWriter(path, fps=nominal_fps, size_px=(WIDTH_PX, HEIGHT_PX), timestamps=True) as writer:
        writer.write(np.stack([_frame(i) for i in range(8)]), time_s=times_s[:8])  # a batch with its times
        for index in range(8, len(times_s)):
            writer.write(_frame(index), time_s=float(times_s[index]))
    info = read_video_info(path)
    assert info.frames == len(times_s) and info.variable_rate
    # the input lasts from its first frame to the end of its last: the last frame gets a nominal period
    assert info.duration_s == pytest.approx(times_s[-1] + 1 / nominal_fps, abs=1e-3)
    times_out, _ = _frame_times(path)
    np.testing.assert_allclose(times_out, times_s, atol=1e-3 if suffix == ".mkv" else 1e-5)


def test_avi_puts_each_frame_in_the_slot_of_its_time(tmp_path: Path) -> None:
    path = tmp_path / "out.avi"
    times_s = [0.0, 0.1, 0.2, 0.5, 0.51, 0.6]  # a gap of two slots; two frames in one slot
    with VideoFileWriter(
        path, fps=10, size_px=(WIDTH_PX, HEIGHT_PX), codec="mpeg4", timestamps=True
    ) as writer:
        for index, time_s in enumerate(times_s):
            writer.write(_frame(index), time_s=time_s)
    times_out, _ = _frame_times(path)
    np.testing.assert_allclose(times_out, [0.0, 0.1, 0.2, 0.5, 0.6, 0.7])  # the 0.51 s frame takes 0.6


def test_timestamp_errors(tmp_path: Path) -> None:
    size = (WIDTH_PX, HEIGHT_PX)
    with VideoFileWriter(tmp_path / "timed.mp4", fps=25, size_px=size, timestamps=True) as writer:
        with pytest.raises(PirenderError, match="give time_s"):
            writer.write(_frame(0))
        writer.write(_frame(0), time_s=1.0)
        with pytest.raises(PirenderError, match=r"frame 1 at 1\.000000 s is not after .*must increase"):
            writer.write(_frame(1), time_s=1.0)
        with pytest.raises(PirenderError, match="2 finite time"):
            writer.write(np.stack([_frame(1), _frame(2)]), time_s=[1.1])
        with pytest.raises(PirenderError, match="finite"):
            writer.write(_frame(1), time_s=float("nan"))
        assert writer.frames_written == 1
    with (
        VideoFileWriter(tmp_path / "steady.mp4", fps=25, size_px=size) as writer,
        pytest.raises(PirenderError, match="without timestamps=True"),
    ):
        writer.write(_frame(0), time_s=0.0)
