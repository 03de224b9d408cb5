"""``pirender bench``: per-frame latency of every renderer backend against the authors' eager fp32 model.

For every backend (``torch`` eager, ``compiled`` = torch.compile of the per-frame path with frozen
weights on CPU / CUDA graphs on GPU, ``onnx`` = ONNX Runtime, ``tensorrt`` = an fp16 engine where
TensorRT exists), precision, mode and batch, the renderer is timed together with the reference: the
plain eager fp32 ``FaceGenerator.forward(source, window)`` of the same weights with the authors'
discarded branch computed (their cost, ``pirender-spec.md`` section 9), or its ``stage="warp"``
forward for warp mode. Results: p50/p90/p99 ms per frame, frames/s after warm-up (CUDA events on a
GPU), peak CUDA memory, the speed-up over the reference of the same mode and batch, and the output
error of ``frame`` against the reference's fp32 output (max abs difference, PSNR with peak-to-peak 2
for [-1, 1] images; "faithful" marks rows within 1e-3).

Within each (mode, batch) the reference and every row are timed round-robin (one call each per
round), so that a machine whose load drifts slows every row alike and the speed-ups stay comparable.
On a GPU ``--warp-kernel`` also times the fused CuPy warp against interpolate + grid_sample (with the
achieved GB/s against the device's copy bandwidth); ``--streams LABEL`` counts how many 25-fps streams
one renderer sustains through the engine's batching render service. Output: a table, ``--json``,
``--plot`` (PNG) and ``--results`` (appends a dated markdown section, e.g. to benchmarks/RESULTS.md).
Nothing here asserts timings; it measures and prints.

Example (CPU, all backends, a few minutes on 2 cores: compiling and exporting come first)::

    pirender bench --backend all --json /tmp/bench.json --plot /tmp/bench.png
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
from typing import Any, BinaryIO

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .api import build_renderer
from .errors import PirenderError
from .fileio import check_output, prepare_folder, write_atomically
from .image import SourceImage, image_to_tensor, load_source_image
from .motion.limits import limits_for
from .motion.space import AUTHORS_SPACE, MotionSpace
from .renderer.base import Precision, PreparedSource, Renderer, RenderMode
from .renderer.checkpoint import (
    AUTHORS_IMAGE_SIZE_PX,
    CheckpointInfo,
    build_generator,
    random_generator,
    read_checkpoint,
)
from .renderer.pirender.config import GeneratorConfig
from .renderer.pirender.generator import FaceGenerator, set_reference_ops
from .renderer.torch_backend import TorchRenderer

DEMO_DIR = Path("/work/shared/data/vox_demo")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
WINDOW_FRAMES = 27  # 2k + 1 with k = 13, the authors' semantic radius
SEED = 0
PEAK_TO_PEAK = 2.0  # frames are in [-1, 1]
REF = "ref-fp32"  # label of the reference rows
BACKENDS = ("torch", "compiled", "onnx", "openvino", "tensorrt")
FAITHFUL_MAX_ABS = 1e-3  # an fp32-faithful row: frame within this of the reference's
STREAM_FPS = 25.0


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
        prog="pirender bench",
        description=(
            "Time the renderer backends per frame for each precision, mode and batch size, as a speed-up "
            "over the authors' eager fp32 model (dead branch computed) timed in the same run."
        ),
        epilog=(
            "examples:\n"
            "  pirender bench --backend all --json /tmp/bench.json --plot /tmp/bench.png\n"
            "  pirender bench --device cuda --backend all --batch 1,8 --repeats 100 --warp-kernel \\\n"
            "      --streams 'compiled fp16' --results benchmarks/RESULTS.md\n"
            "\n"
            "The default CPU run (torch fp32,bf16 x full,warp x batch 1, 3 warm-up + 20 timed calls each)\n"
            "takes about a minute on 2 cores; --backend all adds compiling (~1 min) and the ONNX export."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default: cpu)"
    )
    parser.add_argument(
        "--backend",
        type=_csv,
        default=["torch"],
        help=f"comma list of {', '.join(BACKENDS)} or all (default: torch)",
    )
    parser.add_argument(
        "--precisions",
        type=_csv,
        default=None,
        help=f"comma list of {', '.join(p.value for p in Precision)} for the torch and compiled backends "
        "(default: fp32,bf16 on CPU; fp32,fp16,bf16 on CUDA); onnx runs fp32, tensorrt fp16",
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
    parser.add_argument("--plot", type=Path, default=None, metavar="OUT.png", help="frames/s bar chart")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        metavar="RESULTS.md",
        help="append a dated section (device, versions, command, table) to this markdown file",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing --json / --plot files (without it they are refused, before any work)",
    )
    parser.add_argument(
        "--warp-kernel", action="store_true", help="CUDA: time the fused CuPy warp against torch's"
    )
    parser.add_argument(
        "--streams",
        default=None,
        metavar="LABEL",
        help="count the 25-fps streams this row (e.g. 'compiled fp16') sustains through the batching service",
    )
    parser.add_argument("--streams-seconds", type=float, default=4.0, help="seconds per stream count")
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
    args.backend = list(BACKENDS) if "all" in args.backend else list(dict.fromkeys(args.backend))
    bad = [b for b in args.backend if b not in BACKENDS]
    if bad or not args.backend:
        parser.error(
            f"--backend: unknown {', '.join(bad) or '(empty)'}; choose from {','.join(BACKENDS)},all"
        )
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
    # outputs: checked, and their folders made, before any work (--results is appended to)
    outputs = {"--json": args.json, "--plot": args.plot, "--results": args.results}
    for option, path in outputs.items():
        if path is None:
            continue
        try:
            checked = check_output(path, overwrite=args.overwrite or option == "--results")
            prepare_folder(checked.parent, label=checked)
        except PirenderError as exc:
            parser.error(f"{option} {exc}")
        setattr(args, option[2:], checked)
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


def make_windows(batch: int, space: MotionSpace, frames: int, device: torch.device) -> torch.Tensor:
    """(batch, width, frames) float32 standard normal, fixed seed (batch b is a prefix of batch b+1),
    clamped into each slot's identity range (``motion.limits``) where the space has one: motion every
    renderer takes unchanged, so the reference and the renderers see the same numbers."""
    generator = torch.Generator().manual_seed(SEED)
    windows = torch.randn(batch, space.width, frames, generator=generator)
    limits = limits_for(space)
    if limits is not None:
        knee_low, knee_high = (torch.as_tensor(r, dtype=torch.float32)[:, None] for r in limits.table[1:3])
        windows = torch.maximum(torch.minimum(windows, knee_high), knee_low)
    return windows.to(device)


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


def make_renderer(
    models: ModelSource, precision: str, device: torch.device, *, backend: str = "torch", mode: str = "full"
) -> Renderer:
    """One backend's renderer of the same weights (raises PirenderError where it cannot run);
    ``compiled`` is the torch backend with torch.compile."""
    return build_renderer(
        models.make(),
        space=models.space,
        image_size_px=models.image_size_px,
        backend="torch" if backend == "compiled" else backend,
        device=device,
        precision=precision,
        mode=mode,
        compile=backend == "compiled",
    )


def planned_rows(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(backend, precision) of every row asked for."""
    rows: list[tuple[str, str]] = []
    for backend in args.backend:
        if backend in ("torch", "compiled"):
            rows += [(backend, precision) for precision in args.precisions]
        elif backend == "onnx":
            rows.append((backend, "fp32"))
        elif backend == "openvino":
            rows += [(backend, precision) for precision in ("fp32", "bf16")]
        else:
            rows.append((backend, "fp16"))
    return rows


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


def renderer_contender(
    label: str, make: Callable[[str], Renderer], image: SourceImage, windows: torch.Tensor
) -> Contender:
    """A renderer per mode (ONNX/TensorRT graphs are built per mode), made on first use."""
    renderers: dict[str, Renderer] = {}
    prepared: dict[str, PreparedSource] = {}

    def call(mode: str, batch: int) -> Callable[[], torch.Tensor]:
        if mode not in renderers:
            renderers[mode] = make(mode)
            prepared[mode] = renderers[mode].prepare(image)
        renderer, source, window_b = renderers[mode], prepared[mode], windows[:batch]
        return lambda: renderer.render(window_b, source=source, mode=mode).frame

    return Contender(label, call, 0)  # its weights live in its own runtime: only allocations count


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
    assert isinstance(renderer, TorchRenderer)
    prepare = count_flops(lambda: renderer.prepare(image))
    source = renderer.prepare(image)
    full_ours = count_flops(lambda: renderer.render(window, source=source, mode="full"))
    warp_ours = count_flops(lambda: renderer.render(window, source=source, mode="warp"))
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
    p99_ms_frame: float = 0.0
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
        "p99_ms_frame": float(np.percentile(times_ms, 99)) / batch,
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
    ours_fp32 = frames[labels.index("torch fp32")] if "torch fp32" in labels else None
    results = []
    for i, contender in enumerate(contenders):
        stats = summarise(times[i], batch)
        err, psnr = output_error(frames[i], frames[ref_index])
        err32: float | None = None
        psnr32: float | None = None
        if ours_fp32 is not None and contender.label not in (REF, "torch fp32"):
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
            f"  {result.precision:>16} {mode:>4} b={batch:<3} median {result.median_ms_frame:8.2f} ms/frame "
            f"({result.frames_per_s:7.2f} frames/s, x{result.speedup:.2f}, "
            f"max|err| {err:.2e}, PSNR {_psnr_text(psnr)} dB{memory_text})",
            flush=True,
        )
    return results


def benchmark(
    skipped: dict[str, str],
    args: argparse.Namespace,
    models: ModelSource,
    image: SourceImage,
    windows: torch.Tensor,
    source32: torch.Tensor,
    device: torch.device,
) -> list[Result]:
    contenders = [reference_contender(make_reference(models, device), source32, windows)]
    for backend, precision in planned_rows(args):
        label = f"{backend} {precision}"

        def make(mode: str, backend: str = backend, precision: str = precision) -> Renderer:
            return make_renderer(models, precision, device, backend=backend, mode=mode)

        contender = renderer_contender(label, make, image, windows)
        try:
            contender.call(args.modes[0], 1)  # build it now: a backend that cannot run is skipped
        except PirenderError as exc:
            skipped[label] = str(exc)
            print(f"# skipped {label}: {exc}", flush=True)
            continue
        contenders.append(contender)
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
        "backend precision",
        "mode",
        "batch",
        "ms/frame p50",
        "ms/frame p90",
        "ms/frame p99",
        "frames/s",
        "speed-up",
        "max abs err",
        "PSNR dB",
        "faithful",
    ]
    if with_memory:
        header.append("peak MiB")
    rows = []
    for r in results:
        row = [
            r.precision,
            r.mode,
            str(r.batch),
            f"{r.median_ms_frame:.2f}",
            f"{r.p90_ms_frame:.2f}",
            f"{r.p99_ms_frame:.2f}",
            f"{r.frames_per_s:.2f}",
            f"{r.speedup:.2f}x",
            _err_text(r.max_abs_err),
            _psnr_text(r.psnr_db),
            "yes" if r.max_abs_err <= FAITHFUL_MAX_ABS else "no",
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
    windows = make_windows(max(args.batch), models.space, frames, device)
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
        f"windows:   (B, {models.space.width}, {frames}) standard normal in the identity ranges, torch "
        f"seed {SEED}",
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
            "peak MiB = largest extra torch.cuda.max_memory_allocated of one call (+ weights for ref-fp32)"
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
        skipped: dict[str, str] = {}
        results = benchmark(skipped, args, models, image, windows, source32, device)
    warp_kernel = measure_warp_kernel(device, max(args.batch), size_px) if args.warp_kernel else None
    streams = None
    if args.streams:
        backend, _, precision = args.streams.partition(" ")
        renderer = make_renderer(models, precision or "fp32", device, backend=backend)
        streams = measure_streams(renderer, image, windows[0].cpu().numpy(), args.streams_seconds)
        streams["row"] = args.streams

    elapsed = time.perf_counter() - started
    header, rows = table_rows(results, with_memory=device.type == "cuda")
    if args.json is not None:
        payload = {
            "meta": {**meta, "elapsed_s": elapsed, "load_average_end": load_average()},
            "model": asdict(facts),
            "results": [asdict(r) for r in results],
            "skipped": skipped,
            "warp_kernel": warp_kernel,
            "streams": streams,
        }
        text = json.dumps(_json_safe(payload), indent=2) + "\n"

        def write_json(handle: BinaryIO) -> None:
            handle.write(text.encode("utf-8"))

        write_atomically(args.json, write_json)
        print(f"# json:      {args.json}")
    print(f"# total:     {elapsed:.1f} s (load avg at end {load_average()})")
    if args.markdown:
        print()
        print(markdown_table(header, rows))
    print()
    print(aligned_table(header, rows))
    extra = extra_lines(skipped, warp_kernel, streams)
    for line in extra:
        print(line)
    if args.plot is not None:
        plot(results, args.plot, f"{meta['device']} - torch {meta['torch']}")
        print(f"# plot:      {args.plot}")
    if args.results is not None:
        append_results(args.results, meta, markdown_table(header, rows), extra)
        print(f"# results:   appended to {args.results}")
    return 0


def extra_lines(
    skipped: dict[str, str], warp_kernel: dict[str, Any] | None, streams: dict[str, Any] | None
) -> list[str]:
    lines = [f"skipped {label}: {why}" for label, why in skipped.items()]
    if warp_kernel is not None:
        lines.append(
            "warp alone, batch {batch}, {size}x{size}: torch interpolate + grid_sample {torch_ms:.3f} ms, "
            "fused CuPy {cupy_ms} ms ({speedup}); {cupy_gbps} GB/s vs device copy {copy_gbps:.0f} GB/s; "
            "max abs diff {max_abs}".format(**warp_kernel)
        )
    if streams is not None:
        counts = ", ".join(f"{n}: worst {fps:.1f} fps" for n, fps in streams["worst_fps_by_count"].items())
        lines.append(
            f"streams ({streams['row']}, batching render service, {STREAM_FPS:.0f} fps each): "
            f"{streams['sustained']} sustained (>= {STREAM_FPS - 1:.0f} fps every stream); {counts}"
        )
    return lines


def plot(results: list[Result], path: Path, title: str) -> None:
    """Frames/s per row (one bar group per mode and batch) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.precision}\n{r.mode} b{r.batch}" for r in results]
    figure, axis = plt.subplots(figsize=(max(6.0, 0.6 * len(results)), 4.0))
    colors = [
        "0.6" if r.precision == REF else ("C0" if r.max_abs_err <= FAITHFUL_MAX_ABS else "C1")
        for r in results
    ]
    axis.bar(range(len(results)), [r.frames_per_s for r in results], color=colors)
    axis.set_xticks(range(len(results)), labels, rotation=90, fontsize=7)
    axis.set_ylabel("frames/s (p50)")
    axis.set_title(
        f"pirender bench: {title}\n(grey: authors' eager fp32; blue: fp32-faithful; orange: reduced)",
        fontsize=8,
    )
    figure.tight_layout()
    try:
        write_atomically(path, lambda handle: figure.savefig(handle, format="png", dpi=120))
    finally:
        plt.close(figure)


def append_results(path: Path, meta: dict[str, Any], table: str, extra: list[str]) -> None:
    """Append a dated section: device, versions, the exact command, the table and the extra lines."""
    versions = f"torch {meta['torch']}"
    with contextlib.suppress(ImportError):
        import onnxruntime

        versions += f", onnxruntime {onnxruntime.__version__}"
    section = [
        "",
        f"## {meta['date'][:10]} - `pirender bench`, {meta['device']}",
        "",
        f"{versions}; {meta['threads']} threads; weights: {meta['weights']}; {meta['repeats']} timed calls "
        f"after {meta['warmup']} warm-up per row, round-robin. Command: `{meta['command']}`",
        "",
        table,
        "",
        *[f"- {line}" for line in extra],
    ]
    before = path.read_bytes() if path.exists() else b""  # appended by a whole new file: never half
    added = ("\n".join(section) + "\n").encode("utf-8")

    def write_section(handle: BinaryIO) -> None:
        handle.write(before + added)

    write_atomically(path, write_section)


def measure_warp_kernel(device: torch.device, batch: int, size_px: int) -> dict[str, Any] | None:
    """The fused CuPy warp vs torch's interpolate + grid_sample (CUDA only), with GB/s."""
    if device.type != "cuda":
        print("# warp kernel: CUDA only (skipped on CPU)")
        return None
    from .renderer.warp import torch_warp

    generator = torch.Generator().manual_seed(SEED)
    image = torch.randn(batch, 3, size_px, size_px, generator=generator).to(device)
    flow = (3 * torch.randn(batch, 2, size_px // 4, size_px // 4, generator=generator)).to(device)

    def median_ms(fn: Callable[[], object], repeats: int = 200) -> float:
        for _ in range(10):
            fn()
        return float(np.median([time_one_call(fn, device)[0] for _ in range(repeats)]))

    copy_source = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)
    copy_target = torch.empty_like(copy_source)
    copy_gbps = 2 * copy_source.numel() / (median_ms(lambda: copy_target.copy_(copy_source), 50) * 1e6)
    torch_ms = median_ms(lambda: torch_warp(image, flow))
    result: dict[str, Any] = {"batch": batch, "size": size_px, "torch_ms": torch_ms, "copy_gbps": copy_gbps}
    result.update(cupy_ms="n/a", speedup="n/a", cupy_gbps="n/a", max_abs="n/a")
    from pirender.kernels.cupy_warp import available, cupy_warp

    missing = available()
    if missing is not None:
        result["cupy_ms"] = f"unavailable ({missing})"
        return result
    cupy_ms = median_ms(lambda: cupy_warp(image, flow))
    moved_bytes = image.numel() * 4 * 2 + flow.numel() * 4  # read the image, write the output, read the flow
    result.update(
        cupy_ms=f"{cupy_ms:.3f}",
        speedup=f"x{torch_ms / cupy_ms:.2f}",
        cupy_gbps=f"{moved_bytes / (cupy_ms * 1e6):.0f}",
        max_abs=f"{float((cupy_warp(image, flow) - torch_warp(image, flow)).abs().max()):.1e}",
    )
    return result


def measure_streams(
    renderer: Renderer, image: SourceImage, window: np.ndarray, seconds: float
) -> dict[str, Any]:
    """Stream counts doubling from 1: each stream asks the batching render service for a frame every
    40 ms (skipping slots when behind, like a live stream); a count is sustained when its slowest
    stream gets >= 24 fps. Stops at the first count that is not."""
    import asyncio

    from .stream.batcher import RenderService

    async def run(count: int, prepared: Any, service: RenderService) -> float:
        async def one() -> float:
            loop = asyncio.get_running_loop()
            start, frames, slot = loop.time(), 0, 0
            while loop.time() - start < seconds:
                due = start + slot / STREAM_FPS
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                await service.render(prepared, window)
                frames += 1
                slot = max(slot + 1, int((loop.time() - start) * STREAM_FPS))
            return frames / (loop.time() - start)

        return min(await asyncio.gather(*(one() for _ in range(count))))

    async def main() -> dict[str, Any]:
        service = RenderService(renderer, max_batch=64)
        prepared = await service.prepare(image)
        await service.render(prepared, window)  # warm-up (compiles the batch-1 graph)
        worst: dict[int, float] = {}
        sustained, count = 0, 1
        while count <= 256:
            worst[count] = await run(count, prepared, service)
            print(f"#   streams {count}: slowest {worst[count]:.1f} fps", flush=True)
            if worst[count] < STREAM_FPS - 1:
                break
            sustained, count = count, count * 2
        await service.close()
        return {"sustained": sustained, "worst_fps_by_count": worst}

    return asyncio.run(main())


if __name__ == "__main__":
    raise SystemExit(main())
