"""Shared fixtures: random checkpoints in the authors' exact layout, tiny models, test media."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pirender.engine.image import SourceImage
from pirender.engine.renderer.checkpoint import random_generator
from pirender.engine.renderer.pirender.config import TINY_CONFIG
from pirender.engine.renderer.pirender.generator import FaceGenerator

TESTS_DIR = Path(__file__).resolve().parent
SHARED_DATA = TESTS_DIR.parents[1] / "shared" / "data"
AUTHORS_KEYS_FILE = TESTS_DIR / "data" / "authors_generator_keys.txt"
#: the system Chromium the browser tests drive, and their node scripts (playwright-core from npm)
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_DIR = TESTS_DIR / "browser"


def require_browser_tools() -> str:
    """The path of node for the browser tests, or skip saying what is missing (Chromium, node,
    playwright-core: ``make browser-deps``)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install chromium (or make browser-deps)")
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not found: install Node.js 20+ to run the browser test")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.skip("playwright-core not installed: npm ci --prefix tests/browser (or make browser-deps)")
    return node


def authors_key_shapes() -> dict[str, tuple[int, ...]]:
    """The 304 keys and shapes of the authors' generator, from the spec's Appendix A."""
    shapes = {}
    for line in AUTHORS_KEYS_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split()
            shapes[key] = tuple(int(n) for n in shape.split("x"))
    return shapes


def authors_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the authors' exact key layout and shapes (not built from our model).

    Every value is random (biases and norm affines too) so that every parameter matters.
    """
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in authors_key_shapes().items():
        tensor = torch.randn(shape, generator=gen) * 0.02
        if key.endswith(".weight") and len(shape) == 3 and shape[1:] == (1, 1):  # LN2d weight
            tensor += 1.0
        state[key] = tensor
    return state


def write_authors_checkpoint(path: Path, *, seed: int = 0, prefix: str = "", with_ema: bool = True) -> Path:
    state = {prefix + k: v for k, v in authors_state_dict(seed).items()}
    payload: dict[str, object] = {"net_G": state, "current_epoch": 190, "current_iteration": 400000}
    if with_ema:
        payload["net_G_ema"] = state
    torch.save(payload, path)
    return path


def random_source(size_px: int = 256, seed: int = 0) -> SourceImage:
    rgb = np.random.default_rng(seed).integers(0, 256, (size_px, size_px, 3), dtype=np.uint8)
    return SourceImage(rgb=rgb, path=None, original_size_px=(size_px, size_px))


#: skip a test where ../shared/data (the development workspace's real media) is absent
needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"test media {SHARED_DATA} not present (only in the development workspace)",
)


def shared_data(*parts: str) -> Path:
    """A file of ../shared/data, or skip (a user's own clone has no ../shared)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"test media {path} not present (only in the development workspace)")
    return path


@pytest.fixture
def tiny_generator() -> FaceGenerator:
    return random_generator(TINY_CONFIG, seed=1)


@pytest.fixture(scope="session")
def authors_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_authors_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "epoch_00190_iteration_000400000_checkpoint.pt"
    )


def prepared_people(
    folder: Path, clips: list[tuple[Path, str]], *, holdout: tuple[str, ...], max_frames: int
) -> Path:
    """A dataset of ``pirender prepare`` in ``folder/dataset`` from (clip, identity) pairs (through a
    MANIFEST.tsv), with ``holdout`` held out and at most ``max_frames`` frames a clip."""
    from pirender.training import prepare

    manifest = folder / "MANIFEST.tsv"
    manifest.write_text("file\tidentity\n" + "".join(f"{clip}\t{person}\n" for clip, person in clips))
    out = folder / "dataset"
    config = prepare.PrepareConfig(holdout=holdout, max_frames=max_frames)
    prepare.prepare_dataset(manifest, out, config, progress=False)
    return out
