"""Loading the authors' checkpoint layout strictly, and clear errors for everything else."""

from pathlib import Path

import numpy as np
import pytest
import torch

from pirender.engine.api import load_renderer
from pirender.engine.errors import CheckpointError
from pirender.engine.motion import AUTHORS_SPACE, MotionSpace
from pirender.engine.renderer.checkpoint import build_generator, read_checkpoint, save_checkpoint
from pirender.engine.renderer.pirender.config import TINY_CONFIG
from pirender.engine.renderer.pirender.generator import FaceGenerator

from conftest import authors_key_shapes, authors_state_dict, random_source, write_authors_checkpoint


def test_our_generator_has_exactly_the_authors_keys_and_shapes() -> None:
    ours = {k: tuple(v.shape) for k, v in FaceGenerator().state_dict().items()}
    assert ours == authors_key_shapes()
    assert len(ours) == 304
    assert sum(int(np.prod(s)) for s in ours.values()) == 22_519_109


@pytest.mark.slow
def test_authors_checkpoint_loads_strictly_and_renders_deterministically(authors_checkpoint: Path) -> None:
    info = read_checkpoint(authors_checkpoint)
    assert (info.kind, info.dict_key, info.epoch, info.iteration) == ("authors", "net_G_ema", 190, 400000)
    assert info.space == AUTHORS_SPACE and info.image_size_px == 256
    model = build_generator(info)
    for key, value in authors_state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    window = np.random.default_rng(0).normal(size=(1, 73, 27)).astype(np.float32)
    frames = []
    for _ in range(2):
        renderer = load_renderer(authors_checkpoint)
        prepared = renderer.prepare(random_source())
        frames.append(renderer.render(window, source=prepared).frame)
    assert frames[0].shape == (1, 3, 256, 256)
    assert torch.equal(frames[0], frames[1])


def test_experiment_folder_and_module_prefix(tmp_path: Path) -> None:
    name = "epoch_00190_iteration_000400000_checkpoint.pt"
    write_authors_checkpoint(tmp_path / name, prefix="module.")
    (tmp_path / "latest_checkpoint.txt").write_text(f"latest_checkpoint: {name}\n")
    info = read_checkpoint(tmp_path)
    assert info.path.name == name
    assert all(not k.startswith("module.") for k in info.state_dict)
    build_generator(info)


def test_net_g_fallback_warns(tmp_path: Path) -> None:
    path = write_authors_checkpoint(tmp_path / "c.pt", with_ema=False)
    with pytest.warns(UserWarning, match="falling back to net_G"):
        info = read_checkpoint(path)
    assert info.dict_key == "net_G"


def _save_authors(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save({"net_G_ema": state}, path)
    return path


def test_a_wrong_shape_is_named(tmp_path: Path) -> None:
    state = authors_state_dict()
    state["warpping_net.flow_out.2.weight"] = torch.zeros(2, 256, 5, 5)
    info = read_checkpoint(_save_authors(tmp_path / "c.pt", state))
    with pytest.raises(
        CheckpointError, match=r"warpping_net\.flow_out\.2\.weight is \[2, 256, 5, 5\] in the file"
    ):
        build_generator(info)


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    state = authors_state_dict()
    del state["editing_net.decoder.res0.res1.norm1.mlp_beta.bias"]
    state["editing_net.extra.weight"] = torch.zeros(1)
    info = read_checkpoint(_save_authors(tmp_path / "c.pt", state))
    with pytest.raises(CheckpointError) as caught:
        build_generator(info)
    message = str(caught.value)
    assert "1 missing key(s): editing_net.decoder.res0.res1.norm1.mlp_beta.bias" in message
    assert "1 unexpected key(s): editing_net.extra.weight" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file, not a checkpoint"),
        (b"hello, I am a text file\n", "neither a torch.save zip nor a pickle"),
        (bytes(range(256)) * 8, "neither a torch.save zip nor a pickle"),
        (b"PK\x03\x04" + bytes(100), r"not a readable PyTorch checkpoint \(\w+"),
    ],
)
def test_files_that_are_not_checkpoints(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expected):
        read_checkpoint(path)


class _Opaque:
    """A Python object that a weights-only load refuses."""


def test_checkpoints_with_python_objects_are_refused_safely(tmp_path: Path) -> None:
    torch.save({"net_G_ema": {"w": torch.zeros(1)}, "extra": _Opaque()}, tmp_path / "unsafe.pt")
    with pytest.raises(CheckpointError, match="safe weights-only load refuses"):
        read_checkpoint(tmp_path / "unsafe.pt")


def test_bad_metadata_of_our_format(tmp_path: Path, tiny_generator: FaceGenerator) -> None:
    path = save_checkpoint(tmp_path / "c.pt", tiny_generator, image_size_px=64)
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "image_size_px": 100}, tmp_path / "size.pt")
    with pytest.raises(CheckpointError, match="not a positive multiple of 32"):
        read_checkpoint(tmp_path / "size.pt")
    torch.save({**payload, "config": {"coeff_nc": "many"}}, tmp_path / "config.pt")
    with pytest.raises(CheckpointError, match="malformed metadata"):
        read_checkpoint(tmp_path / "config.pt")
    with pytest.raises(CheckpointError, match="has 2 slots, the model reads 73"):
        save_checkpoint(tmp_path / "x.pt", tiny_generator, space=MotionSpace("two", ("a", "b")))


def test_other_pickles_and_folders(tmp_path: Path) -> None:
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list"):
        read_checkpoint(tmp_path / "list.pt")
    torch.save({"optimizer": {"lr": 1}, "step": 3}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no generator weights found"):
        read_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"without latest_checkpoint\.txt"):
        read_checkpoint(tmp_path)
    (tmp_path / "latest_checkpoint.txt").write_text("latest_checkpoint: gone.pt")
    with pytest.raises(CheckpointError, match=r"names 'gone\.pt'"):
        read_checkpoint(tmp_path)


def test_own_format_round_trip_keeps_config_space_and_size(
    tmp_path: Path, tiny_generator: FaceGenerator
) -> None:
    space = MotionSpace("custom-73", tuple(f"s{i}" for i in range(73)))
    path = save_checkpoint(
        tmp_path / "tiny.pt", tiny_generator, space=space, image_size_px=64, meta={"note": "x"}
    )
    info = read_checkpoint(path)
    assert (info.kind, info.config, info.space, info.image_size_px) == (
        "pirender-live",
        TINY_CONFIG,
        space,
        64,
    )
    assert info.meta == {"note": "x"}
    loaded = build_generator(info)
    for key, value in tiny_generator.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert not list(tmp_path.glob("*.tmp"))


def test_saving_into_a_missing_folder_fails_cleanly(tmp_path: Path, tiny_generator: FaceGenerator) -> None:
    with pytest.raises(CheckpointError, match="cannot write"):
        save_checkpoint(tmp_path / "nope" / "c.pt", tiny_generator)
