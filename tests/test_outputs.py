"""No output lost (issue 12): every command checks its output before any work, writes it beside the
target and renames it when complete; an existing file is replaced only with --overwrite; Ctrl-C or
SIGTERM keeps a playable <stem>.partial<suffix>; kill -9 leaves the old file as it was."""

from __future__ import annotations

import importlib
import re
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from pirender.engine.cli import commands
from pirender.engine.errors import PirenderError
from pirender.engine.fileio import check_output, partial_path, prepare_output, staged_output
from pirender.engine.image import save_png
from pirender.engine.motion import AUTHORS_SPACE, MotionSequence
from pirender.engine.motion.edit import neutral_frame
from pirender.engine.motion.io import load_motion, save_motion
from pirender.engine.renderer.checkpoint import random_generator, save_checkpoint
from pirender.engine.renderer.pirender.config import TINY_CONFIG
from pirender.engine.sinks.video_file import read_video_info
from pirender.training.cli import main

from conftest import shared_data

OLD = b"the previous video, which must survive\n"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A tiny PIRenderer checkpoint (64 px, fast on a CPU), a portrait, a short and a long motion."""
    save_checkpoint(tmp_path / "tiny.pt", random_generator(TINY_CONFIG, seed=2), image_size_px=64)
    rng = np.random.default_rng(0)
    save_png(tmp_path / "face.png", rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    for name, frames in (("motion.npz", 7), ("long.npz", 3000)):
        rows = neutral_frame()[None].repeat(frames, axis=0)
        rows += rng.normal(scale=0.1, size=(frames, 73)).astype(np.float32)
        save_motion(tmp_path / name, MotionSequence(AUTHORS_SPACE, rows, fps=25.0))
    return tmp_path


def _render_args(workdir: Path, out: Path, motion: str = "motion.npz") -> list[str]:
    return [
        "render", "--source", str(workdir / "face.png"), "--motion", str(workdir / motion),
        "--checkpoint", str(workdir / "tiny.pt"), "--device", "cpu", "--out", str(out),
    ]  # fmt: skip


def _visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def _hidden(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".")]


def _decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# --------------------------------------------------------------------------------------------------
# fileio: the two building blocks


def test_check_output_refuses_existing_files_folders_and_impossible_folders(tmp_path: Path) -> None:
    (tmp_path / "old.mp4").write_bytes(OLD)
    with pytest.raises(PirenderError, match="already exists; add --overwrite"):
        check_output(tmp_path / "old.mp4", overwrite=False)
    assert check_output(tmp_path / "old.mp4", overwrite=True) == tmp_path / "old.mp4"
    with pytest.raises(PirenderError, match="is a folder"):
        check_output(tmp_path, overwrite=True)
    with pytest.raises(PirenderError, match="cannot create its folder"):
        check_output(tmp_path / "old.mp4" / "sub" / "x.mp4", overwrite=False)
    assert not (tmp_path / "a").exists()  # checking makes nothing
    made = prepare_output(tmp_path / "a" / "b" / "x.mp4", overwrite=False)
    assert made.parent.is_dir() and not made.exists()


def test_staged_output_replaces_only_with_a_complete_file(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    target.write_bytes(OLD)
    with staged_output(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".out.mp4.")
        assert temporary.suffix == ".mp4"  # muxers pick the container from it
        temporary.write_bytes(b"new")
        assert target.read_bytes() == OLD  # not before the block ends
    assert target.read_bytes() == b"new" and _visible(tmp_path) == {"out.mp4"} and not _hidden(tmp_path)


def test_staged_output_after_an_error_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    target.write_bytes(OLD)
    with pytest.raises(RuntimeError), staged_output(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("failed half way")
    assert target.read_bytes() == OLD and _visible(tmp_path) == {"out.mp4"} and not _hidden(tmp_path)


def test_staged_output_on_ctrl_c_keeps_a_partial_file_or_finishes_or_discards(tmp_path: Path) -> None:
    said: list[str] = []
    target = tmp_path / "out.mp4"
    target.write_bytes(OLD)
    with pytest.raises(KeyboardInterrupt), staged_output(target, announce=said.append) as temporary:
        temporary.write_bytes(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == OLD and (tmp_path / "out.partial.mp4").read_bytes() == b"half"
    assert said == [f"interrupted: what was written so far is in {tmp_path / 'out.partial.mp4'}"]
    assert partial_path(target) == tmp_path / "out.partial.mp4" and not _hidden(tmp_path)
    with (
        pytest.raises(KeyboardInterrupt),
        staged_output(target, on_interrupt="finish", announce=said.append) as t,
    ):
        t.write_bytes(b"recording")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"recording"
    with pytest.raises(KeyboardInterrupt), staged_output(tmp_path / "x.wav", on_interrupt="discard") as t:
        t.write_bytes(b"half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt), staged_output(tmp_path / "y.mp4") as t:
        raise KeyboardInterrupt  # nothing written: nothing kept
    assert _visible(tmp_path) == {"out.mp4", "out.partial.mp4"} and not _hidden(tmp_path)


# --------------------------------------------------------------------------------------------------
# the commands: an existing output is refused (before any work) unless --overwrite


def _no_work(*args: object, **kwargs: object) -> None:
    raise AssertionError("the command started its work before refusing the output")


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (
            [
                "render",
                "--source",
                "{w}/face.png",
                "--motion",
                "{w}/motion.npz",
                "--checkpoint",
                "{w}/tiny.pt",
            ],
            "out.mp4",
        ),
        (["edit", "--source", "{w}/face.png", "--checkpoint", "{w}/tiny.pt", "--yaw", "10"], "out.png"),
        (["edit", "--source", "{w}/face.png", "--sweep", "--frames", "4"], "out.mp4"),
        (["demo", "--frames", "4"], "out.mp4"),
        (["track", "{w}/clip.mp4"], "out.npz"),
        (["live", "--source", "{w}/face.png", "--input", "{w}/clip.mp4"], "out.mp4"),
        (["talk", "--source", "{w}/face.png", "--audio", "{w}/speech.wav"], "out.mp4"),
        (["talk", "--source", "{w}/face.png", "--mic"], "out.mp4"),
        (["train-audio", "{w}/pairs", "--steps", "2"], "out.pt"),
        (["webcam", "--source", "{w}/face.png", "--no-virtual", "--preview"], "out.mp4"),
        (["bench", "--size", "64", "--json"], "out.json"),
        (["bench", "--size", "64", "--plot"], "out.png"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_an_existing_output_is_refused_before_any_work(
    workdir: Path,
    command: list[str],
    name: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # modules that bind load_audio by name at import must be imported before it is replaced, or a
    # first import during this test would keep the replacement for every later test
    importlib.import_module("pirender.training.audio_trainer")
    importlib.import_module("pirender.training.audio_pairs")
    for heavy in ("_open_renderer", "load_renderer", "track_clip", "open_frames", "crop_to_face"):
        monkeypatch.setattr(commands, heavy, _no_work)
    monkeypatch.setattr("pirender.engine.audio.sources.load_audio", _no_work)
    monkeypatch.setattr("pirender.engine.bench.cli.model_source", _no_work)
    out = workdir / name
    out.write_bytes(OLD)
    args = [part.format(w=workdir) for part in command]
    if args[0] == "bench":
        with pytest.raises(SystemExit) as exited:
            main([*args, str(out)])
        code = exited.value.code
    else:
        code = main([*args, *([] if args[-1] == "--preview" else ["--out"]), str(out)])
    assert code == 2
    assert "already exists; add --overwrite to replace it" in capsys.readouterr().err
    assert out.read_bytes() == OLD


def test_render_replaces_an_existing_video_only_with_overwrite(workdir: Path) -> None:
    out = workdir / "out.mp4"
    out.write_bytes(OLD)
    assert main(_render_args(workdir, out)) == 2
    assert out.read_bytes() == OLD
    assert main([*_render_args(workdir, out), "--overwrite"]) == 0
    assert read_video_info(out).frames == 7
    assert _visible(workdir) == {"face.png", "tiny.pt", "motion.npz", "long.npz", "out.mp4"}
    assert not _hidden(workdir)


def test_edit_replaces_an_existing_still_only_with_overwrite(workdir: Path) -> None:
    out = workdir / "edited.png"
    out.write_bytes(OLD)
    args = ["edit", "--source", str(workdir / "face.png"), "--checkpoint", str(workdir / "tiny.pt")]
    assert main([*args, "--yaw", "10", "--out", str(out)]) == 2
    assert out.read_bytes() == OLD
    assert main([*args, "--yaw", "10", "--out", str(out), "--overwrite"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_track_replaces_an_existing_motion_file_only_with_overwrite(tmp_path: Path) -> None:
    pytest.importorskip("tflite")
    clip = shared_data("driving", "d20.mp4")
    out = tmp_path / "motion.npz"
    out.write_bytes(OLD)
    assert main(["track", str(clip), "--max-frames", "3", "--out", str(out)]) == 2
    assert out.read_bytes() == OLD
    assert main(["track", str(clip), "--max-frames", "3", "--out", str(out), "--overwrite"]) == 0
    assert len(load_motion(out)) == 3


def test_prepare_audio_keeps_pairs_that_are_there_and_remakes_them_with_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pirender.training.audio_pairs as pairs_module

    class Clip:
        def __init__(self) -> None:
            rows = np.zeros((5, 73), np.float32)
            self.open_motion = self.authors_motion = MotionSequence(AUTHORS_SPACE, rows, fps=25.0)

    class Frames:
        def __enter__(self) -> Frames:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(pairs_module, "load_audio", lambda path: np.zeros(3200, np.float32))
    monkeypatch.setattr(pairs_module, "open_frames", lambda path: Frames())
    monkeypatch.setattr(pairs_module, "track_clip", lambda frames, **kw: Clip())
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"not read: the tracker is replaced")
    pairs = tmp_path / "made" / "pairs"  # a missing folder is made
    assert main(["prepare-audio", str(videos), "--out", str(pairs)]) == 0
    assert "1 pairs written" in capsys.readouterr().out
    assert sorted(p.name for p in pairs.iterdir()) == ["a.npz", "a.wav"]  # no temporary files
    with wave.open(str(pairs / "a.wav")) as wav:
        assert wav.getnframes() == 3200
    assert main(["prepare-audio", str(videos), "--out", str(pairs)]) == 0
    assert "1 already there" in capsys.readouterr().out
    assert main(["prepare-audio", str(videos), "--out", str(pairs), "--overwrite"]) == 0
    assert "1 pairs written" in capsys.readouterr().out
    assert main(["prepare-audio", str(videos), "--out", str(pairs / "a.wav")]) == 2
    assert "is a file" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# folders: made (or refused) before the work, not after


def test_a_missing_folder_is_made_before_any_work(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[bool] = []
    out = workdir / "new" / "deeper" / "out.mp4"

    def renderer_fails(args: object) -> None:
        seen.append(out.parent.is_dir())
        raise PirenderError("the work failed")

    monkeypatch.setattr(commands, "_open_renderer", renderer_fails)
    assert main(_render_args(workdir, out)) == 2
    assert seen == [True] and not out.exists()
    # a folder that cannot be made is refused first, before the work
    assert main(_render_args(workdir, workdir / "face.png" / "out.mp4")) == 2
    assert "cannot create its folder" in capsys.readouterr().err and seen == [True]


# --------------------------------------------------------------------------------------------------
# failures, interrupts and kill -9 half way through a render


def test_a_failure_half_way_leaves_nothing(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened = commands._open_renderer

    def failing_renderer(args: object) -> object:
        renderer, size_px = opened(args)
        render = renderer.render
        calls = []

        def render_then_fail(*a: object, **k: object) -> object:
            calls.append(1)
            if len(calls) > 4:
                raise PirenderError("the renderer failed at frame 5")
            return render(*a, **k)

        renderer.render = render_then_fail
        return renderer, size_px

    monkeypatch.setattr(commands, "_open_renderer", failing_renderer)
    fresh = workdir / "fresh.mp4"
    assert main(_render_args(workdir, fresh)) == 2
    existing = workdir / "existing.mp4"
    existing.write_bytes(OLD)
    assert main([*_render_args(workdir, existing), "--overwrite"]) == 2
    assert existing.read_bytes() == OLD
    assert _visible(workdir) == {"face.png", "tiny.pt", "motion.npz", "long.npz", "existing.mp4"}
    assert not _hidden(workdir)


def _start_render(workdir: Path, out: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = workdir / ".log"  # hidden: not junk of the command
    command = [sys.executable, "-m", "pirender.engine.cli.main", *_render_args(workdir, out, "long.npz")]
    command += ["--batch", "8"]
    with log.open("wb") as stderr:  # SIGINT as in a terminal even where this test runs in the background
        process = subprocess.Popen(
            [*command, "--overwrite"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    return process, log


def _wait_until(
    condition: object, process: subprocess.Popen[bytes], what: str, timeout_s: float = 180
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if process.poll() is not None:
            pytest.fail(f"the render ended (code {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.05)


def _frames_done(log: Path) -> int:
    counts = re.findall(rb"(\d+)/3000 \[", log.read_bytes())
    return int(counts[-1]) if counts else 0


def test_kill_9_half_way_leaves_the_previous_video_byte_identical(workdir: Path) -> None:
    out = workdir / "out.mp4"
    out.write_bytes(OLD)
    before = _visible(workdir)
    process, log = _start_render(workdir, out)

    def writing() -> bool:  # the new video is being written (its first packets are on disk)
        return any(p.name.startswith(".out.mp4.") and p.stat().st_size > 0 for p in _hidden(workdir))

    _wait_until(writing, process, "the new video was being written")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert out.read_bytes() == OLD
    assert _visible(workdir) == before  # no junk: the unfinished file stays hidden
    assert _frames_done(log) < 3000


@pytest.mark.parametrize(
    ("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_ctrl_c_or_sigterm_half_way_keeps_a_playable_partial_video(
    workdir: Path, stop: signal.Signals, code: int
) -> None:
    out = workdir / "out.mp4"
    out.write_bytes(OLD)
    process, log = _start_render(workdir, out)
    _wait_until(lambda: _frames_done(log) >= 5, process, "5 frames were rendered")
    process.send_signal(stop)
    assert process.wait(timeout=120) == code
    assert out.read_bytes() == OLD
    partial = workdir / "out.partial.mp4"
    assert f"the frames written so far are in {partial}" in log.read_text(errors="replace")
    frames = _decoded_frames(partial)
    assert 5 <= frames < 3000 and read_video_info(partial).width == 64
    assert _visible(workdir) == {
        "face.png",
        "tiny.pt",
        "motion.npz",
        "long.npz",
        "out.mp4",
        "out.partial.mp4",
    }
    assert [p.name for p in _hidden(workdir)] == [".log"]


# --------------------------------------------------------------------------------------------------
# documented


@pytest.mark.parametrize(
    "command", ["render", "edit", "demo", "track", "live", "talk", "prepare-audio", "train-audio", "webcam"]
)
def test_every_command_that_writes_files_has_overwrite(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--overwrite" in capsys.readouterr().out


def test_readme_documents_output_files() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert "--overwrite" in readme and ".partial.mp4" in readme
