#!/usr/bin/env python
"""Time the PIRenderer renderer per frame, against the authors' eager fp32 model in the same run.

For every (precision, mode, batch) the ``torch`` renderer (``TorchRenderer``: source-only work cached
by ``prepare``, the editing net's dead branch skipped, reduced precision where asked) is timed, and so
is the reference: the plain eager fp32 ``FaceGenerator.forward(source, window)`` of the same weights
with the authors' discarded branch computed (their cost, ``pirender-spec.md`` section 9), or its
``stage="warp"`` forward for warp mode. Results are reported per call and per frame, as frames/s, as a
speed-up over the reference of the same mode and batch, and with the output error of ``frame`` against
the reference's fp32 output (max abs difference, PSNR with peak-to-peak 2 for [-1, 1] images).

Within each (mode, batch) the reference and every precision are timed round-robin (one call each per
round), so that a machine whose load drifts slows every row alike and the speed-ups stay comparable.
The FLOPs of one frame (``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix products,
2 per MAC) are printed once. Nothing here asserts timings; it measures and prints.

Example (the default CPU run, about a minute on 2 cores)::

    .venv/bin/python benchmarks/bench_renderer.py --markdown --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from pirender.engine.errors import PirenderError
from pirender.engine.image import SourceImage, image_to_tensor, load_source_image
from pirender.engine.motion.space import AUTHORS_SPACE, MotionSpace
from pirender.engine.renderer.base import Precision, RenderMode
from pirender.engine.renderer.checkpoint import (
    AUTHORS_IMAGE_SIZE_PX,
    CheckpointInfo,
    build_generator,
    random_generator,
    read_checkpoint,
)
from pirender.engine.renderer.pirender.config import GeneratorConfig
from pirender.engine.renderer.pirender.generator import FaceGenerator, set_reference_ops
from pirender.engine.renderer.torch_backend import TorchRenderer

DEMO_DIR = Path("/work/shared/data/vox_demo")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
WINDOW_FRAMES = 27  # 2k + 1 with k = 13, the authors' semantic radius
SEED = 0
PEAK_TO_PEAK = 2.0  # frames are in [-1, 1]
REF = "ref-fp32"  # label of the reference rows


# --------------------------------------------------------------------------------------------------
# arguments


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _batches(value: str) -> list[int]:
    try:
        batches = [int(item) for item in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch sizes must be integers, got {value!r}") from None
    if not batches or any(b < 1 for b in batches):
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {value!r}")
    return list(dict.fromkeys(batches))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench_renderer.py",
        description=(
            "Time the torch renderer per frame for each precision, mode and batch size, as a speed-up "
            "over the authors' eager fp32 model (dead branch computed) timed in the same run."
        ),
        epilog=(
            "example:\n"
            "  .venv/bin/python benchmarks/bench_renderer.py --markdown --json /tmp/bench.json\n"
            "  .venv/bin/python benchmarks/bench_renderer.py --device cuda --batch 1,8 --repeats 100\n"
            "\n"
            "The default CPU run (fp32,bf16 x full,warp x batch 1, 3 warm-up + 20 timed calls each) takes\n"
            "about a minute on 2 cores."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default: cpu)"
    )
    parser.add_argument(
        "--precisions",
        type=_csv,
        default=None,
        help=f"comma list of {', '.join(p.value for p in Precision)} "
        "(default: fp32,bf16 on CPU; fp32,fp16,bf16 on CUDA)",
    )
    parser.add_argument(
        "--modes", type=_csv, default=["full", "warp"], help="comma list of full, warp (default: both)"
    )
    parser.add_argument(
        "--batch", type=_batches, default=[1], help="batch size(s), comma list, e.g. 1,8 (default: 1)"
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help=f"image side in px (default: {AUTHORS_IMAGE_SIZE_PX} or the checkpoint's)",
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per configuration (default: 3)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per configuration (default: 20)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads(N) (default: torch's own, reported)"
    )
    parser.add_argument(
        "--cudnn-benchmark",
        action="store_true",
        help="CUDA: set torch.backends.cudnn.benchmark = True (default: torch's own, False)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help=f"generator checkpoint (default: random weights, random_generator(seed={SEED}))",
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="OUT.json", help="also write all results here"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="also print a markdown table (for benchmarks/RESULTS.md)"
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error(
            f"--device cuda: this torch build ({torch.__version__}) sees no CUDA GPU "
            "(torch.cuda.is_available() is False); run with --device cpu or on a machine with a GPU"
        )
    if args.precisions is None:
        args.precisions = ["fp32", "bf16"] if args.device == "cpu" else ["fp32", "fp16", "bf16"]
    known_precisions = [p.value for p in Precision]
    bad = [p for p in args.precisions if p not in known_precisions]
    if bad or not args.precisions:
        parser.error(
            f"--precisions: unknown {', '.join(bad) or '(empty)'}; choose from {','.join(known_precisions)}"
        )
    args.precisions = list(dict.fromkeys(args.precisions))
    known_modes = [m.value for m in RenderMode]
    bad = [m for m in args.modes if m not in known_modes]
    if bad or not args.modes:
        parser.error(f"--modes: unknown {', '.join(bad) or '(empty)'}; choose from {','.join(known_modes)}")
    args.modes = list(dict.fromkeys(args.modes))
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.json is not None and not args.json.expanduser().resolve().parent.is_dir():
        parser.error(f"--json {args.json}: folder {args.json.expanduser().resolve().parent} does not exist")
    if args.size is not None and args.size < 1:
        parser.error("--size must be positive")
    return args


# --------------------------------------------------------------------------------------------------
# environment


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({os.cpu_count()} logical CPUs visible)"


def load_average() -> str:
    with contextlib.suppress(OSError, AttributeError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "n/a"


def command_line() -> str:
    return shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))


# --------------------------------------------------------------------------------------------------
# model and inputs


@dataclass
class ModelSource:
    """Where the weights come from: a fresh generator per call of :meth:`make`."""

    description: str
    config: GeneratorConfig
    space: MotionSpace
    image_size_px: int
    info: CheckpointInfo | None = None

    def make(self) -> FaceGenerator:
        if self.info is not None:
            return build_generator(self.info)
        return random_generator(self.config, seed=SEED)


def model_source(checkpoint: Path | None) -> ModelSource:
    if checkpoint is None:
        return ModelSource(
            description=f"random weights (random_generator(seed={SEED}), the authors' initialisation)",
            config=GeneratorConfig(),
            space=AUTHORS_SPACE,
            image_size_px=AUTHORS_IMAGE_SIZE_PX,
        )
    info = read_checkpoint(checkpoint)
    return ModelSource(
        description=f"checkpoint {info.path} ({info.kind}, {info.dict_key or 'bare state dict'})",
        config=info.config,
        space=info.space,
        image_size_px=info.image_size_px,
        info=info,
    )


def source_image(size_px: int) -> tuple[SourceImage, str]:
    """A real portrait from the demo folder when present, else a deterministic random image."""
    if DEMO_DIR.is_dir():
        candidates = sorted(p for p in DEMO_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if candidates:
            return load_source_image(candidates[0], size_px=size_px), str(candidates[0])
    rgb = np.random.default_rng(SEED).integers(0, 256, size=(size_px, size_px, 3), dtype=np.uint8)
    return load_source_image(rgb, size_px=size_px), f"random uint8 image (numpy seed {SEED})"


def make_windows(batch: int, width: int, frames: int, device: torch.device) -> torch.Tensor:
    """(batch, width, frames) float32 standard normal, fixed seed (batch b is a prefix of batch b+1)."""
    generator = torch.Generator().manual_seed(SEED)
    return torch.randn(batch, width, frames, generator=generator).to(device)


# --------------------------------------------------------------------------------------------------
# timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_one_call(fn: Callable[[], object], device: torch.device) -> tuple[float, int | None]:
    """(milliseconds, peak extra CUDA bytes allocated during the call or None on CPU) of one call."""
    if device.type != "cuda":
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3, None
    synchronize(device)
    allocated_before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return float(start.elapsed_time(end)), torch.cuda.max_memory_allocated(device) - allocated_before


def output_error(frame: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """(max abs difference, PSNR in dB with peak-to-peak 2) of ``frame`` against ``reference``."""
    diff = frame.detach().float().cpu() - reference
    mse = float(diff.pow(2).mean())
    psnr = math.inf if mse == 0.0 else 10.0 * math.log10(PEAK_TO_PEAK**2 / mse)
    return float(diff.abs().max()), psnr


# --------------------------------------------------------------------------------------------------
# models under test


def make_reference(models: ModelSource, device: torch.device) -> FaceGenerator:
    """The authors' eager fp32 model: same weights, dead branch computed."""
    reference = models.make().to(device)
    set_reference_ops(reference, True)
    return reference


def make_renderer(models: ModelSource, precision: str, device: torch.device) -> TorchRenderer:
    return TorchRenderer(
        models.make(),
        space=models.space,
        image_size_px=models.image_size_px,
        device=device,
        precision=precision,
    )


def weight_bytes(model: torch.nn.Module) -> int:
    return sum(int(t.numel()) * t.element_size() for t in model.state_dict().values())


@dataclass
class Contender:
    """One row label: builds the call to time for a (mode, batch)."""

    label: str
    call: Callable[[str, int], Callable[[], torch.Tensor]]
    weight_bytes: int


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """No TF32 in cuDNN convolutions or CUDA matmuls for the block (PyTorch allows it in convolutions)."""
    previous = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous


def reference_contender(reference: FaceGenerator, source32: torch.Tensor, windows: torch.Tensor) -> Contender:
    def call(mode: str, batch: int) -> Callable[[], torch.Tensor]:
        source_b = source32.expand(batch, -1, -1, -1).contiguous()  # a real batch, as the authors feed it
        window_b = windows[:batch]
        stage = "warp" if mode == RenderMode.WARP else None
        key = "warp_image" if stage == "warp" else "fake_image"

        def run() -> torch.Tensor:
            with strict_fp32():
                return reference(source_b, window_b, stage)[key]

        return run

    return Contender(REF, call, weight_bytes(reference))


def renderer_contender(label: str, renderer: TorchRenderer, windows: torch.Tensor) -> Contender:
    def call(mode: str, batch: int) -> Callable[[], torch.Tensor]:
        window_b = windows[:batch]
        return lambda: renderer.render(window_b, mode=mode).frame

    return Contender(label, call, weight_bytes(renderer.model))


# --------------------------------------------------------------------------------------------------
# FLOPs


def count_flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


@dataclass
class ModelFacts:
    parameters: int  # state_dict elements
    gflops_full_ours: float  # per frame through the renderer (stem cached, dead branch skipped)
    gflops_full_eager_skipped: float  # eager forward, dead branch skipped (includes the source stem)
    gflops_full_reference: float  # eager forward, dead branch computed: the authors' cost
    gflops_warp_ours: float
    gflops_warp_reference: float
    gflops_prepare: float  # once per source: the hourglass stem


def model_facts(
    models: ModelSource,
    image: SourceImage,
    window: torch.Tensor,
    source32: torch.Tensor,
    device: torch.device,
) -> ModelFacts:
    """Parameter count and FLOPs per frame (batch 1, fp32; conv/matmul only, 2 per MAC)."""
    reference = make_reference(models, device)
    full_reference = count_flops(lambda: reference(source32, window))
    warp_reference = count_flops(lambda: reference(source32, window, "warp"))
    set_reference_ops(reference, False)
    full_skipped = count_flops(lambda: reference(source32, window))
    renderer = make_renderer(models, "fp32", device)
    prepare = count_flops(lambda: renderer.prepare(image))
    full_ours = count_flops(lambda: renderer.render(window, mode="full"))
    warp_ours = count_flops(lambda: renderer.render(window, mode="warp"))
    giga = 1e-9
    return ModelFacts(
        parameters=sum(int(t.numel()) for t in reference.state_dict().values()),
        gflops_full_ours=full_ours * giga,
        gflops_full_eager_skipped=full_skipped * giga,
        gflops_full_reference=full_reference * giga,
        gflops_warp_ours=warp_ours * giga,
        gflops_warp_reference=warp_reference * giga,
        gflops_prepare=prepare * giga,
    )


# --------------------------------------------------------------------------------------------------
# the benchmark


@dataclass
class Result:
    precision: str  # "ref-fp32" for the reference rows
    mode: str
    batch: int
    median_ms_call: float
    p90_ms_call: float
    median_ms_frame: float
    p90_ms_frame: float
    frames_per_s: float
    speedup: float  # reference median / this median, same mode and batch
    max_abs_err: float  # frame vs the reference's fp32 frame
    psnr_db: float
    max_abs_err_vs_ours_fp32: float | None = None  # frame vs this renderer's fp32 frame
    psnr_db_vs_ours_fp32: float | None = None
    peak_mib: float | None = None  # CUDA: own weights + the largest extra allocation of one call
    times_ms: list[float] = field(default_factory=list)


def summarise(times_ms: list[float], batch: int) -> dict[str, float]:
    median = float(np.median(times_ms))
    p90 = float(np.percentile(times_ms, 90))
    return {
        "median_ms_call": median,
        "p90_ms_call": p90,
        "median_ms_frame": median / batch,
        "p90_ms_frame": p90 / batch,
        "frames_per_s": 1e3 * batch / median,
    }


def run_group(
    contenders: list[Contender], mode: str, batch: int, args: argparse.Namespace, device: torch.device
) -> list[Result]:
    """Time every contender at one (mode, batch), round-robin so that load drifts hit all alike.

    Each contender gets one untimed call whose frame is compared, ``warmup`` untimed calls, then
    ``repeats`` timed calls; in timed round r the contenders are called in an order rotated by r.
    """
    fns = [c.call(mode, batch) for c in contenders]
    frames = [fn().detach().float().cpu() for fn in fns]
    for _ in range(args.warmup):
        for fn in fns:
            fn()
    synchronize(device)
    times: list[list[float]] = [[] for _ in fns]
    peaks: list[int | None] = [None for _ in fns]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(args.repeats):
            for k in range(len(fns)):
                i = (k + r) % len(fns)
                ms, peak = time_one_call(fns[i], device)
                times[i].append(ms)
                if peak is not None:
                    peaks[i] = max(peaks[i] or 0, peak)
    finally:
        if gc_was_enabled:
            gc.enable()

    labels = [c.label for c in contenders]
    ref_index = labels.index(REF)
    ref_median = float(np.median(times[ref_index]))
    ours_fp32 = frames[labels.index("fp32")] if "fp32" in labels else None
    results = []
    for i, contender in enumerate(contenders):
        stats = summarise(times[i], batch)
        err, psnr = output_error(frames[i], frames[ref_index])
        err32: float | None = None
        psnr32: float | None = None
        if ours_fp32 is not None and contender.label not in (REF, "fp32"):
            err32, psnr32 = output_error(frames[i], ours_fp32)
        peak = peaks[i]
        result = Result(
            precision=contender.label,
            mode=mode,
            batch=batch,
            speedup=ref_median / stats["median_ms_call"],
            max_abs_err=err,
            psnr_db=psnr,
            max_abs_err_vs_ours_fp32=err32,
            psnr_db_vs_ours_fp32=psnr32,
            peak_mib=None if peak is None else (peak + contender.weight_bytes) / 2**20,
            times_ms=times[i],
            **stats,
        )
        results.append(result)
        memory_text = f", peak {result.peak_mib:.0f} MiB" if result.peak_mib is not None else ""
        print(
            f"  {result.precision:>8} {mode:>4} b={batch:<3} median {result.median_ms_frame:8.2f} ms/frame "
            f"({result.frames_per_s:7.2f} frames/s, x{result.speedup:.2f}, "
            f"max|err| {err:.2e}, PSNR {_psnr_text(psnr)} dB{memory_text})",
            flush=True,
        )
    return results


def benchmark(
    args: argparse.Namespace,
    models: ModelSource,
    image: SourceImage,
    windows: torch.Tensor,
    source32: torch.Tensor,
    device: torch.device,
) -> list[Result]:
    contenders = [reference_contender(make_reference(models, device), source32, windows)]
    for precision in args.precisions:
        renderer = make_renderer(models, precision, device)
        renderer.prepare(image)
        contenders.append(renderer_contender(precision, renderer, windows))
    results: list[Result] = []
    for batch in args.batch:
        for mode in args.modes:
            results += run_group(contenders, mode, batch, args, device)
            gc.collect()
    return results


# --------------------------------------------------------------------------------------------------
# output


def _psnr_text(psnr: float) -> str:
    return "inf" if math.isinf(psnr) else f"{psnr:.1f}"


def _err_text(err: float) -> str:
    return "0" if err == 0.0 else f"{err:.1e}"


def table_rows(results: list[Result], *, with_memory: bool) -> tuple[list[str], list[list[str]]]:
    header = [
        "precision",
        "mode",
        "batch",
        "ms/call med",
        "ms/call p90",
        "ms/frame med",
        "ms/frame p90",
        "frames/s",
        "speed-up",
        "max abs err",
        "PSNR dB",
    ]
    if with_memory:
        header.append("peak MiB")
    rows = []
    for r in results:
        row = [
            r.precision,
            r.mode,
            str(r.batch),
            f"{r.median_ms_call:.2f}",
            f"{r.p90_ms_call:.2f}",
            f"{r.median_ms_frame:.2f}",
            f"{r.p90_ms_frame:.2f}",
            f"{r.frames_per_s:.2f}",
            f"{r.speedup:.2f}x",
            _err_text(r.max_abs_err),
            _psnr_text(r.psnr_db),
        ]
        if with_memory:
            row.append("-" if r.peak_mib is None else f"{r.peak_mib:.0f}")
        rows.append(row)
    return header, rows


def aligned_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    left = {0, 1}  # text columns

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i in left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---" if i < 2 else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    try:
        models = model_source(args.checkpoint)
    except PirenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.size is not None:
        models.image_size_px = args.size
    size_px = models.image_size_px
    multiple = models.config.size_multiple_px
    if size_px % multiple:
        print(f"error: --size {size_px} must be a multiple of {multiple} for this generator", file=sys.stderr)
        return 2

    image, image_text = source_image(size_px)
    source32 = image_to_tensor(image.rgb, device=device)
    frames = max(WINDOW_FRAMES, models.config.min_window_frames)
    windows = make_windows(max(args.batch), models.space.width, frames, device)
    threads = torch.get_num_threads()

    meta: dict[str, Any] = {
        "date": utc_now(),
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": threads,
        "threads_source": "--threads" if args.threads is not None else "torch default",
        "command": command_line(),
        "weights": models.description,
        "source": image_text,
        "image_size_px": size_px,
        "window": [models.space.width, frames],
        "warmup": args.warmup,
        "repeats": args.repeats,
        "timer": "torch.cuda.Event, synchronised per call" if device.type == "cuda" else "time.perf_counter",
        "load_average_start": load_average(),
    }
    if device.type == "cuda":
        meta["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        meta["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
        meta["cudnn_benchmark"] = torch.backends.cudnn.benchmark

    lines = [
        f"date:      {meta['date']}",
        f"device:    {meta['device']}",
        f"torch:     {meta['torch']}, threads {threads} ({meta['threads_source']})",
        f"load avg:  {meta['load_average_start']} (1/5/15 min, at start)",
        f"command:   {meta['command']}",
        f"weights:   {meta['weights']}",
        f"source:    {meta['source']} at {size_px}x{size_px}",
        f"windows:   (B, {models.space.width}, {frames}) standard normal, torch seed {SEED}",
        f"timing:    {meta['timer']}; per (mode, batch) every row gets {args.warmup} warm-up + "
        f"{args.repeats} timed calls, round-robin",
        "reference: ref-fp32 = eager fp32 FaceGenerator.forward(source, window[, stage='warp']) of the "
        "same weights,",
        "           dead branch computed (the authors' cost), torch.inference_mode(), TF32 off on CUDA",
        "speed-up:  ref-fp32 median / row median, same mode and batch",
        "error:     frame vs the ref-fp32 frame: max |diff| and PSNR (peak-to-peak 2)",
    ]
    if device.type == "cuda":
        lines.append(
            f"cuda:      cudnn.allow_tf32={meta['cudnn_allow_tf32']}, "
            f"matmul.allow_tf32={meta['matmul_allow_tf32']}, cudnn.benchmark={meta['cudnn_benchmark']}; "
            "ref-fp32 runs with TF32 off; "
            "peak MiB = own weights + largest extra torch.cuda.max_memory_allocated of one call"
        )
    for line in lines:
        print(f"# {line}", flush=True)

    with torch.inference_mode():
        facts = model_facts(models, image, windows[:1], source32, device)
        gc.collect()
        print(f"# model:     {facts.parameters:,} state_dict elements")
        print("# GFLOPs per frame, batch 1 (FlopCounterMode: conv/matmul only, 2 per MAC):")
        print(
            f"#   full: ours {facts.gflops_full_ours:.2f} (+ {facts.gflops_prepare:.2f} once per source), "
            f"eager dead branch skipped {facts.gflops_full_eager_skipped:.2f}, "
            f"reference {facts.gflops_full_reference:.2f}"
        )
        print(f"#   warp: ours {facts.gflops_warp_ours:.2f}, reference {facts.gflops_warp_reference:.2f}")
        print("# runs:", flush=True)
        results = benchmark(args, models, image, windows, source32, device)

    elapsed = time.perf_counter() - started
    header, rows = table_rows(results, with_memory=device.type == "cuda")
    if args.json is not None:
        payload = {
            "meta": {**meta, "elapsed_s": elapsed, "load_average_end": load_average()},
            "model": asdict(facts),
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(_json_safe(payload), indent=2) + "\n", encoding="utf-8")
        print(f"# json:      {args.json}")
    print(f"# total:     {elapsed:.1f} s (load avg at end {load_average()})")
    if args.markdown:
        print()
        print(markdown_table(header, rows))
    print()
    print(aligned_table(header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
