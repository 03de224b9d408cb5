"""The ``neural`` renderer: the face box, the editing network, its checkpoint, the pairs and the
trainer end to end on real clips, and the eval harness measuring it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pirender.engine.api import load_renderer
from pirender.engine.errors import PirenderError
from pirender.engine.image import SourceImage
from pirender.engine.motion.space import OPEN_SPACE
from pirender.engine.renderer.refine import crop as box
from pirender.engine.renderer.refine.network import Refiner, RefinerConfig
from pirender.engine.renderer.refine.renderer import read_refiner, refiner_state
from pirender.training import refiner_trainer as rt
from pirender.training.dataset import PairDataset
from pirender.training.refiner_data import PairArrays, PairsConfig, make_pairs

from conftest import prepared_people, shared_data

FRAMES = 24
SMALL = RefinerConfig(base_nc=8, max_nc=16, levels=2, res_blocks=1, hidden_nc=16)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """d18 (person A, trained on) and d20 (person B, held out): 24 frames each."""
    clips = [(shared_data("driving", "d18.mp4"), "A"), (shared_data("driving", "d20.mp4"), "B")]
    return prepared_people(tmp_path_factory.mktemp("neural"), clips, holdout=("B",), max_frames=FRAMES)


def _portrait(dataset: Path, split: str = "test") -> SourceImage:
    data = PairDataset(dataset, split, 0)
    rgb = ((data.image(0, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return SourceImage(np.ascontiguousarray(rgb), None, (256, 256))


def test_the_face_box_crops_and_pastes_back_in_place() -> None:
    yy, xx = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    frames = torch.stack([torch.sin(xx / 9), torch.cos(yy / 7), torch.sin((xx + yy) / 11)])[None].repeat(
        2, 1, 1, 1
    )
    boxes = torch.tensor([[128.0, 140.0, 128.0], [100.0, 120.0, 150.0]])
    back = box.paste(frames, box.crop(frames, boxes, 128), boxes)
    assert float((back - frames).abs().max()) < 0.01
    ones = box.paste(torch.zeros(1, 1, 256, 256), torch.ones(1, 1, 64, 64), boxes[:1])
    assert float(ones[0, 0, 140, 128]) == 1.0 and float(ones[0, 0, 10, 10]) == 0.0  # inside / outside
    points = np.zeros((478, 3))
    points[[33, 133], :2] = [[90, 100], [110, 100]]  # one eye's corners (image left)
    points[[362, 263], :2] = [[146, 100], [166, 100]]
    points[[61, 291], :2] = [[108, 170], [148, 170]]
    cx, cy, side = box.face_box(points)
    assert (
        cx == pytest.approx(128.0) and 100 < cy < 170 and side == pytest.approx(box.CROP_IOD * 56, rel=0.05)
    )


def test_an_untrained_network_returns_the_mesh_frame_and_shapes_hold() -> None:
    net = Refiner(SMALL)
    mesh, source = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(net(mesh, source, torch.randn(2, 17)), mesh)  # the last conv starts at zero
    with pytest.raises(PirenderError, match="must be positive"):
        RefinerConfig(levels=0)


def test_checkpoints_load_and_bad_files_give_one_line(tmp_path: Path, dataset: Path) -> None:
    path = tmp_path / "refiner.pt"
    torch.save(refiner_state(Refiner(SMALL), crop_px=64, meta={"note": "test"}), path)
    checkpoint = read_refiner(path)
    assert checkpoint.config == SMALL and checkpoint.crop_px == 64 and checkpoint.meta == {"note": "test"}
    renderer = load_renderer(path, backend="neural")
    mesh = load_renderer()
    portrait = _portrait(dataset)
    prepared = renderer.prepare(portrait)
    mesh_source = mesh.prepare(portrait)
    row = renderer.rest_row(prepared).copy()
    row[OPEN_SPACE.index("jaw_open")] = 0.6
    frame = renderer.render(row[:, None], source=prepared).frame
    # an untrained editing network changes nothing but the resampling of the face box
    assert (
        frame.shape == (1, 3, 256, 256)
        and float((frame - mesh.render(row[:, None], source=mesh_source).frame).abs().mean()) < 0.01
    )
    renderer.close()
    mesh.close()
    (tmp_path / "other.pt").write_bytes(b"not a checkpoint")
    torch.save({"format": "something-else"}, tmp_path / "fmt.pt")
    for bad, message in (("missing.pt", "missing.pt"), ("other.pt", "other.pt"), ("fmt.pt", "refiner")):
        with pytest.raises(PirenderError, match=message) as info:
            read_refiner(tmp_path / bad)
        assert "\n" not in str(info.value)


def test_pairs_training_export_and_eval_end_to_end(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = PairsConfig(every=2, crop_px=64)
    index = make_pairs(dataset, run / "pairs", "train", config, progress=False)
    make_pairs(dataset, run / "pairs", "test", config, progress=False)
    assert (
        index["pairs"] == FRAMES // 2 - 1 or index["pairs"] == FRAMES // 2
    )  # every 2nd frame, not the source
    train = PairArrays(run / "pairs" / "train")
    batch = train.batch(np.array([0, 1]))
    assert batch["mesh"].shape == (2, 3, 64, 64) and batch["motion"].shape == (2, 17)
    regions = batch["regions"].numpy()  # mouth, right eye, left eye
    assert (regions[..., 2] > regions[..., 0]).all() and (regions[..., 3] > regions[..., 1]).all()
    assert (regions[:, 0, 1] > regions[:, 1, 3]).all()  # the mouth lies below the eyes
    mask = batch["mask"]
    assert mask.shape == (2, 1, 64, 64) and float(mask[0, 0, 0, 0]) == 0.0  # the box's corner stays
    centre = regions[0, 0, [0, 1, 2, 3]].reshape(2, 2).mean(0).round().astype(int)
    assert float(mask[0, 0, centre[1], centre[0]]) == 1.0  # the mouth's centre is the network's
    # the mesh crop and the real crop show the same face: closer than two different frames' crops
    same = float((batch["mesh"][0] - batch["real"][0]).abs().mean())
    assert same < float((batch["real"][0] - batch["real"][1].flip(-1)).abs().mean())

    trainer_config = rt.RefinerTrainConfig(network=SMALL, pairs=config, steps=6, batch=2, checkpoint_every=3)
    validation = PairArrays(run / "pairs" / "test")
    trainer = rt.RefinerTrainer(trainer_config, train, validation, run)
    trainer.train(progress=False)
    assert [r["step"] for r in trainer.history] == [3, 6] and "refined_psnr" in trainer.history[-1]
    assert (run / "samples" / "step_0000006.png").is_file()
    # resume draws the same batches: 3 more steps from the step-3 state equal the uninterrupted run
    again = rt.RefinerTrainer(
        rt.RefinerTrainConfig(network=SMALL, pairs=config, steps=3, batch=2), train, None, run
    )
    again.train(progress=False)
    resumed = rt.RefinerTrainer(trainer_config, train, None, tmp_path / "other")
    resumed.net.load_state_dict(again.net.state_dict())
    resumed.ema.load_state_dict(again.ema.state_dict())
    resumed.optimizer.load_state_dict(again.optimizer.state_dict())
    resumed.step = 3
    resumed.train(progress=False)
    for a, b in zip(resumed.net.state_dict().values(), trainer.net.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)

    weights = trainer.export(tmp_path / "trained.pt", {"steps": trainer.step})
    from pirender.training import evaluate as ev

    out = tmp_path / "report"
    metrics = ev.Evaluation(
        ev.EvalConfig(data=dataset, renderers=("mesh", str(weights)), out=out, cross_frames=4), progress=False
    ).run()
    assert [r["label"] for r in metrics["renderers"]] == ["mesh", "trained"]
    assert metrics["same_identity"]["trained"]["frames"] == metrics["same_identity"]["mesh"]["frames"] > 0


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two clips of people the shipped weights never saw (held out by make train-renderer's split)."""
    clips = [
        (shared_data("talking", "MimicTalk__German_20s.mp4"), "German"),
        (shared_data("talking", "video-retalking__2.mp4"), "VR2"),
    ]
    return prepared_people(
        tmp_path_factory.mktemp("held_out"), clips, holdout=("German", "VR2"), max_frames=48
    )


def test_the_shipped_weights_render_deterministically_and_beat_an_untrained_network(
    held_out: Path, tmp_path: Path
) -> None:
    from pirender.engine.renderer.refine.renderer import DEFAULT_WEIGHTS, NeuralRenderer, RefinerCheckpoint
    from pirender.training import evaluate as ev

    shipped = load_renderer(backend="neural")
    checkpoint = shipped.checkpoint
    assert checkpoint.path == DEFAULT_WEIGHTS and checkpoint.meta["steps"] >= 1000
    assert not {"German", "VR2"} & set(checkpoint.meta["data"]["train_identities"])
    untrained_state = Refiner(checkpoint.config).state_dict()
    untrained = NeuralRenderer(
        RefinerCheckpoint(checkpoint.path, checkpoint.config, checkpoint.crop_px, untrained_state)
    )
    portrait = _portrait(held_out)
    shipped_source = shipped.prepare(portrait)
    row = shipped.rest_row(shipped_source).copy()
    row[OPEN_SPACE.index("jaw_open")] = 0.7
    first, second = (shipped.render(row[:, None], source=shipped_source).frame for _ in range(2))
    assert torch.equal(first, second)

    contenders = [ev.Contender("shipped", shipped, 0, 0), ev.Contender("untrained", untrained, 0, 0)]
    config = ev.EvalConfig(data=held_out, renderers=(), out=tmp_path / "report", cross_frames=8)
    metrics = ev.Evaluation(config, contenders=contenders, progress=False).run()
    trained, baseline = metrics["same_identity"]["shipped"], metrics["same_identity"]["untrained"]
    assert trained["frames"] == baseline["frames"] > 60
    assert trained["mouth_psnr"] > baseline["mouth_psnr"] and trained["psnr"] > baseline["psnr"]


def test_warp_mode_is_the_mesh_renderers_warp(dataset: Path) -> None:
    neural, mesh = load_renderer(backend="neural", mode="warp"), load_renderer(mode="warp")
    portrait = _portrait(dataset)
    neural_source = neural.prepare(portrait)
    mesh_source = mesh.prepare(portrait)
    row = neural.rest_row(neural_source).copy()
    row[OPEN_SPACE.index("jaw_open")] = 0.8
    assert torch.equal(
        neural.render(row[:, None], source=neural_source).frame,
        mesh.render(row[:, None], source=mesh_source).frame,
    )
    neural.close()
    mesh.close()


def test_stage_two_trains_a_discriminator_resumes_exactly_and_exports_its_regions(
    dataset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    pairs = PairsConfig(every=2, crop_px=64)
    make_pairs(dataset, run / "pairs", "train", pairs, progress=False)
    train = PairArrays(run / "pairs" / "train")
    config = rt.RefinerTrainConfig(
        network=SMALL, pairs=pairs, steps=4, batch=2, checkpoint_every=2, adversarial_from=2
    )
    assert config.regions == ("mouth",)
    trainer = rt.RefinerTrainer(config, train, None, run)
    untrained_disc = {k: v.clone() for k, v in trainer.disc.state_dict().items()}
    trainer.train(progress=False)
    assert "d_real" not in trainer.history[0] and {"g_adv", "d_real", "d_fake"} <= set(trainer.history[1])
    assert any(not torch.equal(v, untrained_disc[k]) for k, v in trainer.disc.state_dict().items())
    # stopped after step 2 and resumed from its checkpoint: the same weights as the uninterrupted run
    half = rt.RefinerTrainer(replace(config, steps=2), train, None, tmp_path / "half")
    half.train(progress=False)
    resumed = rt.RefinerTrainer(config, train, None, tmp_path / "half")
    resumed.load(tmp_path / "half" / "refiner_run.pt")
    resumed.train(progress=False)
    for a, b in zip(resumed.net.state_dict().values(), trainer.net.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    for a, b in zip(resumed.disc.state_dict().values(), trainer.disc.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # the checkpoint says what the network changes; the renderer masks the rest
    checkpoint = read_refiner(trainer.export(tmp_path / "mouth.pt", {}))
    assert checkpoint.regions == ("mouth",)
    renderer = load_renderer(checkpoint.path, backend="neural")
    assert renderer.regions == [0]
    with pytest.raises(PirenderError, match="regions"):
        rt.RefinerTrainConfig(regions=("nose",))
    bad = refiner_state(Refiner(SMALL), crop_px=64)
    bad["regions"] = ["mouth", "mouth"]
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(PirenderError, match="malformed"):
        read_refiner(tmp_path / "bad.pt")


def test_the_network_leaves_a_mouth_at_rest_to_the_mesh_frame(held_out: Path) -> None:
    from pirender.engine.renderer.refine.renderer import MOUTH_GATE, mouth_gate

    neural, mesh = load_renderer(backend="neural"), load_renderer()
    portrait = _portrait(held_out)
    neural_source = neural.prepare(portrait)
    mesh_source = mesh.prepare(portrait)
    rest = neural.rest_row(neural_source).copy()
    opened = rest.copy()
    opened[OPEN_SPACE.index("jaw_open")] += 0.7
    rows = np.stack([rest, opened])
    assert mouth_gate(rows, rest).tolist() == [0.0, 1.0]
    half = rest.copy()
    half[OPEN_SPACE.index("smile_left")] += MOUTH_GATE / 2
    assert mouth_gate(half[None], rest)[0] == pytest.approx(0.5)
    got, plain = (
        neural.render(rows[:, :, None], source=neural_source).frame,
        mesh.render(rows[:, :, None], source=mesh_source).frame,
    )
    assert float((got[0] - plain[0]).abs().mean()) < 0.01  # at rest: the mesh frame (resampled box)
    assert float((got[1] - plain[1]).abs().max()) > 0.2  # an open mouth: the network's


def test_stage_three_adds_the_eyes_draws_blinks_and_exports_them(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    pairs = PairsConfig(every=2, crop_px=64)
    make_pairs(dataset, run / "pairs", "train", pairs, progress=False)
    train = PairArrays(run / "pairs" / "train")
    config = rt.RefinerTrainConfig(
        network=SMALL, pairs=pairs, steps=4, batch=4, checkpoint_every=2, adversarial_from=4, eyes_from=2
    )
    assert config.regions_at(1) == ("mouth",)
    assert config.regions_at(2) == ("mouth", "right eye", "left eye")
    trainer = rt.RefinerTrainer(config, train, None, run)
    trainer.blink_pairs = np.array([3])  # as if only pair 3 closed an eye
    assert trainer.indices(2)[:1].tolist() == [3]  # stage 3: a quarter of the batch from blink pairs
    trainer.train(progress=False)
    assert "eye_l1" not in trainer.history[0] and "eye_l1" in trainer.history[1]
    checkpoint = read_refiner(trainer.export(tmp_path / "eyes.pt", {}))
    assert checkpoint.regions == ("mouth", "right eye", "left eye")
    # a user's own trained network runs through --checkpoint on the commands (here: edit)
    from pirender.engine.image import save_png
    from pirender.training.cli import main

    with torch.no_grad():
        trainer.ema.out.bias.fill_(0.5)  # a network whose every correction brightens: easy to see
    bright = trainer.export(tmp_path / "bright.pt", {})
    save_png(tmp_path / "portrait.png", _portrait(dataset).rgb)
    args = ["edit", "--source", str(tmp_path / "portrait.png"), "--set", "blink_left=1"]
    assert main([*args, "--checkpoint", str(bright), "--out", str(tmp_path / "own.png")]) == 0
    assert main([*args, "--renderer", "mesh", "--out", str(tmp_path / "mesh.png")]) == 0
    own, mesh = (np.asarray(Image.open(tmp_path / f"{n}.png"), dtype=np.float32) for n in ("own", "mesh"))
    assert own.shape == mesh.shape and (own - mesh).max() > 40  # the file's network made the left lid
    with pytest.raises(PirenderError, match="eyes-from"):
        rt.RefinerTrainConfig(steps=4, eyes_from=4)


def test_the_network_leaves_open_eyes_to_the_mesh_frame(held_out: Path) -> None:
    from pirender.engine.renderer.refine.renderer import EYE_GATE, eye_gate

    neural, mesh = load_renderer(backend="neural"), load_renderer()
    portrait = _portrait(held_out)
    neural_source = neural.prepare(portrait)
    mesh_source = mesh.prepare(portrait)
    right, left = box.REGIONS.index("right eye"), box.REGIONS.index("left eye")
    rest = neural.rest_row(neural_source).copy()
    closed = rest.copy()
    closed[OPEN_SPACE.index("blink_right")] += 0.8
    wider = rest.copy()
    wider[OPEN_SPACE.index("blink_left")] -= 0.5
    rows = np.stack([rest, closed, wider])
    assert eye_gate(rows, rest, right).tolist() == [0.0, 1.0, 0.0]
    assert eye_gate(rows, rest, left).tolist() == [0.0, 0.0, 0.0]  # opening wider: the mesh warp's
    half = rest.copy()
    half[OPEN_SPACE.index("blink_left")] += EYE_GATE / 2
    assert eye_gate(half[None], rest, left)[0] == pytest.approx(0.5)
    got, plain = (
        neural.render(rows[:, :, None], source=neural_source).frame,
        mesh.render(rows[:, :, None], source=mesh_source).frame,
    )
    for i in (0, 2):  # at rest and wider: the mesh frame (resampled box)
        assert float((got[i] - plain[i]).abs().mean()) < 0.01
    assert neural.checkpoint.regions == ("mouth", "right eye", "left eye")
    assert float((got[1] - plain[1]).abs().max()) > 0.2  # a closing eye: the network's lid
