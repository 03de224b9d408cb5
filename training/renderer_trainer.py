"""PIRenderer training: warp stage, then end to end (``pirender-spec.md`` §1.2, §6.2, §7).

Three composable objects: the network (:class:`FaceGenerator`, unchanged), the objective
(:class:`training.renderer_losses.RendererObjective`) and :class:`RendererTrainer` (the loop).

Data: any ``torch.utils.data.Dataset`` whose items are ``dict(source, target, source_window,
target_window)`` — images (3, H, W) in [-1, 1], windows (width, radius_past + 1 + radius_future).
Each batch is used in both directions (§6.2): inputs [sources; targets], windows [target windows;
source windows], ground truths [targets; sources]. Items are drawn through a DistributedSampler (one
shard per rank, reshuffled per epoch from the seed); every item is produced under RNG seeded from
(seed, epoch, index), so a dataset that draws random frames gives the same items whatever the
worker count, and a resumed run continues with exactly the items it would have seen.

Per step: forward (stage ``warp`` while step < warp_steps, else ``gen``), loss, Adam step, StepLR
step, EMA update (ema ← d·ema + (1 − d)·net, parameters). At the switch a fresh Adam is created over
all generator parameters; the StepLR schedule continues from the global step (the authors' trainer
left its scheduler on the old optimiser, so their gen stage ran at a constant lr, §8 item 14).

Checkpoints (rank 0, atomically, every ``checkpoint_every`` steps and at the end):
``epoch_{5}_iteration_{9}_checkpoint.pt`` and ``latest_checkpoint.txt`` in the run folder, holding
the authors' keys (``net_G``, ``net_G_ema``, ``opt_G``, ``sch_G``, ``current_epoch``,
``current_iteration``) plus this project's metadata (``format``, ``version``, ``config``,
``motion_space``, ``image_size_px``, ``meta``: the training config and the losses used) and
``training_state`` (optimiser stage, sampler position, RNG states of torch / numpy / python), so
``engine.renderer.checkpoint.read_checkpoint`` and ``engine.api.load_renderer`` load it as it is.
A run resumed from one continues bit-identically (same losses, same weights) on the same machine
and world size.

Distributed: started by ``torchrun`` (``WORLD_SIZE`` > 1) the trainer joins the process group
(gloo on CPU, NCCL on CUDA) and wraps the generator in DistributedDataParallel.
Logging: TensorBoard scalars when ``tensorboard`` is importable, else ``log.jsonl`` in the run
folder; a tqdm bar with ETA on rank 0. At every checkpoint a sample grid of the EMA weights on the
last batch (rows: source | target | warped | generated, up to :data:`SAMPLE_PAIRS` pairs) goes to
``samples/step_NNNNNNN.png`` (and to TensorBoard as an image when it is there).
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from pirender.engine.errors import CheckpointError, PirenderError
from pirender.engine.fileio import write_atomically
from pirender.engine.motion.space import MotionSpace, known_space
from pirender.engine.renderer.checkpoint import (
    FORMAT_NAME,
    FORMAT_VERSION,
    load_weights_file,
    resolve_checkpoint_path,
)
from pirender.engine.renderer.pirender.generator import FaceGenerator, init_weights
from pirender.training.renderer_config import RendererTrainConfig, load_config
from pirender.training.renderer_losses import RendererObjective

POINTER_FILE = "latest_checkpoint.txt"
#: pairs of the last batch shown in each checkpoint's sample grid
SAMPLE_PAIRS = 4
ITEM_KEYS = ("source", "target", "source_window", "target_window")


def checkpoint_name(epoch: int, iteration: int) -> str:
    """The authors' naming: ``epoch_00190_iteration_000400000_checkpoint.pt``."""
    return f"epoch_{epoch:05d}_iteration_{iteration:09d}_checkpoint.pt"


# --------------------------------------------------------------------------------------------------
# data order: a resumable DistributedSampler and items under a seeded RNG


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled per epoch from ``seed``, drop_last) that yields ``(index, item_seed)``
    and can start ``skip`` items into the epoch (a resumed run)."""

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.skip = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        for position, index in enumerate(super().__iter__()):
            if position >= self.skip:
                seq = np.random.SeedSequence([self.seed, self.epoch, int(index), position])
                yield int(index), int(seq.generate_state(1)[0])

    def __len__(self) -> int:
        return super().__len__() - self.skip


class _SeededItems(Dataset):
    """Calls ``dataset[index]`` with torch / numpy / python RNG seeded from the sampler's item seed;
    the caller's RNG states are restored afterwards (workers or not)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = key
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
            try:
                item = self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
        missing = [k for k in ITEM_KEYS if k not in item]
        if missing:
            raise PirenderError(
                f"dataset item {index} lacks {', '.join(missing)} (needs {', '.join(ITEM_KEYS)})"
            )
        return {k: torch.as_tensor(item[k], dtype=torch.float32) for k in ITEM_KEYS}


# --------------------------------------------------------------------------------------------------
# RNG states in a form a weights-only torch.load accepts


def rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_states(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in internal), gauss))


# --------------------------------------------------------------------------------------------------


@dataclass
class StepResult:
    step: int  # the step just completed (1-based count of optimiser steps)
    stage: str
    losses: dict[str, float]  # this rank's losses
    lr: float


class RendererTrainer:
    """The training loop around a FaceGenerator and a RendererObjective.

    ``out_dir`` receives checkpoints and logs (rank 0). ``space`` is the dataset's motion space (its
    width replaces ``config.generator.coeff_nc``); default: ``config.motion_space``. ``objective``
    defaults to ``RendererObjective(vgg19, ...)`` with the config's loss weights (``vgg19`` None: the
    documented fallback). ``resume``: a checkpoint file or run folder written by this trainer.
    """

    def __init__(
        self,
        config: RendererTrainConfig,
        dataset: Dataset,
        out_dir: str | Path,
        *,
        space: MotionSpace | None = None,
        vgg19: str | Path | nn.Sequential | None = None,
        objective: RendererObjective | None = None,
        resume: str | Path | None = None,
        device: str | torch.device | None = None,
        progress: bool = True,
    ) -> None:
        self.space = space or known_space(config.motion_space)
        if config.generator.coeff_nc != self.space.width or config.motion_space != self.space.name:
            # the dataset's space wins: the model and the recorded config both say it
            generator = replace(config.generator, coeff_nc=self.space.width)
            config = replace(config, generator=generator, motion_space=self.space.name)
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress

        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        default_device = "cpu"
        if torch.cuda.is_available():
            default_device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        self.device = torch.device(device or default_device)
        self._owns_process_group = self.world_size > 1 and not dist.is_initialized()
        if self._owns_process_group:
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)

        self.net = FaceGenerator(config.generator)
        init_weights(self.net, generator=torch.Generator().manual_seed(config.seed), std=config.init_std)
        self.net.to(self.device).train()
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.model: nn.Module = self.net
        if self.world_size > 1:
            # the editing net is unused in the warp stage and its res blocks' dead branch is never run
            self.model = DistributedDataParallel(
                self.net,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        losses = config.losses
        self.objective = (
            objective
            or RendererObjective(
                vgg19,
                warp_weight=losses.warp,
                final_weight=losses.final,
                style_weight=losses.style,
                scales=losses.scales,
            )
        ).to(self.device)

        self.dataset = dataset
        self.sampler = ResumableSampler(
            dataset, num_replicas=self.world_size, rank=self.rank, seed=config.seed
        )
        self.batches_per_epoch = len(self.sampler) // config.batch_pairs
        if self.batches_per_epoch < 1:
            raise PirenderError(
                f"dataset of {len(dataset)} items is too small for {config.batch_pairs} pairs per step "  # type: ignore[arg-type]
                f"on {self.world_size} rank(s)"
            )
        self.step = 0
        self.optimizer_stage = "warp" if config.schedule.warp_steps > 0 else "gen"
        self.optimizer, self.scheduler = self._new_optimizer()
        self.history: list[StepResult] = []
        self._last_batch: dict[str, torch.Tensor] | None = None
        self._logger: Any = None
        if resume is not None:
            self.load(resume)

    # ---------------------------------------------------------------------------------------------

    def _new_optimizer(self) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.StepLR]:
        """Adam over all generator parameters (in the warp stage the editing net gets no gradient and
        so no update); a StepLR continuing the global schedule at the current step."""
        s = self.config.schedule
        optimizer = torch.optim.Adam(self.net.parameters(), lr=s.lr, betas=s.betas)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=s.lr_step, gamma=s.lr_gamma)
        if self.step:  # continue the global schedule: StepLR's closed form at this step
            lr = s.lr * s.lr_gamma ** (self.step // s.lr_step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            scheduler.last_epoch = self.step
            scheduler._last_lr = [lr] * len(optimizer.param_groups)
        return optimizer, scheduler

    def stage_at(self, step: int) -> str:
        return "warp" if step < self.config.schedule.warp_steps else "gen"

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """Batches from the current step on, epoch after epoch."""
        epoch, offset = divmod(self.step, self.batches_per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            self.sampler.skip = offset * self.config.batch_pairs
            loader = DataLoader(
                _SeededItems(self.dataset),
                batch_size=self.config.batch_pairs,
                sampler=self.sampler,
                num_workers=self.config.num_workers,
                drop_last=True,
                pin_memory=self.device.type == "cuda",
            )
            yield from loader
            epoch, offset = epoch + 1, 0

    def train_step(self, batch: dict[str, torch.Tensor]) -> StepResult:
        """One optimiser step on one batch of pairs (both directions). Switches stage when due."""
        stage = self.stage_at(self.step)
        if stage != self.optimizer_stage:  # the switch: a fresh Adam (§1.2)
            self.optimizer_stage = stage
            self.optimizer, self.scheduler = self._new_optimizer()
        self._check_batch(batch)
        b = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        inputs = torch.cat([b["source"], b["target"]])
        windows = torch.cat([b["target_window"], b["source_window"]])
        truth = torch.cat([b["target"], b["source"]])
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16):
            out = self.model(inputs, windows, stage)
            loss, parts = self.objective(out, truth, stage)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        self._update_ema()
        self.step += 1
        self._last_batch = {k: batch[k][:SAMPLE_PAIRS] for k in ("source", "target", "target_window")}
        result = StepResult(self.step, stage, parts, lr)
        self.history.append(result)
        return result

    def _check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        size, frames = self.config.image_size_px, self.config.window_frames
        width = self.space.width
        for key in ("source", "target"):
            if tuple(batch[key].shape[1:]) != (3, size, size):
                raise PirenderError(
                    f"dataset {key} images are {tuple(batch[key].shape[1:])}, the config "
                    f"trains at (3, {size}, {size})"
                )
        for key in ("source_window", "target_window"):
            if tuple(batch[key].shape[1:]) != (width, frames):
                raise PirenderError(
                    f"dataset {key}s are {tuple(batch[key].shape[1:])}; the config needs ({width}, {frames}) "
                    f"(motion space {self.space.name!r}, radius_past + 1 + radius_future frames)"
                )

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = self.config.ema_decay
        for ema_p, p in zip(self.ema.parameters(), self.net.parameters(), strict=True):
            ema_p.mul_(d).add_(p.detach(), alpha=1 - d)

    def train(self, until: int | None = None) -> list[StepResult]:
        """Run to step ``until`` (default: the schedule's total); checkpoint every ``checkpoint_every``
        steps and at the end. Returns the steps run by this call."""
        s = self.config.schedule
        stop = min(until if until is not None else s.total_steps, s.total_steps)
        done: list[StepResult] = []
        if self.step >= stop:
            return done
        bar = tqdm(
            total=stop,
            initial=self.step,
            disable=not self.progress or self.rank != 0,
            unit="step",
            dynamic_ncols=True,
        )
        batches = self._batches()
        started = time.perf_counter()
        try:
            while self.step < stop:
                result = self.train_step(next(batches))
                done.append(result)
                bar.update(1)
                bar.set_postfix(stage=result.stage, loss=f"{result.losses['total']:.4f}")
                if result.step % s.log_every == 0 or result.step == stop:
                    self._log(result, time.perf_counter() - started)
                if result.step % s.checkpoint_every == 0 or result.step == stop:
                    self.save()
                    self.write_samples()
        finally:
            bar.close()
            if self._logger is not None and hasattr(self._logger, "flush"):
                self._logger.flush()
        return done

    # ---------------------------------------------------------------------------------------------
    # logging

    def _log(self, result: StepResult, elapsed_s: float) -> None:
        losses = dict(result.losses)
        if self.world_size > 1:  # the mean over ranks (the logged number); every rank must join
            values = torch.tensor([losses[k] for k in sorted(losses)], dtype=torch.float64)
            dist.all_reduce(values)
            losses = {k: float(v) / self.world_size for k, v in zip(sorted(losses), values, strict=True)}
        if self.rank != 0:
            return
        if self._logger is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._logger = SummaryWriter(str(self.out_dir / "tensorboard"))
            except ImportError:
                self._logger = (self.out_dir / "log.jsonl").open("a", encoding="utf-8")
                self._logger.write(json.dumps({"losses_used": self.objective.description}) + "\n")
        if hasattr(self._logger, "add_scalar"):
            for key, value in losses.items():
                self._logger.add_scalar(f"loss/{key}", value, result.step)
            self._logger.add_scalar("lr", result.lr, result.step)
        else:
            record = {"step": result.step, "stage": result.stage, "lr": result.lr, "elapsed_s": elapsed_s}
            self._logger.write(json.dumps({**record, "loss": losses}) + "\n")

    # ---------------------------------------------------------------------------------------------
    # checkpoints

    def state(self) -> dict[str, Any]:
        """The checkpoint dict (see the module docstring); tensors on the CPU."""

        def cpu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu().contiguous() for k, v in sd.items()}

        epoch, offset = divmod(self.step, self.batches_per_epoch)
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "config": self.config.generator.to_dict(),
            "motion_space": self.space.to_dict(),
            "image_size_px": int(self.config.image_size_px),
            "net_G": cpu(self.net.state_dict()),
            "net_G_ema": cpu(self.ema.state_dict()),
            "opt_G": self.optimizer.state_dict(),
            "sch_G": self.scheduler.state_dict(),
            "current_epoch": epoch,
            "current_iteration": self.step,
            "meta": {
                "trainer": "pirender.training.renderer_trainer",
                "train_config": self.config.to_dict(),
                "losses": dict(self.objective.description),
                "stage": self.stage_at(max(self.step - 1, 0)),
                "world_size": self.world_size,
            },
            "training_state": {
                "optimizer_stage": self.optimizer_stage,
                "sampler": {
                    "seed": self.config.seed,
                    "epoch": epoch,
                    "batch_offset": offset,
                    "batches_per_epoch": self.batches_per_epoch,
                    "world_size": self.world_size,
                },
                "rng": rng_states(),
            },
        }

    @torch.no_grad()
    def sample_grid(self) -> torch.Tensor | None:
        """(3, rows * S, 4 * S) float in [0, 1]: per pair of the last batch, source | target | warped |
        generated by the EMA weights (the warp stage has no generated image: grey). None before a step."""
        if self._last_batch is None:
            return None
        batch = {k: v.to(self.device) for k, v in self._last_batch.items()}
        stage = self.stage_at(max(self.step - 1, 0))
        out = self.ema(batch["source"], batch["target_window"], stage)
        warped = out["warp_image"].float()
        fake = out["fake_image"].float() if "fake_image" in out else torch.zeros_like(warped)
        tiles = torch.stack(
            [batch["source"].float(), batch["target"].float(), warped, fake], 1
        )  # B, 4, 3, S, S
        b, n, c, h, w = tiles.shape
        grid = tiles.permute(2, 0, 3, 1, 4).reshape(c, b * h, n * w)
        return ((grid.clamp(-1, 1) + 1) / 2).cpu()

    def write_samples(self) -> Path | None:
        """The sample grid as ``samples/step_NNNNNNN.png`` (rank 0; also to TensorBoard when present)."""
        if self.rank != 0:
            return None
        grid = self.sample_grid()
        if grid is None:
            return None
        pixels = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        (self.out_dir / "samples").mkdir(parents=True, exist_ok=True)
        path = write_atomically(
            self.out_dir / "samples" / f"step_{self.step:07d}.png", lambda h: h.write(buffer.getvalue())
        )
        if self._logger is not None and hasattr(self._logger, "add_image"):
            self._logger.add_image("samples", grid, self.step)
        return path

    def save(self) -> Path | None:
        """Write the checkpoint and ``latest_checkpoint.txt`` atomically (rank 0; other ranks: None)."""
        if self.rank != 0:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        payload = self.state()
        name = checkpoint_name(payload["current_epoch"], self.step)
        path = write_atomically(self.out_dir / name, lambda h: torch.save(payload, h), error=CheckpointError)
        write_atomically(
            self.out_dir / POINTER_FILE,
            lambda h: h.write(f"latest_checkpoint: {name}\n".encode()),
            error=CheckpointError,
        )
        return path

    def load(self, path: str | Path) -> None:
        """Continue from a checkpoint of this trainer (file or run folder)."""
        file = resolve_checkpoint_path(path)
        obj = load_weights_file(file)
        if not isinstance(obj, dict) or "training_state" not in obj or "opt_G" not in obj:
            raise CheckpointError(f"{file}: not a resumable checkpoint of this trainer (no optimiser state)")
        state = obj["training_state"]
        sampler = state["sampler"]
        if sampler["world_size"] != self.world_size or sampler["batches_per_epoch"] != self.batches_per_epoch:
            raise CheckpointError(
                f"{file}: written by a run of {sampler['world_size']} rank(s) with "
                f"{sampler['batches_per_epoch']} batches per epoch; this run has {self.world_size} and "
                f"{self.batches_per_epoch} (exact resume needs the same data and world size)"
            )
        self.net.load_state_dict(obj["net_G"], strict=True)
        self.ema.load_state_dict(obj["net_G_ema"], strict=True)
        self.step = int(obj["current_iteration"])
        self.optimizer_stage = state["optimizer_stage"]
        self.optimizer, self.scheduler = self._new_optimizer()
        self.optimizer.load_state_dict(obj["opt_G"])
        self.scheduler.load_state_dict(obj["sch_G"])
        set_rng_states(state["rng"])

    def close(self) -> None:
        """Close the log; leave the process group if this trainer joined it."""
        if self._logger is not None:
            self._logger.close()
            self._logger = None
        if self._owns_process_group and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_process_group = False


# --------------------------------------------------------------------------------------------------
# command line


def _default_dataset(data: str, config: RendererTrainConfig, space: str | None = None) -> Dataset:
    """The prepared-dataset reader; ``space`` "open" / "authors" (None: the dataset's default)."""
    from pirender.training.dataset import PairDataset  # the prepared-dataset reader (issue 13)

    size_px = config.image_size_px  # frames stored at 256 px are resized for a smaller model
    if config.radius_future == config.radius_past:
        return PairDataset(data, "train", config.radius_past, False, size_px=size_px, space=space)
    if config.radius_future == 0:  # the reader's causal windows repeat the centre in the future slots
        causal = PairDataset(data, "train", config.radius_past, True, size_px=size_px, space=space)
        return _PastOnly(causal, config.radius_past + 1)
    raise PirenderError("the prepared-dataset reader gives centred or causal (radius_future 0) windows only")


class _PastOnly(Dataset):
    """Keeps the first ``frames`` slots of each window (past frames and the centre)."""

    def __init__(self, dataset: Any, frames: int) -> None:
        self.dataset, self.frames = dataset, frames
        self.space = getattr(dataset, "space", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = dict(self.dataset[index])
        for key in ("source_window", "target_window"):
            item[key] = item[key][..., : self.frames]
        return item


def _check_run_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over an earlier one's checkpoints (``--resume`` continues it,
    ``--overwrite`` removes its checkpoints, pointer, log and samples first)."""
    earlier = sorted(out.glob("epoch_*_checkpoint.pt")) if out.is_dir() else []
    if resume or not (earlier or (out / POINTER_FILE).exists()):
        return
    if not overwrite:
        raise PirenderError(
            f"{out} holds the checkpoints of an earlier run ({len(earlier)}): add --resume to continue "
            "it or --overwrite to start again"
        )
    for path in [*earlier, out / POINTER_FILE, out / "log.jsonl"]:
        path.unlink(missing_ok=True)
    shutil.rmtree(out / "samples", ignore_errors=True)
    shutil.rmtree(out / "tensorboard", ignore_errors=True)


def main(
    argv: list[str] | None = None,
    *,
    make_dataset: Callable[[str, RendererTrainConfig], Dataset] | None = None,
) -> int:
    """``--config paper|small|FILE --data DATASET --out RUN [--space open|authors] [--vgg19 PATH] [--steps N]
    [--resume [CKPT]]``."""
    parser = argparse.ArgumentParser(
        prog="pirender train",
        description="Train PIRenderer on a dataset of pirender prepare: the warp stage (mapping + warping "
        "nets) first, then end to end with the editing net.",
        epilog="example: pirender train --config small --data data/talking --out runs/small "
        "(then pirender eval --data data/talking --renderer mesh --renderer runs/small --out out/eval)",
    )
    parser.add_argument("--config", default="small", help="preset (paper, small) or a .json/.toml file")
    parser.add_argument("--data", required=True, help="prepared dataset folder")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs)")
    parser.add_argument(
        "--space",
        choices=["open", "authors"],
        default=None,
        help="motion space of the dataset to train in (default: open where the dataset holds it; "
        "authors needs a dataset made with prepare --deep3d)",
    )
    parser.add_argument(
        "--vgg19", default=None, help="torchvision VGG-19 state_dict file (else the fallback loss)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="total steps (overrides the config; the warp stage keeps its length, cut to fit: a run of "
        "no more steps than --warp-steps never trains the editing net)",
    )
    parser.add_argument("--warp-steps", type=int, default=None, help="steps of the warp stage (overrides)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        help="continue from a checkpoint (default: the run folder's latest)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start again in a run folder that holds checkpoints"
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.steps is not None or args.warp_steps is not None:
            config = config.with_steps(args.steps, warp_steps=args.warp_steps)
        if make_dataset is None and not Path(args.data).expanduser().exists():
            raise PirenderError(
                f"--data {args.data}: no such dataset folder (make one with pirender prepare)"
            )
        _check_run_folder(
            Path(args.out).expanduser(), resume=args.resume is not None, overwrite=args.overwrite
        )
        if make_dataset is not None:
            dataset = make_dataset(args.data, config)
        else:
            dataset = _default_dataset(args.data, config, args.space)
        space = getattr(dataset, "space", None)
        resume = None if args.resume is None else (args.resume or args.out)
        trainer = RendererTrainer(config, dataset, args.out, space=space, vgg19=args.vgg19, resume=resume)
        trainer.train()
        trainer.close()
    except PirenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if trainer.rank == 0:
        s = config.schedule
        print(
            f"step {trainer.step}: checkpoint in {Path(args.out) / POINTER_FILE} (losses: "
            f"{trainer.objective.description.get('kind', '?')}; sample grids in {Path(args.out) / 'samples'})"
        )
        if trainer.step <= s.warp_steps:
            print(
                f"note: the run is still in the warp stage (warp_steps {s.warp_steps}): the editing net is "
                "untrained; the checkpoint renders the warped source only (pirender eval measures it so)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
