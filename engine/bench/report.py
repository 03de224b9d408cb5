"""The reports of ``pirender bench``: the aligned and markdown tables, the JSON file, the extra lines
(skipped rows, warp kernel, streams), the frames/s plot and the dated RESULTS.md section."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any, BinaryIO

from ..fileio import write_atomically
from .measure import REF, Result, psnr_text
from .streams import STREAM_FPS

FAITHFUL_MAX_ABS = 1e-3  # an fp32-faithful row: frame within this of the reference's


def _err_text(err: float) -> str:
    return "0" if err == 0.0 else f"{err:.1e}"


def table_rows(results: list[Result], *, with_memory: bool) -> tuple[list[str], list[list[str]]]:
    header = [
        "backend precision",
        "mode",
        "batch",
        "ms/frame p50",
        "ms/frame p90",
        "ms/frame p99",
        "frames/s",
        "speed-up",
        "max abs err",
        "PSNR dB",
        "faithful",
    ]
    if with_memory:
        header.append("peak MiB")
    rows = []
    for r in results:
        row = [
            r.precision,
            r.mode,
            str(r.batch),
            f"{r.median_ms_frame:.2f}",
            f"{r.p90_ms_frame:.2f}",
            f"{r.p99_ms_frame:.2f}",
            f"{r.frames_per_s:.2f}",
            f"{r.speedup:.2f}x",
            _err_text(r.max_abs_err),
            psnr_text(r.psnr_db),
            "yes" if r.max_abs_err <= FAITHFUL_MAX_ABS else "no",
        ]
        if with_memory:
            row.append("-" if r.peak_mib is None else f"{r.peak_mib:.0f}")
        rows.append(row)
    return header, rows


def aligned_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    left = {0, 1}  # text columns

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i in left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---" if i < 2 else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """``payload`` as indented JSON (non-finite floats as null / "inf" / "-inf"), written whole."""
    text = json.dumps(_json_safe(payload), indent=2) + "\n"

    def write(handle: BinaryIO) -> None:
        handle.write(text.encode("utf-8"))

    write_atomically(path, write)


def extra_lines(
    skipped: dict[str, str], warp_kernel: dict[str, Any] | None, streams: dict[str, Any] | None
) -> list[str]:
    lines = [f"skipped {label}: {why}" for label, why in skipped.items()]
    if warp_kernel is not None:
        lines.append(
            "warp alone, batch {batch}, {size}x{size}: torch interpolate + grid_sample {torch_ms:.3f} ms, "
            "fused CuPy {cupy_ms} ms ({speedup}); {cupy_gbps} GB/s vs device copy {copy_gbps:.0f} GB/s; "
            "max abs diff {max_abs}".format(**warp_kernel)
        )
    if streams is not None:
        lines += _stream_lines(streams, f"{streams['row']}, batching render service in this process")
        ray = streams.get("ray")
        if ray is not None:
            where = (
                f"{streams['row']}, Ray Serve render deployment at {ray['where']}, {ray['replicas']} replicas"
            )
            lines += _stream_lines(ray, where)
            local = streams.get("latency_by_count", {})
            for count, latency in ray.get("latency_by_count", {}).items():
                if count not in local:
                    continue
                here, there = local[count]["render_ms"], latency["render_ms"]
                lines.append(
                    f"  the Ray hop, {count} stream(s): render stage p50 {there['p50']:.1f} vs "
                    f"{here['p50']:.1f} ms in this process (+{there['p50'] - here['p50']:.1f}), p90 "
                    f"{there['p90']:.1f} vs {here['p90']:.1f} ms (+{there['p90'] - here['p90']:.1f})"
                )
    return lines


def _stream_lines(streams: dict[str, Any], where: str) -> list[str]:
    counts = ", ".join(f"{n}: worst {fps:.1f} fps" for n, fps in streams["worst_fps_by_count"].items())
    lines = [
        f"streams ({where}, {STREAM_FPS:.0f} fps each): "
        f"{streams['sustained']} sustained (>= {STREAM_FPS - 1:.0f} fps every stream); {counts}"
    ]
    for count, latency in streams.get("latency_by_count", {}).items():
        m2p, slot = latency["motion_to_photon_ms"], latency["render_slot_ms"]
        text = (
            f"  {count} stream(s): motion-to-photon up to the rendered frame (30-fps camera capture -> "
            f"rendered) p50/p90/p99 {m2p['p50']:.1f} / {m2p['p90']:.1f} / {m2p['p99']:.1f} ms; "
            f"render slot -> rendered {slot['p50']:.1f} / {slot['p90']:.1f} / {slot['p99']:.1f} ms"
        )
        render = latency.get("render_ms")
        if render is not None:
            text += f"; render stage {render['p50']:.1f} / {render['p90']:.1f} / {render['p99']:.1f} ms"
        lines.append(text)
    return lines


def plot(results: list[Result], path: Path, title: str) -> None:
    """Frames/s per row (one bar group per mode and batch) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.precision}\n{r.mode} b{r.batch}" for r in results]
    figure, axis = plt.subplots(figsize=(max(6.0, 0.6 * len(results)), 4.0))
    colors = [
        "0.6" if r.precision == REF else ("C0" if r.max_abs_err <= FAITHFUL_MAX_ABS else "C1")
        for r in results
    ]
    axis.bar(range(len(results)), [r.frames_per_s for r in results], color=colors)
    axis.set_xticks(range(len(results)), labels, rotation=90, fontsize=7)
    axis.set_ylabel("frames/s (p50)")
    axis.set_title(
        f"pirender bench: {title}\n(grey: authors' eager fp32; blue: fp32-faithful; orange: reduced)",
        fontsize=8,
    )
    figure.tight_layout()
    try:
        write_atomically(path, lambda handle: figure.savefig(handle, format="png", dpi=120))
    finally:
        plt.close(figure)


def append_results(path: Path, meta: dict[str, Any], table: str, extra: list[str]) -> None:
    """Append a dated section: device, versions, the exact command, the table and the extra lines."""
    versions = f"torch {meta['torch']}"
    with contextlib.suppress(ImportError):
        import onnxruntime

        versions += f", onnxruntime {onnxruntime.__version__}"
    section = [
        "",
        f"## {meta['date'][:10]} - `pirender bench`, {meta['device']}",
        "",
        f"{versions}; {meta['threads']} threads; weights: {meta['weights']}; {meta['repeats']} timed calls "
        f"after {meta['warmup']} warm-up per row, round-robin. Command: `{meta['command']}`",
        "",
        table,
        "",
        *[f"- {line}" for line in extra],
    ]
    before = path.read_bytes() if path.exists() else b""  # appended by a whole new file: never half
    added = ("\n".join(section) + "\n").encode("utf-8")

    def write_section(handle: BinaryIO) -> None:
        handle.write(before + added)

    write_atomically(path, write_section)
