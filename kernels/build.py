"""Compiling the kernel sources outside CuPy: nvcc for the GPU (CI checks every ``.cu`` compiles for
sm_90 and as the PTX CuPy would JIT) and g++ for the host build of the per-pixel math (tests)."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent
CUDA_SOURCES = tuple(sorted(KERNEL_DIR.glob("*.cu")))
NVCC_FLAGS = ("-std=c++17", f"-I{KERNEL_DIR}")


class BuildError(RuntimeError):
    """A compiler is missing or a source does not compile (the compiler's output is in the message)."""


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def find_nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found is None and Path("/usr/local/cuda/bin/nvcc").exists():
        found = "/usr/local/cuda/bin/nvcc"
    return found


def compile_cuda(source: Path, out_dir: Path, *, arch: str = "90") -> list[Path]:
    """``source`` -> a sm_``arch`` cubin and a compute_``arch`` PTX in ``out_dir``."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise BuildError("nvcc not found (install the CUDA toolkit)")
    cubin, ptx = out_dir / f"{source.stem}.sm_{arch}.cubin", out_dir / f"{source.stem}.compute_{arch}.ptx"
    _run([nvcc, *NVCC_FLAGS, f"-arch=sm_{arch}", "-cubin", str(source), "-o", str(cubin)])
    _run([nvcc, *NVCC_FLAGS, f"-arch=compute_{arch}", "-ptx", str(source), "-o", str(ptx)])
    return [cubin, ptx]


def build_host_warp(out_dir: Path) -> ctypes.CDLL:
    """The warp's per-pixel math compiled for this CPU (no FMA contraction, like the reference)."""
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise BuildError("no C++ compiler (g++) found")
    library = out_dir / "warp_host.so"
    _run([compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off", f"-I{KERNEL_DIR}",
          str(KERNEL_DIR / "warp_host.cpp"), "-o", str(library)])  # fmt: skip
    lib = ctypes.CDLL(str(library))
    pointer = ctypes.POINTER(ctypes.c_float)
    lib.pirender_warp_host.argtypes = [pointer, pointer, pointer] + [ctypes.c_int] * 6
    lib.pirender_warp_host.restype = None
    return lib
