"""Custom CUDA kernels (CUDA C sources + CuPy loaders), each matched against a torch reference.

Empty until the speed work lands: the renderer's warp currently runs through the torch reference in
``pirender.engine.renderer.warp``.
"""
