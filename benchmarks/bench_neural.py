#!/usr/bin/env python
"""Per-frame time of the ``neural`` renderer (mesh warp + editing network) through each runtime of its
network: eager torch, torch.compile, ONNX Runtime, OpenVINO (CPU), TensorRT (CUDA).

For every runtime that can run here: the whole render call (warp, face box, network, paste) and the
network alone, at batch 1 and 256 px, on a real portrait driven by a moving mouth, eyes and head
(``--warmup`` untimed calls, then ``--repeats`` timed ones; median and p90 in ms). Runtimes that
cannot run here are listed with the reason.

Example::

    python benchmarks/bench_neural.py                       # CPU: torch, compiled, onnx, openvino
    python benchmarks/bench_neural.py --device cuda --runtimes torch,compiled,onnx,tensorrt \\
        --precision fp16 --json /tmp/neural.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pirender.engine.api import load_renderer
from pirender.engine.errors import PirenderError
from pirender.engine.image import load_source_image
from pirender.engine.motion.space import OPEN_SPACE
from pirender.engine.renderer.base import PreparedSource
from pirender.engine.renderer.refine.renderer import NeuralRenderer, NeuralSource
from pirender.engine.renderer.refine.runtime import RUNTIMES

PORTRAIT = Path(__file__).resolve().parents[2] / "shared" / "data" / "portraits" / "s0.jpg"


def _rows(rest: np.ndarray, count: int) -> np.ndarray:
    """``count`` (17, 1) windows: mouth, eyes and head moving (phases differ)."""
    t = np.arange(count, dtype=np.float32)
    rows = np.repeat(rest[None].astype(np.float32), count, axis=0)
    rows[:, OPEN_SPACE.index("jaw_open")] = 0.45 + 0.45 * np.sin(t / 3)
    rows[:, OPEN_SPACE.index("blink_left")] = rows[:, OPEN_SPACE.index("blink_right")] = (t % 12 < 2) * 0.9
    rows[:, OPEN_SPACE.index("yaw")] += 0.2 * np.sin(t / 7)
    return rows[:, :, None]


def _times(call: Callable[[int], object], count: int) -> list[float]:
    out = []
    for i in range(count):
        start = time.perf_counter()
        call(i)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out.append((time.perf_counter() - start) * 1000)
    return out


def _measure(
    renderer: NeuralRenderer, prepared: PreparedSource, args: argparse.Namespace
) -> tuple[list[float], list[float]]:
    """(whole render call, network alone) times in ms."""
    windows = _rows(renderer.rest_row(prepared), args.warmup + args.repeats)
    refiner = renderer.refiner
    crop_px = renderer.crop_px
    device = torch.device(args.device)
    net_inputs = (
        torch.rand(1, 3, crop_px, crop_px, device=device) * 2 - 1,
        renderer.prepared_as(prepared, NeuralSource).refine_source,
        torch.zeros(1, 17, device=device),
        torch.ones(1, 1, crop_px, crop_px, device=device),
    )
    _times(lambda i: renderer.render(windows[i : i + 1], source=prepared), args.warmup)
    frame_ms = _times(
        lambda i: renderer.render(windows[args.warmup + i : args.warmup + i + 1], source=prepared),
        args.repeats,
    )
    _times(lambda _: refiner(*net_inputs), args.warmup)
    return frame_ms, _times(lambda _: refiner(*net_inputs), args.repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument(
        "--runtimes", default="torch,compiled,onnx,openvino", help=f"comma list of {', '.join(RUNTIMES)}"
    )
    parser.add_argument("--precision", default="fp32", help="fp32 (default), bf16, fp16 (CUDA)")
    parser.add_argument("--portrait", type=Path, default=PORTRAIT, help="source portrait")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls (10)")
    parser.add_argument("--repeats", type=int, default=100, help="timed calls (100)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    portrait = load_source_image(args.portrait)
    results = []
    for runtime in args.runtimes.split(","):
        try:
            precision = {"tensorrt": "fp16", "onnx": "fp32"}.get(runtime, args.precision)
            renderer = load_renderer(
                backend="neural", runtime=runtime, device=args.device, precision=precision
            )
            if not isinstance(renderer, NeuralRenderer):
                raise PirenderError(f"load_renderer(backend='neural') gave a {renderer.name} renderer")
            prepared = renderer.prepare(portrait)
        except PirenderError as exc:
            print(f"{runtime}: skipped ({exc})", file=sys.stderr)
            results.append({"runtime": runtime, "skipped": str(exc)})
            continue
        frame_ms, net_ms = _measure(renderer, prepared, args)
        row = {
            "runtime": runtime,
            "precision": precision,
            "frame_ms_median": round(statistics.median(frame_ms), 2),
            "frame_ms_p90": round(float(np.percentile(frame_ms, 90)), 2),
            "network_ms_median": round(statistics.median(net_ms), 2),
            "frames_per_s": round(1000 / statistics.median(frame_ms), 1),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    print(f"\n{args.device} ({device_name or platform.machine()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, batch 1, 256 px\n")  # fmt: skip
    print("| runtime | precision | frame ms (median) | frame ms (p90) | network ms | frames/s |")
    print("|---|---|---:|---:|---:|---:|")
    for row in results:
        if "skipped" in row:
            print(f"| {row['runtime']} | - | skipped: {row['skipped']} | | | |")
        else:
            cells = [row[k] for k in ("runtime", "precision", "frame_ms_median", "frame_ms_p90")]
            cells += [row["network_ms_median"], row["frames_per_s"]]
            print("| " + " | ".join(str(c) for c in cells) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps({"device": args.device, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
