"""Tracker and weight-free renderer speed, and closed-loop motion accuracy, on this machine.

Measures, in one run:
1. tracker frames/s on 640x480 frames (face mesh + open-space motion + One-Euro smoothing), from a
   real talking-head clip letterboxed to 640x480;
2. mesh renderer frames/s at 256 and 512 px: the whole loop target motion -> landmarks -> dense flow
   -> warp -> mouth fill -> uint8 frame, driven by the scripted demo motion;
3. closed-loop accuracy (the paper's APD/AED idea): render portraits at known targets (yaw, pitch,
   roll within +-20 degrees; each control over its range), track the pictures, report mean errors.

Example:
    .venv/bin/python benchmarks/bench_tracking.py --json /tmp/tracking.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pirender.engine.errors import PirenderError
from pirender.engine.fileio import prepare_output, write_atomically
from pirender.engine.image import load_source_image, tensor_to_images
from pirender.engine.motion.edit import demo_open_motion
from pirender.engine.motion.retarget import retarget_open
from pirender.engine.renderer.mesh.renderer import MeshRenderer
from pirender.engine.sources.frames import open_frames
from pirender.engine.track.crop import crop_to_face
from pirender.engine.track.evaluate import closed_loop, standard_targets
from pirender.engine.track.tracker import FaceTracker

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def letterbox_640x480(rgb: np.ndarray) -> np.ndarray:
    """Fit a frame into 640x480 (aspect kept, grey bars)."""
    from PIL import Image

    height, width = rgb.shape[:2]
    scale = min(640 / width, 480 / height)
    size = (round(width * scale), round(height * scale))
    resized = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    canvas = np.full((480, 640, 3), 100, dtype=np.uint8)
    top, left = (480 - size[1]) // 2, (640 - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = resized
    return canvas


def bench_tracker(clip: Path, frames: int) -> dict[str, float]:
    with open_frames(str(clip), max_frames=frames) as source:
        images = [letterbox_640x480(f.rgb) for f in source]
    tracker = FaceTracker()
    times_ms = []
    for index, image in enumerate(images):
        start = time.perf_counter()
        tracker.process(image, index / 25.0)
        times_ms.append(1000 * (time.perf_counter() - start))
    tracker.close()
    steady = times_ms[10:]
    median_ms = statistics.median(steady)
    return {"frames": len(images), "median_ms": median_ms, "p90_ms": float(np.percentile(steady, 90)),
            "fps": 1000 / statistics.mean(steady)}  # fmt: skip


def bench_mesh(portrait: Path, size_px: int, frames: int) -> dict[str, float]:
    renderer = MeshRenderer(image_size_px=size_px)
    source = renderer.prepare(crop_to_face(portrait, size_px=size_px))
    motion = retarget_open(demo_open_motion(frames=frames), renderer.rest_row(source))
    times_ms = []
    for row in motion.values:
        start = time.perf_counter()
        tensor_to_images(renderer.render(row[:, None], source=source).frame)
        times_ms.append(1000 * (time.perf_counter() - start))
    steady = times_ms[5:]
    return {"size_px": size_px, "median_ms": statistics.median(steady),
            "p90_ms": float(np.percentile(steady, 90)), "fps": 1000 / statistics.mean(steady)}  # fmt: skip


def bench_closed_loop(portraits: list[Path]) -> dict[str, object]:
    per_portrait = {}
    pose, controls = [], []
    for path in portraits:
        renderer = MeshRenderer()
        source = renderer.prepare(load_source_image(path))
        targets, masks = standard_targets(renderer.rest_row(source))
        result = closed_loop(renderer, source, targets)
        errors = {name: result.control_error(mask)[name] for name, mask in masks.items()}
        per_portrait[path.name] = {"pose_deg": result.pose_error_deg(), "controls": errors,
                                   "found": float(result.found.mean())}  # fmt: skip
        pose.append(result.pose_error_deg())
        controls.append(errors)
    return {
        "portraits": per_portrait,
        "pose_deg_mean": {k: float(np.mean([p[k] for p in pose])) for k in pose[0]},
        "controls_mean": {k: float(np.mean([c[k] for c in controls])) for k in controls[0]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clip", type=Path, default=SHARED / "driving" / "d3.mp4", help="tracking clip")
    parser.add_argument("--frames", type=int, default=200, help="frames per speed test (default 200)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = parser.parse_args(argv)
    if args.json:  # checked (and its folder made) before the measurements, not after
        try:
            args.json = prepare_output(args.json, overwrite=args.overwrite)
        except PirenderError as exc:
            parser.error(f"--json {exc}")
    if not args.clip.exists():
        parser.error(f"{args.clip} not found (the test media live in ../shared/data)")
    from matplotlib import cbook

    hopper = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    portraits = sorted((SHARED / "vox_demo").glob("*.jpg")) or [hopper]
    started = time.perf_counter()
    results = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "tracker_640x480": bench_tracker(args.clip, args.frames),
        "mesh": [bench_mesh(hopper, size, args.frames) for size in (256, 512)],
        "closed_loop": bench_closed_loop(portraits),
    }
    results["seconds"] = time.perf_counter() - started
    track = results["tracker_640x480"]
    print(f"# {results['date']}  {results['machine']}")
    timing = f"median {track['median_ms']:.2f} ms, p90 {track['p90_ms']:.2f}"
    print(f"tracker 640x480: {track['fps']:.1f} frames/s ({timing})")
    for mesh in results["mesh"]:
        print(f"mesh {mesh['size_px']}: {mesh['fps']:.1f} frames/s (median {mesh['median_ms']:.2f} ms, "
              f"p90 {mesh['p90_ms']:.2f})")  # fmt: skip
    loop = results["closed_loop"]
    print(f"closed loop over {len(loop['portraits'])} portraits: pose error (deg) "
          + ", ".join(f"{k} {v:.2f}" for k, v in loop["pose_deg_mean"].items()))  # fmt: skip
    print(
        "control errors (own units): " + ", ".join(f"{k} {v:.3f}" for k, v in loop["controls_mean"].items())
    )
    if args.json:
        text = json.dumps(results, indent=2)
        write_atomically(args.json, lambda handle: handle.write(text.encode("utf-8")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
