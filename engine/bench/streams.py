"""What ``pirender bench`` measures beside the rows: the fused CuPy warp alone (``--warp-kernel``) and
the number of 25-fps streams one renderer sustains through the batching render service
(``--streams``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..clock import now_s
from ..image import SourceImage
from ..pipeline import FrameSlot, TimedMotion
from ..renderer.base import Renderer
from ..stream.batcher import FrameService
from .measure import time_one_call
from .models import SEED

STREAM_FPS = 25.0
#: seconds each stream runs before it is measured (``measure_streams``)
WARMUP_S = 1.0


def measure_warp_kernel(device: torch.device, batch: int, size_px: int) -> dict[str, Any] | None:
    """The fused CuPy warp vs torch's interpolate + grid_sample (CUDA only), with GB/s."""
    if device.type != "cuda":
        print("# warp kernel: CUDA only (skipped on CPU)")
        return None
    from ..renderer.warp import torch_warp

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


class ReplayedCamera:
    """A camera at ``camera_fps`` seen by a stream (``pipeline.MotionSource``): each slot shows the
    newest camera frame, captured at the last tick of the camera's clock before the slot, then
    ``track_ms`` of tracking later; its motion is always ``row``. Stands in for the tracker so that
    only the serving path is timed."""

    def __init__(self, row: np.ndarray, *, camera_fps: float = 30.0, track_ms: float = 0.0) -> None:
        self.row, self.camera_fps, self.track_ms = row, camera_fps, track_ms
        self._origin_s: float | None = None

    def motion(self, slot: FrameSlot) -> TimedMotion:
        if self._origin_s is None:
            self._origin_s = slot.due_s - 1.0 / self.camera_fps
        ticks = int((now_s() - self.track_ms / 1000 - self._origin_s) * self.camera_fps)
        return TimedMotion(self.row, slot.time_s, self._origin_s + ticks / self.camera_fps)


def measure_streams(
    renderer: Renderer,
    image: SourceImage,
    window: np.ndarray,
    seconds: float,
    *,
    service: FrameService | None = None,
    counts: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Stream counts doubling from 1 (or ``counts``), each stream the server's own pipeline (a 25-fps
    clock that skips late slots, the server's render stage: ``service``, by default this process's
    batching render service) driven by a 30-fps camera (:class:`ReplayedCamera`); a count is
    sustained when its slowest stream gets >= 24 fps. Per count: the slowest stream's frames/s and,
    over all streams, motion-to-photon up to the rendered frame (the camera frame's capture -> the
    frame out of the renderer: no encoder, network or display), the render-slot latency (slot ->
    rendered) and the render stage (the motion ready -> the frame back: the render call, with the
    hop to a Ray replica when ``service`` is one), p50/p90/p99 ms, each stream measured for
    ``seconds`` after :data:`WARMUP_S` of running. Stops at the first count that is not sustained."""
    import asyncio

    from ..motion.window import StreamWindow, WindowSpec
    from ..pipeline import FrameClock, LivePipeline
    from ..stream.batcher import RenderService

    row = window[:, window.shape[1] // 2].copy()

    async def run(count: int, prepared: Any, service: FrameService) -> dict[str, Any]:
        motion_ms: list[float] = []
        slot_ms: list[float] = []
        render_ms: list[float] = []

        async def one() -> float:
            spec = WindowSpec(radius=window.shape[1] // 2, lookahead_frames=0)  # the renderer's window
            windows = StreamWindow(renderer.space, spec)
            clock = FrameClock(STREAM_FPS, drop_late=True)
            pipeline = LivePipeline(ReplayedCamera(row), windows, service, prepared, clock=clock)
            warm_until = now_s() + WARMUP_S  # a new stream's first frames (a Ray replica prepares
            while now_s() < warm_until:  # the portrait for a new session) are not measured
                assert await pipeline.pull() is not None
            start = now_s()
            frames = 0
            while now_s() - start < seconds:
                frame = await pipeline.pull()
                assert frame is not None
                frames += 1
                motion_ms.append(1000 * (frame.rendered_s - frame.motion.captured_s))
                slot_ms.append(1000 * (frame.rendered_s - frame.slot.due_s))
                render_ms.append(frame.stage_ms["render"])
            return frames / (now_s() - start)

        worst = min(await asyncio.gather(*(one() for _ in range(count))))
        return {
            "worst_fps": worst,
            "motion_to_photon_ms": _percentiles(motion_ms),
            "render_slot_ms": _percentiles(slot_ms),
            "render_ms": _percentiles(render_ms),
        }

    async def main() -> dict[str, Any]:
        stage = service or RenderService(renderer, max_batch=64)
        prepared = await stage.prepare(image)
        for _ in range(3):  # warm-up (compiles the batch-1 graph; a Ray replica prepares the portrait)
            await stage.render(prepared, window)
        worst: dict[int, float] = {}
        latency: dict[int, dict[str, Any]] = {}
        sustained = 0
        planned = list(counts) if counts is not None else [2**i for i in range(9)]
        for count in planned:
            measured = await run(count, prepared, stage)
            worst[count] = measured["worst_fps"]
            latency[count] = {k: measured[k] for k in ("motion_to_photon_ms", "render_slot_ms", "render_ms")}
            m2p, slot = measured["motion_to_photon_ms"], measured["render_slot_ms"]
            hop = measured["render_ms"]
            print(
                f"#   streams {count}: slowest {worst[count]:.1f} fps; motion-to-photon (to rendered) "
                f"p50/p90/p99 {m2p['p50']:.1f}/{m2p['p90']:.1f}/{m2p['p99']:.1f} ms, render slot "
                f"{slot['p50']:.1f}/{slot['p90']:.1f}/{slot['p99']:.1f} ms, render stage "
                f"{hop['p50']:.1f}/{hop['p90']:.1f}/{hop['p99']:.1f} ms",
                flush=True,
            )
            if worst[count] < STREAM_FPS - 1:
                break
            sustained = count
        await stage.close()
        return {"sustained": sustained, "worst_fps_by_count": worst, "latency_by_count": latency}

    return asyncio.run(main())


def _percentiles(values: list[float]) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)}
