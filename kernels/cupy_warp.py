"""The fused warp on NVIDIA GPUs: ``warp.cu`` through CuPy's RawModule, zero-copy on torch tensors.

``cupy_warp(image, flow)`` has the reference's signature and result (``renderer.warp.torch_warp``):
image (B, C, H, W) float32 or float16, flow (B, 2, h, w) -> (B, C, H, W) in the image's dtype. The
absolute grid is built, upsampled and sampled per output pixel in one kernel, so the full-resolution
grid never exists in memory. Tensors are shared with CuPy through DLPack and the kernel runs on
torch's current CUDA stream, so it orders correctly with the surrounding torch work.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch

from .build import KERNEL_DIR, NVCC_FLAGS

THREADS_PER_BLOCK = 256


@cache
def _module(device_index: int) -> Any:
    """The compiled module for one device (CuPy caches the binary on disk across runs)."""
    import cupy

    with cupy.cuda.Device(device_index):
        source = (KERNEL_DIR / "warp.cu").read_text()
        return cupy.RawModule(code=source, options=NVCC_FLAGS, backend="nvrtc")


def available() -> str | None:
    """None when the CuPy warp can run here, else why not."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "cupy is not installed (pip install 'pirender-live[gpu]')"
    return None


def cupy_warp(image: torch.Tensor, flow: torch.Tensor, *, grid: torch.Tensor | None = None) -> torch.Tensor:
    """image (B, C, H, W) float32/float16 on CUDA, flow (B, 2, h, w) -> warped (B, C, H, W), same dtype.

    ``grid`` (the reference's precomputed base grid) is not needed: the kernel builds it per pixel.
    """
    del grid
    import cupy

    if image.device.type != "cuda" or flow.device != image.device:
        raise ValueError("cupy_warp needs image and flow on the same CUDA device")
    if image.dtype not in (torch.float32, torch.float16):
        raise ValueError(f"cupy_warp takes float32 or float16 images, not {image.dtype}")
    if flow.ndim != 4 or flow.shape[1] != 2 or flow.shape[0] != image.shape[0]:
        raise ValueError(f"warp: flow {tuple(flow.shape)} does not fit image {tuple(image.shape)}")
    batch, channels, height, width = image.shape
    h, w = flow.shape[2:]
    image = image.contiguous()
    flow32 = flow.float().contiguous()  # the sampling grid is always float32
    out = torch.empty_like(image)
    kernel_name = "pirender_warp_f32" if image.dtype == torch.float32 else "pirender_warp_f16"
    kernel = _module(image.device.index or 0).get_function(kernel_name)
    pixels = batch * height * width
    blocks = (pixels + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(image.device).cuda_stream)
    with cupy.cuda.Device(image.device.index or 0), stream:
        kernel(
            (blocks,),
            (THREADS_PER_BLOCK,),
            (
                cupy.from_dlpack(image),
                cupy.from_dlpack(flow32),
                cupy.from_dlpack(out),
                cupy.int32(batch),
                cupy.int32(channels),
                cupy.int32(height),
                cupy.int32(width),
                cupy.int32(h),
                cupy.int32(w),
            ),
        )
    return out
