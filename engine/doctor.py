"""``pirender doctor``: what this machine can run, and why not where it cannot.

Each check is one line: the thing, ok / missing / unusable, and the detail (a version, a device name,
or the reason and the fix). Nothing is downloaded or installed.
"""

from __future__ import annotations

import importlib
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else '--':>2}  {self.name:<28} {self.detail}"


def _module(name: str, purpose: str, install: str) -> Check:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        return Check(purpose, False, f"not installed ({install}): {exc}")
    return Check(purpose, True, f"{name} {getattr(module, '__version__', '')}".strip())


def _cuda() -> Check:
    if not torch.cuda.is_available():
        return Check("CUDA GPU", False, f"none visible to torch {torch.__version__} (CPU backends only)")
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return Check("CUDA GPU", True, f"{names} (torch {torch.__version__}, CUDA {torch.version.cuda})")


def _cupy_warp() -> Check:
    from pirender.kernels.cupy_warp import available

    missing = available()
    return Check("fused warp (cupy)", missing is None, missing or "warp='cupy' available")


def _tensorrt() -> Check:
    from .renderer.tensorrt_backend import tensorrt_status

    missing = tensorrt_status()
    if missing is not None:
        return Check("tensorrt backend", False, missing)
    import tensorrt

    return Check("tensorrt backend", True, f"TensorRT {tensorrt.__version__}")


def _onnxruntime() -> Check:
    try:
        import onnxruntime
    except ImportError:
        return Check("onnx backend", False, "onnxruntime not installed (pip install 'pirender-live[onnx]')")
    providers = ", ".join(onnxruntime.get_available_providers())
    return Check("onnx backend", True, f"onnxruntime {onnxruntime.__version__} ({providers})")


def _openvino() -> Check:
    try:
        import openvino
    except ImportError:
        return Check(
            "openvino backend", False, "openvino not installed (pip install 'pirender-live[openvino]')"
        )
    capabilities = ", ".join(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return Check("openvino backend", True, f"OpenVINO {openvino.__version__} (CPU: {capabilities})")


def _nvcc() -> Check:
    from pirender.kernels.build import find_nvcc

    nvcc = find_nvcc()
    return Check("nvcc (kernel builds)", nvcc is not None, nvcc or "not found (CUDA toolkit)")


def _cpu() -> Check:
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            text = info.read()
        flags = " ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in text)
    except OSError:
        pass
    detail = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    return Check("CPU", True, f"{detail}; {flags or 'no AVX-512/AMX flags'} (bf16 is fast with amx_bf16)")


def _portaudio() -> Check:
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        return Check(
            "microphone (PortAudio)", False, f"sounddevice unusable: {exc} (apt-get install libportaudio2)"
        )
    inputs = [d for d in sounddevice.query_devices() if d.get("max_input_channels", 0) > 0]
    return Check("microphone (PortAudio)", bool(inputs), f"{len(inputs)} input device(s)")


def _program(name: str, purpose: str, install: str) -> Check:
    found = shutil.which(name)
    return Check(purpose, found is not None, found or f"not found ({install})")


CHECKS: tuple[Callable[[], Check], ...] = (
    _cpu,
    _cuda,
    _cupy_warp,
    _onnxruntime,
    _openvino,
    _tensorrt,
    _nvcc,
    lambda: _module("tflite", "face tracker (MediaPipe's face models)", "pip install 'pirender-live[track]'"),
    lambda: _module("aiortc", "WebRTC server (aiortc)", "pip install aiortc"),
    _portaudio,
    lambda: _module("pyvirtualcam", "virtual webcam", "pip install 'pirender-live[webcam]'"),
    lambda: _program("espeak-ng", "speech synthesis (training)", "apt-get install espeak-ng"),
    lambda: _module("ray.serve", "Ray Serve render stage", "pip install 'pirender-live[ray]'"),
    lambda: _module("pipecat", "pipecat avatar stage", "pip install 'pirender-live[pipecat]'"),
)


def run_checks() -> list[Check]:
    results = []
    for check in CHECKS:
        try:
            results.append(check())
        except Exception as exc:  # a broken optional package must not stop the report
            results.append(
                Check(getattr(check, "__name__", "check").strip("_"), False, f"{type(exc).__name__}: {exc}")
            )
    return results
