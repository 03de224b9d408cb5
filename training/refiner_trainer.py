"""Training the ``neural`` renderer's editing network (``engine.renderer.refine``) on real people.

``pirender train-refiner --data DATASET --run RUN --out WEIGHTS``: makes the training pairs of the
dataset's train split and a validation set from its held-out people (``training.refiner_data``,
once, kept in ``RUN/pairs``), then trains:

- The network changes the ``regions`` only (``crop.region_mask``; default the mouth, ``--regions
  mouth,eyes`` adds the eyelids); everywhere else the mesh frame stays.
- Objective (no VGG-19 weights on the machine that made the shipped model: pixel and structural
  losses, recorded in the checkpoint): L1 over the face box, plus ``mouth_weight`` x L1 inside the
  mouth's box, plus ``ssim_weight`` x (1 - SSIM) / 2 (``renderer_losses.ssim_per_image``).
- Two stages. Stage 1 (steps ``0 .. adversarial_from``): the pixel and structural losses alone, Adam
  (betas 0.5, 0.999), the learning rate cut by 10x for the stage's last fifth. Stage 2 (to ``steps``):
  an adversarial term is added (pix2pix-style, the usual way to stop an L1-trained network from
  painting the average, blurred mouth): a PatchGAN discriminator trained here
  (:class:`RegionDiscriminator`, spectral norm, hinge loss) judges the face box with the real frame
  everywhere outside the network's regions (``mask * frame + (1 - mask) * real``), so only what the
  network makes is judged; weight ``adversarial_weight``, generator learning rate ``stage2_lr``.
- Stage 3 (from ``eyes_from``, when set; the shipped network: steps 9000 .. 12000): the eyelids join
  the network's regions (``mouth`` + ``right eye`` + ``left eye``), with ``eye_weight`` x L1 inside the
  eyes' boxes, and ``blink_share`` of each batch drawn from the pairs whose target closes an eye
  (blink above :data:`BLINK_PAIR`): the mesh warp only narrows a closing eye (its lids meet on a flow
  grid of 1/4 the frame, so iris and white stay between them), the network learns the closed lid
  from real blinks. At render time the eyes' correction is faded in by the blink
  (``renderer.eye_gate``), so open eyes stay the mesh frame's (exact gaze and brows).
- EMA of the weights (decay ``ema``) is what is saved and shipped.
- Batches are a fixed function of (seed, step): a resumed run (``--resume``) draws the same items.
- Every ``checkpoint_every`` steps: the run's checkpoint (atomic), the held-out figures (PSNR of the
  face box: the mesh frame's and the refined one's, all and mouth), a sample grid (mesh | refined
  | real) in ``RUN/samples``; at the end the EMA weights are written to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import io
import itertools
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from pirender.engine.errors import PirenderError
from pirender.engine.fileio import write_atomically
from pirender.engine.renderer.checkpoint import load_weights_file
from pirender.engine.renderer.refine.crop import REGIONS, region_indices
from pirender.engine.renderer.refine.network import Refiner, RefinerConfig
from pirender.engine.renderer.refine.renderer import refiner_state
from pirender.training.evaluate import psnr_db
from pirender.training.refiner_data import PairArrays, PairsConfig, make_pairs
from pirender.training.renderer_losses import ssim_per_image

#: a pair "closes an eye" when its target's blink_right or blink_left is above this (stage 3's draws)
BLINK_PAIR = 0.5
_EYES = ("right eye", "left eye")
_BLINKS = slice(10, 12)  # blink_right, blink_left in the open space's rows (and the motion features)


@dataclass(frozen=True)
class RefinerTrainConfig:
    """Settings of the editing network's training (module docstring)."""

    network: RefinerConfig = field(default_factory=RefinerConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    steps: int = 9000
    batch: int = 8
    lr: float = 2e-4
    ema: float = 0.998
    mouth_weight: float = 2.0
    ssim_weight: float = 0.5
    regions: tuple[str, ...] = ("mouth",)
    eyes_from: int | None = None
    eye_weight: float = 2.0
    blink_share: float = 0.25
    adversarial_from: int = 6000
    adversarial_weight: float = 0.02
    stage2_lr: float = 5e-5
    discriminator_lr: float = 2e-4
    checkpoint_every: int = 500
    validation_pairs: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        try:
            region_indices(self.regions)
        except ValueError as exc:
            raise PirenderError(f"--regions: {exc}") from None
        if self.eyes_from is not None and not 0 <= self.eyes_from < self.steps:
            raise PirenderError(
                f"--eyes-from {self.eyes_from}: must lie in 0 .. --steps - 1 ({self.steps - 1})"
            )
        if not 0.0 <= self.blink_share <= 1.0:
            raise PirenderError(f"blink_share {self.blink_share}: must lie in 0 .. 1")

    def eyes_at(self, step: int) -> bool:
        """Whether the eyes are in the network's regions at ``step`` (stage 3)."""
        return self.eyes_from is not None and step >= self.eyes_from

    def regions_at(self, step: int) -> tuple[str, ...]:
        """The regions the network changes at ``step``: ``regions``, plus the eyes in stage 3."""
        if not self.eyes_at(step):
            return self.regions
        return tuple(r for r in REGIONS if r in self.regions or r in _EYES)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _box_mask(boxes: torch.Tensor, side: int) -> torch.Tensor:
    """(B, 1, side, side) 0/1 union of (B, R, 4) boxes (left, top, right, bottom; crop pixels)."""
    grid = torch.arange(side, dtype=torch.float32)
    inside_x = (grid >= boxes[..., 0:1]) & (grid <= boxes[..., 2:3])  # (B, R, S)
    inside_y = (grid >= boxes[..., 1:2]) & (grid <= boxes[..., 3:4])
    return (inside_y[..., :, None] & inside_x[..., None, :]).any(dim=1, keepdim=True).float()


def objective(
    fake: torch.Tensor,
    real: torch.Tensor,
    regions: torch.Tensor,
    config: RefinerTrainConfig,
    *,
    eyes: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of a batch (module docstring) and its parts; ``regions`` (B, 3, 4) are the batch's
    boxes of ``crop.REGIONS`` (mouth, right eye, left eye); ``eyes``: add the eyes' term (stage 3)."""
    side = fake.shape[-1]
    diff = (fake - real).abs()

    def box_l1(boxes: torch.Tensor) -> torch.Tensor:
        box = _box_mask(boxes, side).to(fake.dtype)
        return (diff * box).sum() / (box.sum() * 3).clamp_min(1.0)

    l1 = diff.mean()
    mouth_l1 = box_l1(regions[:, :1])
    ssim = ssim_per_image((fake + 1) / 2, (real + 1) / 2).mean()
    total = l1 + config.mouth_weight * mouth_l1 + config.ssim_weight * (1 - ssim) / 2
    parts = {"total": total, "l1": l1, "mouth_l1": mouth_l1, "ssim": ssim}
    if eyes:
        parts["eye_l1"] = eye_l1 = box_l1(regions[:, 1:])
        total = parts["total"] = total + config.eye_weight * eye_l1
    return total, {k: float(v.detach()) for k, v in parts.items()}


class RegionDiscriminator(nn.Module):
    """PatchGAN discriminator of the edited regions: (B, 3, S, S) face box in [-1, 1] and its (B, 1, S, S)
    mask -> (B, 1, S/8, S/8) logits, one per 70-ish px patch (spectral norm on every layer)."""

    def __init__(self, base_nc: int = 32) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        layers: list[nn.Module] = []
        channels = [4, base_nc, base_nc * 2, base_nc * 4]
        for a, b in itertools.pairwise(channels):
            layers += [sn(nn.Conv2d(a, b, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        layers.append(sn(nn.Conv2d(channels[-1], 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image, mask * 2 - 1], dim=1))


def _masked_mean(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (B, 1, s, s) patch values weighted by the region mask at the patches' size."""
    weight = F.adaptive_avg_pool2d(mask, logits.shape[-2:])
    return (logits * weight).sum() / weight.sum().clamp_min(1e-6)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean PSNR (dB) of images in [-1, 1], peak-to-peak 2 (``evaluate.psnr_db`` on [0, 1])."""
    return float(psnr_db((a + 1) / 2, (b + 1) / 2).mean())


class RefinerTrainer:
    """Network + objective + loop (module docstring)."""

    def __init__(
        self, config: RefinerTrainConfig, train: PairArrays, validation: PairArrays | None, run: Path
    ) -> None:
        torch.manual_seed(config.seed)
        self.config, self.train_pairs, self.validation, self.run = config, train, validation, run
        self.net = Refiner(config.network)
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr, betas=(0.5, 0.999))
        self.disc = RegionDiscriminator()
        self.disc_optimizer = torch.optim.Adam(
            self.disc.parameters(), lr=config.discriminator_lr, betas=(0.5, 0.999)
        )
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.blink_pairs = np.flatnonzero(np.asarray(train.motion)[:, _BLINKS].max(axis=1) > BLINK_PAIR)

    def lr_at(self, step: int) -> float:
        """The generator's learning rate (module docstring: two stages)."""
        c = self.config
        if step >= c.adversarial_from:
            return c.stage2_lr
        return c.lr * (0.1 if step >= 0.8 * min(c.steps, c.adversarial_from) else 1.0)

    def adversarial(self, step: int) -> bool:
        return step >= self.config.adversarial_from and self.config.adversarial_weight > 0

    def indices(self, step: int) -> np.ndarray:
        """The batch of ``step``: uniform draws; in stage 3 its first ``blink_share`` from the pairs
        whose target closes an eye (a fixed function of seed and step)."""
        rng = np.random.default_rng((self.config.seed, step))
        out = rng.integers(0, len(self.train_pairs), self.config.batch)
        blinks = round(self.config.blink_share * self.config.batch)
        if self.config.eyes_at(step) and blinks and self.blink_pairs.size:
            out[:blinks] = self.blink_pairs[rng.integers(0, self.blink_pairs.size, blinks)]
        return out

    def train_step(self) -> dict[str, float]:
        batch = self.train_pairs.batch(self.indices(self.step), self.config.regions_at(self.step))
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.net.train()
        mask, real = batch["mask"], batch["real"]
        fake = self.net(batch["mesh"], batch["source"], batch["motion"], mask)
        loss, parts = objective(
            fake, real, batch["regions"], self.config, eyes=self.config.eyes_at(self.step)
        )
        if self.adversarial(self.step):
            judged = mask * fake + (1 - mask) * real  # only what the network makes differs from real
            self.disc.requires_grad_(False)
            adversarial = -_masked_mean(self.disc(judged, mask), mask)
            loss = loss + self.config.adversarial_weight * adversarial
            parts["g_adv"] = float(adversarial.detach())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.adversarial(self.step):
            self.disc.requires_grad_(True)
            d_real = _masked_mean(F.relu(1 - self.disc(real, mask)), mask)
            d_fake = _masked_mean(F.relu(1 + self.disc(judged.detach(), mask)), mask)
            self.disc_optimizer.zero_grad(set_to_none=True)
            (d_real + d_fake).backward()
            self.disc_optimizer.step()
            parts["d_real"], parts["d_fake"] = float(d_real.detach()), float(d_fake.detach())
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.net.parameters(), strict=True):
                e.mul_(self.config.ema).add_(p.detach(), alpha=1 - self.config.ema)
        self.step += 1
        return parts

    def regions(self) -> tuple[str, ...]:
        """The regions of the steps trained so far (those of the last step taken)."""
        return self.config.regions_at(max(self.step - 1, 0))

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Held-out PSNR (dB, peak-to-peak 2) of the face box: mesh frame and refined, all and mouth;
        once the eyes are trained (stage 3), also of the eyes' boxes in the pairs that close an eye."""
        if self.validation is None or not len(self.validation):
            return {}
        out = self._validate_mouth()
        if "right eye" in self.regions():
            out.update(self._validate_blinks())
        return out

    def _validate_blinks(self) -> dict[str, float]:
        pairs = self.validation
        assert pairs is not None
        chosen = np.flatnonzero(np.asarray(pairs.motion)[:, _BLINKS].max(axis=1) > BLINK_PAIR)
        if not chosen.size:
            return {}
        sums = {"mesh_blink_eyes_psnr": 0.0, "refined_blink_eyes_psnr": 0.0}
        for start in range(0, chosen.size, 32):
            b = pairs.batch(chosen[start : start + 32], self.regions())
            fake = self.ema(b["mesh"], b["source"], b["motion"], b["mask"])
            for eye in (1, 2):
                crops = [_box_crop(x, b["regions"][:, eye]) for x in (b["mesh"], fake, b["real"])]
                sums["mesh_blink_eyes_psnr"] += _psnr(crops[0], crops[2]) * len(fake) / 2
                sums["refined_blink_eyes_psnr"] += _psnr(crops[1], crops[2]) * len(fake) / 2
        return {k: round(v / chosen.size, 3) for k, v in sums.items()}

    def _validate_mouth(self) -> dict[str, float]:
        assert self.validation is not None
        count = min(len(self.validation), self.config.validation_pairs)
        chosen = np.linspace(0, len(self.validation) - 1, count).round().astype(int)
        sums = {"mesh_psnr": 0.0, "refined_psnr": 0.0, "mesh_mouth_psnr": 0.0, "refined_mouth_psnr": 0.0}
        for start in range(0, count, 32):
            b = self.validation.batch(chosen[start : start + 32], self.regions())
            fake = self.ema(b["mesh"], b["source"], b["motion"], b["mask"])
            n = len(b["mesh"])
            sums["mesh_psnr"] += _psnr(b["mesh"], b["real"]) * n
            sums["refined_psnr"] += _psnr(fake, b["real"]) * n
            mouths = [_box_crop(x, b["regions"][:, 0]) for x in (b["mesh"], fake, b["real"])]
            sums["mesh_mouth_psnr"] += _psnr(mouths[0], mouths[2]) * n
            sums["refined_mouth_psnr"] += _psnr(mouths[1], mouths[2]) * n
        return {k: round(v / count, 3) for k, v in sums.items()}

    @torch.no_grad()
    def sample_grid(self, count: int = 6) -> np.ndarray:
        """(rows * S, 3 * S, 3) uint8: held-out mesh | refined | real (training pairs without them)."""
        pairs = self.validation if self.validation is not None and len(self.validation) else self.train_pairs
        chosen = np.linspace(0, len(pairs) - 1, count).round().astype(int)
        b = pairs.batch(chosen, self.regions())
        fake = self.ema(b["mesh"], b["source"], b["motion"], b["mask"])
        tiles = torch.stack([b["mesh"], fake, b["real"]], 1)  # (B, 3 tiles, 3, S, S)
        n, t, c, h, w = tiles.shape
        grid = tiles.permute(0, 3, 1, 4, 2).reshape(n * h, t * w, c)
        return ((grid + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()

    def state(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "disc": self.disc.state_dict(),
            "disc_optimizer": self.disc_optimizer.state_dict(),
            "step": self.step,
            "config": self.config.to_dict(),
            "history": self.history,
        }

    def load(self, path: Path) -> None:
        state = load_weights_file(path)
        self.net.load_state_dict(state["net"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "disc" in state:  # runs saved before stage 2 existed hold no discriminator yet
            self.disc.load_state_dict(state["disc"])
            self.disc_optimizer.load_state_dict(state["disc_optimizer"])
        self.step = int(state["step"])
        self.history = list(state.get("history", []))

    def save(self) -> Path:
        self.run.mkdir(parents=True, exist_ok=True)
        path = self.run / "refiner_run.pt"
        write_atomically(path, lambda h: torch.save(self.state(), h))
        return path

    def train(self, *, progress: bool = True) -> None:
        started = time.perf_counter()
        bar = tqdm(total=self.config.steps, initial=self.step, unit="step", disable=not progress)
        parts: dict[str, float] = {}
        while self.step < self.config.steps:
            parts = self.train_step()
            bar.update(1)
            bar.set_postfix(loss=f"{parts['total']:.4f}")
            if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                record = {"step": self.step, "elapsed_s": round(time.perf_counter() - started, 1), **parts}
                record.update(self.validate())
                self.history.append(record)
                tqdm.write(json.dumps(record))
                self.save()
                self._write_samples()
        bar.close()

    def _write_samples(self) -> None:
        buffer = io.BytesIO()
        Image.fromarray(self.sample_grid()).save(buffer, format="PNG")
        (self.run / "samples").mkdir(parents=True, exist_ok=True)
        write_atomically(
            self.run / "samples" / f"step_{self.step:07d}.png", lambda h: h.write(buffer.getvalue())
        )

    def export(self, out: Path, meta: dict[str, Any]) -> Path:
        """The EMA weights as a ``neural`` renderer checkpoint (engine.renderer.refine.renderer)."""
        payload = refiner_state(
            self.ema, crop_px=self.config.pairs.crop_px, regions=self.regions(), meta=meta
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        return write_atomically(out, lambda h: torch.save(payload, h))


def _box_crop(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """One region box per image of a batch (mouth or an eye), each resized to 48 x 48 (for its PSNR)."""
    crops = []
    side = images.shape[-1]
    for image, box in zip(images, boxes, strict=True):
        left, top = (max(0, int(v)) for v in box[:2])
        right, bottom = (min(side, int(v) + 1) for v in box[2:])
        if right - left < 4 or bottom - top < 4:
            left, top, right, bottom = 0, 0, side, side
        crops.append(F.interpolate(image[None, :, top:bottom, left:right], size=(48, 48), mode="area"))
    return torch.cat(crops)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pirender train-refiner",
        description="Train the neural renderer's editing network (mesh warp + a network that makes "
        "mouths, teeth and eyelids) on a dataset of pirender prepare.",
        epilog="example: pirender train-refiner --data data/talking --run runs/refiner --out refiner.pt",
    )
    parser.add_argument("--data", required=True, help="dataset of pirender prepare (open space)")
    parser.add_argument("--run", required=True, help="run folder (pairs, checkpoint, samples, log)")
    parser.add_argument("--out", required=True, help="the trained weights (.pt) for --renderer")
    parser.add_argument("--steps", type=int, default=RefinerTrainConfig.steps, help="optimiser steps")
    parser.add_argument(
        "--adversarial-from",
        type=int,
        default=RefinerTrainConfig.adversarial_from,
        help="step where stage 2 (adversarial term) starts (6000; >= --steps: none)",
    )
    parser.add_argument(
        "--regions", default="mouth", help="what the network may change: mouth (default) or mouth,eyes"
    )
    parser.add_argument(
        "--eyes-from",
        type=int,
        default=None,
        help="step where stage 3 starts: the eyelids join the regions, blink pairs drawn more often "
        "(make train-renderer: 9000 of 12000; default none)",
    )
    parser.add_argument("--batch", type=int, default=RefinerTrainConfig.batch, help="pairs per step (8)")
    parser.add_argument("--every", type=int, default=PairsConfig.every, help="one target in N frames (2)")
    parser.add_argument("--max-frames", type=int, default=None, help="frames of each clip at most")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation and batches (0)")
    parser.add_argument("--resume", action="store_true", help="continue the run's checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = Path(args.out).expanduser()
        if out.exists() and not args.overwrite:
            raise PirenderError(f"{out}: already exists; add --overwrite to replace it")
        run = Path(args.run).expanduser()
        config = RefinerTrainConfig(
            steps=args.steps,
            adversarial_from=args.adversarial_from,
            regions=tuple(r.strip() for r in args.regions.split(",") if r.strip()),
            eyes_from=args.eyes_from,
            batch=args.batch,
            seed=args.seed,
            pairs=replace(PairsConfig(), every=args.every, max_frames=args.max_frames),
        )
        if (run / "refiner_run.pt").exists() and not args.resume:
            raise PirenderError(f"{run} holds an earlier run: add --resume to continue it (or remove it)")
        for split in ("train", "test"):
            if not (run / "pairs" / split / "index.json").is_file():
                try:
                    make_pairs(args.data, run / "pairs", split, config.pairs)
                except PirenderError as exc:
                    if split == "train":
                        raise
                    print(f"note: no validation pairs ({exc})", file=sys.stderr)
        train = PairArrays(run / "pairs" / "train")
        validation = (
            PairArrays(run / "pairs" / "test") if (run / "pairs" / "test" / "index.json").is_file() else None
        )
        trainer = RefinerTrainer(config, train, validation, run)
        if args.resume and (run / "refiner_run.pt").exists():
            trainer.load(run / "refiner_run.pt")
        started = time.perf_counter()
        trainer.train()
        meta = {
            "trainer": "pirender.training.refiner_trainer",
            "config": config.to_dict(),
            "data": {
                "dataset": str(args.data),
                "train_pairs": len(train),
                "train_identities": train.index["identities"],
                "validation_pairs": 0 if validation is None else len(validation),
            },
            "losses": "L1 + mouth-weighted L1 + SSIM (no VGG-19: pixel and structural losses)"
            + (
                f"; from step {config.adversarial_from}: + {config.adversarial_weight} x hinge adversarial "
                "(PatchGAN of the regions the network changes at each step; trained here)"
                if config.adversarial_from < config.steps
                else ""
            )
            + (
                f"; from step {config.eyes_from}: the eyes join the regions, + {config.eye_weight} x L1 "
                f"inside the eyes' boxes, {config.blink_share:.0%} of each batch from pairs closing an eye"
                if config.eyes_from is not None
                else ""
            ),
            "steps": trainer.step,
            "seconds_this_call": round(time.perf_counter() - started, 1),
            "history": trainer.history,
        }
        path = trainer.export(out, meta)
    except PirenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"trained {trainer.step} steps: {path} (pirender eval --renderer {path} ... measures it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
