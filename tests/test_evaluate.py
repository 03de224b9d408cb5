"""``pirender eval``: the harness end to end on two real held-out people, its measures, and the one-line
errors of bad input."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from pirender.engine.errors import PirenderError
from pirender.engine.image import SourceImage
from pirender.engine.motion.limits import soft_limit
from pirender.engine.motion.space import OPEN_SPACE
from pirender.engine.renderer.base import PreparedSource, Renderer, RenderMode, RenderOutput
from pirender.engine.renderer.checkpoint import random_generator, save_checkpoint
from pirender.engine.renderer.pirender.config import TINY_CONFIG
from pirender.training import evaluate as ev
from pirender.training.dataset import PairDataset

from conftest import prepared_people, shared_data

FRAMES = 24


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """d18 (person A) and d20 (person B), both held out: 24 frames each."""
    clips = [(shared_data("driving", "d18.mp4"), "A"), (shared_data("driving", "d20.mp4"), "B")]
    return prepared_people(tmp_path_factory.mktemp("eval"), clips, holdout=("A", "B"), max_frames=FRAMES)


@pytest.fixture(scope="module")
def open_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random PIRenderer of the open space at 64 px with a causal 25-frame window (as trained here)."""
    path = tmp_path_factory.mktemp("ckpt") / "open_tiny.pt"
    model = random_generator(replace(TINY_CONFIG, coeff_nc=OPEN_SPACE.width))
    meta = {"train_config": {"radius_past": 24, "radius_future": 0}}
    save_checkpoint(path, model, space=OPEN_SPACE, image_size_px=64, meta=meta)
    return path


class OracleRenderer(Renderer):
    """Returns the real frame whose stored motion row is the window's centre row: a perfect renderer,
    so every same-identity measure must come out perfect (frames, rows and boxes line up)."""

    name = "oracle"

    def __init__(self, dataset: Path) -> None:
        super().__init__()
        self.space, self.image_size_px, self.min_window_frames, self.mode = (
            OPEN_SPACE,
            256,
            1,
            RenderMode.FULL,
        )
        data = PairDataset(dataset, "test", 0)
        self.frames: list[tuple[np.ndarray, torch.Tensor]] = []
        for clip in range(len(data.clips)):
            rows = soft_limit(data.clip_motion(clip)[0], OPEN_SPACE, axis=1)  # as render() limits them
            for i, row in enumerate(rows):
                self.frames.append((row, data.image(clip, i)))

    def _prepare(self, image: SourceImage) -> PreparedSource:
        return PreparedSource(image=image)

    def _render(self, windows, source, mode, extras) -> RenderOutput:  # type: ignore[no-untyped-def]
        out = []
        for window in np.asarray(windows):
            centre = window[:, window.shape[1] // 2]
            gaps = [float(np.abs(row - centre).max()) for row, _ in self.frames]
            out.append(self.frames[int(np.argmin(gaps))][1])
        return RenderOutput(frame=torch.stack(out))


def test_eval_runs_end_to_end_side_by_side_and_writes_its_report(
    dataset: Path, open_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    config = ev.EvalConfig(data=dataset, renderers=("mesh", str(open_checkpoint)), out=out, cross_frames=10)
    oracle = ev.Contender("oracle", OracleRenderer(dataset), 0, 0)
    metrics = ev.Evaluation(config, contenders=[oracle], progress=False).run()

    assert metrics["identities"] == ["A", "B"] and metrics["clips"] == ["d18", "d20"]
    assert [r["label"] for r in metrics["renderers"]] == ["mesh", "open_tiny", "oracle"]
    assert metrics["renderers"][1]["window"] == [24, 0] and metrics["renderers"][1]["image_size_px"] == 64
    same, cross = metrics["same_identity"], metrics["cross_identity"]
    for label in ("mesh", "open_tiny", "oracle"):
        assert same[label]["frames"] == 2 * (FRAMES - 1)  # every frame but each shot's source
        assert cross[label]["frames"] == 2 * 10
    # the oracle returns the real frames: perfect pixels and motion
    assert same["oracle"]["psnr"] == pytest.approx(100.0) and same["oracle"]["mouth_psnr"] == pytest.approx(
        100.0
    )
    assert same["oracle"]["l1"] == pytest.approx(0.0, abs=1e-6) and same["oracle"]["ssim"] == pytest.approx(
        1.0, abs=1e-5
    )
    assert same["oracle"]["aed"] == pytest.approx(0.0, abs=1e-6) and same["oracle"][
        "apd_deg"
    ] == pytest.approx(0.0)
    # the mesh renderer moves the real person: good but not perfect; random weights make no face
    assert 20.0 < same["mesh"]["psnr"] < 60.0 and 0.5 < same["mesh"]["ssim"] < 1.0
    assert same["mesh"]["face_found"] == 1.0 and cross["mesh"]["face_found"] > 0.9
    assert same["mesh"]["aed"] < 0.5 and same["mesh"]["apd_deg"] < 5.0
    assert same["open_tiny"]["psnr"] < same["mesh"]["psnr"]
    assert "LPIPS" in metrics["not_computed"][0] and "FID" in metrics["not_computed"][1]

    report = (out / "report.md").read_text()
    assert "| mesh | 46 |" in report and "| open_tiny |" in report and "Not computed: LPIPS" in report
    assert json.loads((out / "metrics.json").read_text()) == metrics
    rows = list(csv.DictReader((out / "per_clip.csv").open()))
    assert {(r["clip"], r["renderer"]) for r in rows} == {
        (c, r) for c in ("d18", "d20") for r in ("mesh", "open_tiny", "oracle")
    }
    # columns: source, real, 3 renderers; a row per extreme frame that is extreme enough + cross-identity
    rows = metrics["contact_sheet"]
    assert rows[-1].startswith("cross-identity: ") and all("(source: frame" in r for r in rows[:-1])
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.size == (192 * 5, 22 + len(rows) * (192 + 22))

    with pytest.raises(PirenderError, match="exists"):  # an earlier report is never replaced silently
        ev.Evaluation(config, progress=False)


def test_the_command_prints_the_table_and_bad_inputs_give_one_line(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    assert (
        ev.main(["--data", str(dataset), "--out", str(out), "--max-frames", "12", "--cross-frames", "4"]) == 0
    )
    printed = capsys.readouterr().out
    assert "| mesh | 22 |" in printed and "Cross-identity" in printed

    authors = tmp_path / "authors_tiny.pt"
    save_checkpoint(authors, random_generator(TINY_CONFIG), image_size_px=64)
    for argv, message in (
        (["--data", str(tmp_path / "nothing")], "no such file or folder"),
        (["--data", str(dataset), "--renderer", str(authors)], "needs their motion: pass --deep3d"),
        (["--data", str(dataset), "--renderer", str(tmp_path / "missing.pt")], "missing.pt"),
        (["--data", str(dataset), "--max-frames", "3"], "--max-frames must be at least"),
        (["--data", str(dataset), "--lpips", str(tmp_path / "alex.pth")], "alex.pth"),
    ):
        code = ev.main([*argv, "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1, err


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 25) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def test_a_folder_of_videos_is_prepared_and_a_faceless_clip_is_skipped_and_listed(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("d18", "d20"):
        with (
            av.open(str(shared_data("driving", f"{name}.mp4"))) as src,
            av.open(str(videos / f"{name}.mp4"), "w") as dst,
        ):  # the first 16 frames
            stream = dst.add_stream("libx264", rate=25)
            frames = [
                f.to_ndarray(format="rgb24") for _, f in zip(range(16), src.decode(video=0), strict=False)
            ]
            stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
            for rgb in frames:
                dst.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            dst.mux(stream.encode())
    noise = np.random.default_rng(0).integers(0, 255, size=(16, 128, 128, 3), dtype=np.uint8)
    _write_video(videos / "noise.mp4", list(noise))

    out = tmp_path / "report"
    metrics = ev.Evaluation(ev.EvalConfig(data=videos, out=out, cross_frames=4), progress=False).run()
    assert (out / "dataset" / "meta.json").is_file()
    assert metrics["clips"] == ["d18", "d20"] and metrics["same_identity"]["mesh"]["frames"] == 30
    report = (out / "report.md").read_text()
    assert "noise" in json.dumps(json.loads((out / "dataset" / "meta.json").read_text())["skipped"])
    assert metrics["cross_identity"]["mesh"]["frames"] == 8 and "noise" in metrics["not_prepared"]
    assert "Clips the dataset could not take (pirender prepare skipped them): noise" in report


def test_measures() -> None:
    a = torch.rand(2, 3, 32, 32)
    assert ev.psnr_db(a, a).tolist() == [100.0, 100.0]
    b = (a + 0.1).clamp(0, 1)
    mse = (a - b).pow(2).flatten(1).mean(1)
    assert torch.allclose(ev.psnr_db(a, b), -10 * torch.log10(mse))
    rows = np.zeros((4, OPEN_SPACE.width))
    rows[:, OPEN_SPACE.index("scale")] = 1.0
    rows[0, OPEN_SPACE.index("jaw_open")] = 0.5
    rows[1, OPEN_SPACE.index("tx")] = 0.2
    rows[3, OPEN_SPACE.index("blink_left")] = 0.1
    assert ev.calmest_frame(rows, np.array([True, True, True, True])) == 2
    assert ev.calmest_frame(rows, np.array([True, True, False, True])) == 3
    angles = np.zeros((2, OPEN_SPACE.width))
    angles[1, 1] = np.radians(10.0)
    assert ev.relative_pose_deg(angles, angles[0]) == pytest.approx(
        np.array([[0, 0, 0], [0, 10, 0]]), abs=1e-9
    )


def test_lpips_and_fid_are_computed_from_local_weights(dataset: Path, tmp_path: Path) -> None:
    from test_quality_metrics import ALEX_CLASSIFIER, ALEX_CONVS, torchvision_state_dict

    from pirender.training.quality_metrics import FidInceptionV3

    alex = tmp_path / "alexnet.pth"
    torch.save(torchvision_state_dict(ALEX_CONVS, ALEX_CLASSIFIER, seed=1), alex)
    fid = tmp_path / "pt_inception-random.pth"
    torch.save(FidInceptionV3().state_dict(), fid)
    config = ev.EvalConfig(
        data=dataset, out=tmp_path / "r", max_frames=8, cross_frames=2, lpips=alex, fid=fid
    )
    metrics = ev.Evaluation(config, progress=False).run()
    assert metrics["not_computed"] == []
    assert metrics["same_identity"]["mesh"]["lpips"] > 0 and isinstance(metrics["fid"]["mesh"], float)
    report = (tmp_path / "r" / "report.md").read_text()
    assert "LPIPS |" in report and "FID (generated vs real" in report and "Not computed" not in report


def test_a_checkpoint_that_stopped_in_the_warp_stage_is_measured_as_its_warped_source(tmp_path: Path) -> None:
    path = tmp_path / "warp_only.pt"
    model = random_generator(replace(TINY_CONFIG, coeff_nc=OPEN_SPACE.width))
    save_checkpoint(path, model, space=OPEN_SPACE, image_size_px=64, meta={"stage": "warp"}, iteration=50)
    contender = ev.load_contender(str(path), "cpu")
    assert contender.renderer.mode == RenderMode.WARP and contender.label == "warp_only"
    save_checkpoint(path, model, space=OPEN_SPACE, image_size_px=64, meta={"stage": "gen"})
    assert ev.load_contender(str(path), "cpu").renderer.mode == RenderMode.FULL
