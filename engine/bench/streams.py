"""What ``pirender bench`` measures beside the rows: the fused CuPy warp alone (``--warp-kernel``) and
the number of 25-fps streams one renderer sustains through the batching render service
(``--streams``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..image import SourceImage
from ..renderer.base import Renderer
from .measure import time_one_call
from .models import SEED

STREAM_FPS = 25.0


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


def measure_streams(
    renderer: Renderer, image: SourceImage, window: np.ndarray, seconds: float
) -> dict[str, Any]:
    """Stream counts doubling from 1: each stream asks the batching render service for a frame every
    40 ms (skipping slots when behind, like a live stream); a count is sustained when its slowest
    stream gets >= 24 fps. Stops at the first count that is not."""
    import asyncio

    from ..stream.batcher import RenderService

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
