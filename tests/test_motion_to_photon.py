"""The motion-to-photon benchmark's inputs and its event timing (benchmarks/motion_to_photon.py); the
browser run itself is `make motion-to-photon` (it needs Chromium; about two minutes)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import shared_data

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "motion_to_photon.py"
_SPEC = importlib.util.spec_from_file_location("motion_to_photon", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
m2p = importlib.util.module_from_spec(_SPEC)
sys.modules["motion_to_photon"] = m2p
_SPEC.loader.exec_module(m2p)


def _ramp(after_ms: np.ndarray, start_ms: float, end_ms: float) -> np.ndarray:
    return np.clip((after_ms - start_ms) / (end_ms - start_ms), 0.0, 1.0)


def test_camera_events_are_timed_to_the_first_frame_half_way_to_the_new_pose() -> None:
    # the camera: 30 fps, the marker flips every 1.6 s; the avatar: 25 fps, it starts to follow 120 ms
    # after each flip and arrives 200 ms later (half way at 220 ms)
    camera_t = np.arange(0, 8000, 1000 / 30)
    marked = (camera_t // 1600) % 2 == 1
    camera = [
        {"t": float(t), "shown": float(t) + 5, "level": 255.0 * m}
        for t, m in zip(camera_t, marked, strict=True)
    ]
    flips = [1600.0 * k for k in range(1, 5)]
    old, new = np.zeros(1024), np.full(1024, 40.0)
    avatar = []
    for t in np.arange(3.0, 8000, 40):
        pose = 0.0
        for flip in flips:  # tilt on odd flips, back on even ones
            if t > flip:
                toward = 1.0 if round(flip / 1600) % 2 == 1 else 0.0
                pose = pose + (toward - pose) * _ramp(np.array(t - flip), 120, 320)
        avatar.append({"t": float(t), "px": list(old + pose * (new - old))})
    latencies, skipped, traces = m2p.camera_latencies(camera, avatar)
    assert skipped == 0 and len(latencies) == len(traces) == 4
    assert all(220 <= ms < 220 + 40 + 1000 / 30 for ms in latencies), latencies  # within a frame of each


def test_an_avatar_that_does_not_move_is_skipped_not_timed() -> None:
    camera_t = np.arange(0, 5000, 1000 / 30)
    camera = [{"t": float(t), "shown": float(t), "level": 255.0 * ((t // 1600) % 2)} for t in camera_t]
    avatar = [{"t": float(t), "px": [10.0] * 1024} for t in np.arange(0, 5000, 40)]
    latencies, skipped, _ = m2p.camera_latencies(camera, avatar)
    assert latencies == [] and skipped == 3


def test_speech_onsets_are_timed_to_half_the_bursts_widest_mouth() -> None:
    block_ms = 128 / 48
    mic_t = np.arange(0, 9600, block_ms)
    speaking = (mic_t % 3200) >= 1600
    rng = np.random.default_rng(0)
    mic = [
        {"t": float(t), "rms": float(0.3 + 0.1 * rng.random()) if s else 1e-4}
        for t, s in zip(mic_t, speaking, strict=True)
    ]
    mouth = []
    for t in np.arange(7.0, 9600, 40):
        since = (t % 3200) - 1600
        mouth.append(
            {"shown": float(t), "mouth": float(0.6 * _ramp(np.array(since), 250, 350)) if since > 0 else 0.0}
        )
    latencies, skipped, traces = m2p.talk_latencies(mic, mouth)
    assert skipped == 0 and len(latencies) == len(traces) == 3
    assert all(300 <= ms < 340 for ms in latencies), latencies


def test_the_fake_camera_and_microphone_files(tmp_path: Path) -> None:
    face, voice = shared_data("talking", "DPE__d.mp4"), shared_data("talking", "LipNet__bbaf2n.mpg")
    y4m, wav = tmp_path / "camera.y4m", tmp_path / "voice.wav"
    m2p.write_camera_y4m(y4m, face)
    m2p.write_voice_wav(wav, voice)
    header, _, body = y4m.read_bytes().partition(b"\n")
    assert header.startswith(b"YUV4MPEG2 W640 H480 F30:1")
    frames = body.split(b"FRAME\n")[1:]
    assert len(frames) == 96 and all(len(f) == 640 * 480 * 3 // 2 for f in frames)
    luma = [np.frombuffer(f[: 640 * 480], np.uint8).reshape(480, 640) for f in (frames[0], frames[60])]
    assert luma[0][:32, :32].max() < 10 and luma[1][:32, :32].min() > 245  # the marker says which half
    assert np.abs(luma[0][64:416, 128:512].astype(int) - luma[1][64:416, 128:512]).mean() > 10  # tilted
    with av.open(str(wav)) as container:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
        assert container.streams.audio[0].rate == 48_000
    half = len(samples) // 2
    assert len(samples) == pytest.approx(2 * 1.6 * 48_000, abs=2)
    assert (
        np.abs(samples[:half]).max() == 0 and np.abs(samples[half : half + 4800]).max() > 1000
    )  # speech at once
