"""The measuring of ``pirender bench``: one timed call, the output error, the rows under test
(:class:`Contender`), the round-robin groups and the whole benchmark (:class:`Result`)."""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import PirenderError
from ..image import SourceImage
from ..renderer.base import PreparedSource, Renderer, RenderMode
from ..renderer.pirender.generator import FaceGenerator
from .models import ModelSource, make_reference, make_renderer

PEAK_TO_PEAK = 2.0  # frames are in [-1, 1]
REF = "ref-fp32"  # label of the reference rows


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


def psnr_text(psnr: float) -> str:
    return "inf" if math.isinf(psnr) else f"{psnr:.1f}"


# --------------------------------------------------------------------------------------------------
# the rows under test


@dataclass(frozen=True)
class BenchPlan:
    """What ``pirender bench`` times (checked by its argument parser): the ``backends`` and
    ``precisions`` of the rows, the ``modes`` (full, warp) and ``batches`` of each, and per
    (mode, batch) ``warmup`` untimed and ``repeats`` timed calls of every row."""

    backends: tuple[str, ...]
    precisions: tuple[str, ...]
    modes: tuple[str, ...]
    batches: tuple[int, ...]
    warmup: int
    repeats: int


def planned_rows(plan: BenchPlan) -> list[tuple[str, str]]:
    """(backend, precision) of every row asked for."""
    rows: list[tuple[str, str]] = []
    for backend in plan.backends:
        if backend in ("torch", "compiled"):
            rows += [(backend, precision) for precision in plan.precisions]
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
    contenders: list[Contender], mode: str, batch: int, plan: BenchPlan, device: torch.device
) -> list[Result]:
    """Time every contender at one (mode, batch), round-robin so that load drifts hit all alike.

    Each contender gets one untimed call whose frame is compared, ``warmup`` untimed calls, then
    ``repeats`` timed calls; in timed round r the contenders are called in an order rotated by r.
    """
    fns = [c.call(mode, batch) for c in contenders]
    frames = [fn().detach().float().cpu() for fn in fns]
    for _ in range(plan.warmup):
        for fn in fns:
            fn()
    synchronize(device)
    times: list[list[float]] = [[] for _ in fns]
    peaks: list[int | None] = [None for _ in fns]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(plan.repeats):
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
            f"max|err| {err:.2e}, PSNR {psnr_text(psnr)} dB{memory_text})",
            flush=True,
        )
    return results


def benchmark(
    skipped: dict[str, str],
    plan: BenchPlan,
    models: ModelSource,
    image: SourceImage,
    windows: torch.Tensor,
    source32: torch.Tensor,
    device: torch.device,
) -> list[Result]:
    contenders = [reference_contender(make_reference(models, device), source32, windows)]
    for backend, precision in planned_rows(plan):
        label = f"{backend} {precision}"

        def make(mode: str, backend: str = backend, precision: str = precision) -> Renderer:
            return make_renderer(models, precision, device, backend=backend, mode=mode)

        contender = renderer_contender(label, make, image, windows)
        try:
            contender.call(plan.modes[0], 1)  # build it now: a backend that cannot run is skipped
        except PirenderError as exc:
            skipped[label] = str(exc)
            print(f"# skipped {label}: {exc}", flush=True)
            continue
        contenders.append(contender)
    results: list[Result] = []
    for batch in plan.batches:
        for mode in plan.modes:
            results += run_group(contenders, mode, batch, plan, device)
            gc.collect()
    return results
