"""Third-party native libraries stay quiet unless --verbose (issue 11): MediaPipe and TensorFlow Lite
print INFO/WARNING lines from C++ straight to file descriptor 2 when their graphs start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pirender.engine.logs import quiet_native_logs

pytest.importorskip("tflite", reason="face tracking needs the track extra")

NOISE = ("INFO: Created TensorFlow Lite", "inference_feedback_manager", "absl::InitializeLog")


def _grace_hopper() -> Path:
    cbook = pytest.importorskip("matplotlib.cbook")
    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def _track(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pirender.engine.cli.main", *extra, "track", str(_grace_hopper())]
    env = {key: value for key, value in os.environ.items() if key != "PIRENDER_VERBOSE"}
    return subprocess.run(
        [*command, "--out", str(tmp_path / "m.npz")], capture_output=True, text=True, env=env, timeout=300
    )


def test_track_prints_no_native_log_lines(tmp_path: Path) -> None:
    quiet = _track(tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert not [line for line in quiet.stderr.splitlines() if any(n in line for n in NOISE)]
    assert "wrote 1 frames" in quiet.stdout


def test_other_lines_written_meanwhile_are_kept(capfd: pytest.CaptureFixture[str]) -> None:
    with quiet_native_logs():
        os.write(2, b"I0000 00:00:1.0 1 graph.cc:1] chatter\n")
        os.write(2, b"something real went wrong\n")
    captured = capfd.readouterr()
    assert "something real went wrong" in captured.err
    assert "chatter" not in captured.err
