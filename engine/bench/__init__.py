"""``pirender bench``: per-frame latency of every renderer backend against the authors' eager fp32 model.

For every backend (``torch`` eager, ``compiled`` = torch.compile of the per-frame path with frozen
weights on CPU / CUDA graphs on GPU, ``onnx`` = ONNX Runtime, ``tensorrt`` = an fp16 engine where
TensorRT exists), precision, mode and batch, the renderer is timed together with the reference: the
plain eager fp32 ``FaceGenerator.forward(source, window)`` of the same weights with the authors'
discarded branch computed (their cost, ``pirender-spec.md`` section 9), or its ``stage="warp"``
forward for warp mode. Results: p50/p90/p99 ms per frame, frames/s after warm-up (CUDA events on a
GPU), peak CUDA memory, the speed-up over the reference of the same mode and batch, and the output
error of ``frame`` against the reference's fp32 output (max abs difference, PSNR with peak-to-peak 2
for [-1, 1] images; "faithful" marks rows within 1e-3).

Within each (mode, batch) the reference and every row are timed round-robin (one call each per
round), so that a machine whose load drifts slows every row alike and the speed-ups stay comparable.
On a GPU ``--warp-kernel`` also times the fused CuPy warp against interpolate + grid_sample (with the
achieved GB/s against the device's copy bandwidth); ``--streams LABEL`` counts how many 25-fps streams
one renderer sustains through the engine's batching render service. Output: a table, ``--json``,
``--plot`` (PNG) and ``--results`` (appends a dated markdown section, e.g. to benchmarks/RESULTS.md).
Nothing here asserts timings; it measures and prints. The portrait is ``--source`` (default: the
embedded default portrait, :func:`pirender.engine.api.default_portrait`, where matplotlib is installed,
else a deterministic random image).

Example (CPU, all backends, a few minutes on 2 cores: compiling and exporting come first)::

    pirender bench --backend all --json /tmp/bench.json --plot /tmp/bench.png

The modules, each depending only on those above it:

* ``models``: the weights (:class:`ModelSource`), the portrait, the motion windows, the reference and
  the renderers under test, parameter and FLOP counts.
* ``measure``: timing one call, output error, the rows (:class:`Contender`), the round-robin groups and
  the whole benchmark (:class:`Result`).
* ``streams``: the fused warp kernel alone and the stream count through the batching render service.
* ``report``: the tables, JSON, the plot and the RESULTS.md section.
* ``environment``: date, device, load average, the command line.
* ``cli``: the arguments and :func:`main`, which runs it all.
"""

from __future__ import annotations

from .cli import main

__all__ = ["main"]
