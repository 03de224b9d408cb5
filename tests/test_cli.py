"""The pirender command end to end, as a user runs it."""

import itertools
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from pirender.engine.image import save_png
from pirender.engine.motion import AUTHORS_SPACE, MotionSequence
from pirender.engine.motion.edit import neutral_frame
from pirender.engine.motion.io import save_motion
from pirender.engine.renderer.checkpoint import random_generator, save_checkpoint
from pirender.engine.renderer.pirender.config import TINY_CONFIG
from pirender.engine.sinks.video_file import read_video_info
from pirender.training.cli import main

from conftest import shared_data, write_authors_checkpoint


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    save_checkpoint(tmp_path / "tiny.pt", random_generator(TINY_CONFIG, seed=2), image_size_px=64)
    rng = np.random.default_rng(0)
    save_png(tmp_path / "face.png", rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    rows = neutral_frame()[None].repeat(7, axis=0) + rng.normal(scale=0.1, size=(7, 73)).astype(np.float32)
    save_motion(tmp_path / "motion.npz", MotionSequence(AUTHORS_SPACE, rows, fps=30.0))
    return tmp_path


def test_render_writes_a_playable_video(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = workdir / "clip.mp4"
    args = ["render", "--source", str(workdir / "face.png"), "--motion", str(workdir / "motion.npz")]
    code = main([*args, "--checkpoint", str(workdir / "tiny.pt"), "--out", str(out), "--batch", "3"])
    assert code == 0
    info = read_video_info(out)
    assert (info.frames, info.width, info.height, info.codec) == (7, 64, 64, "h264")
    assert abs(info.fps - 30.0) < 1e-6
    assert "wrote 7 frames" in capsys.readouterr().out


@pytest.mark.parametrize("backend", ["openvino", "torch --compile"])
def test_render_with_a_faster_backend_writes_the_same_video(
    workdir: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("openvino")
    monkeypatch.setenv("PIRENDER_CACHE", str(workdir / "cache"))
    monkeypatch.setattr("pirender.engine.renderer.onnx_backend.CACHE_DIR", workdir / "cache" / "onnx")
    common = ["render", "--source", str(workdir / "face.png"), "--motion", str(workdir / "motion.npz")]
    common += ["--checkpoint", str(workdir / "tiny.pt"), "--batch", "3"]
    assert main([*common, "--out", str(workdir / "torch.mp4")]) == 0
    assert main([*common, "--backend", *backend.split(), "--out", str(workdir / "fast.mp4")]) == 0
    with av.open(str(workdir / "torch.mp4")) as a, av.open(str(workdir / "fast.mp4")) as b:
        frames_a = [f.to_ndarray(format="rgb24").astype(np.int16) for f in a.decode(video=0)]
        frames_b = [f.to_ndarray(format="rgb24").astype(np.int16) for f in b.decode(video=0)]
    assert len(frames_a) == len(frames_b) == 7
    assert max(int(np.abs(x - y).max()) for x, y in zip(frames_a, frames_b, strict=True)) <= 2  # codec noise


@pytest.mark.slow
def test_render_with_the_authors_checkpoint_layout(tmp_path: Path) -> None:
    """The full-size model from a checkpoint in the authors' exact layout, through the real entry point."""
    ckpt = write_authors_checkpoint(tmp_path / "epoch_00190_iteration_000400000_checkpoint.pt")
    (tmp_path / "latest_checkpoint.txt").write_text(f"latest_checkpoint: {ckpt.name}\n")
    np.save(tmp_path / "coeffs.npy", np.random.default_rng(1).normal(size=(3, 73)).astype(np.float32))
    save_png(tmp_path / "face.jpg.png", np.full((256, 256, 3), 128, dtype=np.uint8))
    out = tmp_path / "out.mp4"
    cmd = [
        sys.executable,
        "-m",
        "pirender.engine.cli.main",
        "render",
        "--source",
        str(tmp_path / "face.jpg.png"),
    ]
    cmd += ["--motion", str(tmp_path / "coeffs.npy"), "--checkpoint", str(tmp_path), "--out", str(out)]
    result = subprocess.run([*cmd, "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    info = read_video_info(out)
    assert (info.frames, info.width, info.height) == (3, 256, 256)


def test_edit_still_and_sweep(workdir: Path) -> None:
    common = ["--source", str(workdir / "face.png"), "--checkpoint", str(workdir / "tiny.pt")]
    assert main(["edit", *common, "--yaw", "20", "--exp", "3=1.5", "--out", str(workdir / "e.png")]) == 0
    assert (workdir / "e.png").stat().st_size > 0
    sweep = workdir / "s.mp4"
    edit = ["--pitch", "-10", "--source-motion", str(workdir / "motion.npz")]
    assert main(["edit", *common, *edit, "--sweep", "--frames", "5", "--out", str(sweep)]) == 0
    assert read_video_info(sweep).frames == 5


@pytest.mark.slow
def test_edit_a_real_portrait_with_the_authors_presets(tmp_path: Path) -> None:
    """A VoxCeleb portrait (the model's home domain) with the authors' expression presets."""
    portrait = shared_data("vox_demo", "id10010_Fi21gDronE4_001686_002204_00079.jpg")
    presets = shared_data("vox_demo", "expression.mat")
    ckpt = write_authors_checkpoint(tmp_path / "ckpt.pt")
    common = ["edit", "--source", str(portrait), "--checkpoint", str(ckpt), "--presets", str(presets)]
    outs = []
    for name in ("center", "mouth"):
        out = tmp_path / f"{name}.png"
        assert main([*common, "--preset", name, "--yaw", "10", "--out", str(out), "--device", "cpu"]) == 0
        outs.append(np.asarray(Image.open(out)))
    assert outs[0].shape == (256, 256, 3)
    assert np.abs(outs[0].astype(int) - outs[1].astype(int)).max() > 0  # the preset reached the picture
    assert main([*common, "--preset", "smile", "--out", str(tmp_path / "x.png")]) == 2


def test_info_reports_keys(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(workdir / "tiny.pt")]) == 0
    out = capsys.readouterr().out
    assert "format:        pirender-live" in out and "keys:          ok" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["render", "--source", "{w}/missing.png", "--motion", "{w}/motion.npz"], "missing.png"),
        (["render", "--source", "{w}/face.png", "--motion", "{w}/face.png"], "face.png"),
        (["render", "--source", "{w}/motion.npz", "--motion", "{w}/motion.npz"], "motion.npz"),
        (["render", "--source", "{w}/face.png", "--motion", "{w}/motion.npz", "--batch", "0"], "--batch"),
        (["edit", "--source", "{w}/face.png", "--exp", "3:1"], "INDEX=VALUE"),
        (["edit", "--source", "{w}/face.png", "--exp", "99=1"], "outside 0..63"),
    ],
)
def test_errors_are_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    filled = [a.format(w=workdir) for a in args]
    out = "--out", str(workdir / ("x.png" if filled[0] == "edit" else "x.mp4"))
    assert main([*filled, "--checkpoint", str(workdir / "tiny.pt"), *out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err
    assert "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "foo"], "unknown device 'foo'"),
        (["--fps", "0"], "--fps must be > 0"),
        (["--max-frames", "0"], "--max-frames must be > 0"),
    ],
)
def test_bad_options_are_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = ["render", "--source", str(workdir / "face.png"), "--motion", str(workdir / "motion.npz")]
    args += ["--checkpoint", str(workdir / "tiny.pt"), "--out", str(workdir / "x.mp4"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_bad_output_paths(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["render", "--source", str(workdir / "face.png"), "--motion", str(workdir / "motion.npz")]
    args += ["--checkpoint", str(workdir / "tiny.pt")]
    (workdir / "folder.mp4").mkdir()
    assert main([*args, "--out", str(workdir / "folder.mp4")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main([*args, "--out", str(workdir / "face.png" / "o.mp4")]) == 2  # parent is a file
    assert "cannot create its folder" in capsys.readouterr().err
    assert main([*args, "--out", str(workdir / "clip.webm")]) == 2
    assert "output must end in .mp4" in capsys.readouterr().err
    # a failed run leaves no new folders behind
    missing_motion = ["render", "--source", str(workdir / "face.png"), "--motion", str(workdir / "nope.npz")]
    missing_motion += ["--checkpoint", str(workdir / "tiny.pt"), "--out", str(workdir / "new" / "o.mp4")]
    assert main(missing_motion) == 2
    assert not (workdir / "new").exists()


def test_edits_change_the_picture_relative_to_the_source_motion(workdir: Path) -> None:
    common = ["edit", "--source", str(workdir / "face.png"), "--checkpoint", str(workdir / "tiny.pt")]

    def still(name: str, *extra: str) -> np.ndarray:
        assert main([*common, *extra, "--out", str(workdir / name)]) == 0
        return np.asarray(Image.open(workdir / name)).astype(int)

    plain = still("plain.png")
    turned = still("turned.png", "--yaw", "25")
    relative = still("relative.png", "--source-motion", str(workdir / "motion.npz"))
    assert np.abs(turned - plain).max() > 0  # the edit reaches the picture
    assert np.abs(relative - plain).max() > 0  # and it starts from the source's own motion
    assert np.array_equal(still("again.png", "--yaw", "25"), turned)  # deterministic


def test_render_applies_the_cross_identity_scale(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = neutral_frame()[None].copy()
    rows[0, 70] = 0.5  # the source's face is drawn at half the driver's scale
    save_motion(workdir / "source.npz", MotionSequence(AUTHORS_SPACE, rows))
    args = ["render", "--source", str(workdir / "face.png"), "--motion", str(workdir / "motion.npz")]
    args += ["--checkpoint", str(workdir / "tiny.pt"), "--out", str(workdir / "x.mp4")]
    assert main([*args, "--source-motion", str(workdir / "source.npz")]) == 0
    assert "cross-identity scale: x0." in capsys.readouterr().out


def test_checkpoint_errors_are_one_line(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(workdir / "motion.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "PyTorch checkpoint" in err and "\n" not in err


@pytest.mark.parametrize(
    "command", ["render", "edit", "info", "demo", "talk", "prepare", "prepare-audio", "train-audio"]
)
def test_every_command_has_help_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert "example:" in capsys.readouterr().out


def test_demo_renders_the_embedded_portrait_without_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("tflite")
    out = tmp_path / "demo.mp4"
    assert main(["demo", "--out", str(out), "--frames", "30"]) == 0
    assert "neural renderer (mesh warp + editing network trained on real people)" in capsys.readouterr().out
    assert main(["demo", "--out", str(tmp_path / "mesh.mp4"), "--frames", "4", "--renderer", "mesh"]) == 0
    assert "weight-free mesh renderer" in capsys.readouterr().out
    info = read_video_info(out)
    assert (info.frames, info.width, info.height) == (30, 256, 256)
    frames = _decode(out)
    assert np.abs(frames[0].astype(int) - frames[20].astype(int)).mean() > 2  # the head moved


def _decode(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.mark.slow
def test_a_portrait_imitates_a_driving_video_without_weights(tmp_path: Path) -> None:
    pytest.importorskip("tflite")
    driving = shared_data("driving", "d20.mp4")
    portrait = shared_data("vox_demo", "id10010_Fi21gDronE4_001686_002204_00079.jpg")
    out = tmp_path / "imitation.mp4"
    assert main(["render", "--source", str(portrait), "--driving", str(driving), "--max-frames", "40",
                 "--out", str(out)]) == 0  # fmt: skip
    frames = _decode(out)
    assert len(frames) == 40 and frames[0].shape == (256, 256, 3)
    motion_energy = np.mean(
        [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in itertools.pairwise(frames)]
    )
    assert motion_energy > 0.3  # the face moves with the driver


def test_live_loop_from_a_video_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tflite")
    driving = shared_data("driving", "d11.mp4")
    portrait = shared_data("vox_demo", "id10068_vqs1ZvoJ4XY_010464_010913_00138.jpg")
    out = tmp_path / "live.mp4"
    args = ["live", "--source", str(portrait), "--input", str(driving), "--max-frames", "20"]
    assert main([*args, "--out", str(out)]) == 0
    assert "20 frames (20 with a face)" in capsys.readouterr().out
    assert read_video_info(out).frames == 20
    assert main(["live", "--source", str(portrait), "--input", str(driving)]) == 2  # nowhere to show it
    assert main([*args[:-1], "0", "--out", str(tmp_path / "none.mp4")]) == 2  # --max-frames 0: refused
    assert "--max-frames must be > 0" in capsys.readouterr().err and not (tmp_path / "none.mp4").exists()


@pytest.mark.slow
def test_track_into_the_authors_space_with_a_deep3d_checkpoint(tmp_path: Path) -> None:
    pytest.importorskip("tflite")
    import torch

    from pirender.engine.motion.io import load_motion
    from pirender.engine.track.deep3d import Deep3DReconNet

    net = Deep3DReconNet()
    torch.save({"net_recon": net.state_dict()}, tmp_path / "epoch_20.pth")
    out = tmp_path / "coeffs.npz"
    clip = shared_data("driving", "d20.mp4")
    assert main(["track", str(clip), "--space", "open", "--out", str(tmp_path / "open.npz"),
                 "--max-frames", "3"]) == 0  # fmt: skip
    assert main(["track", str(clip), "--space", "authors", "--out", str(out)]) == 2  # needs --deep3d
    args = ["track", str(clip), "--space", "authors", "--deep3d", str(tmp_path / "epoch_20.pth")]
    assert main([*args, "--out", str(out), "--max-frames", "3"]) == 0
    motion = load_motion(out)
    assert motion.space.name == "pirender-3dmm-73" and motion.values.shape == (3, 73)
    crop = motion.values[:, 70:]
    assert np.all(crop[:, 0] > 0) and np.all(crop[:, 1:] > 50)  # s > 0, t0/t1 in pixels of the frame
