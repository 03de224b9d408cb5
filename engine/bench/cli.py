"""The command line of ``pirender bench``: its arguments and :func:`main`, which runs the benchmark
and prints and writes the reports."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..api import OPEN_RENDERERS, default_portrait, open_space_renderer
from ..errors import PirenderError
from ..fileio import check_output, prepare_folder
from ..image import SourceImage, image_to_tensor
from ..renderer.base import Precision, Renderer, RenderMode
from ..renderer.checkpoint import AUTHORS_IMAGE_SIZE_PX
from ..track.crop import crop_to_face
from .environment import command_line, device_name, load_average, utc_now
from .measure import BenchPlan, benchmark
from .models import SEED, ModelSource, make_renderer, make_windows, model_facts, model_source, source_image
from .report import aligned_table, append_results, extra_lines, markdown_table, plot, table_rows, write_json
from .streams import measure_streams, measure_warp_kernel

WINDOW_FRAMES = 27  # 2k + 1 with k = 13, the authors' semantic radius
BACKENDS = ("torch", "compiled", "onnx", "openvino", "tensorrt")


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
        "--source",
        type=Path,
        default=None,
        metavar="PORTRAIT",
        help="source portrait image (default: the default portrait, Grace Hopper from matplotlib; "
        f"without matplotlib a random image, numpy seed {SEED})",
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
        help="count the 25-fps streams this row (e.g. 'compiled fp16', or an open-space renderer: mesh, "
        "neural) sustains through the batching service",
    )
    parser.add_argument("--streams-seconds", type=float, default=4.0, help="seconds per stream count")
    parser.add_argument(
        "--streams-render",
        default="in-process",
        metavar="WHERE",
        help="--streams through a Ray Serve render deployment too, after the in-process run and at the "
        "same stream counts: local:N (a one-machine cluster of N replicas on 127.0.0.1, started and "
        "stopped here) or a Ray address (ray://HOST:10001, HOST:6379, auto); the row must then be an "
        "open-space renderer (mesh or neural), the deployment's",
    )
    parser.add_argument("--streams-only", action="store_true", help="only --streams (no backend rows)")
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
    if args.streams_only and not args.streams:
        parser.error("--streams-only needs --streams LABEL")
    if args.streams_render != "in-process" and args.streams not in OPEN_RENDERERS:
        parser.error(
            f"--streams-render: the Ray deployment renders {' or '.join(OPEN_RENDERERS)}: --streams mesh"
        )
    if args.streams_seconds <= 0:
        parser.error("--streams-seconds must be positive")
    return args


def _measure_streams(
    args: argparse.Namespace,
    models: ModelSource,
    image: SourceImage,
    window: np.ndarray,
    device: torch.device,
) -> dict[str, Any]:
    """``--streams`` (and ``--streams-render``): stream counts in this process, then through the Ray
    render deployment at the same counts (``streams["ray"]``)."""
    if args.streams in OPEN_RENDERERS:  # the server's renderers: open-space motion, a real face needed
        renderer: Renderer = open_space_renderer(args.streams, image_size_px=image.size_px)
        image = crop_to_face(args.source or default_portrait(), size_px=image.size_px)
        window = renderer.rest_row(renderer.prepare(image))[:, None]  # (width, 1)
    else:
        backend, _, precision = args.streams.partition(" ")
        renderer = make_renderer(models, precision or "fp32", device, backend=backend)
    print(f"# streams ({args.streams}), in this process:", flush=True)
    streams = measure_streams(renderer, image, window, args.streams_seconds)
    streams["row"] = args.streams
    if args.streams_render == "in-process":
        return streams
    where = args.streams_render
    address = "local" if where.startswith("local:") else where
    from ..stream.ray_address import prepare_environment

    prepare_environment(address)  # before Ray is imported: a local cluster binds 127.0.0.1
    from ..stream import ray_render

    config = ray_render.RayRenderConfig(renderer=args.streams, size_px=image.size_px)
    if where.startswith("local:"):
        try:
            replicas = int(where[len("local:") :])
        except ValueError:
            raise PirenderError(f"--streams-render local:N takes a replica count, got {where!r}") from None
        cores = os.cpu_count() or 1
        config = replace(config, min_replicas=replicas, max_replicas=replicas, num_cpus=cores / replicas)
        ray_render.connect("local", local_cpus=cores)
    counts = list(streams["worst_fps_by_count"])
    print(f"# streams ({args.streams}), through the Ray render deployment at {where}:", flush=True)
    try:
        service = ray_render.RayRenderService(
            renderer, "local" if where.startswith("local:") else where, config
        )
        streams["ray"] = {
            "where": where,
            "replicas": f"{config.min_replicas}..{config.max_replicas}",
            **measure_streams(renderer, image, window, args.streams_seconds, service=service, counts=counts),
        }
    finally:
        if where.startswith("local:"):
            ray_render.shutdown_local()
    return streams


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
    except PirenderError as exc:  # input errors exit 2, as every pirender command's
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.size is not None:
        models.image_size_px = args.size
    size_px = models.image_size_px
    multiple = models.config.size_multiple_px
    if size_px % multiple:
        print(f"error: --size {size_px} must be a multiple of {multiple} for this generator", file=sys.stderr)
        return 2

    try:
        image, image_text = source_image(size_px, args.source)
    except PirenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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

    if args.streams_only:
        only = _measure_streams(args, models, image, windows[0].cpu().numpy(), device)
        extra = extra_lines({}, None, only)
        for line in extra:
            print(line)
        if args.json is not None:
            meta["elapsed_s"] = time.perf_counter() - started
            write_json(args.json, {"meta": meta, "streams": only})
        if args.results is not None:
            append_results(args.results, meta, "(no backend rows: --streams-only)", extra)
            print(f"# results:   appended to {args.results}")
        return 0

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
        plan = BenchPlan(
            backends=tuple(args.backend),
            precisions=tuple(args.precisions),
            modes=tuple(args.modes),
            batches=tuple(args.batch),
            warmup=args.warmup,
            repeats=args.repeats,
        )
        results = benchmark(skipped, plan, models, image, windows, source32, device)
    warp_kernel = measure_warp_kernel(device, max(args.batch), size_px) if args.warp_kernel else None
    streams = None
    if args.streams:
        streams = _measure_streams(args, models, image, windows[0].cpu().numpy(), device)

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
        write_json(args.json, payload)
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
