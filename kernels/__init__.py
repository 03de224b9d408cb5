"""Custom CUDA kernels: readable CUDA C sources (``*.cu``, shared math in ``*.cuh``) compiled at run
time with CuPy, each matched against a torch reference.

- ``warp.cu`` + ``warp_math.cuh``: the fused PIRenderer warp (``cupy_warp.cupy_warp``), selected in the
  renderer with ``warp="cupy"``; ``warp_host.cpp`` builds the same per-pixel math for the host tests.
- ``build.py``: compiling the sources with nvcc (CI) and the host math with g++ (tests).
"""
