"""The renderer interface every backend implements and everything downstream uses.

``prepare(source)`` does once whatever depends on the source portrait only and returns a
:class:`PreparedSource` (each backend its own typed subclass); ``render(windows, source=prepared)``
turns motion windows (B, width, 2k+1) into frames (B, 3, H, W) in [-1, 1], optionally with the warped
image and the flow. A renderer keeps no portrait of its own: one renderer serves many portraits (the
server's streams), each call names its own. ``rest_row(prepared)`` is the motion row that shows the
portrait as it is. Backends are chosen by name (:func:`pirender.engine.api.load_renderer`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import Self, TypeVar

import numpy as np
import torch

from ..errors import MotionError, PirenderError
from ..image import SourceImage
from ..motion.edit import neutral_frame
from ..motion.limits import limits_for, soft_limit
from ..motion.space import AUTHORS_SPACE, MotionSequence, MotionSpace


def _finite(windows: np.ndarray | torch.Tensor) -> bool:
    """True unless the windows hold NaN or inf. GPU tensors are not checked: reading the answer
    back would stall the device queue every frame (measured: ~4 ms more per frame at batch 1 on an H100)."""
    if isinstance(windows, torch.Tensor):
        return windows.device.type != "cpu" or bool(torch.isfinite(windows).all())
    return bool(np.isfinite(windows).all())


class RenderMode(StrEnum):
    """``full``: mapping + warping + editing nets. ``warp``: the warped source only (8x fewer FLOPs)."""

    FULL = "full"
    WARP = "warp"


class Precision(StrEnum):
    """Arithmetic of the convolutions. ``fp32`` is faithful (TF32 off on CUDA); ``tf32`` lets CUDA
    convolutions use TF32 tensor cores (same as fp32 on CPU); ``fp16``/``bf16`` cast the weights."""

    FP32 = "fp32"
    TF32 = "tf32"
    FP16 = "fp16"
    BF16 = "bf16"

    @property
    def dtype(self) -> torch.dtype:
        return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.value, torch.float32)


@dataclass(frozen=True)
class RenderOutput:
    """frame (B, 3, H, W) in [-1, 1]; warped (B, 3, H, W) and flow (B, 2, H/4, W/4) when asked for."""

    frame: torch.Tensor
    warped: torch.Tensor | None = None
    flow: torch.Tensor | None = None


def batch_bucket(batch: int) -> int:
    """The static batch size a compiled graph runs ``batch`` windows at: the next power of two (the
    windows are padded), so a stream of varying batches needs one graph per bucket, not per size."""
    return 1 << (batch - 1).bit_length()


@dataclass
class PreparedSource:
    """A source portrait as a renderer prepared it; each backend returns a subclass holding its
    source-only state as typed fields (``MeshSource``, ``TorchSource``, ...)."""

    image: SourceImage


Prepared = TypeVar("Prepared", bound=PreparedSource)


class Renderer(ABC):
    """Source portrait + motion windows -> frames.

    A renderer may hold native resources (the mesh renderer's MediaPipe graphs): ``close`` it when
    done, or use it as a context manager (``with load_renderer() as renderer: ...``).
    """

    #: backend name, e.g. "torch"
    name: str
    space: MotionSpace
    image_size_px: int
    #: the shortest window the model accepts (frames)
    min_window_frames: int
    mode: RenderMode

    @abstractmethod
    def _prepare(self, image: SourceImage) -> PreparedSource: ...

    @abstractmethod
    def _render(
        self, windows: np.ndarray | torch.Tensor, source: PreparedSource, mode: RenderMode, extras: bool
    ) -> RenderOutput: ...

    def prepare(self, source: SourceImage) -> PreparedSource:
        """Everything that depends on the source portrait only, for :meth:`render` (the renderer keeps
        nothing of it: preparing another portrait changes no earlier one)."""
        if source.rgb.shape[:2] != (self.image_size_px, self.image_size_px):
            raise PirenderError(
                f"source image is {source.rgb.shape[1]}x{source.rgb.shape[0]} but this renderer works at "
                f"{self.image_size_px}x{self.image_size_px}; load it with size_px={self.image_size_px}"
            )
        return self._prepare(source)

    def render(
        self,
        windows: np.ndarray | torch.Tensor,
        *,
        source: PreparedSource,
        mode: RenderMode | str | None = None,
        extras: bool = False,
    ) -> RenderOutput:
        """windows (B, width, T) or (width, T) -> frames (B, 3, H, W); ``extras`` adds warped + flow.

        Every backend and every motion source goes through here: the windows are first kept within
        their space's documented ranges (``motion.limits.soft_limit``: unchanged inside each slot's
        identity range, smoothly saturated beyond; a copy, the caller's array is not changed).
        Spaces without documented ranges (a checkpoint's own space) pass unchanged.
        """
        if windows.ndim == 2:
            windows = windows[None]
        self.check_windows(tuple(windows.shape))
        if not _finite(windows):
            raise MotionError("windows hold non-finite numbers (NaN or inf)")
        if limits_for(self.space) is not None:
            if isinstance(windows, np.ndarray):
                if not np.issubdtype(windows.dtype, np.floating):
                    windows = windows.astype(np.float32)
                windows = soft_limit(windows, self.space, axis=1)
            else:
                if not windows.is_floating_point():
                    windows = windows.float()
                windows = soft_limit(windows, self.space, axis=1)
        return self._render(windows, source, RenderMode(mode or self.mode), extras)

    def rest_row(self, source: PreparedSource) -> np.ndarray:
        """(width,) float32: the motion row that shows ``source`` as it is (its own pose, no
        expression). Here the space's neutral (the authors' space: zero expression and angles, the
        authors' crop, ``motion.edit.neutral_frame``; another space: zeros); renderers that measure
        the portrait (the mesh and neural renderers) return its own."""
        self.prepared_as(source, PreparedSource)
        if self.space == AUTHORS_SPACE:
            return neutral_frame()
        return np.zeros(self.space.width, dtype=np.float32)

    def prepared_as(self, source: PreparedSource, kind: type[Prepared]) -> Prepared:
        """``source`` as this renderer's prepared state.

        Raises:
            PirenderError: ``source`` was prepared by another kind of renderer.
        """
        if not isinstance(source, kind):
            raise PirenderError(
                f"this portrait was prepared by another renderer ({type(source).__name__}); "
                f"prepare it with this {self.name} renderer"
            )
        return source

    def close(self) -> None:  # noqa: B027 - a hook: most backends hold nothing to release
        """Release what the renderer holds besides memory (nothing, unless a backend says so); safe
        to call more than once."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_windows(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 3 or shape[0] < 1:
            raise MotionError(f"windows must be (batch, {self.space.width}, frames), got {shape}")
        if shape[1] != self.space.width:
            raise MotionError(
                f"windows carry {shape[1]} numbers per frame; this renderer's motion space "
                f"{self.space.name!r} has {self.space.width}"
            )
        if shape[2] < self.min_window_frames:
            raise MotionError(
                f"windows of {shape[2]} frames; this renderer needs >= {self.min_window_frames}"
            )

    def check_motion(self, motion: MotionSequence) -> None:
        """Refuse motion of another space with a clear error.

        ``render`` sees bare arrays and can only check their width and values: callers that hold a
        :class:`MotionSequence` check its space here first (``render_to_video`` and the CLI do).
        """
        self.space.check_compatible(motion.space)
