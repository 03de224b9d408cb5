"""Renderer training (issue 13): config, VGG-19 losses, staged trainer, exact resume, DDP, checkpoints.

CPU, small: the TINY generator at 64 px on a few real frames (../shared/data/vox_demo) with random
motion windows; a few steps each.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from pirender.engine.errors import CheckpointError, PirenderError
from pirender.engine.renderer.checkpoint import read_checkpoint
from pirender.engine.renderer.pirender.config import TINY_CONFIG
from pirender.training.renderer_config import (
    PAPER,
    SMALL,
    LossWeights,
    RendererTrainConfig,
    Schedule,
    load_config,
)
from pirender.training.renderer_losses import (
    VGG_TAPS,
    PerceptualLoss,
    RendererObjective,
    VGGTaps,
    load_vgg19_features,
    vgg19_features,
)
from pirender.training.renderer_trainer import RendererTrainer, checkpoint_name, main

TESTS_DIR = Path(__file__).resolve().parent
VOX_DEMO = TESTS_DIR.parents[1] / "shared" / "data" / "vox_demo"
SIZE = 64


def load_frames(size_px: int = SIZE, count: int = 4) -> torch.Tensor:
    """(count, 3, size, size) in [-1, 1] from the real demo frames (skip where they are absent)."""
    files = sorted(VOX_DEMO.glob("*.jpg"))[:count]
    if len(files) < count:
        pytest.skip(f"test media {VOX_DEMO} not present (only in the development workspace)")
    images = [
        np.asarray(Image.open(f).convert("RGB").resize((size_px, size_px), Image.BICUBIC)) for f in files
    ]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


class FramePairs(Dataset):
    """Pairs of real frames with random 73-wide windows; the target frame and the windows are drawn
    from the global RNG (as a real dataset draws random frames), so the trainer's seeding matters."""

    def __init__(self, frames: torch.Tensor, length: int = 8, window_frames: int = 27) -> None:
        self.frames, self.length, self.window_frames = frames, length, window_frames

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        n = len(self.frames)
        target = int(torch.randint(n, ()))
        level = torch.randn(73, 1)
        return {
            "source": self.frames[index % n],
            "target": self.frames[target],
            "source_window": level + 0.1 * torch.randn(73, self.window_frames),
            "target_window": level + 0.5 * torch.randn(73, self.window_frames),
        }


def tiny_config(total: int, warp: int) -> RendererTrainConfig:
    """The TINY generator at 64 px, 2 pairs per step, a 3-level pyramid (64, 32, 16 px)."""
    return RendererTrainConfig(
        name="test",
        generator=TINY_CONFIG,
        image_size_px=SIZE,
        batch_pairs=2,
        schedule=Schedule(warp_steps=warp, total_steps=total, checkpoint_every=1000, log_every=1),
        losses=LossWeights(scales=3),
    )


def random_vgg19_file(path: Path, seed: int = 0) -> Path:
    """Random VGG-19 weights saved as torchvision's vgg19().state_dict() keys (features.* + classifier.*)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in vgg19_features(37).state_dict().items():
        if name.endswith("weight"):
            fan_out = tensor.shape[0] * tensor.shape[2] * tensor.shape[3]
            state[f"features.{name}"] = torch.randn(tensor.shape, generator=gen) * (2 / fan_out) ** 0.5
        else:
            state[f"features.{name}"] = torch.zeros(tensor.shape)
    state["classifier.0.weight"] = torch.randn(8, 8, generator=gen)  # ignored (shape irrelevant)
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    return load_frames()


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_vgg19_file(tmp_path_factory.mktemp("vgg") / "vgg19.pth")


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------------------------------


def test_config_presets_and_files_round_trip(tmp_path: Path) -> None:
    assert PAPER.schedule.warp_steps == 200_000 and PAPER.schedule.betas == (0.5, 0.999)
    assert PAPER.ema_decay == pytest.approx(0.997784, abs=1e-6) and PAPER.window_frames == 27
    assert load_config("small") is SMALL
    causal = replace(SMALL, radius_past=26, radius_future=0)
    for suffix in (".json", ".toml"):
        assert load_config(causal.save(tmp_path / f"c{suffix}")) == causal
    (tmp_path / "bad.toml").write_text("image_size_px = 64\ntypo = 1\n")
    with pytest.raises(ValueError, match="typo"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(ValueError, match="shorter than"):
        replace(SMALL, radius_past=5, radius_future=0)


def test_vgg19_file_in_torchvision_format_loads_and_a_missing_one_is_one_line(
    vgg_file: Path, tmp_path: Path
) -> None:
    features = load_vgg19_features(vgg_file)
    saved = torch.load(vgg_file)
    assert torch.equal(features[28].weight, saved["features.28.weight"])
    assert len(features) == 30 and not any(p.requires_grad for p in features.parameters())
    with pytest.raises(CheckpointError) as missing:
        load_vgg19_features(tmp_path / "nope.pth")
    assert "nope.pth" in str(missing.value) and "\n" not in str(missing.value)
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="not torchvision VGG-19"):
        load_vgg19_features(tmp_path / "partial.pth")


def test_perceptual_loss_follows_the_spec(vgg_file: Path, frames: torch.Tensor) -> None:
    """Scale-0 term by hand: ImageNet mapping of (x+1)/2, L1 at relu_1_1..relu_5_1; Gram /(C·H·W)."""
    features = load_vgg19_features(vgg_file)
    x, gt = frames[:2], frames[2:4]

    def taps(img: torch.Tensor) -> list[torch.Tensor]:
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        mapped = ((img + 1) / 2 - mean) / std
        return [features[: i + 1](mapped) for i in VGG_TAPS.values()]

    fx, fg = taps(x), taps(gt)
    expected = sum(F.l1_loss(a, b) for a, b in zip(fx, fg, strict=True))

    def gram(f: torch.Tensor) -> torch.Tensor:
        b, c, h, w = f.shape
        m = f.reshape(b, c, h * w)
        return m @ m.transpose(1, 2) / (c * h * w)

    style = sum(F.l1_loss(gram(a), gram(b)) for a, b in zip(fx, fg, strict=True))
    one_scale = PerceptualLoss(VGGTaps(features), scales=1)
    with_style = PerceptualLoss(VGGTaps(features), scales=1, style_weight=250.0)
    torch.testing.assert_close(one_scale(x, gt), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(with_style(x, gt), expected + 250 * style, rtol=1e-5, atol=1e-6)
    three_scales = PerceptualLoss(VGGTaps(features), scales=3)
    assert three_scales(x, gt) > one_scale(x, gt) and float(three_scales(x, x)) == 0.0
    with pytest.raises(ValueError, match="below 16 px"):
        PerceptualLoss(VGGTaps(features), scales=4)(x, gt)


def test_loss_falls_on_a_fixed_batch(vgg_file: Path, frames: torch.Tensor, tmp_path: Path) -> None:
    """24 steps on one batch of 1 pair (both directions): 12 warp-stage steps, then 12 end to end; the
    loss falls in each stage (it jumps at the switch, where the final-image term starts)."""
    config = replace(tiny_config(24, 12), batch_pairs=1)
    trainer = RendererTrainer(config, FramePairs(frames), tmp_path, vgg19=vgg_file, progress=False)
    assert trainer.objective.description["kind"] == "vgg19"
    batch = next(trainer._batches())
    results = [trainer.train_step(batch) for _ in range(24)]
    assert [r.stage for r in results] == ["warp"] * 12 + ["gen"] * 12
    warp = [r.losses["total"] for r in results[:12]]
    gen = [r.losses["total"] for r in results[12:]]
    assert np.mean(warp[-3:]) < 0.95 * np.mean(warp[:3]), warp
    assert np.mean(gen[-3:]) < 0.95 * np.mean(gen[:3]), gen


def test_fallback_objective_records_itself(frames: torch.Tensor) -> None:
    objective = RendererObjective(None)
    assert objective.description["kind"] == "fallback" and "SSIM" in objective.description["gen_stage"]
    out = {"warp_image": frames[:2], "fake_image": frames[:2]}
    total, parts = objective(out, frames[:2], "gen")
    assert float(total) == pytest.approx(0.0, abs=1e-6) and set(parts) == {"warp", "final", "total"}
    total, _ = objective({"warp_image": frames[:2]}, frames[2:4], "warp")
    assert float(total) > 0.1


def test_stage_switch_makes_a_fresh_adam(frames: torch.Tensor, tmp_path: Path) -> None:
    trainer = RendererTrainer(tiny_config(3, 2), FramePairs(frames), tmp_path, progress=False)
    trainer.train(until=2)
    first = trainer.optimizer
    warp_param = trainer.net.warpping_net.flow_out[2].weight
    edit_param = trainer.net.editing_net.decoder.final.model[0].weight
    assert int(first.state[warp_param]["step"]) == 2 and edit_param not in first.state
    trainer.train()
    assert trainer.optimizer is not first and trainer.history[-1].stage == "gen"
    assert int(trainer.optimizer.state[warp_param]["step"]) == 1
    assert int(trainer.optimizer.state[edit_param]["step"]) == 1
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_kill_and_resume_continues_bit_identically(
    vgg_file: Path, frames: torch.Tensor, tmp_path: Path
) -> None:
    """6 steps straight vs 3 steps, checkpoint, a new trainer resumes 3 more (crossing the stage switch
    at 4 and an epoch boundary at 4): the same losses and weights, exactly."""
    config = tiny_config(6, 4)
    data = FramePairs(frames)
    straight = RendererTrainer(config, data, tmp_path / "a", vgg19=vgg_file, progress=False)
    full = [r.losses for r in straight.train()]

    killed = RendererTrainer(config, data, tmp_path / "b", vgg19=vgg_file, progress=False)
    half = [r.losses for r in killed.train(until=3)]
    del killed
    resumed = RendererTrainer(
        config, data, tmp_path / "b", vgg19=vgg_file, resume=tmp_path / "b", progress=False
    )
    assert resumed.step == 3
    rest = [r.losses for r in resumed.train()]

    assert half + rest == full
    for name, module in (("net", "net"), ("ema", "ema")):
        a, b = weights(getattr(straight, module)), weights(getattr(resumed, module))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    sa, sb = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)


def test_checkpoint_loads_through_load_renderer_and_renders(frames: torch.Tensor, tmp_path: Path) -> None:
    from pirender.engine.api import load_renderer
    from pirender.engine.image import SourceImage

    trainer = RendererTrainer(tiny_config(2, 1), FramePairs(frames), tmp_path, progress=False)
    trainer.train()
    info = read_checkpoint(tmp_path)  # the run folder, through latest_checkpoint.txt
    assert info.iteration == 2 and info.meta["losses"]["kind"] == "fallback"
    assert all(torch.equal(info.state_dict[k], v) for k, v in trainer.ema.state_dict().items())
    renderer = load_renderer(tmp_path)
    rgb = ((frames[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    prepared = renderer.prepare(SourceImage(rgb=rgb, path=None, original_size_px=(SIZE, SIZE)))
    frame = renderer.render(
        np.random.default_rng(0).normal(size=(73, 27)).astype(np.float32), source=prepared
    ).frame
    assert frame.shape == (1, 3, SIZE, SIZE) and bool(torch.isfinite(frame).all()) and float(frame.std()) > 0
    # the checkpoint's sample grid: source | target | warped | generated for each pair of the last batch
    with Image.open(tmp_path / "samples" / "step_0000002.png") as grid:
        assert grid.size == (4 * SIZE, 2 * SIZE)
        tiles = np.asarray(grid.convert("RGB")).reshape(2, SIZE, 4, SIZE, 3)
    assert tiles[:, :, 3].std() > 1 and not np.array_equal(tiles[:, :, 2], tiles[:, :, 3])


_DDP_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from test_renderer_training import FramePairs, load_frames, tiny_config
from pirender.training.renderer_trainer import RendererTrainer, checkpoint_name, main
trainer = RendererTrainer(tiny_config(3, 2), FramePairs(load_frames()), {out!r}, progress=False)
before = {{k: v.clone() for k, v in trainer.net.state_dict().items()}}
trainer.train()
torch.save({{"after": trainer.net.state_dict(), "ema": trainer.ema.state_dict(), "before": before,
            "losses": [r.losses for r in trainer.history]}}, {out!r} + f"/rank{{trainer.rank}}.pt")
trainer.close()
"""


def test_two_process_torchrun_gloo_run_stays_in_sync(frames: torch.Tensor, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(_DDP_SCRIPT.format(tests=str(TESTS_DIR), out=str(tmp_path)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    run = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            str(script),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(r0["before"][k], r1["before"][k]) for k in r0["before"])
    assert all(torch.equal(r0["after"][k], r1["after"][k]) for k in r0["after"])
    assert all(torch.equal(r0["ema"][k], r1["ema"][k]) for k in r0["ema"])
    assert not all(torch.equal(r0["after"][k], r0["before"][k]) for k in r0["after"])  # it trained
    assert r0["losses"] != r1["losses"]  # each rank saw its own shard
    assert read_checkpoint(tmp_path).meta["world_size"] == 2  # rank 0 wrote the checkpoint


def test_main_trains_resumes_and_names_a_missing_vgg_file(
    frames: torch.Tensor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tiny_config(3, 1).save(tmp_path / "tiny.toml")
    run = tmp_path / "run"

    def data(path: str, config: RendererTrainConfig) -> FramePairs:
        return FramePairs(frames, window_frames=config.window_frames)

    args = ["--config", str(config_file), "--data", "unused", "--out", str(run)]
    assert main([*args, "--steps", "2"], make_dataset=data) == 0
    assert read_checkpoint(run).iteration == 2
    assert main([*args, "--resume"], make_dataset=data) == 0
    assert read_checkpoint(run).iteration == 3 and (run / checkpoint_name(0, 2)).is_file()
    if importlib.util.find_spec("tensorboard") is None:  # else the scalars go to TensorBoard
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        assert log[0]["losses_used"]["kind"] == "fallback" and log[-1]["step"] == 3
    printed = capsys.readouterr().out
    assert "step 3: checkpoint in" in printed and "still in the warp stage" not in printed
    # a new run over an earlier one is refused in one line; --overwrite starts again
    assert main([*args, "--steps", "1"], make_dataset=data) == 2
    err = capsys.readouterr().err.strip()
    assert "add --resume to continue it or --overwrite" in err and "\n" not in err
    assert main([*args, "--steps", "1", "--warp-steps", "1", "--overwrite"], make_dataset=data) == 0
    assert read_checkpoint(run).iteration == 1 and not (run / checkpoint_name(0, 2)).exists()
    assert "still in the warp stage (warp_steps 1)" in capsys.readouterr().out
    fresh = ["--config", str(config_file), "--data", "unused", "--out", str(tmp_path / "fresh")]
    assert main([*fresh, "--vgg19", str(tmp_path / "missing.pth")], make_dataset=data) == 2
    err = capsys.readouterr().err.strip()
    assert "missing.pth" in err and "\n" not in err
    assert main(["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "no such dataset folder" in capsys.readouterr().err


def test_bf16_autocast_trains_and_a_batch_of_another_space_is_refused(
    frames: torch.Tensor, tmp_path: Path
) -> None:
    trainer = RendererTrainer(
        replace(tiny_config(2, 1), bf16=True), FramePairs(frames), tmp_path, progress=False
    )
    before = weights(trainer.net)
    results = trainer.train()
    assert [r.stage for r in results] == ["warp", "gen"]
    assert all(np.isfinite(v) for r in results for v in r.losses.values())
    assert any(not torch.equal(before[k], v) for k, v in weights(trainer.net).items())
    assert all(v.dtype == torch.float32 for v in trainer.net.state_dict().values())

    class OpenSpacePairs(FramePairs):
        def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
            item = super().__getitem__(index)
            return {
                **item,
                "source_window": item["source_window"][:17],
                "target_window": item["target_window"][:17],
            }

    other = RendererTrainer(tiny_config(1, 1), OpenSpacePairs(frames), tmp_path / "o", progress=False)
    with pytest.raises(PirenderError) as refused:
        other.train()
    assert "(17, 27)" in str(refused.value) and "pirender-3dmm-73" in str(refused.value)
