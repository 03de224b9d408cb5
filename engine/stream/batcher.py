"""One renderer shared by many streams: requests due now are rendered together, off the event loop.

Streams submit (source, window) and await the frame. A collector waits at most ``max_wait_ms`` for
more requests after the first, groups them by source portrait, and renders each group in one call on
a single worker thread (the renderer is not re-entrant). One failing request fails only its stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..image import SourceImage, tensor_to_images
from ..renderer.base import PreparedSource, Renderer


class FrameService(Protocol):
    """The render stage of the server's streams: this process's :class:`RenderService`, or a Ray
    Serve deployment's replicas (``stream.ray_render.RayRenderService``)."""

    def start(self) -> None: ...

    async def close(self) -> None: ...

    async def render(self, source: PreparedSource, window: np.ndarray, *, stream: int = 0) -> np.ndarray:
        """The frame (H, W, 3) uint8 of one window (width, T) of the stream ``stream`` (any number
        that tells the streams apart: a service may keep a stream where it was rendered before)."""
        ...

    async def prepare(self, image: SourceImage) -> PreparedSource:
        """``image`` prepared (face detection and precomputation), off the event loop."""
        ...


@dataclass
class _Request:
    source: PreparedSource
    window: np.ndarray  # (width, T)
    done: asyncio.Future[np.ndarray]


class RenderService:
    def __init__(self, renderer: Renderer, *, max_wait_ms: float = 2.0, max_batch: int = 16) -> None:
        self.renderer = renderer
        self.max_wait_ms = max_wait_ms
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.frames = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._collect())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def render(self, source: PreparedSource, window: np.ndarray, *, stream: int = 0) -> np.ndarray:
        """The frame (H, W, 3) uint8 of one window (width, T) of one stream (``stream``: unused, one
        renderer here)."""
        del stream
        self.start()
        done: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(source, window, done))
        return await done

    async def prepare(self, image: SourceImage) -> PreparedSource:
        """Prepare a portrait on the render thread (face detection and precomputation)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.renderer.prepare, image)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_ms / 1000
            while len(batch) < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            groups: dict[int, list[_Request]] = {}
            for request in batch:
                groups.setdefault(id(request.source), []).append(request)
            for requests in groups.values():
                try:
                    frames = await loop.run_in_executor(self._executor, self._render_group, requests)
                except Exception as exc:  # one failing group fails its own streams only
                    for request in requests:
                        if not request.done.done():
                            request.done.set_exception(exc)
                    continue
                for request, frame in zip(requests, frames, strict=True):
                    if not request.done.done():
                        request.done.set_result(frame)
            self.batches += 1
            self.frames += len(batch)

    def _render_group(self, requests: list[_Request]) -> np.ndarray:
        return render_windows(self.renderer, requests[0].source, [request.window for request in requests])


def render_windows(renderer: Renderer, source: PreparedSource, windows: Sequence[np.ndarray]) -> np.ndarray:
    """The frames (B, H, W, 3) uint8 of B ``windows`` (each (width, T)) of one portrait, in one call:
    how a render stage draws the requests of a portrait that came in together."""
    frames = renderer.render(np.stack(windows), source=source).frame
    return tensor_to_images(frames)
