"""``pirender bench`` and ``pirender doctor`` as a user runs them (small sizes: correctness of the
report, never timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pirender.training.cli import main


def test_bench_writes_json_plot_and_a_results_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n")
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    code = main([
        "bench", "--size", "64", "--backend", "torch,tensorrt", "--precisions", "fp32,bf16",
        "--modes", "warp",
        "--warmup", "0", "--repeats", "2", "--json", str(out_json), "--plot", str(out_png),
        "--results", str(results), "--streams", "torch fp32", "--streams-seconds", "0.3",
    ])  # fmt: skip
    assert code == 0
    report = json.loads(out_json.read_text())
    rows = {(r["precision"], r["mode"], r["batch"]) for r in report["results"]}
    assert rows == {("ref-fp32", "warp", 1), ("torch fp32", "warp", 1), ("torch bf16", "warp", 1)}
    for row in report["results"]:
        assert row["median_ms_frame"] > 0 and len(row["times_ms"]) == 2
        assert row["p99_ms_frame"] >= row["median_ms_frame"] - 1e-9
    ours = next(r for r in report["results"] if r["precision"] == "torch fp32")
    assert ours["max_abs_err"] <= 1e-3  # the fp32 path computes the reference's function
    if "tensorrt fp16" in report["skipped"]:  # where TensorRT is absent the row says why
        assert "tensorrt" in report["skipped"]["tensorrt fp16"]
    assert report["streams"]["worst_fps_by_count"]
    for latency in report["streams"]["latency_by_count"].values():  # beside the frames/s
        m2p, slot = latency["motion_to_photon_ms"], latency["render_slot_ms"]
        assert 0 < m2p["p50"] <= m2p["p90"] <= m2p["p99"] and 0 < slot["p50"] <= slot["p99"]
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    section = results.read_text()
    assert (
        section.startswith("# Results\n")
        and "`pirender bench`" in section
        and "| torch fp32 | warp | 1 |" in section
        and "motion-to-photon up to the rendered frame" in section
    )
    printed = capsys.readouterr().out
    assert "backend precision" in printed and "faithful" in printed


def test_bench_refuses_unknown_backends(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--backend", "torch,tflite"])
    assert exit_info.value.code == 2
    assert "unknown tflite" in capsys.readouterr().err


def test_doctor_reports_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = " ".join(lines)
    for expected in ("CUDA GPU", "fused warp (cupy)", "onnx backend", "tensorrt backend", "nvcc"):
        assert expected in names
    assert all(line[:2] in ("ok", "--") for line in lines)
