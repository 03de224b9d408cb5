"""How many 25-fps avatar streams this machine holds: the server's per-frame work without the network.

Each stream runs exactly what ``pirender serve`` does per frame — motion source (idle script), the
window rule, the shared batching render service (weight-free mesh renderer, off the event loop) and
aiortc's VP8 encoder — for a fixed time; the report gives each stream count's achieved frames/s
(worst stream), per-stage medians and encode time. A count "holds" when every stream keeps >= 24 fps.

Example:
    .venv/bin/python benchmarks/bench_streams.py --counts 1,2,4,6,8 --seconds 6
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from aiortc.codecs.vpx import Vp8Encoder

from pirender.engine.errors import PirenderError
from pirender.engine.fileio import prepare_output, write_atomically
from pirender.engine.renderer.mesh.renderer import MeshRenderer
from pirender.engine.stream.batcher import RenderService
from pirender.engine.stream.session import AvatarStream
from pirender.engine.track.crop import crop_to_face


async def run_streams(count: int, seconds: float, size_px: int) -> dict[str, object]:
    from matplotlib import cbook

    renderer = MeshRenderer(image_size_px=size_px)
    service = RenderService(renderer)
    portrait = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    source = await service.prepare(crop_to_face(portrait, size_px=size_px))
    rest = renderer.rest_row(source)
    loop = asyncio.get_running_loop()
    encode_ms: list[float] = []

    async def one() -> AvatarStream:
        stream = AvatarStream(service, source, rest)
        encoder = Vp8Encoder()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rendered, pts = await stream.next_frame()
            frame = av.VideoFrame.from_ndarray(rendered.rgb, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 90_000)
            start = time.perf_counter()
            await loop.run_in_executor(None, encoder.encode, frame)
            encode_ms.append(1000 * (time.perf_counter() - start))
            stream.stats.add("encode", encode_ms[-1])
        return stream

    streams = await asyncio.gather(*(one() for _ in range(count)))
    await service.close()
    fps = [s.stats.frames / seconds for s in streams]
    stages = {
        k: float(np.median([np.median(s.stats.stage_ms[k]) for s in streams]))
        for k in streams[0].stats.stage_ms
    }
    return {
        "streams": count,
        "min_fps": min(fps),
        "mean_fps": float(np.mean(fps)),
        "stage_ms": stages,
        "encode_ms": float(np.median(encode_ms)),
        "batches": service.batches,
        "frames": service.frames,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="1,2,4,6,8,10", help="stream counts to try")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds per count (default 6)")
    parser.add_argument("--size", type=int, default=256, choices=[256, 512])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = parser.parse_args(argv)
    if args.json:  # checked (and its folder made) before the measurements, not after
        try:
            args.json = prepare_output(args.json, overwrite=args.overwrite)
        except PirenderError as exc:
            parser.error(f"--json {exc}")
    results = []
    started = dt.datetime.now(dt.UTC)
    print(f"# {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, {args.size} px, mesh + VP8")
    for count in (int(c) for c in args.counts.split(",")):
        result = asyncio.run(run_streams(count, args.seconds, args.size))
        results.append(result)
        stages = ", ".join(f"{k} {v:.1f}" for k, v in result["stage_ms"].items())  # type: ignore[union-attr]
        print(f"{count:3d} streams: worst {result['min_fps']:.1f} fps, mean {result['mean_fps']:.1f}; "
              f"median ms: {stages}; VP8 encode {result['encode_ms']:.1f}; "
              f"{result['frames'] / max(result['batches'], 1):.2f} frames per render batch")  # fmt: skip
    holds = [r["streams"] for r in results if r["min_fps"] >= 24.0]  # type: ignore[operator]
    print(f"holds {max(holds) if holds else 0} concurrent 25-fps streams (every stream >= 24 fps)")
    if args.json:
        text = json.dumps(results, indent=2)
        write_atomically(args.json, lambda handle: handle.write(text.encode("utf-8")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
